"""Totesys, OLTP source to S3 ingestion: each table's rows changed inside the batch's window.

Reads   the totesys PostgreSQL database, whose credentials are the Secrets Manager secret
        --source_secret_id (JSON: host, port, dbname, username, password), in one read-only
        REPEATABLE READ transaction, so every table is read from the same snapshot. For each
        table of --tables (comma-separated; empty: all eleven) the rows whose ``last_updated``
        is inside the batch's window for that table, ``(from, to]``, streamed out with
        ``COPY (SELECT ...) TO STDOUT`` as CSV through a pipe into Arrow, one block at a time,
        and written as parquet to a local spool file uploaded while the next table is read, so
        memory stays bounded whatever the table's size. Columns keep the source's own types.
Window  fixed once per batch, before anything is extracted, and recorded in
        s3://<ingestion_bucket>/batches/<batch_id>/_window.json, written only if absent (a
        conditional put); data readers skip names starting with ``_``. ``from`` is the table's
        watermark (exclusive; none: the beginning), ``to`` the source's own clock at the snapshot
        (``localtimestamp``, the clock and zone the application stamps rows with) minus
        --commit_lag_seconds. A rerun of the batch (a retry, a Clear) uses the recorded window,
        never the current watermarks. A batch whose marker already exists (pending or archived)
        with that window is complete: it is never extracted or written again, since rows updated
        since would be missing from it; the run says so and ends.
Writes  s3://<ingestion_bucket>/batches/<batch_id>/<table>.parquet  one file per table, empty
        (with the table's schema) when nothing changed;
        s3://<ingestion_bucket>/batch-completion/<batch_id>.json     the completion marker
        (docs/interfaces.md) with ``expected_counts`` and ``windows`` (from, to) per table, after every
        table is written;
        s3://<ingestion_bucket>/watermarks.json                      each table's watermark, moved
        last and only to its window's ``to``: if anything before it fails, every watermark stays
        where it was and the rerun extracts the same window again.

Why a commit lag: the application stamps ``last_updated`` with ``now()``, the start of its
transaction, not its commit. A row stamped before the snapshot but committed after it is not in
the snapshot; a window ending at the snapshot would move the watermark past it and the row would
never be extracted. Ending the window --commit_lag_seconds before the source's clock leaves such
a row to a later batch, provided its transaction commits within the lag. The default, 300 s, is
far longer than an OLTP transaction of the application should stay open, and short beside the
30-minute schedule: a change reaches S3 at most 5 minutes later than it would without the lag.
A transaction left open longer than the lag can still be missed.

Hard deletes are not seen: a deleted row leaves nothing whose ``last_updated`` could enter a
window, so its last extracted version stays in the warehouse.

Security: table and column names come only from the fixed allow-list ``TABLES``; any other name
is refused before a connection is opened. COPY takes no bind parameters, so the window's bounds
are rendered into the statement by the driver's own quoting (``cursor.mogrify``) of ``datetime``
values the script made itself: a window read back from S3 is parsed into datetimes first, and
text that is not a timestamp is refused before any SQL. The password is read from Secrets
Manager and never printed.

Runs on AWS Glue 5.0 (psycopg2 through --additional-python-modules; the conditional put needs a
boto3 with S3 conditional writes, from August 2024 on) and locally as a plain Python process.
Ends with one JSON line: batch id, rows per table, watermarks.

Arguments: --batch_id --tables --source_secret_id --ingestion_bucket; optional
--commit_lag_seconds (default 300); others are ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ARGUMENTS = ["batch_id", "tables", "source_secret_id", "ingestion_bucket"]
DEFAULT_COMMIT_LAG_SECONDS = 300
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
BATCH_PREFIX = "batches/"
WINDOW_NAME = "_window.json"  # "_": skipped by Glue, Athena and the project's own listings
MARKER_PREFIX = "batch-completion/"
# Where a batch's marker can be once the warehouse pipeline has taken it (etl_toolkit.contract).
ARCHIVED_MARKER_PREFIXES = ("batch-archive/held/", "batch-archive/failed/", "batch-archive/rejected/",
                            "batch-archive/loaded/")  # fmt: skip
WATERMARKS_KEY = "watermarks.json"
CSV_BLOCK_BYTES = 1 << 20  # Arrow parses one block while the next arrives: memory stays bounded
PIPE_BUFFER_BYTES = 1 << 16

_TS = pa.timestamp("us")
_MONEY = pa.decimal128(10, 2)
_TEXT_DATE = pa.string()  # the source keeps these dates as YYYY-MM-DD text; the remodel parses them
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
                    ("currency_id", pa.int32()), ("agreed_delivery_date", _TEXT_DATE),
                    ("agreed_payment_date", _TEXT_DATE), ("agreed_delivery_location_id", pa.int32())],
    "purchase_order": [("purchase_order_id", pa.int32()), ("staff_id", pa.int32()), ("counterparty_id", pa.int32()),
                       ("item_code", pa.string()), ("item_quantity", pa.int32()), ("item_unit_price", _MONEY),
                       ("currency_id", pa.int32()), ("agreed_delivery_date", _TEXT_DATE),
                       ("agreed_payment_date", _TEXT_DATE), ("agreed_delivery_location_id", pa.int32())],
    "payment": [("payment_id", pa.int32()), ("transaction_id", pa.int32()), ("counterparty_id", pa.int32()),
                ("payment_amount", pa.decimal128(12, 2)), ("currency_id", pa.int32()),
                ("payment_type_id", pa.int32()), ("paid", pa.bool_()), ("payment_date", _TEXT_DATE),
                ("company_ac_number", pa.int32()), ("counterparty_ac_number", pa.int32())],
    "payment_type": [("payment_type_id", pa.int32()), ("payment_type_name", pa.string())],
    "transaction": [("transaction_id", pa.int32()), ("transaction_type", pa.string()),
                    ("sales_order_id", pa.int32()), ("purchase_order_id", pa.int32())],
}  # fmt: skip
TABLES = {name: [*columns, *_STAMPS] for name, columns in TABLES.items()}


class RefusedTableName(ValueError):
    """A configured table name that is not on the allow-list."""


class BatchConflict(RuntimeError):
    """A batch id whose recorded window or marker does not fit this run: nothing is written."""


def resolve_options(argv: Sequence[str], names: Iterable[str]) -> dict[str, str]:
    """``awsglue.utils.getResolvedOptions``: every name is a required ``--name value``."""
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


# -- windows and watermarks -------------------------------------------------------------------------


def format_watermark(stamp: datetime) -> str:
    """The source's timestamps are naive (the database's clock); keep every microsecond."""
    return stamp.replace(tzinfo=None).isoformat(timespec="microseconds")


def parse_stamp(text: str) -> datetime:
    """A bound read back from S3, as a naive datetime; anything else is refused."""
    if not isinstance(text, str):
        raise ValueError(f"window bound {text!r} is not a timestamp")
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"window bound {text!r} is not a timestamp") from None
    if stamp.tzinfo is not None:
        raise ValueError(f"window bound {text!r} has a time zone; the source's timestamps have none")
    return stamp


def plan_windows(
    tables: Iterable[str], watermarks: Mapping[str, str | None], source_clock: datetime, lag_seconds: float
) -> dict[str, dict[str, str | None]]:
    """Each table's window ``(from, to]``: from its watermark (exclusive; None: the beginning) to
    the source's clock minus the commit lag. A window never ends before it starts: when the
    watermark is already past that point (the lag was raised), the window is empty, ``(w, w]``."""
    end = format_watermark(source_clock - timedelta(seconds=lag_seconds))
    windows = {}
    for table in tables:
        start = watermarks.get(table)
        windows[table] = {"from": start, "to": end if start is None or end > start else start}
    return windows


def checked_windows(windows: object, tables: Sequence[str], where: str) -> dict[str, dict[str, str | None]]:
    """Recorded windows, checked: exactly the run's tables, every bound a timestamp, from <= to."""
    if not isinstance(windows, dict) or sorted(windows) != sorted(tables):
        names = sorted(windows) if isinstance(windows, dict) else windows
        raise BatchConflict(f"{where} covers tables {names}, but this run extracts {sorted(tables)}")
    for table, window in windows.items():
        if not isinstance(window, dict) or set(window) != {"from", "to"}:
            raise BatchConflict(f"{where}: the window of {table} is not {{from, to}}: {window!r}")
        end = parse_stamp(window["to"])
        if window["from"] is not None and parse_stamp(window["from"]) > end:
            raise BatchConflict(f"{where}: the window of {table} ends before it starts: {window!r}")
    return {table: dict(windows[table]) for table in tables}


