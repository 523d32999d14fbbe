from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class Relationalize(GlueTransform):
    """Flattens nested structs and pivots arrays into their own frames (a DynamicFrameCollection)."""

    def __call__(
        self,
        frame,
        staging_path=None,
        name="roottable",
        options=None,
        transformation_ctx="",
        info="",
        stageThreshold=0,
        totalThreshold=0,
    ):
        return frame.relationalize(
            name, staging_path, options, transformation_ctx, info, stageThreshold, totalThreshold
        )

    @classmethod
    def describeReturn(cls):
        return {"type": "DynamicFrameCollection", "description": "the root table and one table per array"}
