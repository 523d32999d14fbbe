from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class RenameField(GlueTransform):
    """Renames a field (``old_name`` and ``new_name`` are full paths)."""

    def __call__(self, frame, old_name, new_name, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        return frame.rename_field(old_name, new_name, transformation_ctx, info, stageThreshold, totalThreshold)


class DropFields(GlueTransform):
    """Drops the fields at the given paths."""

    def __call__(self, frame, paths, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        return frame.drop_fields(paths, transformation_ctx, info, stageThreshold, totalThreshold)


class SelectFields(GlueTransform):
    """Keeps only the fields at the given paths."""

    def __call__(self, frame, paths, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        return frame.select_fields(paths, transformation_ctx, info, stageThreshold, totalThreshold)


class SplitFields(GlueTransform):
    """Splits a frame in two by fields; returns a DynamicFrameCollection.

    The first frame (``name1``, default ``<frame name>1``) has the fields at the paths, the
    second (``name2``, default ``<frame name>2``) the rest.
    """

    def __call__(
        self, frame, paths, name1=None, name2=None, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0
    ):
        frame_name = frame.name if frame.name else "frame"
        name1 = frame_name + "1" if name1 is None else name1
        name2 = frame_name + "2" if name2 is None else name2
        return frame.split_fields(paths, name1, name2, transformation_ctx, info, stageThreshold, totalThreshold)

    @classmethod
    def describeReturn(cls):
        return {"type": "DynamicFrameCollection", "description": "[frame with the fields, frame without them]"}


class SplitRows(GlueTransform):
    """Splits a frame in two by rows (``{"age": {">": 10, "<": 20}}``); returns a collection."""

    def __call__(
        self,
        frame,
        comparison_dict,
        name1="frame1",
        name2="frame2",
        transformation_ctx="",
        info=None,
        stageThreshold=0,
        totalThreshold=0,
    ):
        return frame.split_rows(
            comparison_dict, name1, name2, transformation_ctx, info or "", stageThreshold, totalThreshold
        )

    @classmethod
    def describeReturn(cls):
        return {"type": "DynamicFrameCollection", "description": "[frame with the rows, frame with the others]"}


class Join(GlueTransform):
    """Equality join of two frames on ``keys1`` (of ``frame1``) and ``keys2`` (of ``frame2``)."""

    def __call__(
        self, frame1, frame2, keys1, keys2, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0
    ):
        return frame1.join(keys1, keys2, frame2, transformation_ctx, info, stageThreshold, totalThreshold)


class Spigot(GlueTransform):
    """Writes sample records mid-job (not supported by local runs)."""

    def __call__(self, frame, path, options=None, transformation_ctx=""):
        return frame.spigot(path, options or {}, transformation_ctx)
