"""A Spark Glue script: locally it must fail with a clear message, not run half-way."""

from awsglue.context import GlueContext  # noqa: F401

print("unreachable")
