"""Supply chain, source to silver: the four dimension tables' current state, from their changes.

Reads   the supplychain PostgreSQL database, whose credentials are the Secrets Manager secret
        --source_secret_id (RDS shape: host, port, dbname, username, password), in one read-only
        REPEATABLE READ transaction, so all four tables are read from the same snapshot. For each
        of supplier, product, warehouse and customer: the rows whose ``updated_at`` is inside the
        batch's window ``(from, to]``, and the table's full list of keys (``<table>_id``), which
        tells the rows deleted since. A table is read whole instead (every row with ``updated_at``
        up to ``to``) when it has no watermark or no silver yet, or when its columns (names, order
        or types) differ from its silver table's: silver then takes the source's columns as they
        are, so a renamed column reaches silver and the schema checks downstream see it (without
        ``updated_at`` or its key, a table is read whole, every row, on every run). Each
        read is ``COPY (SELECT ...) TO STDOUT`` as CSV, parsed by Arrow into the columns' types
        (int -> int32, numeric(p,s) -> decimal(p,s), text and char -> string, timestamptz ->
        timestamp UTC) and staged as parquet in the batch's work folder for Spark.
Window  fixed once per batch, before anything is read, in s3://<lakehouse_bucket>/_state/windows/<batch_id>.json,
        written only if absent (a conditional put); a retry of the batch re-uses it, never the
        current watermarks. ``from`` is the table's watermark in _state/dimension_watermarks.json
        (exclusive; none: the beginning), ``to`` the source's clock (``now()``) minus
        --commit_lag_seconds (default 300; a window never ends before it starts).
Merge   on Spark, per table: the silver rows whose key is still in the source and was not
        changed, plus the changed rows (of two versions of a key, the later ``updated_at`` wins);
        a table read whole is the new silver table as read.
Writes  s3://<lakehouse_bucket>/silver/dim_<table>/  parquet, no partitions, one file per table
        (one without rows, with the schema, for an empty table);
        s3://<lakehouse_bucket>/audit/batch_id=<batch_id>/silver_dimensions.json  the report, flat:
        {"batch_id", "<table>_changed" (rows read in the window), "<table>_deleted" (silver rows
        whose key left the source), "<table>_rows" (rows of the new silver table, read back from
        its file) for each table, "windows": {table: {"from", "to", "full"}}}, also printed as the
        last stdout line.

Crash safety. Every new silver table is written first to
_work/supplychain_silver_dimensions/batch_id=<batch_id>/dim_<table>/; then _READY.json records the
new files of every table and the report; then each table is swapped: the new files copied in
(server-side), then every other object of its folder deleted, so the folder is never empty. Only
after all four swaps do the watermarks move, each to its window's ``to`` (never back); the report
is written after them, and the work folder is removed last (_READY.json first). A retry that finds
the report does nothing (the batch is complete; rerunning an old batch must not undo a later one);
one that finds _READY.json finishes the swaps, the watermarks and the report from it; any other
recomputes from the silver tables, which nothing has touched, with the recorded window. So a
retry after a crash at any point leaves the same silver tables, and the watermarks move once.

Why a commit lag: the application stamps ``updated_at`` with ``now()``, the start of its
transaction, not its commit. A row stamped before the snapshot and committed after it is not in
the snapshot; a window ending at the snapshot would move the watermark past it and the change
would never reach silver. Ending the window --commit_lag_seconds before the source's clock leaves
such a row to a later batch, provided its transaction commits within the lag. A new key inserted
within the lag waits for the next batch too. The source is read before Spark starts, so the
snapshot is taken seconds after the run starts and held only while the tables are read.

Security: the four table names are fixed here; column names come from the source's own catalog
and are always quoted. COPY takes no bind parameters, so the window's bounds are rendered by the
driver's quoting (``cursor.mogrify``) of datetimes parsed here, and text that is not a timestamp
with a zone is refused before any SQL. The secret's values are never logged.

Runs on AWS Glue 5.0 (Spark 3.5, Python 3.11) with psycopg2-binary and boto3 >= 1.35 (S3
conditional writes) from include/glue_wheels (GlueJob python_modules), and on the local stack's
Spark runtime. Arguments: --JOB_NAME --batch_id --source_secret_id --lakehouse_bucket; optional
--commit_lag_seconds.
"""

