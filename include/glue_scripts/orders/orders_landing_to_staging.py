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

Memory: pass 1 reads only order_id, processing_ts and run_id to choose the winning copy of each
order (about 130 MB per million orders); pass 2 streams full record batches, keeps the winners
and writes their lines, in memory that does not grow with the batch (a million orders peak
near 430 MB RSS). Runs on AWS Glue 5.0 and locally as a plain Python process (no Spark,
no awsglue). Ends with one JSON line: batch id, orders read, duplicates dropped, lines written.

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

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
KEY_COLUMNS = ["order_id", "processing_ts", "run_id"]
READ_COLUMNS = [*ORDER_COLUMNS, "products"]

READ_BATCH_ROWS = 65_536
ROW_GROUP_ROWS = 131_072
LINES_PER_OBJECT = 1_000_000


class BatchReadError(RuntimeError):
    """A landing object of the batch cannot be read; the message names the object and batch."""


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


def parse_utc(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def hour_prefixes(landing_prefix: str, started_at: datetime, completed_at: datetime) -> list[str]:
    """The processing-time hour partitions from the hour of started_at to the hour of
    completed_at, inclusive."""
    if completed_at < started_at:
        raise ValueError(f"completed_at {completed_at:%Y-%m-%dT%H:%M:%SZ} is before started_at")
    prefix = _folder(landing_prefix)
    hour = started_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    last = completed_at.astimezone(UTC)
    prefixes = []
    while hour <= last:
        prefixes.append(f"{prefix}year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}/")
        hour += timedelta(hours=1)
    return prefixes


def _folder(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


# --- pure transforms -----------------------------------------------------------------------


def select_latest_copies(keys: pa.Table) -> tuple[pa.Table, int]:
    """Choose one copy per order_id: the latest ``processing_ts`` wins; ties go to the copy
    found later (higher ``file_index``, then ``row_index``), so the choice is deterministic.
    A null processing_ts loses to any timestamp.

    ``keys`` has order_id, processing_ts, file_index, row_index. Returns the winners'
    (file_index, row_index), in that order, and how many copies were dropped.
    """
    if keys.num_rows == 0:
        return keys.select(["file_index", "row_index"]), 0
    # Sort positions, not the table: only the ids are copied, which keeps pass 1 small.
    order = pc.sort_indices(
        keys,
        sort_keys=[
            ("order_id", "ascending"),
            ("processing_ts", "descending"),
            ("file_index", "descending"),
            ("row_index", "descending"),
        ],
    )
    ids = keys.column("order_id").take(order).combine_chunks()
    first_of_order = pa.concat_arrays(
        [pa.array([True]), pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))]
    )
    del ids
    winners = keys.select(["file_index", "row_index"]).take(order.filter(first_of_order))
    winners = winners.sort_by([("file_index", "ascending"), ("row_index", "ascending")])
    return winners, keys.num_rows - winners.num_rows


def dedupe_orders(orders: pa.Table) -> tuple[pa.Table, int]:
    """In-memory form of the dedupe: the latest copy of each order, in their original order."""
    positions = pa.array(np.arange(orders.num_rows, dtype=np.int64))
    keys = pa.table(
        {
            "order_id": orders.column("order_id"),
            "processing_ts": orders.column("processing_ts"),
            "file_index": pa.array(np.zeros(orders.num_rows, dtype=np.int32)),
            "row_index": positions,
        }
    )
    winners, dropped = select_latest_copies(keys)
    return orders.take(winners.column("row_index")), dropped


