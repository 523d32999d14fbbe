from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class Filter(GlueTransform):
    """Keeps the records for which ``f(record)`` returns true."""

    def __call__(self, frame, f, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        return frame.filter(f, transformation_ctx, info, stageThreshold, totalThreshold)
