"""The error raised by local Glue runs for an awsglue API they do not implement."""

from __future__ import annotations


class LocalGlueUnsupported(NotImplementedError):
    """An awsglue API that local Glue runs do not implement (yet)."""


def unsupported(owner: str, name: str) -> LocalGlueUnsupported:
    """The error for ``owner.name``; the caller raises it."""
    return LocalGlueUnsupported(f"awsglue {owner}.{name} is not supported by local Glue runs yet")
