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
