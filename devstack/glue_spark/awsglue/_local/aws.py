"""boto3 clients for the services a local Glue run talks to, and S3 listing.

Clients follow the environment the runtime gives a job: ``AWS_ENDPOINT_URL`` (the emulator),
the region (``AWS_REGION`` or ``AWS_DEFAULT_REGION``, else us-east-1) and the credentials.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

import boto3
from botocore.exceptions import ClientError

_CLIENTS: dict[tuple, object] = {}


def client(service: str):
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    endpoint = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get("AWS_ENDPOINT_URL")
    key = (service, region, endpoint, os.environ.get("AWS_ACCESS_KEY_ID"))
    if key not in _CLIENTS:
        _CLIENTS[key] = boto3.client(service, region_name=region, endpoint_url=endpoint)
    return _CLIENTS[key]


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` (or s3a://, s3n://) -> (bucket, key)."""
    match = re.match(r"^s3[an]?://([^/]+)/?(.*)$", url)
    if not match:
        raise ValueError(f"not an S3 path: {url!r} (expected s3://bucket/prefix)")
    return match.group(1), match.group(2)


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime
    storage_class: str
    root: str  # the key prefix of the path the object was found under ('' for the bucket)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def tag(self) -> str:
        """What a bookmark records to tell a changed object from a processed one."""
        return self.etag or f"{self.size}:{self.last_modified.isoformat()}"

    def partition_values(self) -> dict[str, str]:
        """The ``key=value`` folders between the path it was found under and the object."""
        relative = self.key[len(self.root) :].lstrip("/")
        values: dict[str, str] = {}
        for folder in relative.split("/")[:-1]:
            if "=" in folder:
                name, value = folder.split("=", 1)
                if name:
                    values[unquote(name)] = unquote(value)
        return values


def _is_data_key(key: str, root: str) -> bool:
    if key.endswith("/") or key.endswith("_$folder$"):
        return False
    name = key.rsplit("/", 1)[-1]
    return not (name.startswith("_") or name.startswith("."))


def list_objects(path: str, recurse: bool = True) -> Iterator[S3Object]:
    """The data objects at ``path``: the object itself if it names one, else those below it.

    Without ``recurse`` only the objects directly in the folder are listed. Folder markers,
    empty objects and names starting with ``_`` or ``.`` (``_SUCCESS``) are skipped.
    """
    bucket, key = split_s3_url(path)
    s3 = client("s3")
    if key and not key.endswith("/"):
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound", "403"):
                raise
        else:
            if head.get("ContentLength", 0) > 0:
                root = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
                yield S3Object(
                    bucket,
                    key,
                    head["ContentLength"],
                    head.get("ETag", "").strip('"'),
                    head["LastModified"],
                    head.get("StorageClass", "STANDARD"),
                    root,
                )
            return
    prefix = key if not key or key.endswith("/") else key + "/"
    kwargs = {"Bucket": bucket, "Prefix": prefix}
    if not recurse:
        kwargs["Delimiter"] = "/"
    for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
        for item in page.get("Contents", []):
            if item["Size"] == 0 or not _is_data_key(item["Key"], prefix):
                continue
            yield S3Object(
                bucket,
                item["Key"],
                item["Size"],
                item.get("ETag", "").strip('"'),
                item["LastModified"],
                item.get("StorageClass", "STANDARD"),
                prefix,
            )


def list_all(path: str) -> Iterator[dict]:
    """Every object under an S3 prefix (markers and hidden names included), as listed."""
    bucket, key = split_s3_url(path)
    s3 = client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        for item in page.get("Contents", []):
            yield {"Bucket": bucket, **item}


def glob_matcher(patterns: list[str]):
    """A predicate on s3 urls/keys for Glue's ``exclusions`` globs (``**`` crosses folders)."""
    regexes = []
    for pattern in patterns:
        out, i = "", 0
        while i < len(pattern):
            char = pattern[i]
            if pattern.startswith("**", i):
                out += ".*"
                i += 2
                continue
            if char == "*":
                out += "[^/]*"
            elif char == "?":
                out += "[^/]"
            elif char == "{":
                end = pattern.find("}", i)
                if end > i:
                    out += "(?:" + "|".join(re.escape(p) for p in pattern[i + 1 : end].split(",")) + ")"
                    i = end + 1
                    continue
                out += re.escape(char)
            elif char == "[":
                end = pattern.find("]", i)
                if end > i:
                    out += fnmatch.translate(pattern[i : end + 1])[4:-3]
                    i = end + 1
                    continue
                out += re.escape(char)
            else:
                out += re.escape(char)
            i += 1
        regexes.append(re.compile(out + r"\Z"))

    def excluded(obj: S3Object) -> bool:
        relative = obj.key[len(obj.root) :]
        candidates = (obj.url, obj.key, relative, f"{obj.bucket}/{obj.key}")
        return any(regex.match(candidate) for regex in regexes for candidate in candidates)

    return excluded
