"""Internals of the local awsglue implementation (not part of AWS's API)."""
