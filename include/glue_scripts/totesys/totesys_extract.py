"""Totesys, OLTP source to S3 ingestion: every row changed since each table's watermark.

Reads   the totesys PostgreSQL database, whose credentials are the Secrets Manager secret
        --source_secret_id (JSON: host, port, dbname, username, password), in one read-only
        REPEATABLE READ transaction, so every table is read from the same snapshot. For each
        table of --tables (comma-separated; empty: all eleven) the rows whose ``last_updated``
        is after the table's watermark (all rows when it has none).
Writes  s3://<ingestion_bucket>/batches/<batch_id>/<table>.parquet  one file per table, empty
        (with the table's schema) when nothing changed;
        s3://<ingestion_bucket>/batch-completion/<batch_id>.json     the completion marker
        (CONTRACTS.md) with ``expected_counts`` per table, after every table is written;
        s3://<ingestion_bucket>/watermarks.json                      each table's newest
        ``last_updated`` extracted so far, moved last: if anything before it fails, every
        watermark stays where it was and the next run extracts the same changes again.

Security: table and column names come only from the fixed allow-list ``TABLES``; any other
name is refused before a connection is opened. The watermark is a bound parameter. The
password is read from Secrets Manager and never printed.

Runs on AWS Glue 5.0 (psycopg2 through --additional-python-modules) and locally as a plain
Python process. Ends with one JSON line: batch id and rows per table.

Arguments: --batch_id --tables --source_secret_id --ingestion_bucket; others are ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

ARGUMENTS = ["batch_id", "tables", "source_secret_id", "ingestion_bucket"]
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
BATCH_PREFIX = "batches/"
MARKER_PREFIX = "batch-completion/"
WATERMARKS_KEY = "watermarks.json"
FETCH_ROWS = 10_000

_TS = pa.timestamp("us")
_MONEY = pa.decimal128(10, 2)
_STAMPS = [("created_at", _TS), ("last_updated", _TS)]

# The allow-list: the only table and column names that ever reach SQL, with their Arrow types.
TABLES: dict[str, list[tuple[str, pa.DataType]]] = {
    "address": [("address_id", pa.int32()), ("address_line_1", pa.string()), ("address_line_2", pa.string()),
                ("district", pa.string()), ("city", pa.string()), ("postal_code", pa.string()),
                ("country", pa.string()), ("phone", pa.string())],
    "counterparty": [("counterparty_id", pa.int32()), ("counterparty_legal_name", pa.string()),
                     ("legal_address_id", pa.int32()), ("commercial_contact", pa.string()),
                     ("delivery_contact", pa.string())],
    "currency": [("currency_id", pa.int32()), ("currency_code", pa.string())],
    "department": [("department_id", pa.int32()), ("department_name", pa.string()), ("location", pa.string()),
                   ("manager", pa.string())],
    "design": [("design_id", pa.int32()), ("design_name", pa.string()), ("file_location", pa.string()),
               ("file_name", pa.string())],
    "staff": [("staff_id", pa.int32()), ("first_name", pa.string()), ("last_name", pa.string()),
              ("department_id", pa.int32()), ("email_address", pa.string())],
    "sales_order": [("sales_order_id", pa.int32()), ("design_id", pa.int32()), ("staff_id", pa.int32()),
                    ("counterparty_id", pa.int32()), ("units_sold", pa.int32()), ("unit_price", _MONEY),
                    ("currency_id", pa.int32()), ("agreed_delivery_date", pa.date32()),
                    ("agreed_payment_date", pa.date32()), ("agreed_delivery_location_id", pa.int32())],
    "purchase_order": [("purchase_order_id", pa.int32()), ("staff_id", pa.int32()), ("counterparty_id", pa.int32()),
                       ("item_code", pa.string()), ("item_quantity", pa.int32()), ("item_unit_price", _MONEY),
                       ("currency_id", pa.int32()), ("agreed_delivery_date", pa.date32()),
                       ("agreed_payment_date", pa.date32()), ("agreed_delivery_location_id", pa.int32())],
    "payment": [("payment_id", pa.int32()), ("transaction_id", pa.int32()), ("counterparty_id", pa.int32()),
                ("payment_amount", pa.decimal128(12, 2)), ("currency_id", pa.int32()),
                ("payment_type_id", pa.int32()), ("paid", pa.bool_()), ("payment_date", pa.date32()),
                ("company_ac_number", pa.int32()), ("counterparty_ac_number", pa.int32())],
    "payment_type": [("payment_type_id", pa.int32()), ("payment_type_name", pa.string())],
    "transaction": [("transaction_id", pa.int32()), ("transaction_type", pa.string()),
                    ("sales_order_id", pa.int32()), ("purchase_order_id", pa.int32())],
}  # fmt: skip
TABLES = {name: [*columns, *_STAMPS] for name, columns in TABLES.items()}


class RefusedTableName(ValueError):
    """A configured table name that is not on the allow-list."""


def resolve_options(argv: Sequence[str], names: Iterable[str]) -> dict[str, str]:
    """``awsglue.utils.getResolvedOptions``: every name is a required ``--name value``."""
    names = list(names)
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    for name in names:
        parser.add_argument(f"--{name}", required=True)
    parsed, _ = parser.parse_known_args(list(argv[1:]))
    return {name: getattr(parsed, name) for name in names}


def allowed_tables(configured: str | Iterable[str] | None) -> list[str]:
    """The configured tables, checked against the allow-list (empty: all, in allow-list order).

    Any name not on the list is refused with the names that are, before any SQL exists.
    """
    if configured is None:
        names: list[str] = []
    elif isinstance(configured, str):
        names = [part.strip() for part in configured.split(",")] if configured.strip() else []
    else:
        names = [str(part).strip() for part in configured]
    if not names:
        return list(TABLES)
    refused = [name for name in names if name not in TABLES]
    if refused:
        raise RefusedTableName(
            f"refused table name(s) {refused}: only these totesys tables can be extracted: {', '.join(TABLES)}"
        )
    return list(dict.fromkeys(names))


def schema(table: str) -> pa.Schema:
    return pa.schema([pa.field(name, arrow_type) for name, arrow_type in TABLES[allowed_tables([table])[0]]])


def quote(identifier: str) -> str:
    """A double-quoted identifier; only ever called with allow-listed names."""
    return '"' + identifier.replace('"', '""') + '"'


def select_statement(table: str, watermark: str | None) -> tuple[str, dict[str, str]]:
    """(SQL, bound parameters) for the table's rows changed after ``watermark`` (all if None)."""
    [table] = allowed_tables([table])
    columns = ", ".join(quote(name) for name, _ in TABLES[table])
    statement = f"SELECT {columns} FROM {quote(table)}"
    parameters: dict[str, str] = {}
    if watermark is not None:
        statement += ' WHERE "last_updated" > %(watermark)s::timestamp'
        parameters["watermark"] = watermark
    key = quote(TABLES[table][0][0])
    return statement + f' ORDER BY "last_updated", {key}', parameters