def batch_windows(
    recorded: Mapping | None, planned: Mapping[str, dict], tables: Sequence[str], batch_id: str
) -> dict[str, dict[str, str | None]]:
    """The windows a batch extracts: the recorded ones when there are any (a rerun), else the
    planned ones. The current watermarks never change a recorded window."""
    if recorded is None:
        return dict(planned)
    return checked_windows(recorded.get("windows"), tables, f"the recorded window of batch {batch_id}")


def batch_is_complete(marker: Mapping | None, recorded: Mapping | None, batch_id: str) -> bool:
    """True when the batch's marker exists and agrees with its recorded window (or, for a batch
    written before windows were recorded, has none to disagree with). A marker that records other
    windows than the batch's is a conflict: the batch is left as it is and the run fails."""
    if marker is None:
        return False
    if recorded is None or marker.get("windows") == recorded.get("windows"):
        return True
    raise BatchConflict(
        f"batch {batch_id} has a marker whose windows {marker.get('windows')} are not its recorded "
        f"windows {recorded.get('windows')}; a complete batch is never rewritten"
    )


def advance_watermarks(current: Mapping[str, str | None], windows: Mapping[str, Mapping]) -> dict[str, str | None]:
    """Each table's watermark once its batch is written: its window's ``to``, if later.

    Tables not in the batch keep theirs. A watermark never moves back.
    """
    moved = dict(current)
    for table, window in windows.items():
        end = window["to"]
        if moved.get(table) is None or end > moved[table]:
            moved[table] = end
    return moved


