from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class UnnestFrame(GlueTransform):
    """Makes nested struct fields top-level fields named by their path (``a.b``)."""

    def __call__(self, frame, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0):
        return frame.unnest(transformation_ctx, info, stageThreshold, totalThreshold)
