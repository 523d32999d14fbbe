from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class Unbox(GlueTransform):
    """Parses a string field (``format="json"``) into a struct."""

    def __call__(
        self, frame, path, format, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0, **options
    ):
        return frame.unbox(path, format, transformation_ctx, info, stageThreshold, totalThreshold, **options)