def window_record(batch_id: str, recorded_at: datetime, source_clock: datetime, lag_seconds: float,
                  windows: Mapping[str, dict]) -> dict:  # fmt: skip
    return {
        "batch_id": batch_id,
        "recorded_at": recorded_at.astimezone(UTC).isoformat(),
        "source_clock": format_watermark(source_clock),
        "commit_lag_seconds": lag_seconds,
        "windows": {table: dict(window) for table, window in windows.items()},
    }


def marker_body(batch_id: str, started_at: datetime, completed_at: datetime, counts: Mapping[str, int],
                windows: Mapping[str, dict]) -> dict:  # fmt: skip
    return {
        "batch_id": batch_id,
        "started_at": started_at.astimezone(UTC).isoformat(),
        "completed_at": completed_at.astimezone(UTC).isoformat(),
        "expected_counts": dict(counts),
        "windows": {table: dict(window) for table, window in windows.items()},
    }


# -- SQL and CSV ------------------------------------------------------------------------------------


def select_statement(table: str, window: Mapping | None) -> tuple[str, dict[str, datetime]]:
    """(SQL, parameters) for the table's rows inside ``window`` (None: every row).

    The parameters are datetimes parsed here, whatever the window's text said.
    """
    [table] = allowed_tables([table])
    columns = ", ".join(quote(name) for name, _ in TABLES[table])
    statement = f"SELECT {columns} FROM {quote(table)}"
    parameters: dict[str, datetime] = {}
    if window is not None:
        conditions = []
        if window["from"] is not None:
            conditions.append('"last_updated" > %(from)s')
            parameters["from"] = parse_stamp(window["from"])
        conditions.append('"last_updated" <= %(to)s')
        parameters["to"] = parse_stamp(window["to"])
        statement += " WHERE " + " AND ".join(conditions)
    key = quote(TABLES[table][0][0])
    return statement + f' ORDER BY "last_updated", {key}', parameters


def copy_statement(cursor, table: str, window: Mapping | None) -> str:
    """``COPY (SELECT ...) TO STDOUT`` as CSV; the bounds are literals quoted by the driver."""
    statement, parameters = select_statement(table, window)
    copy = f"COPY ({statement}) TO STDOUT WITH (FORMAT csv)"
    return cursor.mogrify(copy, parameters).decode() if parameters else copy


def csv_reader(source, table_schema: pa.Schema) -> pacsv.CSVStreamingReader:
    """PostgreSQL's CSV as Arrow record batches of the table's schema.

    COPY writes NULL as an unquoted empty field and an empty string as ``""``: only the former
    becomes null. Booleans are ``t``/``f``; a value may span lines inside its quotes.
    """
    return pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(column_names=table_schema.names, block_size=CSV_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=table_schema,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )


def csv_batches(source: BinaryIO, table_schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The record batches of a COPY's CSV output, read as it arrives (none when it is empty)."""
    if source.peek(1):
        yield from csv_reader(source, table_schema)


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
        "client_encoding": "UTF8",  # the CSV is read as UTF-8 whatever the database's encoding
    }
    if secret.get("sslmode"):
        options["sslmode"] = secret["sslmode"]
    return options


# -- I/O --------------------------------------------------------------------------------------------


def window_key(batch_id: str) -> str:
    return f"{BATCH_PREFIX}{batch_id}/{WINDOW_NAME}"


