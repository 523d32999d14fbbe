from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class Repartition(GlueTransform):
    """Repartitions a frame into ``num_partitions`` partitions."""

    def __call__(self, frame, num_partitions, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        return frame.repartition(num_partitions, transformation_ctx, info, stageThreshold, totalThreshold)