def batch_keys(batch: pa.RecordBatch, batch_id: str, file_index: int, first_row: int) -> pa.Table | None:
    """The dedupe keys of the batch's rows in one record batch (None when it has none):
    order_id, processing_ts, and where the row sits (file_index, row_index in the object)."""
    mine = pc.fill_null(pc.equal(batch.column("run_id"), batch_id), False)
    positions = np.flatnonzero(mine.to_numpy(zero_copy_only=False))
    if not len(positions):
        return None
    order_ids = batch.column("order_id").take(pa.array(positions))
    if order_ids.null_count:
        raise ValueError(f"{order_ids.null_count} rows of the batch have a null order_id")
    return pa.table(
        {
            "order_id": order_ids,
            "processing_ts": _conform(
                batch.column("processing_ts").take(pa.array(positions)),
                STAGING_SCHEMA.field("processing_ts").type,
            ),
            "file_index": pa.array(np.full(len(positions), file_index, dtype=np.int32)),
            "row_index": pa.array(positions + first_row),
        }
    )


def explode_products(orders: pa.Table | pa.RecordBatch) -> pa.Table:
    """One row per product line, in STAGING_SCHEMA; ``line_number`` is the 1-based position in
    ``products``. Null or empty ``products`` give no lines; a null element is still a line."""
    if isinstance(orders, pa.RecordBatch):
        orders = pa.Table.from_batches([orders])
    products = orders.column("products").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(products), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    parents = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    line_number = np.arange(len(parents), dtype=np.int64) - np.repeat(starts, lengths) + 1

    lines = pc.list_flatten(products)  # skips null lists, like ``lengths``
    product_fields = dict(zip([f.name for f in lines.type], lines.flatten(), strict=True))
    owners = orders.take(pa.array(parents))
    columns = {
        **{name: owners.column(name) for name in ORDER_COLUMNS},
        "line_number": pa.array(line_number),
        **{name: product_fields[name] for name in PRODUCT_FIELDS},
    }
    return pa.Table.from_arrays(
        [_conform(columns[f.name], f.type) for f in STAGING_SCHEMA], schema=STAGING_SCHEMA
    )


def order_versions(orders: pa.Table | pa.RecordBatch) -> pa.Table:
    """One row per order, in VERSIONS_SCHEMA: its order_id and processing_ts (the version the
    warehouse compares). Every order is kept, including one whose products are null or empty."""
    if isinstance(orders, pa.RecordBatch):
        orders = pa.Table.from_batches([orders])
    return pa.Table.from_arrays(
        [_conform(orders.column(f.name), f.type) for f in VERSIONS_SCHEMA], schema=VERSIONS_SCHEMA
    )