from __future__ import annotations

import io
import json
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from awsglue.context import GlueContext
from awsglue.job import Job
from awsglue.utils import getResolvedOptions
from pyspark.context import SparkContext
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F


class BatchRefused(Exception):
    """The source breaks the contract (a table is missing): running the batch again fails the same
    way. The run's error message starts with this name, which tells the orchestrator not to retry."""


JOB = "supplychain_silver_dimensions"
REQUIRED_ARGUMENTS = ["JOB_NAME", "batch_id", "source_secret_id", "lakehouse_bucket"]
OPTIONAL_ARGUMENTS = ["commit_lag_seconds"]
DEFAULT_COMMIT_LAG_SECONDS = 300
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
TABLES = ("supplier", "product", "warehouse", "customer")  # the only table names that reach SQL
STAMP = "updated_at"
SILVER_PREFIX = "silver/"
WINDOWS_PREFIX = "_state/windows/"
WATERMARKS_KEY = "_state/dimension_watermarks.json"
WORK_PREFIX = f"_work/{JOB}/"
READY_NAME = "_READY.json"
REPORT_NAME = "silver_dimensions.json"
CSV_BLOCK_BYTES = 1 << 20

_COLUMNS_SQL = """
SELECT a.attname::text, t.typname::text, a.atttypmod
FROM pg_catalog.pg_attribute AS a
JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
# Arrow types of the source's columns; any type not here (text, char, varchar, ...) is read as its text.
_ARROW_TYPES = {
    "bool": pa.bool_(),
    "int2": pa.int16(),
    "int4": pa.int32(),
    "int8": pa.int64(),
    "float4": pa.float32(),
    "float8": pa.float64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}


def key_of(table: str) -> str:
    return f"{table}_id"


def silver_name(table: str) -> str:
    return f"dim_{table}"


# -- arguments --------------------------------------------------------------------------------------


def resolve_arguments(argv: Sequence[str]) -> dict[str, str]:
    """getResolvedOptions makes every name it is given required: ask for an optional argument only
    when the run passes it."""
    present = [name for name in OPTIONAL_ARGUMENTS if any(a.split("=", 1)[0] == f"--{name}" for a in argv[1:])]
    return getResolvedOptions(list(argv), REQUIRED_ARGUMENTS + present)


def commit_lag(value: str | None) -> float:
    """--commit_lag_seconds: a number of seconds, at least 0 (absent or empty: the default)."""
    if value is None or not value.strip():
        return float(DEFAULT_COMMIT_LAG_SECONDS)
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"--commit_lag_seconds {value!r} is not a number of seconds") from None
    if not 0 <= seconds < 86_400 * 7:
        raise ValueError(f"--commit_lag_seconds {value!r} must be at least 0 and under a week")
    return seconds


# -- windows and watermarks -------------------------------------------------------------------------


def format_stamp(stamp: datetime) -> str:
    """A bound as text: UTC, every microsecond, so that text order is time order."""
    return stamp.astimezone(UTC).isoformat(timespec="microseconds")


def parse_stamp(text: object) -> datetime:
    """A bound read back from S3, as an aware datetime; anything else is refused."""
    try:
        stamp = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        raise ValueError(f"window bound {text!r} is not a timestamp with a time zone")
    return stamp


def plan_windows(watermarks: Mapping[str, str | None], source_clock: datetime, lag: float) -> dict[str, dict]:
    """Each table's window ``(from, to]``: from its watermark to the source's clock minus the lag;
    when the watermark is already past that point (the lag was raised), the window is empty."""
    end = source_clock - timedelta(seconds=lag)
    windows = {}
    for table in TABLES:
        start = watermarks.get(table)
        late_end = start is not None and parse_stamp(start) >= end
        windows[table] = {"from": start, "to": start if late_end else format_stamp(end)}
    return windows


def checked_windows(record: Mapping, batch_id: str) -> dict[str, dict]:
    """The recorded windows, checked: every table, every bound a timestamp, from <= to."""
    windows = record.get("windows")
    if not isinstance(windows, dict) or sorted(windows) != sorted(TABLES):
        raise RuntimeError(f"batch {batch_id}: the recorded window does not cover the tables {list(TABLES)}")
    for table in TABLES:
        window = windows[table]
        if not isinstance(window, dict) or set(window) != {"from", "to"}:
            raise RuntimeError(f"batch {batch_id}: the recorded window of {table} is not {{from, to}}")
        end = parse_stamp(window["to"])
        if window["from"] is not None and parse_stamp(window["from"]) > end:
            raise RuntimeError(f"batch {batch_id}: the recorded window of {table} ends before it starts")
    return {table: dict(windows[table]) for table in TABLES}


def advance_watermarks(current: Mapping[str, str | None], windows: Mapping[str, Mapping]) -> dict[str, str | None]:
    """Each table's watermark once its silver table is swapped: its window's ``to``, if later."""
    moved = dict(current)
    for table, window in windows.items():
        end, now = window["to"], moved.get(table)
        if now is None or parse_stamp(end) > parse_stamp(now):
            moved[table] = end
    return moved


# -- S3 ---------------------------------------------------------------------------------------------


def read_json(s3, bucket: str, key: str) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def put_json(s3, bucket: str, key: str, body: Mapping, **conditions) -> None:
    data = (json.dumps(body, indent=1) + "\n").encode()
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="application/json", **conditions)


def list_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def delete_keys(s3, bucket: str, keys: Sequence[str]) -> None:
    keys = sorted(keys)
    for start in range(0, len(keys), 1000):
        objects = [{"Key": key} for key in keys[start : start + 1000]]
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        if response.get("Errors"):
            failed = response["Errors"][0]
            raise RuntimeError(f"could not delete s3://{bucket}/{failed['Key']}: {failed.get('Code')}")


def record_window(s3, bucket: str, batch_id: str, record: dict) -> dict:
    """Write the batch's window only if none is recorded yet; returns the one that is recorded.
    S3 decides (``If-None-Match: *``): two runs of one batch racing here both get the first's."""
    from botocore.exceptions import ClientError

    key = f"{WINDOWS_PREFIX}{batch_id}.json"
    try:
        put_json(s3, bucket, key, record, IfNoneMatch="*")
        return record
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise
    recorded = read_json(s3, bucket, key)
    if recorded is None:
        raise RuntimeError(f"batch {batch_id}: another run is recording its window; try again")
    return recorded


