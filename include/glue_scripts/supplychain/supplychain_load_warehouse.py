"""Supply chain, gold to warehouse: the three gold tables replaced in the warehouse schema ``supplychain``.

Reads   s3://<lakehouse_bucket>/gold/gold_supplier_performance/, gold/gold_inventory_position/ and
        gold/gold_daily_shipments/ (the parquet supplychain_gold_summaries wrote), streaming record batches.
Writes  supplychain.gold_supplier_performance, supplychain.gold_inventory_position and
        supplychain.gold_daily_shipments in the warehouse whose credentials are the Secrets
        Manager secret --warehouse_secret_id (JSON: host, port, dbname, username, password), in
        one transaction: the schema and the tables are created if missing (``WAREHOUSE_TABLES``,
        the statements of include/sql/supplychain/warehouse_tables.sql), then each table's rows
        are all deleted and the gold rows loaded by a binary COPY straight from the parquet's
        Arrow record batches. Readers see the previous rows until the commit, then the new rows
        of all three tables at once; a failed run leaves everything as it was, and a rerun loads
        the same rows. Two loads at once are serialised (a transaction-level advisory lock).
        s3://<lakehouse_bucket>/audit/batch_id=<batch_id>/load_warehouse.json, the report, also
        printed as the last stdout line: {"batch_id", "gold_supplier_performance",
        "gold_inventory_position", "gold_daily_shipments"} (rows loaded into each table).

Fails, naming the folder, when a gold table's folder holds no parquet file: gold has not been
written, and loading nothing would empty the warehouse table.

Runs on AWS Glue 5.0 and locally as a plain Python process (no Spark). The load is
``arrow_postgres`` (include/glue_scripts/common/, shipped with --extra-py-files): ADBC's PostgreSQL
driver, which encodes the Arrow columns into COPY's binary format in C++; its wheels are pinned in
include/glue_wheels.txt (the job names ``arrow_postgres.WHEELS`` as its python_modules). The
password is never printed.

Arguments: --JOB_NAME --batch_id --lakehouse_bucket --warehouse_secret_id; others are ignored.
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

JOB = "supplychain_load_warehouse"
ARGUMENTS = ["batch_id", "lakehouse_bucket", "warehouse_secret_id"]
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
GOLD_PREFIX = "gold"
AUDIT_PREFIX = "audit"
REPORT_NAME = "load_warehouse.json"
SCHEMA = "supplychain"
READ_BATCH_ROWS = 65_536

# The gold tables, each with its columns and its primary key: every record batch is loaded in key
# order, so the index entries go in in order (see arrow_postgres.load).
TABLES = {
    "gold_supplier_performance": (
        [
            "supplier_id",
            "supplier_name",
            "purchase_orders",
            "units_received",
            "on_time_rate",
            "avg_lead_time_days",
            "total_cost",
        ],
        ("supplier_id",),
    ),
    "gold_inventory_position": (
        ["warehouse_id", "product_id", "units_received", "units_shipped", "on_hand"],
        ("warehouse_id", "product_id"),
    ),
    "gold_daily_shipments": (
        ["ship_date", "warehouse_id", "shipments", "units", "delivered", "late"],
        ("ship_date", "warehouse_id"),
    ),
}

# The statements of include/sql/supplychain/warehouse_tables.sql (a Glue job gets its script and
# its --extra-py-files, not the repository's SQL folder; the end-to-end test keeps the two equal).
WAREHOUSE_TABLES = (
    "CREATE SCHEMA IF NOT EXISTS supplychain",
    """CREATE TABLE IF NOT EXISTS supplychain.gold_supplier_performance (
    supplier_id        integer PRIMARY KEY,
    supplier_name      text,
    purchase_orders    bigint NOT NULL,
    units_received     bigint NOT NULL,
    on_time_rate       numeric(6, 4),
    avg_lead_time_days numeric(10, 2),
    total_cost         numeric(18, 2) NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS supplychain.gold_inventory_position (
    warehouse_id   integer NOT NULL,
    product_id     integer NOT NULL,
    units_received bigint NOT NULL,
    units_shipped  bigint NOT NULL,
    on_hand        bigint NOT NULL,
    PRIMARY KEY (warehouse_id, product_id)
)""",
    """CREATE TABLE IF NOT EXISTS supplychain.gold_daily_shipments (
    ship_date    date NOT NULL,
    warehouse_id integer NOT NULL,
    shipments    bigint NOT NULL,
    units        bigint NOT NULL,
    delivered    bigint NOT NULL,
    late         bigint NOT NULL,
    PRIMARY KEY (ship_date, warehouse_id)
)""",
)
# Two loads at once would both delete and both insert (and two first loads both create): serialise them.
LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext($1))"


def resolve_options(argv: Sequence[str], names: Iterable[str]) -> dict[str, str]:
    """``awsglue.utils.getResolvedOptions``: every name is a required ``--name value``;
    anything else Glue passes (``--JOB_NAME``, ``--TempDir`` ...) is ignored. ``argv`` includes
    the program name."""
    names = list(names)
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    for name in names:
        parser.add_argument(f"--{name}", required=True)
    parsed, _ = parser.parse_known_args(list(argv[1:]))
    return {name: getattr(parsed, name) for name in names}


def connection_options(secret_string: str) -> dict:
    """libpq keyword options (``arrow_postgres.connect``'s) from an RDS-style secret."""
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
        "application_name": JOB,
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


def gold_files(fs: pafs.FileSystem, bucket: str, table: str) -> list[str]:
    """The table's parquet files (``bucket/key``); fails when there is none."""
    folder = f"{bucket}/{GOLD_PREFIX}/{table}"
    selector = pafs.FileSelector(folder, recursive=False, allow_not_found=True)
    paths = sorted(
        info.path
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
    )
    if not paths:
        raise LookupError(
            f"s3://{folder}/ holds no parquet file: run supplychain_gold_summaries before loading the warehouse"
        )
    return paths


def stream_batches(fs: pafs.FileSystem, paths: Iterable[str], columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    for path in paths:
        try:
            parquet = pq.ParquetFile(fs.open_input_file(path))
            yield from parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=list(columns))
        except (OSError, ValueError, pa.ArrowException) as error:
            raise RuntimeError(f"gold object s3://{path} cannot be read: {error}") from error


def replace_tables(connection, sources: dict[str, list[str]], fs: pafs.FileSystem) -> dict[str, int]:
    """In one transaction of ``connection`` (autocommit off): create what is missing, then replace
    every table's rows with its gold files' rows. Returns the rows loaded per table; any error
    rolls everything back."""
    loaded = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute(LOCK_SQL, (JOB,))
            cursor.fetchall()
            for statement in WAREHOUSE_TABLES:
                cursor.execute(statement)
            for table, (columns, key) in TABLES.items():
                target = f"{SCHEMA}.{table}"
                # ADBC reports no row count for a DELETE: count what it returns
                cursor.execute(f"WITH deleted AS (DELETE FROM {target} RETURNING 1) SELECT count(*) FROM deleted")
                deleted = cursor.fetchone()[0]
                batches = stream_batches(fs, sources[table], columns)
                loaded[table] = arrow_postgres.load(cursor, target, batches, columns=columns, order_by=key)
                log(f"{target}: {deleted} rows deleted, {loaded[table]} loaded")
        connection.commit()
    except BaseException:
        with contextlib.suppress(Exception):  # a broken connection has rolled back already: keep the first error
            connection.rollback()
        raise
    return loaded


def read_secret(secret_id: str) -> str:
    import boto3  # reaches AWS_ENDPOINT_URL by itself

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]


def put_report(bucket: str, key: str, report: dict) -> None:
    import boto3

    body = (json.dumps(report) + "\n").encode("utf-8")
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def log(message: str) -> None:
    print(f"[{JOB}] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> dict:
    args = resolve_options(sys.argv if argv is None else argv, ARGUMENTS)
    batch_id, bucket = args["batch_id"], args["lakehouse_bucket"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    fs = s3_filesystem()
    sources = {table: gold_files(fs, bucket, table) for table in TABLES}  # before any connection
    for table, paths in sources.items():
        log(f"{table}: {len(paths)} file(s) in s3://{bucket}/{GOLD_PREFIX}/{table}/")

    options = connection_options(read_secret(args["warehouse_secret_id"]))
    log(f"loading schema {SCHEMA} in database {options['dbname']} on {options['host']} as {options['user']}")
    connection = arrow_postgres.connect(options)
    try:
        loaded = replace_tables(connection, sources, fs)
    finally:
        connection.close()

    report = {"batch_id": batch_id, **loaded}
    report_key = f"{AUDIT_PREFIX}/batch_id={batch_id}/{REPORT_NAME}"
    put_report(bucket, report_key, report)
    log(f"wrote the report s3://{bucket}/{report_key}")
    print(json.dumps(report), flush=True)
    return report


if __name__ == "__main__":
    main()
