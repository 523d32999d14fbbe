from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class Coalesce(GlueTransform):
    """Reduces a frame to ``num_partitions`` partitions."""

    def __call__(
        self, frame, num_partitions, shuffle=False, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0
    ):
        return frame.coalesce(num_partitions, shuffle, transformation_ctx, info, stageThreshold, totalThreshold)