class S3Range(io.RawIOBase):
    """A read-only, seekable view of an S3 object that fetches only the byte ranges read: pyarrow
    reads a parquet file's schema from its footer without the rest of the file."""

    def __init__(self, s3, bucket: str, key: str, size: int):
        self._s3, self._bucket, self._key, self._size, self._position = s3, bucket, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        end = min(self._size, self._position + len(buffer))
        if end <= self._position:
            return 0
        byte_range = f"bytes={self._position}-{end - 1}"
        data = self._s3.get_object(Bucket=self._bucket, Key=self._key, Range=byte_range)["Body"].read()
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def silver_schema(s3, bucket: str, table: str) -> pa.Schema | None:
    """The schema of the table's silver files (from the first one's footer); None when it has none."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{SILVER_PREFIX}{silver_name(table)}/")
    files = [item for page in pages for item in page.get("Contents", []) if item["Key"].endswith(".parquet")]
    if not files:
        return None
    first = min(files, key=lambda item: item["Key"])
    return pq.read_schema(S3Range(s3, bucket, first["Key"], first["Size"]))


def same_columns(source: pa.Schema, silver: pa.Schema | None) -> bool:
    """Names, order and types; nullability is not compared (Spark writes every column nullable)."""
    return silver is not None and [(f.name, f.type) for f in source] == [(f.name, f.type) for f in silver]


# -- reading the source -----------------------------------------------------------------------------
# psycopg2, as the totesys extract reads its source: COPY ... TO STDOUT as CSV, parsed by Arrow's
# streaming reader into the types read from the catalog, so memory stays bounded and no Python object
# is made per value. ADBC (common/arrow_postgres.py) would save the CSV step but hands numeric over as
# text all the same, and one driver for both OLTP extracts means one pinned wheel and one way of
# setting the snapshot (set_session) and quoting the window's bounds (mogrify).


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def arrow_type(typname: str, typmod: int) -> pa.DataType:
    if typname == "numeric" and typmod >= 4:
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        if precision <= 38:
            return pa.decimal128(precision, scale)
    return _ARROW_TYPES.get(typname, pa.string())


def source_schema(cursor, table: str, batch_id: str) -> pa.Schema:
    cursor.execute(_COLUMNS_SQL, (quote(table),))
    columns = cursor.fetchall()
    if not columns:
        raise BatchRefused(f"batch {batch_id}: the source database has no table {table}")
    return pa.schema([pa.field(name, arrow_type(typname, typmod)) for name, typname, typmod in columns])


def changed_rows_statement(cursor, table: str, schema: pa.Schema, window: Mapping, full: bool) -> str:
    """COPY of the table's rows in the window (read whole: every row up to ``to``), by key."""
    columns = ", ".join(quote(name) for name in schema.names)
    statement = f"SELECT {columns} FROM {quote(table)}"
    parameters: dict[str, datetime] = {}
    if STAMP in schema.names and schema.field(STAMP).type == _ARROW_TYPES["timestamptz"]:
        conditions = [f"{quote(STAMP)} <= %(to)s"]
        parameters["to"] = parse_stamp(window["to"])
        if not full:
            conditions.insert(0, f"{quote(STAMP)} > %(from)s")
            parameters["from"] = parse_stamp(window["from"])
        statement += " WHERE " + " AND ".join(conditions)
    if key_of(table) in schema.names:
        statement += f" ORDER BY {quote(key_of(table))}"
    copy = f"COPY ({statement}) TO STDOUT WITH (FORMAT csv)"
    return cursor.mogrify(copy, parameters).decode() if parameters else copy


