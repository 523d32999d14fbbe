"""Orders, S3 landing to S3 staging: one batch, deduplicated and exploded into product lines.

Reads   s3://<landing_bucket>/<landing_prefix>year=YYYY/month=MM/day=DD/hour=HH/<any name>
        for every hour from the hour of --started_at to the hour of --completed_at inclusive
        (Firehose parquet, partitioned by processing time), keeping the rows whose ``run_id``
        is --batch_id. Objects whose name starts with ``_`` or ``.`` are skipped, as Glue and
        Athena skip them.
Writes  s3://<staging_bucket>/<staging_prefix>run_id=<batch_id>/part-<JOB_RUN_ID>-NNNNN.snappy.parquet
        one row per product line of the latest copy of each order (delivery is at least once),
        with ``line_number`` = 1-based position in ``products``. The new objects replace the
        partition: they are written first, then every other object in it is deleted, so a
        rerun, or a retry after a crash, converges on the same content and never duplicates.
Writes  s3://<staging_bucket>/<versions_prefix>run_id=<batch_id>/part-<JOB_RUN_ID>-NNNNN.snappy.parquet
        one row per order the batch delivers (order_id, processing_ts of its latest copy), the
        same way. Staging lines cannot say which orders a batch delivers: an order delivered
        with no products has no line, yet it must lose the lines an earlier batch loaded. And
        processing_ts is the order's version stamp, which the warehouse load compares so that
        reprocessing an older batch never brings back older lines. This is its own dataset,
        outside <staging_prefix>, so the staging layer stays one row per line.

Which landing rows make up the batch (the hour window, the objects and row groups that can hold
it, the latest-copy rule) is defined once, in ``orders_batch.py``, which
``orders_audit_landing.py`` uses too, so that the audit counts exactly what this job writes. A
Glue job run gets it with ``--extra-py-files`` (on AWS and in the local stack); a script run
straight from the repository imports it from beside itself.

Memory: pass 1 reads only order_id, processing_ts and run_id to choose the winning copy of each
order (about 70 MB per million orders); pass 2 streams full record batches, keeps the winners
and writes their lines, in memory that does not grow with the batch. Pass 2 overlaps its steps
on threads: the next record batch is read while the current one is exploded, each output's row
groups are encoded on a thread of its own and each finished object is uploaded on another, so
at most one record batch, one row group per output and one object per output wait (a million
orders peak near 500 MB RSS). Runs on AWS Glue 5.0 and locally as a plain Python process (no
Spark, no awsglue). Ends with one JSON line: batch id, orders read, duplicates dropped, lines
written.

Arguments: --batch_id --landing_bucket --landing_prefix --staging_bucket --staging_prefix
--started_at --completed_at (ISO-8601; naive means UTC; both empty: scan every hour partition);
optional --JOB_RUN_ID (names the objects written), --late_minutes (reads that much past
completed_at) and --versions_prefix (default ``order_versions/``); others are ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from orders_batch import (
    READ_BATCH_ROWS,
    BatchKeys,
    _folder,
    _open,
    _reading,
    _row_groups,
    batch_prefixes,
    conform,
    list_objects,
    read_ahead,
    scan_batch_keys,
)

ARGUMENTS = [
    "batch_id",
    "landing_bucket",
    "landing_prefix",
    "staging_bucket",
    "staging_prefix",
    "started_at",
    "completed_at",
]
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")

STAGING_SCHEMA = pa.schema(
    [
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("line_number", pa.int32(), nullable=False),
        pa.field("customer_id", pa.string()),
        pa.field("order_ts", pa.timestamp("ms", tz="UTC")),
        pa.field("currency", pa.string()),
        pa.field("product_code", pa.string()),
        pa.field("product_name", pa.string()),
        pa.field("quantity", pa.int32()),
        pa.field("unit_price", pa.decimal128(10, 2)),
        pa.field("processing_ts", pa.timestamp("ms", tz="UTC")),
    ]
)
# The orders a batch delivers: one row per order, with the processing_ts of the copy that won.
VERSIONS_SCHEMA = pa.schema(
    [
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("processing_ts", pa.timestamp("ms", tz="UTC")),
    ]
)
DEFAULT_VERSIONS_PREFIX = "order_versions/"
ORDER_COLUMNS = ["order_id", "customer_id", "order_ts", "currency", "processing_ts"]
PRODUCT_FIELDS = ["product_code", "product_name", "quantity", "unit_price"]
READ_COLUMNS = [*ORDER_COLUMNS, "products"]

ROW_GROUP_ROWS = 131_072
LINES_PER_OBJECT = 1_000_000


# --- arguments -----------------------------------------------------------------------------


def resolve_options(argv: Sequence[str], names: Iterable[str]) -> dict[str, str]:
    """``awsglue.utils.getResolvedOptions``: every name is a required ``--name value``;
    anything else Glue passes (``--JOB_NAME``, ``--TempDir``, ``--enable-metrics`` ...) is
    ignored. ``argv`` includes the program name, as ``sys.argv`` does."""
    names = list(names)
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    for name in names:
        parser.add_argument(f"--{name}", required=True)
    parsed, _ = parser.parse_known_args(list(argv[1:]))
    return {name: getattr(parsed, name) for name in names}


def optional_option(argv: Sequence[str], name: str) -> str | None:
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    parser.add_argument(f"--{name}")
    return getattr(parser.parse_known_args(list(argv[1:]))[0], name)


# --- pure transforms -----------------------------------------------------------------------


def explode_products(orders: pa.Table | pa.RecordBatch, rows: np.ndarray | None = None) -> pa.Table:
    """One row per product line, in STAGING_SCHEMA; ``line_number`` is the 1-based position in
    ``products``. Null or empty ``products`` give no lines; a null element is still a line.
    ``rows`` (ascending positions) limits it to those orders; by default every order."""
    if isinstance(orders, pa.RecordBatch):
        orders = pa.Table.from_batches([orders])
    products = orders.column("products")
    lengths = pc.fill_null(pc.list_value_length(products), 0).to_numpy().astype(np.int64)
    lines = pc.list_flatten(products)  # skips null lists, like ``lengths``
    if rows is None or len(rows) == orders.num_rows:
        rows = np.arange(orders.num_rows)
    else:
        # The chosen orders' lines are picked from the flattened lines: taking the chosen orders
        # first would copy their nested products once more.
        chosen = np.zeros(orders.num_rows, dtype=bool)
        chosen[rows] = True
        lines = lines.filter(pa.array(np.repeat(chosen, lengths)))
    counts = lengths[rows]
    parents = np.repeat(rows, counts)
    firsts = np.cumsum(counts) - counts
    line_number = np.arange(len(parents), dtype=np.int64) - np.repeat(firsts, counts) + 1

    product_fields = dict(zip([f.name for f in lines.type], lines.flatten(), strict=True))
    owners = orders.select(ORDER_COLUMNS).take(pa.array(parents))
    columns = {
        **{name: owners.column(name) for name in ORDER_COLUMNS},
        "line_number": pa.array(line_number),
        **{name: product_fields[name] for name in PRODUCT_FIELDS},
    }
    return pa.Table.from_arrays([conform(columns[f.name], f.type) for f in STAGING_SCHEMA], schema=STAGING_SCHEMA)


def order_versions(orders: pa.Table | pa.RecordBatch, rows: np.ndarray | None = None) -> pa.Table:
    """One row per order, in VERSIONS_SCHEMA: its order_id and processing_ts (the version the
    warehouse compares). Every order is kept, including one whose products are null or empty;
    ``rows`` (ascending positions) limits it to those orders."""
    if isinstance(orders, pa.RecordBatch):
        orders = pa.Table.from_batches([orders])
    orders = orders.select([f.name for f in VERSIONS_SCHEMA])
    if rows is not None and len(rows) < orders.num_rows:
        orders = orders.take(pa.array(rows))
    return pa.Table.from_arrays(
        [conform(orders.column(f.name), f.type) for f in VERSIONS_SCHEMA], schema=VERSIONS_SCHEMA
    )


# --- I/O -----------------------------------------------------------------------------------


def s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow does not read AWS_ENDPOINT_URL itself; pass it on, and the region."""
    options = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_override"] = endpoint
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        options["region"] = region
    return pafs.S3FileSystem(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=5), **options)