def _conform(values: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if values.type == target:
        return values
    # Sub-millisecond precision and tz-naive timestamps (read as UTC) are accepted; any other
    # lossy cast (a price that does not fit decimal(10,2), a quantity over int32) fails.
    options = pc.CastOptions(target, allow_time_truncate=pa.types.is_timestamp(target))
    return pc.cast(values, options=options)


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


def list_objects(fs: pafs.FileSystem, bucket: str, prefixes: Iterable[str]) -> list[str]:
    """Paths (``bucket/key``) of the data objects under the prefixes, sorted."""
    paths = []
    for prefix in prefixes:
        selector = pafs.FileSelector(f"{bucket}/{prefix}", recursive=True, allow_not_found=True)
        found = [
            info.path
            for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File and not info.base_name.startswith(("_", "."))
        ]
        log(f"listed s3://{bucket}/{prefix}: {len(found)} objects")
        paths += found
    return sorted(paths)


@dataclass
class BatchKeys:
    """Pass 1's output: where the batch's rows are, and which copy of each order wins."""

    objects: list[str]
    rows_read: int = 0
    duplicates: int = 0
    winners: dict[int, np.ndarray] = field(default_factory=dict)  # file index -> sorted row indices

    @property
    def orders(self) -> int:
        return sum(len(rows) for rows in self.winners.values())


def scan_batch_keys(fs: pafs.FileSystem, objects: list[str], batch_id: str) -> BatchKeys:
    """Pass 1: read order_id, processing_ts and run_id of every object and pick the winners."""
    chunks: list[pa.Table] = []
    for file_index, path in enumerate(objects):
        with _reading(path, batch_id):
            parquet = _open(fs, path)
            for row_group, first_row in _row_groups_of_batch(parquet, batch_id):
                offset = first_row
                for batch in parquet.iter_batches(
                    batch_size=READ_BATCH_ROWS, row_groups=[row_group], columns=KEY_COLUMNS
                ):
                    if (keys := batch_keys(batch, batch_id, file_index, offset)) is not None:
                        chunks.append(keys)
                    offset += batch.num_rows
    result = BatchKeys(objects=objects)
    if not chunks:
        return result
    keys = pa.concat_tables(chunks)
    del chunks
    result.rows_read = keys.num_rows
    winners, result.duplicates = select_latest_copies(keys)
    del keys
    pa.default_memory_pool().release_unused()
    files = winners.column("file_index").to_numpy()
    rows = winners.column("row_index").to_numpy()
    for file_index in np.unique(files):
        result.winners[int(file_index)] = rows[files == file_index]
    return result


def stream_winning_orders(fs: pafs.FileSystem, keys: BatchKeys, batch_id: str) -> Iterator[pa.RecordBatch]:
    """Pass 2: stream full record batches of the objects holding winners; yield the winners."""
    for file_index, wanted in sorted(keys.winners.items()):
        path = keys.objects[file_index]
        with _reading(path, batch_id):
            parquet = _open(fs, path)
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
                        yield batch.take(pa.array(wanted[a:b] - offset))
                    offset += batch.num_rows


class StagingWriter:
    """Writes rows (lines, or with VERSIONS_SCHEMA orders) as snappy parquet objects
    ``part-<job run id>-NNNNN.snappy.parquet``.

    Row groups are buffered to ROW_GROUP_ROWS rows and an object holds about LINES_PER_OBJECT.
    Each object is assembled in memory and uploaded whole, so a crash never leaves half of one.
    """

    def __init__(self, fs: pafs.FileSystem, location: str, job_run_id: str, schema: pa.Schema = STAGING_SCHEMA):
        self.fs, self.location, self.job_run_id, self.schema = fs, location, job_run_id, schema
        self.written: list[str] = []
        self.lines = 0  # rows written: lines, or orders for VERSIONS_SCHEMA
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._sink: pa.BufferOutputStream | None = None
        self._writer: pq.ParquetWriter | None = None
        self._in_object = 0

    def add(self, lines: pa.Table) -> None:
        if not lines.num_rows:
            return
        self._pending.append(lines)
        self._pending_rows += lines.num_rows
        self.lines += lines.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._write_row_group()
            if self._in_object >= LINES_PER_OBJECT:
                self._upload()

    def close(self) -> list[str]:
        self._write_row_group()
        self._upload()
        return self.written

    def _write_row_group(self) -> None:
        if not self._pending_rows:
            return
        if self._writer is None:
            self._sink = pa.BufferOutputStream()
            self._writer = pq.ParquetWriter(self._sink, self.schema, compression="snappy")
        self._writer.write_table(pa.concat_tables(self._pending), row_group_size=ROW_GROUP_ROWS)
        self._in_object += self._pending_rows
        self._pending, self._pending_rows = [], 0

    def _upload(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        path = f"{self.location}part-{self.job_run_id}-{len(self.written):05d}.snappy.parquet"
        with self.fs.open_output_stream(path) as out:
            out.write(self._sink.getvalue())
        log(f"wrote s3://{path}: {self._in_object} rows")
        self.written.append(path)
        self._sink, self._writer, self._in_object = None, None, 0


def remove_other_objects(location: str, keep: Iterable[str]) -> int:
    """Delete every object under ``bucket/prefix/`` except ``keep``, through boto3: pyarrow's
    delete_file would leave a directory marker object behind in an emptied partition."""
    import boto3  # reaches AWS_ENDPOINT_URL by itself

    bucket, prefix = location.split("/", 1)
    keep = {path.split("/", 1)[1] for path in keep}
    s3 = boto3.client("s3")
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


def _open(fs: pafs.FileSystem, path: str) -> pq.ParquetFile:
    parquet = pq.ParquetFile(fs.open_input_file(path), coerce_int96_timestamp_unit="ms")
    missing = [c for c in [*READ_COLUMNS, "run_id"] if c not in parquet.schema_arrow.names]
    if missing:
        raise ValueError(f"missing columns {missing}")
    return parquet


def _row_groups(parquet: pq.ParquetFile) -> Iterator[tuple[int, int]]:
    first_row = 0
    for index in range(parquet.metadata.num_row_groups):
        yield index, first_row
        first_row += parquet.metadata.row_group(index).num_rows


def _row_groups_of_batch(parquet: pq.ParquetFile, batch_id: str) -> Iterator[tuple[int, int]]:
    """Row groups that may hold the batch, by their run_id min/max statistics when present."""
    for index, first_row in _row_groups(parquet):
        group = parquet.metadata.row_group(index)
        stats = next(
            (group.column(c).statistics for c in range(group.num_columns)
             if group.column(c).path_in_schema == "run_id"),
            None,
        )
        if stats is not None and stats.has_min_max and isinstance(stats.min, str):
            if not stats.min <= batch_id <= stats.max:
                continue
        yield index, first_row


@contextmanager
def _reading(path: str, batch_id: str) -> Iterator[None]:
    """Re-raise any failure to read an object as a BatchReadError naming the object and batch."""
    try:
        yield
    except (OSError, ValueError, pa.ArrowException) as error:
        message = f"landing object s3://{path} of batch {batch_id} cannot be read: {error}"
        raise BatchReadError(" ".join(message.split())) from error


def log(message: str) -> None:
    print(f"[orders_landing_to_staging] {message}", flush=True)


# --- job -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict:
    argv = sys.argv if argv is None else argv
    args = resolve_options(argv, ARGUMENTS)
    batch_id = args["batch_id"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    job_run_id = re.sub(r"[^A-Za-z0-9_.-]", "_", optional_option(argv, "JOB_RUN_ID") or "local")
    # Records the delivery stream processes after the marker's completed_at would sit in later
    # hours; --late_minutes (default 0, as CONTRACTS.md promises) widens the window for them.
    late = timedelta(minutes=float(optional_option(argv, "late_minutes") or 0))
    if args["started_at"] and args["completed_at"]:
        prefixes = hour_prefixes(
            args["landing_prefix"], parse_utc(args["started_at"]), parse_utc(args["completed_at"]) + late
        )
    else:  # the marker gave no time window (it is optional): any hour partition may hold the batch
        prefixes = [_folder(args["landing_prefix"])]
    location = f"{args['staging_bucket']}/{_folder(args['staging_prefix'])}run_id={batch_id}/"
    versions_prefix = _folder(optional_option(argv, "versions_prefix") or DEFAULT_VERSIONS_PREFIX)
    versions_location = f"{args['staging_bucket']}/{versions_prefix}run_id={batch_id}/"
    if versions_location.startswith(location) or location.startswith(versions_location):
        raise ValueError(f"--versions_prefix {versions_prefix!r} overlaps the staging partition s3://{location}")
    fs = s3_filesystem()

    log(f"batch {batch_id}: {len(prefixes)} hour partitions from s3://{args['landing_bucket']}/{prefixes[0]}")
    keys = scan_batch_keys(fs, list_objects(fs, args["landing_bucket"], prefixes), batch_id)
    log(f"pass 1: {keys.rows_read} rows of the batch, {keys.orders} orders, {keys.duplicates} duplicates dropped")
    writer = StagingWriter(fs, location, job_run_id)
    versions = StagingWriter(fs, versions_location, job_run_id, VERSIONS_SCHEMA)
    for orders in stream_winning_orders(fs, keys, batch_id):
        writer.add(explode_products(orders))
        versions.add(order_versions(orders))
    written, versions_written = writer.close(), versions.close()
    removed = remove_other_objects(location, written) + remove_other_objects(versions_location, versions_written)
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
