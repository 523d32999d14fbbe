from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class DropNullFields(GlueTransform):
    """Drops the fields that are null in every record."""

    def __call__(self, frame, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        return frame.drop_null_fields(transformation_ctx, info, stageThreshold, totalThreshold)