def s3_client():
    """boto3's S3 client, for the writes and deletes (it reaches AWS_ENDPOINT_URL by itself)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5}))


def stream_winning_orders(
    fs: pafs.FileSystem, keys: BatchKeys, batch_id: str
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """Pass 2: stream full record batches of the objects holding winners; yield each record
    batch that holds winners with the winners' positions in it, ascending."""
    for file_index, wanted in sorted(keys.winners.items()):
        path = keys.objects[file_index]
        with _reading(path, batch_id):
            parquet = _open(fs, path, READ_COLUMNS)
            for row_group, first_row in _row_groups(parquet):
                size = parquet.metadata.row_group(row_group).num_rows
                lo, hi = np.searchsorted(wanted, [first_row, first_row + size])
                if lo == hi:
                    continue
                offset = first_row
                for batch in parquet.iter_batches(
                    batch_size=READ_BATCH_ROWS, row_groups=[row_group], columns=READ_COLUMNS
                ):
                    a, b = np.searchsorted(wanted, [offset, offset + batch.num_rows])
                    if a < b:
                        yield batch, wanted[a:b] - offset
                    offset += batch.num_rows


class StagingWriter:
    """Writes rows (lines, or with VERSIONS_SCHEMA orders) as snappy parquet objects
    ``part-<job run id>-NNNNN.snappy.parquet``.

    Row groups are buffered to ROW_GROUP_ROWS rows and an object holds about LINES_PER_OBJECT.
    Each object is assembled in memory and uploaded whole, in one PutObject, so a crash never
    leaves half of one.

    The caller only buffers: a thread of the writer's own encodes the row groups, in order, and
    another uploads each finished object, so reading, encoding and uploading overlap (pyarrow and
    boto3 release the GIL while they work). One row group waits to be encoded and one object to
    be uploaded at most, so memory stays bounded; a failure on either thread surfaces in the
    caller at its next hand-over or at close().
    """

    def __init__(self, s3, location: str, job_run_id: str, schema: pa.Schema = STAGING_SCHEMA):
        """``s3``: a boto3 S3 client (s3_client()); ``location``: ``bucket/prefix/``."""
        self.s3, self.location, self.job_run_id, self.schema = s3, location, job_run_id, schema
        self.written: list[str] = []
        self.lines = 0  # rows written: lines, or orders for VERSIONS_SCHEMA
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._sink: pa.BufferOutputStream | None = None
        self._writer: pq.ParquetWriter | None = None
        self._in_object = 0
        self._encoding = ThreadPoolExecutor(max_workers=1, thread_name_prefix="staging-encode")
        self._uploading = ThreadPoolExecutor(max_workers=1, thread_name_prefix="staging-upload")
        self._encoded: Future | None = None
        self._uploaded: Future | None = None
        self._finished = False

    def add(self, lines: pa.Table) -> None:
        if not lines.num_rows:
            return
        self._pending.append(lines)
        self._pending_rows += lines.num_rows
        self.lines += lines.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._hand_over(last=False)

    def finish(self) -> None:
        """Hand over the last rows; close() then waits until the last object is uploaded."""
        if not self._finished:
            self._hand_over(last=True)
            self._finished = True

    def close(self) -> list[str]:
        self.finish()
        self._encoded.result()
        if self._uploaded is not None:
            self._uploaded.result()
        self._encoding.shutdown()
        self._uploading.shutdown()
        return self.written

    def _hand_over(self, last: bool) -> None:
        if self._encoded is not None:
            self._encoded.result()
        tables, self._pending, self._pending_rows = self._pending, [], 0
        self._encoded = self._encoding.submit(self._encode, tables, last)

    def _encode(self, tables: list[pa.Table], last: bool) -> None:
        if tables:
            if self._writer is None:
                self._sink = pa.BufferOutputStream()
                self._writer = pq.ParquetWriter(self._sink, self.schema, compression="snappy")
            self._writer.write_table(pa.concat_tables(tables), row_group_size=ROW_GROUP_ROWS)
            self._in_object += sum(table.num_rows for table in tables)
        if self._writer is not None and (last or self._in_object >= LINES_PER_OBJECT):
            self._writer.close()
            path = f"{self.location}part-{self.job_run_id}-{len(self.written):05d}.snappy.parquet"
            self.written.append(path)
            if self._uploaded is not None:
                self._uploaded.result()
            self._uploaded = self._uploading.submit(self._upload, path, self._sink.getvalue(), self._in_object)
            self._sink, self._writer, self._in_object = None, None, 0

    def _upload(self, path: str, body: pa.Buffer, rows: int) -> None:
        bucket, key = path.split("/", 1)
        self.s3.put_object(Bucket=bucket, Key=key, Body=pa.BufferReader(body))
        log(f"wrote s3://{path}: {rows} rows")


