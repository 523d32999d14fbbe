"""Orders, S3 staging to warehouse staging: one batch's product lines into PostgreSQL.

Reads   s3://<staging_bucket>/<staging_prefix>run_id=<batch_id>/* (the parquet that
        orders_landing_to_staging wrote), streaming record batches, and
        s3://<staging_bucket>/<versions_prefix>run_id=<batch_id>/*, the orders the batch
        delivers with their processing_ts (an order with no products has no line but is there).
Writes  orders.stg_order_lines and orders.stg_order_versions in the warehouse whose credentials
        are the Secrets Manager secret --warehouse_secret_id (JSON: host, port, dbname,
        username, password): the batch's rows of both are replaced in one transaction
        (DELETE ... WHERE run_id, then a binary COPY ... FROM STDIN straight from the parquet's
        Arrow record batches), so a rerun never duplicates, a failed run leaves the previous rows
        in place, and the two tables always agree. An empty partition loads 0 rows.

Runs on AWS Glue 5.0 and locally as a plain Python process. The load is ``arrow_postgres``
(include/glue_scripts/common/, shipped with --extra-py-files): ADBC's PostgreSQL driver, which
encodes the Arrow columns into COPY's binary format in C++ (no CSV text, no Python object per
value); its wheels are pinned in include/glue_wheels.txt. Ends with one JSON line: batch id, rows
deleted, rows loaded. The password is never printed.

Arguments: --batch_id --staging_bucket --staging_prefix --warehouse_secret_id; optional
--versions_prefix (default ``order_versions/``); others ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

try:
    import arrow_postgres  # on Glue: shipped beside the script with --extra-py-files
except ModuleNotFoundError as error:  # run from a checkout: the shared folder beside this pipeline's
    if error.name != "arrow_postgres":
        raise
    sys.path.append(str(Path(__file__).resolve().parents[1] / "common"))
    import arrow_postgres

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
# The unique keys after run_id (a constant): each record batch is loaded in this order, so the
# index entries go in in key order, not at random (order ids are UUIDs); see arrow_postgres.load.
LINE_KEY = ("order_id", "line_number")
VERSION_KEY = ("order_id",)
DEFAULT_VERSIONS_PREFIX = "order_versions/"
# DELETE ... RETURNING: ADBC reports no row count for a DELETE, so count what it returns.
DELETE_SQL = f"WITH deleted AS (DELETE FROM {TABLE} WHERE run_id = $1 RETURNING 1) SELECT count(*) FROM deleted"
VERSIONS_DELETE_SQL = (
    f"WITH deleted AS (DELETE FROM {VERSIONS_TABLE} WHERE run_id = $1 RETURNING 1) SELECT count(*) FROM deleted"
)
# Two loads of one batch at once would both delete nothing and both insert: serialise them.
LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext($1))"
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
    """libpq keyword options (``arrow_postgres.connect``'s, as psycopg2 spells them) from an RDS-style secret."""
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


def logged(batches: Iterable[pa.RecordBatch], what: str) -> Iterator[pa.RecordBatch]:
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        log(f"{what}: {rows} rows read so far")
        yield batch


def _delete(cursor, sql: str, batch_id: str) -> int:
    cursor.execute(sql, (batch_id,))
    return cursor.fetchone()[0]


def load_batch(
    connection,
    batch_id: str,
    batches: Iterable[pa.RecordBatch],
    versions: Iterable[pa.RecordBatch] | None = None,
) -> tuple[int, int, int, int]:
    """Replace the batch's lines, and with ``versions`` its delivered orders, in one transaction of
    ``connection`` (``arrow_postgres.connect``: autocommit off); returns (lines deleted, lines
    loaded, orders deleted, orders loaded). Any error rolls everything back."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(LOCK_SQL, (f"{TABLE}:{batch_id}",))
            cursor.fetchall()
            deleted = _delete(cursor, DELETE_SQL, batch_id)
            loaded = arrow_postgres.load(
                cursor,
                TABLE,
                logged(batches, TABLE),
                columns=STAGING_COLUMNS,
                constants={"run_id": batch_id},
                order_by=LINE_KEY,
            )
            log(f"{TABLE}: {deleted} rows deleted, {loaded} loaded")
            versions_deleted = versions_loaded = 0
            if versions is not None:
                versions_deleted = _delete(cursor, VERSIONS_DELETE_SQL, batch_id)
                versions_loaded = arrow_postgres.load(
                    cursor,
                    VERSIONS_TABLE,
                    versions,
                    columns=VERSION_COLUMNS,
                    constants={"run_id": batch_id},
                    order_by=VERSION_KEY,
                )
                log(f"{VERSIONS_TABLE}: {versions_deleted} rows deleted, {versions_loaded} loaded")
        connection.commit()
    except BaseException:
        with contextlib.suppress(Exception):  # a broken connection has rolled back already: keep the first error
            connection.rollback()
        raise
    return deleted, loaded, versions_deleted, versions_loaded


def read_secret(secret_id: str) -> str:
    import boto3  # reaches AWS_ENDPOINT_URL by itself

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]


def log(message: str) -> None:
    print(f"[orders_staging_to_warehouse_staging] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> dict:
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
    connection = arrow_postgres.connect(options)
    try:
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
