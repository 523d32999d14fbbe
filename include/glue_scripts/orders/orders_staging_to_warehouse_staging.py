"""Orders, S3 staging to warehouse staging: one batch's product lines into PostgreSQL.

Reads   s3://<staging_bucket>/<staging_prefix>run_id=<batch_id>/* (the parquet that
        orders_landing_to_staging wrote), streaming record batches, and
        s3://<staging_bucket>/<versions_prefix>run_id=<batch_id>/*, the orders the batch
        delivers with their processing_ts (an order with no products has no line but is there).
Writes  orders.stg_order_lines and orders.stg_order_versions in the warehouse whose credentials
        are the Secrets Manager secret --warehouse_secret_id (JSON: host, port, dbname,
        username, password): the batch's rows of both are replaced in one transaction
        (DELETE ... WHERE run_id, then COPY ... FROM STDIN), so a rerun never duplicates, a
        failed run leaves the previous rows in place, and the two tables always agree. An empty
        partition loads 0 rows.

Runs on AWS Glue 5.0 and locally as a plain Python process, with psycopg2 as the driver. Ends
with one JSON line: batch id, rows deleted, rows loaded. The password is never printed.

Arguments: --batch_id --staging_bucket --staging_prefix --warehouse_secret_id; optional
--versions_prefix (default ``order_versions/``); others ignored.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

ARGUMENTS = ["batch_id", "staging_bucket", "staging_prefix", "warehouse_secret_id"]
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")

TABLE = "orders.stg_order_lines"
STAGING_COLUMNS = [
    "order_id",
    "line_number",
    "customer_id",
    "order_ts",
    "currency",
    "product_code",
    "product_name",
    "quantity",
    "unit_price",
    "processing_ts",
]
VERSIONS_TABLE = "orders.stg_order_versions"
VERSION_COLUMNS = ["order_id", "processing_ts"]
DEFAULT_VERSIONS_PREFIX = "order_versions/"
COPY_READ_BYTES = 1 << 20  # psycopg2 reads COPY input 8 KB at a time unless told otherwise
COPY_SQL = f"COPY {TABLE} ({', '.join(STAGING_COLUMNS)}, run_id) FROM STDIN WITH (FORMAT csv)"
DELETE_SQL = f"DELETE FROM {TABLE} WHERE run_id = %(batch_id)s"
VERSIONS_COPY_SQL = f"COPY {VERSIONS_TABLE} ({', '.join(VERSION_COLUMNS)}, run_id) FROM STDIN WITH (FORMAT csv)"
VERSIONS_DELETE_SQL = f"DELETE FROM {VERSIONS_TABLE} WHERE run_id = %(batch_id)s"
# Two loads of one batch at once would both delete nothing and both insert: serialise them.
LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext(%(lock)s))"
READ_BATCH_ROWS = 65_536


def resolve_options(argv: Sequence[str], names: Iterable[str]) -> dict[str, str]:
    """``awsglue.utils.getResolvedOptions``: every name is a required ``--name value``;
    anything else Glue passes is ignored. ``argv`` includes the program name."""
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


def connection_options(secret_string: str) -> dict:
    """psycopg2.connect keyword arguments from an RDS-style secret."""
    try:
        secret = json.loads(secret_string)
    except json.JSONDecodeError:
        # The message of a JSONDecodeError quotes no secret text, but say nothing of it anyway.
        raise ValueError("the warehouse secret is not a JSON object") from None
    if not isinstance(secret, dict):
        raise ValueError("the warehouse secret is not a JSON object")
    missing = [k for k in ("host", "dbname", "password") if k not in secret]
    if "username" not in secret and "user" not in secret:
        missing.append("username")
    if missing:
        raise ValueError(f"the warehouse secret lacks {', '.join(missing)}")
    options = {
        "host": secret["host"],
        "port": int(secret.get("port") or 5432),
        "dbname": secret["dbname"],
        "user": secret.get("username", secret.get("user")),
        "password": secret["password"],
        "connect_timeout": 30,
        "application_name": "orders_staging_to_warehouse_staging",
    }
    if secret.get("sslmode"):
        options["sslmode"] = secret["sslmode"]
    return options


def to_copy_csv(
    batch: pa.RecordBatch | pa.Table, batch_id: str, columns: Sequence[str] = STAGING_COLUMNS
) -> io.BytesIO:
    """The batch's rows as COPY csv input, ``columns`` then run_id. Strings are always
    quoted and nulls are bare empty fields, so PostgreSQL tells '' from NULL."""
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    missing = [c for c in columns if c not in batch.column_names]
    if missing:
        raise ValueError(f"missing columns {missing}")
    table = batch.select(list(columns)).append_column(
        "run_id", pa.array([batch_id] * batch.num_rows, pa.string())
    )
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
    buffer.seek(0)
    return buffer


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


def partition_objects(fs: pafs.FileSystem, location: str) -> list[str]:
    selector = pafs.FileSelector(location.rstrip("/"), recursive=True, allow_not_found=True)
    return sorted(
        info.path
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File and not info.base_name.startswith(("_", "."))
    )


def stream_batches(
    fs: pafs.FileSystem, paths: Iterable[str], batch_id: str, columns: Sequence[str] = STAGING_COLUMNS
) -> Iterator[pa.RecordBatch]:
    for path in paths:
        try:
            parquet = pq.ParquetFile(fs.open_input_file(path))
            yield from parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=list(columns))
        except (OSError, ValueError, pa.ArrowException) as error:
            raise RuntimeError(f"staging object s3://{path} of batch {batch_id} cannot be read: {error}") from error


class CsvStream:
    """COPY input, encoded ahead of the database.

    A thread reads the record batches and turns them into CSV while PostgreSQL ingests the
    previous ones (pyarrow and the socket both release the GIL), so the load costs about the
    larger of the two instead of their sum. At most ``depth`` encoded batches wait in memory.
    An error on the reading side is raised to COPY, which aborts the transaction.
    """

    def __init__(
        self, batches: Iterable[pa.RecordBatch], batch_id: str, depth: int = 4, columns: Sequence[str] = STAGING_COLUMNS
    ):
        self.rows = 0
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._current, self._offset = memoryview(b""), 0
        self._thread = threading.Thread(target=self._encode, args=(batches, batch_id, columns), daemon=True)
        self._thread.start()

    def _encode(self, batches: Iterable[pa.RecordBatch], batch_id: str, columns: Sequence[str]) -> None:
        try:
            for batch in batches:
                if batch.num_rows:
                    self._chunks.put(to_copy_csv(batch, batch_id, columns).getvalue())
                    self.rows += batch.num_rows
                    log(f"encoded {self.rows} rows so far")
        except BaseException as error:  # handed to the reading side, which raises it into COPY
            self._error = error
        finally:
            self._chunks.put(None)

    def read(self, size: int = -1) -> bytes:
        while self._offset >= len(self._current):
            chunk = self._chunks.get()
            if chunk is None:
                self._chunks.put(None)  # stay at end of input for any further read
                if self._error:
                    raise self._error
                return b""
            self._current, self._offset = memoryview(chunk), 0
        end = len(self._current) if size is None or size < 0 else self._offset + size
        data = self._current[self._offset : end].tobytes()
        self._offset += len(data)
        return data


def load_batch(
    connection,
    batch_id: str,
    batches: Iterable[pa.RecordBatch],
    versions: Iterable[pa.RecordBatch] | None = None,
) -> tuple[int, int, int, int]:
    """Replace the batch's lines, and with ``versions`` its delivered orders, in one
    transaction; returns (lines deleted, lines loaded, orders deleted, orders loaded)."""
    with connection, connection.cursor() as cursor:
        cursor.execute(LOCK_SQL, {"lock": f"{TABLE}:{batch_id}"})
        cursor.execute(DELETE_SQL, {"batch_id": batch_id})
        deleted = cursor.rowcount
        stream = CsvStream(batches, batch_id)
        cursor.copy_expert(COPY_SQL, stream, size=COPY_READ_BYTES)
        versions_deleted = versions_loaded = 0
        if versions is not None:
            cursor.execute(VERSIONS_DELETE_SQL, {"batch_id": batch_id})
            versions_deleted = cursor.rowcount
            orders = CsvStream(versions, batch_id, columns=VERSION_COLUMNS)
            cursor.copy_expert(VERSIONS_COPY_SQL, orders, size=COPY_READ_BYTES)
            versions_loaded = orders.rows
    return deleted, stream.rows, versions_deleted, versions_loaded


def read_secret(secret_id: str) -> str:
    import boto3  # reaches AWS_ENDPOINT_URL by itself

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]


def log(message: str) -> None:
    print(f"[orders_staging_to_warehouse_staging] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> dict:
    import psycopg2

    argv = sys.argv if argv is None else argv
    args = resolve_options(argv, ARGUMENTS)
    batch_id = args["batch_id"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    prefix = args["staging_prefix"].strip("/")
    location = f"{args['staging_bucket']}/{prefix + '/' if prefix else ''}run_id={batch_id}/"
    versions_prefix = (optional_option(argv, "versions_prefix") or DEFAULT_VERSIONS_PREFIX).strip("/")
    versions_location = f"{args['staging_bucket']}/{versions_prefix + '/' if versions_prefix else ''}run_id={batch_id}/"
    fs = s3_filesystem()
    paths = partition_objects(fs, location)
    version_paths = partition_objects(fs, versions_location)
    log(f"batch {batch_id}: {len(paths)} objects in s3://{location}, {len(version_paths)} in s3://{versions_location}")

    options = connection_options(read_secret(args["warehouse_secret_id"]))
    log(f"loading {TABLE} in database {options['dbname']} on {options['host']} as {options['user']}")
    connection = psycopg2.connect(**options)
    try:
        connection.set_client_encoding("UTF8")
        deleted, loaded, versions_deleted, versions_loaded = load_batch(
            connection,
            batch_id,
            stream_batches(fs, paths, batch_id),
            stream_batches(fs, version_paths, batch_id, columns=VERSION_COLUMNS),
        )
    finally:
        connection.close()
    summary = {
        "batch_id": batch_id,
        "table": TABLE,
        "rows_deleted": deleted,
        "rows_loaded": loaded,
        "versions_table": VERSIONS_TABLE,
        "versions_deleted": versions_deleted,
        "versions_loaded": versions_loaded,
    }
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
