from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class ApplyMapping(GlueTransform):
    """Applies a declarative mapping: keeps the mapped fields, renamed and cast.

    ``mappings`` is a list of (source path, source type, target path, target type) tuples.
    """

    def __call__(
        self, frame, mappings, case_sensitive=False, transformation_ctx="", info="", stageThreshold=0, totalThreshold=0
    ):
        return frame.apply_mapping(mappings, case_sensitive, transformation_ctx, info, stageThreshold, totalThreshold)