def keys_statement(table: str) -> str:
    key = quote(key_of(table))
    return f"COPY (SELECT {key} FROM {quote(table)} ORDER BY {key}) TO STDOUT WITH (FORMAT csv)"


def copy_to_parquet(cursor, statement: str, schema: pa.Schema, spool: Path, name: str) -> tuple[Path, int]:
    """A COPY's CSV spooled to disk, then parsed block by block into a parquet file; returns the
    file and its rows (a file with the schema and no rows when there are none). COPY writes NULL
    as an unquoted empty field and an empty string as ``""``: only the former becomes null."""
    csv_path, parquet_path = spool / f"{name}.csv", spool / f"{name}.parquet"
    with csv_path.open("wb") as sink:
        cursor.copy_expert(statement, sink)
    rows = 0
    with pq.ParquetWriter(parquet_path, schema) as writer:
        if csv_path.stat().st_size:
            reader = pacsv.open_csv(
                csv_path,
                read_options=pacsv.ReadOptions(column_names=schema.names, block_size=CSV_BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types=schema,
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    true_values=["t"],
                    false_values=["f"],
                ),
            )
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        if rows == 0:
            writer.write_table(pa.Table.from_batches([], schema=schema))
    csv_path.unlink()
    return parquet_path, rows


def connection_options(secret_string: str) -> dict:
    """psycopg2.connect keyword arguments from an RDS-style secret (never echoes the secret)."""
    try:
        secret = json.loads(secret_string)
    except json.JSONDecodeError:
        raise ValueError("the supplychain secret is not a JSON object") from None
    if not isinstance(secret, dict):
        raise ValueError("the supplychain secret is not a JSON object")
    missing = [name for name in ("host", "dbname", "username", "password") if not secret.get(name)]
    if missing:
        raise ValueError(f"the supplychain secret lacks {', '.join(missing)}")
    options = {
        "host": secret["host"],
        "port": int(secret.get("port") or 5432),
        "dbname": secret["dbname"],
        "user": secret["username"],
        "password": secret["password"],
        "connect_timeout": 30,
        "application_name": JOB,
        "client_encoding": "UTF8",
    }
    if secret.get("sslmode"):
        options["sslmode"] = secret["sslmode"]
    return options