def format_watermark(stamp: datetime) -> str:
    """The source's timestamps are naive (the database's clock); keep every microsecond."""
    return stamp.replace(tzinfo=None).isoformat(timespec="microseconds")


def advance_watermarks(current: Mapping[str, str | None], newest: Mapping[str, str | None]) -> dict[str, str | None]:
    """Each table's watermark after a batch: its newest extracted ``last_updated`` if later.

    Tables not extracted, or with no changed rows, keep theirs. A watermark never moves back.
    """
    moved = dict(current)
    for table, stamp in newest.items():
        if stamp is not None and (moved.get(table) is None or stamp > moved[table]):
            moved[table] = stamp
    return moved


def marker_body(batch_id: str, started_at: datetime, completed_at: datetime, counts: Mapping[str, int]) -> dict:
    return {
        "batch_id": batch_id,
        "started_at": started_at.astimezone(UTC).isoformat(),
        "completed_at": completed_at.astimezone(UTC).isoformat(),
        "expected_counts": dict(counts),
    }


def connection_options(secret_string: str) -> dict:
    """psycopg2.connect keyword arguments from an RDS-style secret (never echoes the secret)."""
    try:
        secret = json.loads(secret_string)
    except json.JSONDecodeError:
        raise ValueError("the totesys secret is not a JSON object") from None
    if not isinstance(secret, dict):
        raise ValueError("the totesys secret is not a JSON object")
    missing = [k for k in ("host", "dbname", "password") if k not in secret]
    if "username" not in secret and "user" not in secret:
        missing.append("username")
    if missing:
        raise ValueError(f"the totesys secret lacks {', '.join(missing)}")
    options = {
        "host": secret["host"],
        "port": int(secret.get("port") or 5432),
        "dbname": secret["dbname"],
        "user": secret.get("username", secret.get("user")),
        "password": secret["password"],
        "connect_timeout": 30,
        "application_name": "totesys_extract",
    }
    if secret.get("sslmode"):
        options["sslmode"] = secret["sslmode"]
    return options


