from __future__ import annotations

from awsglue.transforms.transform import GlueTransform


class ErrorsAsDynamicFrame(GlueTransform):
    """The error records of a frame (and of the frames it came from) as a DynamicFrame."""

    def __call__(self, frame):
        return frame.errorsAsDynamicFrame()