def read_json(s3, bucket: str, key: str) -> dict | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def find_marker(s3, bucket: str, batch_id: str) -> tuple[str, dict] | tuple[None, None]:
    """The batch's marker wherever it is now: pending, or archived by the warehouse pipeline."""
    for prefix in (MARKER_PREFIX, *ARCHIVED_MARKER_PREFIXES):
        key = f"{prefix}{batch_id}.json"
        body = read_json(s3, bucket, key)
        if body is not None:
            return key, body
    return None, None


def record_window(s3, bucket: str, batch_id: str, record: dict) -> dict:
    """Write the batch's window only if none is recorded yet; returns the one that is recorded.

    S3 decides (``If-None-Match: *``): two runs of one batch racing here both end up with the
    first one's window.
    """
    from botocore.exceptions import ClientError

    try:
        s3.put_object(
            Bucket=bucket, Key=window_key(batch_id), Body=json.dumps(record, indent=1).encode(),
            ContentType="application/json", IfNoneMatch="*",
        )  # fmt: skip
        return record
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise
    recorded = read_json(s3, bucket, window_key(batch_id))
    if recorded is None:
        raise BatchConflict(f"batch {batch_id}: another run is recording its window; try again")
    return recorded


def read_watermarks(s3, bucket: str) -> dict[str, str | None]:
    body = read_json(s3, bucket, WATERMARKS_KEY)
    return dict((body or {}).get("tables") or {})


def write_json(s3, bucket: str, key: str, body: dict) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode(), ContentType="application/json")


def write_watermarks(s3, bucket: str, batch_id: str, updated_at: str | None, tables: Mapping) -> None:
    write_json(s3, bucket, WATERMARKS_KEY, {"batch_id": batch_id, "updated_at": updated_at, "tables": dict(tables)})


@contextlib.contextmanager
def copy_out(cursor, statement: str) -> Iterator[BinaryIO]:
    """The output of ``COPY ... TO STDOUT`` as a pipe read while it is written: a thread runs the
    COPY, so PostgreSQL sends the next rows while Arrow parses the ones before."""
    read_end, write_end = os.pipe()
    failures: list[BaseException] = []

    def send() -> None:
        try:
            with open(write_end, "wb", buffering=PIPE_BUFFER_BYTES) as sink:
                cursor.copy_expert(statement, sink)
        except BaseException as error:
            failures.append(error)

    sender = threading.Thread(target=send, name="copy-out", daemon=True)
    source = open(read_end, "rb", buffering=PIPE_BUFFER_BYTES)
    sender.start()
    try:
        yield source
    finally:
        source.close()  # a reader that stops early breaks the pipe, which stops the COPY too
        sender.join()
        if failures and not isinstance(failures[0], BrokenPipeError):
            raise failures[0]


def extract_table(cursor, table: str, window: Mapping, path: str) -> int:
    """The table's rows inside ``window`` into a local parquet file, one CSV block at a time;
    returns the rows written (an empty table is a file with the schema and no rows)."""
    table_schema = schema(table)
    rows = 0
    with copy_out(cursor, copy_statement(cursor, table, window)) as source:
        with pq.ParquetWriter(path, table_schema) as writer:
            for batch in csv_batches(source, table_schema):
                writer.write_batch(batch)
                rows += batch.num_rows
            if rows == 0:
                # One empty row group, as Arrow writes one; not schema.empty_table(), which imports pandas.
                writer.write_table(pa.Table.from_batches([], schema=table_schema))
    return rows


def upload(s3, path: str, bucket: str, key: str) -> None:
    """A spooled file to S3 (multipart when big), then off the local disk."""
    try:
        s3.upload_file(path, bucket, key)
    finally:
        os.remove(path)


def read_secret(secret_id: str) -> str:
    import boto3  # reaches AWS_ENDPOINT_URL by itself

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]


def log(message: str) -> None:
    print(f"[totesys_extract] {message}", flush=True)


def window_text(window: Mapping) -> str:
    return f"({window['from'] or 'the beginning'}, {window['to']}]"


def fixed_windows(
    s3, bucket: str, batch_id: str, tables: Sequence[str], watermarks: Mapping, recorded: dict | None,
    source_clock: datetime, lag: float, started_at: datetime,
) -> dict[str, dict]:  # fmt: skip
    """The batch's windows: the recorded ones on a rerun, else planned now and recorded first."""
    planned = plan_windows(tables, watermarks, source_clock, lag)
    if recorded is None:
        recorded = record_window(s3, bucket, batch_id, window_record(batch_id, started_at, source_clock, lag, planned))
        log(f"batch {batch_id}: window recorded, ending {lag:g} s before the source's clock ({source_clock})")
    else:
        log(f"batch {batch_id}: extracting again the window recorded at {recorded.get('recorded_at')}")
    return batch_windows(recorded, planned, tables, batch_id)


