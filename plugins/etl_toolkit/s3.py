"""S3 and parquet access for Airflow tasks: listings, footers, small JSON objects. Never datasets.

Layer 2 (I/O). Airflow workers are small and shared, so what a task may read here is bounded
by the number of objects, not by their size: keys, parquet footers (schema, row counts, column
statistics) and small JSON documents that Glue jobs write for the tasks to read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from etl_toolkit.settings import AWS_CONN_ID


def s3_hook(aws_conn_id: str = AWS_CONN_ID):
    """The provider's S3Hook. A task that lists or reads many prefixes builds one and passes it
    on: each new hook resolves the connection and builds a boto3 client again (~0.1 s)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id)


def s3_filesystem(aws_conn_id: str = AWS_CONN_ID, hook=None):
    """A pyarrow S3 filesystem with the connection's credentials and endpoint.

    pyarrow does not read ``AWS_ENDPOINT_URL`` by itself, so the endpoint (the connection's
    ``endpoint_url``, else the standard variable) is passed as ``endpoint_override``.
    """
    from pyarrow import fs

    hook = hook or s3_hook(aws_conn_id)
    credentials = hook.get_credentials()
    endpoint = hook.conn_config.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {
        "access_key": credentials.access_key,
        "secret_key": credentials.secret_key,
        "session_token": credentials.token,
        "region": hook.conn_region_name or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    if endpoint:
        scheme, _, address = endpoint.partition("://")
        options.update(endpoint_override=address, scheme=scheme)
    return fs.S3FileSystem(**options)


def data_objects(bucket: str, prefix: str, *, hook=None) -> list[str]:
    """Keys under a prefix that hold data: Glue and Spark skip names starting with '_' or '.'."""
    keys = (hook or s3_hook()).list_keys(bucket_name=bucket, prefix=prefix) or []
    return sorted(k for k in keys if not k.rsplit("/", 1)[-1].startswith(("_", ".")) and not k.endswith("/"))


def read_json(bucket: str, key: str, *, hook=None) -> Any:
    """A small JSON object (a Glue job's report, a marker's reason)."""
    return json.loads((hook or s3_hook()).read_key(key, bucket_name=bucket))


@dataclass(frozen=True)
class Footer:
    """What a parquet file's footer says, without reading a data page."""

    key: str
    schema: Any  # pyarrow.Schema
    rows: int
    null_counts: dict[str, int | None]  # column -> nulls over all row groups; None: no statistics


def read_footer(filesystem, bucket: str, key: str, batch_id: str) -> Footer:
    """The footer of ``s3://bucket/key``: its schema, row count and per-column null counts.

    Raises ValueError naming the object and the batch when it is not a readable parquet file.
    """
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(filesystem.open_input_file(f"{bucket}/{key}"))
        schema = metadata.schema.to_arrow_schema()
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise ValueError(f"batch {batch_id}: s3://{bucket}/{key} is not a readable parquet file: {error}") from error
    null_counts: dict[str, int | None] = {}
    for index in range(metadata.num_columns):
        column = metadata.schema.column(index)
        if "." in column.path:
            continue  # a leaf of a nested column: its nulls are not the column's own
        total: int | None = 0
        for group in range(metadata.num_row_groups):
            if metadata.row_group(group).num_rows == 0:
                continue  # an empty row group holds no nulls, and writers give it no statistics
            stats = metadata.row_group(group).column(index).statistics
            if stats is None or not stats.has_null_count:
                total = None
                break
            total += stats.null_count
        null_counts[column.path] = total
    return Footer(key=key, schema=schema, rows=metadata.num_rows, null_counts=null_counts)


def parquet_footers(bucket: str, keys: list[str], batch_id: str, *, hook=None, filesystem=None) -> list[Footer]:
    hook = hook or s3_hook()
    filesystem = filesystem or s3_filesystem(hook=hook)
    return [read_footer(filesystem, bucket, key, batch_id) for key in keys]


def count_parquet_rows(bucket: str, prefix: str, batch_id: str, *, hook=None, filesystem=None) -> tuple[int, int]:
    """(rows, files) under the prefix, from the parquet footers."""
    hook = hook or s3_hook()
    keys = data_objects(bucket, prefix, hook=hook)
    footers = parquet_footers(bucket, keys, batch_id, hook=hook, filesystem=filesystem)
    return sum(footer.rows for footer in footers), len(keys)


def read_head(bucket: str, key: str, size: int, *, hook=None) -> tuple[bytes, bool]:
    """The first ``size`` bytes of an object (a ranged GET), and whether that is all of it."""
    client = (hook or s3_hook()).get_conn()
    response = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{size - 1}")
    total = int(response.get("ContentRange", "/0").rsplit("/", 1)[-1] or 0) or response["ContentLength"]
    data = response["Body"].read()
    return data, len(data) >= total


# -- moving a batch's objects to an archive --------------------------------------------------------------


WRITTEN_AGAIN = "left in place: written again after the batch read it"


class ArchiveError(RuntimeError):
    """An object of a batch could not be archived as it was read; it is left where it was."""


def archive_object(
    client, source_bucket: str, key: str, archive_bucket: str, *, size: int, etag: str, batch_id: str
) -> str:
    """Move one object of a batch, as the batch read it (``size``, ``etag``), to the same key in
    ``archive_bucket``: copy, check the copy is whole, then delete the original. Safe to run
    again after it died at any point: an object already copied is not copied twice, one already
    moved is found in the archive. Returns ``moved``, ``already archived`` or ``WRITTEN_AGAIN``:
    an original whose ETag is not the one the batch read (written again since) is neither copied
    nor deleted, since the batch did not load that version.
    """
    source = _head(client, source_bucket, key)
    archived = _head(client, archive_bucket, key)
    if source is None:
        if archived is not None and _is_whole_copy(client, archived, archive_bucket, key, size, etag):
            return "already archived"
        raise ArchiveError(
            f"batch {batch_id}: s3://{source_bucket}/{key} is gone and s3://{archive_bucket}/{key} is not a whole copy"
        )
    if source["ETag"].strip('"') != etag:
        # A newer delivery under the same key: not this batch's to move. It stays for the batch
        # that delivers it; failing here would fail every later claim of this loaded batch too.
        return WRITTEN_AGAIN
    if archived is None or not _is_whole_copy(client, archived, archive_bucket, key, size, etag, source_bucket):
        source_object = {"Bucket": source_bucket, "Key": key}
        client.copy_object(Bucket=archive_bucket, Key=key, CopySource=source_object, CopySourceIfMatch=f'"{etag}"')
        archived = _head(client, archive_bucket, key)
        if archived is None or not _is_whole_copy(client, archived, archive_bucket, key, size, etag, source_bucket):
            raise ArchiveError(
                f"batch {batch_id}: the copy of s3://{source_bucket}/{key} in {archive_bucket} is not whole "
                "(its size or checksum differ); the original is kept"
            )
    delete_original(client, source_bucket, key)
    return "moved"


def delete_original(client, bucket: str, key: str) -> None:
    """The last step of a move, once the copy is known to be whole."""
    client.delete_object(Bucket=bucket, Key=key)


def _head(client, bucket: str, key: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _is_whole_copy(
    client, archived: dict, bucket: str, key: str, size: int, etag: str, source_bucket: str | None = None
) -> bool:
    """Whether the archived object has the original's size and content. A single-part upload's
    ETag is the MD5 of its bytes, and a copy keeps it; a multipart ETag (``<md5>-<parts>``) is
    not a checksum of the bytes, so those are compared by SHA-256, read in chunks."""
    if archived["ContentLength"] != size:
        return False
    if "-" not in etag:
        return archived["ETag"].strip('"') == etag
    if source_bucket is None:
        return True  # the original is gone (deleted only after its copy was checked): the size must do
    return _sha256(client, bucket, key) == _sha256(client, source_bucket, key)


def _sha256(client, bucket: str, key: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    for chunk in client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()