# -- I/O --------------------------------------------------------------------------------------------


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


def read_watermarks(s3, bucket: str) -> dict[str, str | None]:
    try:
        body = s3.get_object(Bucket=bucket, Key=WATERMARKS_KEY)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return {}
    return dict(json.loads(body).get("tables") or {})


def extract_table(
    connection, fs, bucket: str, batch_id: str, table: str, watermark: str | None
) -> tuple[int, str | None]:
    """Stream the table's changed rows into its parquet file; returns (rows, newest last_updated)."""
    statement, parameters = select_statement(table, watermark)
    table_schema = schema(table)
    names = table_schema.names
    rows, newest = 0, None
    with connection.cursor(name=f"extract_{table}") as cursor:  # server-side: bounded memory
        cursor.itersize = FETCH_ROWS
        cursor.execute(statement, parameters)
        path = f"{bucket}/{BATCH_PREFIX}{batch_id}/{table}.parquet"
        with fs.open_output_stream(path) as sink, pq.ParquetWriter(sink, table_schema) as writer:
            while chunk := cursor.fetchmany(FETCH_ROWS):
                columns = list(zip(*chunk, strict=True))
                arrays = [pa.array(values, type=f.type) for values, f in zip(columns, table_schema, strict=True)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=table_schema))
                rows += len(chunk)
                newest = format_watermark(chunk[-1][names.index("last_updated")])
            if rows == 0:
                writer.write_table(table_schema.empty_table())
    return rows, newest


def read_secret(secret_id: str) -> str:
    import boto3  # reaches AWS_ENDPOINT_URL by itself

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]


def log(message: str) -> None:
    print(f"[totesys_extract] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> dict:
    args = resolve_options(sys.argv if argv is None else argv, ARGUMENTS)
    batch_id = args["batch_id"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    tables = allowed_tables(args["tables"])  # refuses before any connection or SQL

    import boto3
    import psycopg2
    import psycopg2.extensions

    s3, fs, bucket = boto3.client("s3"), s3_filesystem(), args["ingestion_bucket"]
    watermarks = read_watermarks(s3, bucket)
    options = connection_options(read_secret(args["source_secret_id"]))
    log(f"batch {batch_id}: extracting {len(tables)} tables from {options['dbname']} on {options['host']}")
    started_at = datetime.now(UTC)
    counts: dict[str, int] = {}
    newest: dict[str, str | None] = {}
    connection = psycopg2.connect(**options)
    try:
        connection.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        for table in tables:
            try:
                counts[table], newest[table] = extract_table(
                    connection, fs, bucket, batch_id, table, watermarks.get(table)
                )
            except Exception as error:
                # One line: the database's own message, without the statement it quotes.
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise RuntimeError(f"batch {batch_id}: extracting table {table} failed: {reason}") from error
            log(f"{table}: {counts[table]} rows changed after {watermarks.get(table) or 'the beginning'}")
        connection.rollback()  # read-only: end the snapshot
    finally:
        connection.close()

    marker = marker_body(batch_id, started_at, datetime.now(UTC), counts)
    s3.put_object(
        Bucket=bucket, Key=f"{MARKER_PREFIX}{batch_id}.json", Body=json.dumps(marker).encode(),
        ContentType="application/json",
    )  # fmt: skip
    moved = advance_watermarks(watermarks, newest)
    s3.put_object(
        Bucket=bucket,
        Key=WATERMARKS_KEY,
        Body=json.dumps({"batch_id": batch_id, "updated_at": marker["completed_at"], "tables": moved}).encode(),
        ContentType="application/json",
    )
    summary = {"batch_id": batch_id, "expected_counts": counts, "watermarks": moved}
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