def remove_other_objects(s3, location: str, keep: Iterable[str]) -> int:
    """Delete every object under ``bucket/prefix/`` except ``keep``, through boto3: pyarrow's
    delete_file would leave a directory marker object behind in an emptied partition."""
    bucket, prefix = location.split("/", 1)
    keep = {path.split("/", 1)[1] for path in keep}
    stale = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if item["Key"] not in keep
    ]
    for start in range(0, len(stale), 1000):
        chunk = stale[start : start + 1000]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
        if response.get("Errors"):
            error = response["Errors"][0]
            raise OSError(f"cannot delete s3://{bucket}/{error['Key']}: {error['Code']} {error['Message']}")
    for key in stale:
        log(f"removed older object s3://{bucket}/{key}")
    return len(stale)


def use_jemalloc() -> None:
    """Allocate Arrow memory with jemalloc, the default of Glue 5.0's pyarrow, unless
    ARROW_DEFAULT_MEMORY_POOL names a pool. Newer pyarrow defaults to mimalloc, which hands freed
    memory back to the system within milliseconds; this job frees and allocates buffers of
    several MB for every record batch, and under mimalloc it measured a third more system time
    (the kernel zeroing the same memory again) and a peak RSS about 150 MB higher."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without jemalloc
        pass


def log(message: str) -> None:
    # One write per line: the upload threads log too, and print() writes the newline apart.
    sys.stdout.write(f"[orders_landing_to_staging] {message}\n")
    sys.stdout.flush()


# --- job -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict:
    argv = sys.argv if argv is None else argv
    use_jemalloc()
    args = resolve_options(argv, ARGUMENTS)
    batch_id = args["batch_id"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    job_run_id = re.sub(r"[^A-Za-z0-9_.-]", "_", optional_option(argv, "JOB_RUN_ID") or "local")
    # --late_minutes defaults to 0, as docs/interfaces.md promises.
    late_minutes = float(optional_option(argv, "late_minutes") or 0)
    prefixes = batch_prefixes(args["landing_prefix"], args["started_at"], args["completed_at"], late_minutes)
    location = f"{args['staging_bucket']}/{_folder(args['staging_prefix'])}run_id={batch_id}/"
    versions_prefix = _folder(optional_option(argv, "versions_prefix") or DEFAULT_VERSIONS_PREFIX)
    versions_location = f"{args['staging_bucket']}/{versions_prefix}run_id={batch_id}/"
    if versions_location.startswith(location) or location.startswith(versions_location):
        raise ValueError(f"--versions_prefix {versions_prefix!r} overlaps the staging partition s3://{location}")
    fs = s3_filesystem()

    log(f"batch {batch_id}: {len(prefixes)} hour partitions from s3://{args['landing_bucket']}/{prefixes[0]}")
    with ThreadPoolExecutor(max_workers=1) as loading:
        client_ready = loading.submit(s3_client)  # boto3 takes a while to import: it does so while pass 1 reads
        objects = list_objects(fs, args["landing_bucket"], prefixes, log)
        keys = scan_batch_keys(fs, objects, batch_id, required_columns=READ_COLUMNS)
        s3 = client_ready.result()
    log(f"pass 1: {keys.rows_read} rows of the batch, {keys.orders} orders, {keys.duplicates} duplicates dropped")
    writer = StagingWriter(s3, location, job_run_id)
    versions = StagingWriter(s3, versions_location, job_run_id, VERSIONS_SCHEMA)
    for orders, rows in read_ahead(stream_winning_orders(fs, keys, batch_id)):
        writer.add(explode_products(orders, rows))
        versions.add(order_versions(orders, rows))
    writer.finish()
    versions.finish()  # before waiting for the lines: both last objects are encoded and uploaded at once
    written, versions_written = writer.close(), versions.close()
    removed = remove_other_objects(s3, location, written)
    removed += remove_other_objects(s3, versions_location, versions_written)
    summary = {
        "batch_id": batch_id,
        "orders_read": keys.rows_read,
        "orders": keys.orders,
        "duplicates_dropped": keys.duplicates,
        "lines_written": writer.lines,
        "versions_written": versions.lines,
        "objects_listed": len(keys.objects),
        "objects_written": len(written) + len(versions_written),
        "objects_removed": removed,
        "staging_location": f"s3://{location}",
        "versions_location": f"s3://{versions_location}",
    }
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