def extract_tables(cursor, s3, bucket: str, batch_id: str, windows: Mapping[str, Mapping]) -> dict[str, int]:
    """Each table into its parquet file; a file uploads while the next table is read."""
    counts: dict[str, int] = {}
    with (
        tempfile.TemporaryDirectory(prefix="totesys_extract-") as spool_dir,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload") as uploader,
    ):
        uploads: list[Future] = []
        for table, window in windows.items():
            path = os.path.join(spool_dir, f"{table}.parquet")
            try:
                counts[table] = extract_table(cursor, table, window, path)
            except Exception as error:
                # One line: the database's own message, without the statement it quotes.
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise RuntimeError(f"batch {batch_id}: extracting table {table} failed: {reason}") from error
            uploads.append(uploader.submit(upload, s3, path, bucket, f"{BATCH_PREFIX}{batch_id}/{table}.parquet"))
            log(f"{table}: {counts[table]} rows with last_updated in {window_text(window)}")
        for done in uploads:
            done.result()
    return counts


def extract_batch(
    options: dict, s3, bucket: str, batch_id: str, tables: Sequence[str], watermarks: Mapping, recorded: dict | None,
    lag: float, started_at: datetime,
) -> tuple[dict[str, dict], dict[str, int]]:  # fmt: skip
    """Every table of the batch from one snapshot, in its window."""
    import psycopg2
    import psycopg2.extensions

    connection = psycopg2.connect(**options)
    try:
        connection.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL DateStyle = 'ISO'")  # the CSV's dates, whatever the server's default
            cursor.execute("SELECT localtimestamp")  # the source's clock; the snapshot starts here
            [source_clock] = cursor.fetchone()
            windows = fixed_windows(s3, bucket, batch_id, tables, watermarks, recorded, source_clock, lag, started_at)
            log(f"batch {batch_id}: extracting {len(tables)} tables from {options['dbname']} on {options['host']}")
            counts = extract_tables(cursor, s3, bucket, batch_id, windows)
        connection.rollback()  # read-only: end the snapshot
    finally:
        connection.close()
    return windows, counts


def already_complete(s3, bucket: str, batch_id: str, marker_key: str, marker: dict) -> dict:
    """A complete batch stays as it is; only watermarks left behind by a run that stopped between
    its marker and its watermarks move on to the batch's windows."""
    log(f"batch {batch_id} is already complete (marker {marker_key}): nothing extracted, nothing rewritten")
    current = read_watermarks(s3, bucket)
    moved = advance_watermarks(current, marker.get("windows") or {})
    if moved != current:
        write_watermarks(s3, bucket, batch_id, marker.get("completed_at"), moved)
        log(f"batch {batch_id}: watermarks moved to its windows")
    summary = {"batch_id": batch_id, "expected_counts": marker.get("expected_counts") or {}, "watermarks": moved,
               "already_complete": True}  # fmt: skip
    print(json.dumps(summary), flush=True)
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    argv = sys.argv if argv is None else argv
    args = resolve_options(argv, ARGUMENTS)
    lag = commit_lag(optional_option(argv, "commit_lag_seconds"))
    batch_id = args["batch_id"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    tables = allowed_tables(args["tables"])  # refuses before any connection or SQL

    import boto3

    s3, bucket = boto3.client("s3"), args["ingestion_bucket"]
    recorded = read_json(s3, bucket, window_key(batch_id))
    marker_key, marker = find_marker(s3, bucket, batch_id)
    if batch_is_complete(marker, recorded, batch_id):
        return already_complete(s3, bucket, batch_id, marker_key, marker)

    options = connection_options(read_secret(args["source_secret_id"]))
    started_at = datetime.now(UTC)
    windows, counts = extract_batch(
        options, s3, bucket, batch_id, tables, read_watermarks(s3, bucket), recorded, lag, started_at
    )
    marker = marker_body(batch_id, started_at, datetime.now(UTC), counts, windows)
    write_json(s3, bucket, f"{MARKER_PREFIX}{batch_id}.json", marker)
    moved = advance_watermarks(read_watermarks(s3, bucket), windows)  # only now, and never back
    write_watermarks(s3, bucket, batch_id, marker["completed_at"], moved)
    summary = {"batch_id": batch_id, "expected_counts": counts, "watermarks": moved}
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
