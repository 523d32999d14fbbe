from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class Map(GlueTransform):
    """Builds a frame of ``f(record)`` for every record of ``frame``."""

    def __call__(
        self, frame, f, preservesPartitioning=False, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0
    ):
        return frame.map(f, preservesPartitioning, transformation_ctx, info, stageThreshold, totalThreshold)