def read_source(
    s3,
    bucket: str,
    batch_id: str,
    options: dict,
    lag: float,
    recorded: dict | None,
    silver: Mapping[str, pa.Schema | None],
) -> dict[str, dict]:
    """Every table's changed rows and keys, from one snapshot, staged in the work folder.
    Returns per table: its window, whether it was read whole, whether it has keys, the rows read."""
    import psycopg2
    import psycopg2.extensions

    connection = psycopg2.connect(**options)
    try:
        connection.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with connection.cursor() as cursor, tempfile.TemporaryDirectory(prefix=f"{JOB}-") as spool:
            cursor.execute("SET LOCAL TimeZone = 'UTC'")  # timestamptz as +00 in the CSV
            cursor.execute("SET LOCAL DateStyle = 'ISO'")
            cursor.execute("SELECT now()")  # the source's clock; the snapshot starts here
            [(source_clock,)] = cursor.fetchall()
            windows = fixed_windows(s3, bucket, batch_id, recorded, source_clock, lag)
            log(f"batch {batch_id}: reading {options['dbname']} on {options['host']}")
            extracted = {
                table: read_table(cursor, s3, bucket, batch_id, table, windows[table], silver[table], Path(spool))
                for table in TABLES
            }
        connection.rollback()  # read-only: end the snapshot
    finally:
        connection.close()
    return extracted


def read_table(
    cursor, s3, bucket: str, batch_id: str, table: str, window: Mapping, silver: pa.Schema | None, spool: Path
) -> dict:
    """One table's changed rows (all of them when it is read whole) and its keys, to the work folder."""
    schema = source_schema(cursor, table, batch_id)
    has_keys = key_of(table) in schema.names
    full = window["from"] is None or not same_columns(schema, silver) or not has_keys or STAMP not in schema.names
    staged = f"{work_prefix(batch_id)}source/{table}/"
    statement = changed_rows_statement(cursor, table, schema, window, full)
    path, rows = copy_to_parquet(cursor, statement, schema, spool, f"{table}-changed")
    s3.upload_file(str(path), bucket, f"{staged}changed.parquet")
    if has_keys:
        keys_schema = pa.schema([schema.field(key_of(table))])
        path, _ = copy_to_parquet(cursor, keys_statement(table), keys_schema, spool, f"{table}-keys")
        s3.upload_file(str(path), bucket, f"{staged}keys.parquet")
    log(f"{table}: {rows} rows read {window_text(window, full)}")
    return {"window": dict(window), "full": full, "has_keys": has_keys, "changed": rows}


def fixed_windows(
    s3, bucket: str, batch_id: str, recorded: dict | None, source_clock: datetime, lag: float
) -> dict[str, dict]:
    """The batch's windows: the recorded ones on a retry, else planned now and recorded first."""
    if recorded is None:
        watermarks = (read_json(s3, bucket, WATERMARKS_KEY) or {}).get("tables") or {}
        planned = plan_windows(watermarks, source_clock, lag)
        record = {
            "batch_id": batch_id,
            "recorded_at": format_stamp(datetime.now(UTC)),
            "source_clock": format_stamp(source_clock),
            "commit_lag_seconds": lag,
            "windows": planned,
        }
        recorded = record_window(s3, bucket, batch_id, record)
        log(f"batch {batch_id}: window recorded, ending {lag:g} s before the source's clock")
    else:
        log(f"batch {batch_id}: reading again the window recorded at {recorded.get('recorded_at')}")
    return checked_windows(recorded, batch_id)


def window_text(window: Mapping, full: bool) -> str:
    if full:
        return f"whole, up to {window['to']}"
    return f"with {STAMP} in ({window['from']}, {window['to']}]"


def read_secret(secret_id: str) -> str:
    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]


# -- the new silver tables, on Spark ----------------------------------------------------------------


def start_spark() -> tuple[SparkSession, GlueContext]:
    sc = SparkContext.getOrCreate()
    glue_context = GlueContext(sc)
    spark = glue_context.spark_session
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    # timestamps as parquet TIMESTAMP(MICROS, UTC), not the legacy INT96: readers see a UTC timestamp
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    sc._jsc.hadoopConfiguration().set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    return spark, glue_context


def latest_per_key(rows: DataFrame, key: str) -> DataFrame:
    """One row per key: the one with the latest ``updated_at``."""
    if key not in rows.columns or STAMP not in rows.columns:
        return rows
    latest_first = Window.partitionBy(key).orderBy(F.col(STAMP).desc())
    return rows.withColumn("__rank", F.row_number().over(latest_first)).where(F.col("__rank") == 1).drop("__rank")


