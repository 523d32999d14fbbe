from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class Union(GlueTransform):
    """All records of two frames."""

    def __call__(self, frame1, frame2, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        return frame1.union(frame2, transformation_ctx, info, stageThreshold, totalThreshold)