def merged_table(
    spark: SparkSession, bucket: str, work: str, table: str, extracted: Mapping, has_silver: bool
) -> tuple[DataFrame, int]:
    """The new silver table, and the number of silver rows whose key is no longer in the source."""
    key, source = key_of(table), f"s3://{bucket}/{work}source/{table}/"
    changed = latest_per_key(spark.read.parquet(source + "changed.parquet"), key)
    if not has_silver or not extracted["has_keys"]:
        return changed, 0
    old = spark.read.parquet(f"s3://{bucket}/{SILVER_PREFIX}{silver_name(table)}/")
    if key not in old.columns:
        return changed, 0
    keys = spark.read.parquet(source + "keys.parquet")
    deleted = old.join(keys, key, "left_anti").count()
    if extracted["full"]:
        return changed, deleted
    unchanged = old.join(keys, key, "left_semi").join(changed.select(key), key, "left_anti")
    return unchanged.unionByName(changed), deleted


def write_table(frame: DataFrame, url: str, key: str) -> None:
    """One parquet file (one without rows, with the schema, when the table is empty), by key."""
    one_file = frame.repartition(1)
    if key in frame.columns:
        one_file = one_file.sortWithinPartitions(key)
    one_file.write.mode("overwrite").option("compression", "snappy").parquet(url)


def parquet_names(s3, bucket: str, prefix: str) -> list[str]:
    return sorted(key[len(prefix) :] for key in list_keys(s3, bucket, prefix) if key.endswith(".parquet"))


def new_silver_tables(
    spark: SparkSession,
    s3,
    bucket: str,
    batch_id: str,
    extracted: Mapping[str, Mapping],
    silver: Mapping[str, pa.Schema | None],
) -> dict:
    """Every new silver table written to the work folder; returns the _READY.json record: the
    new files of each table and the report."""
    work = work_prefix(batch_id)
    report: dict = {"batch_id": batch_id}
    files: dict[str, list[str]] = {}
    for table in TABLES:
        frame, deleted = merged_table(spark, bucket, work, table, extracted[table], silver[table] is not None)
        prefix = f"{work}{silver_name(table)}/"
        write_table(frame, f"s3://{bucket}/{prefix}", key_of(table))
        files[table] = parquet_names(s3, bucket, prefix)
        rows = spark.read.parquet(f"s3://{bucket}/{prefix}").count()  # read back from what was written
        report |= {f"{table}_changed": extracted[table]["changed"], f"{table}_deleted": deleted, f"{table}_rows": rows}
        log(f"{silver_name(table)}: {rows} rows ({extracted[table]['changed']} read, {deleted} deleted)")
    report["windows"] = {table: {**extracted[table]["window"], "full": extracted[table]["full"]} for table in TABLES}
    return {"batch_id": batch_id, "files": files, "report": report}


# -- swapping, watermarks, report -------------------------------------------------------------------


def work_prefix(batch_id: str) -> str:
    return f"{WORK_PREFIX}batch_id={batch_id}/"


def report_key(batch_id: str) -> str:
    return f"audit/batch_id={batch_id}/{REPORT_NAME}"


def swap(s3, bucket: str, source_prefix: str, target_prefix: str, names: Sequence[str]) -> None:
    """The new files become the folder's only objects: copied in (server-side) first, then every
    other object deleted, so a reader never finds the folder empty. Run again after a crash, it
    finishes: a file already copied in (and gone from the work folder) is left as it is."""
    from botocore.exceptions import ClientError

    present = set(list_keys(s3, bucket, target_prefix))
    for name in names:
        target = target_prefix + name
        try:
            s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": source_prefix + name})
        except ClientError as error:
            missing = error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")
            if not missing or target not in present:
                raise
    delete_keys(s3, bucket, sorted(present - {target_prefix + name for name in names}))


def remove_work(s3, bucket: str, batch_id: str) -> None:
    """The batch's work folder, _READY.json first: a crash half-way leaves files a retry ignores."""
    work = work_prefix(batch_id)
    delete_keys(s3, bucket, [work + READY_NAME])
    delete_keys(s3, bucket, list_keys(s3, bucket, work))


def finish(s3, bucket: str, batch_id: str, ready: Mapping) -> dict:
    """From _READY.json: swap every table, then move the watermarks, then write the report."""
    work, report = work_prefix(batch_id), ready["report"]
    for table in TABLES:
        name = silver_name(table)
        swap(s3, bucket, f"{work}{name}/", f"{SILVER_PREFIX}{name}/", ready["files"][table])
        log(f"{name}: swapped in {len(ready['files'][table])} file(s)")
    current = (read_json(s3, bucket, WATERMARKS_KEY) or {}).get("tables") or {}
    moved = advance_watermarks(current, report["windows"])
    if moved != current:  # a retry after the watermarks moved does not write them again
        put_json(
            s3,
            bucket,
            WATERMARKS_KEY,
            {"batch_id": batch_id, "updated_at": format_stamp(datetime.now(UTC)), "tables": moved},
        )
        log(f"batch {batch_id}: watermarks moved")
    put_json(s3, bucket, report_key(batch_id), report)
    remove_work(s3, bucket, batch_id)
    return report


def overtaken(s3, bucket: str, windows: Mapping[str, Mapping]) -> list[str]:
    """The tables whose watermark a later batch has already moved past this batch's window: its
    changes are in silver already (or newer versions of them), and swapping in what this batch
    computed would roll silver back."""
    current = (read_json(s3, bucket, WATERMARKS_KEY) or {}).get("tables") or {}
    return [
        table
        for table, window in windows.items()
        if current.get(table) is not None and parse_stamp(current[table]) > parse_stamp(window["to"])
    ]


def skip_overtaken(s3, bucket: str, batch_id: str, windows: Mapping[str, Mapping], tables: list[str]) -> dict:
    """Leave silver to the later batch: drop this batch's work, report that nothing changed."""
    log(
        f"batch {batch_id}: a later batch already read past this batch's window ({', '.join(tables)}): "
        "silver is newer than what this batch would write; nothing rewritten"
    )
    report = {
        "batch_id": batch_id,
        "overtaken": tables,
        "windows": dict(windows),
        **{f"{table}_{count}": 0 for table in TABLES for count in ("changed", "deleted")},
    }
    put_json(s3, bucket, report_key(batch_id), report)
    remove_work(s3, bucket, batch_id)
    return report


_STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{JOB}] {time.monotonic() - _STARTED:6.1f} s  {message}", flush=True)


# -- job --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict:
    argv = sys.argv if argv is None else argv
    args = resolve_arguments(argv)
    batch_id, bucket = args["batch_id"], args["lakehouse_bucket"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    lag = commit_lag(args.get("commit_lag_seconds"))
    s3 = boto3.client("s3")

    report = read_json(s3, bucket, report_key(batch_id))
    if report is not None:
        log(f"batch {batch_id} is already complete (its report exists): nothing read, nothing rewritten")
        remove_work(s3, bucket, batch_id)  # what a crash after the report left
    elif (ready := read_json(s3, bucket, work_prefix(batch_id) + READY_NAME)) is not None:
        if late := overtaken(s3, bucket, ready["report"]["windows"]):
            report = skip_overtaken(s3, bucket, batch_id, ready["report"]["windows"], late)
        else:
            log(f"batch {batch_id}: its new silver tables are ready; finishing the swap")
            report = finish(s3, bucket, batch_id, ready)
    elif (recorded := read_json(s3, bucket, f"{WINDOWS_PREFIX}{batch_id}.json")) is not None and (
        late := overtaken(s3, bucket, checked_windows(recorded, batch_id))
    ):
        report = skip_overtaken(s3, bucket, batch_id, checked_windows(recorded, batch_id), late)
    else:
        delete_keys(s3, bucket, list_keys(s3, bucket, work_prefix(batch_id)))  # what a crashed attempt left
        silver = {table: silver_schema(s3, bucket, table) for table in TABLES}
        options = connection_options(read_secret(args["source_secret_id"]))
        extracted = read_source(s3, bucket, batch_id, options, lag, recorded, silver)
        spark, glue_context = start_spark()
        job = Job(glue_context)
        job.init(args["JOB_NAME"], args)
        ready = new_silver_tables(spark, s3, bucket, batch_id, extracted, silver)
        put_json(s3, bucket, work_prefix(batch_id) + READY_NAME, ready)
        report = finish(s3, bucket, batch_id, ready)
        job.commit()
    print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    main()
