"""``supplychain_silver_dimensions.py`` on the local stack's Spark runtime, run as AWS runs it.

The source is the stack's ``supplychain`` database, created from include/sql/supplychain/source_schema.sql
and changed as the application role (``AIRFLOW_CONN_SUPPLYCHAIN_DB``) with rows written here. The
job is uploaded and run with plain boto3 (``create_job``, ``start_job_run``); what it writes is
read back with pyarrow from the emulated S3 and compared with ``SELECT *`` of the source.

Each scenario has a lakehouse bucket of its own. One scenario follows a lakehouse through a first
run, a run after inserts, updates and deletes, a crash in the middle of that run's swap and its
retry, and a renamed source column (run as the retry of an attempt that crashed before its new
tables were ready); the other a change committed after a run's snapshot with a stamp inside its
window's lag. The crashed states are written by the tests (what the job leaves at that point), so
that each is exact. Six job runs in all (each starts a JVM).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.glue_runs import ERROR_GROUP, create_job, job_log_lines, start_job_run, wait_for_job_run

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "include" / "glue_scripts" / "supplychain" / "supplychain_silver_dimensions.py"
SOURCE_SCHEMA = REPO / "include" / "sql" / "supplychain" / "source_schema.sql"
SECRET = "etl/supplychain"
TABLES = ("supplier", "product", "warehouse", "customer")
WORK = "_work/supplychain_silver_dimensions/"
WATERMARKS = "_state/dimension_watermarks.json"
STAMP_TYPE = pa.timestamp("us", tz="UTC")
SILVER_TYPES = {
    "supplier": [("supplier_id", pa.int32()), ("supplier_name", pa.string()), ("country", pa.string()),
                 ("lead_time_days", pa.int32())],
    "product": [("product_id", pa.int32()), ("sku", pa.string()), ("product_name", pa.string()),
                ("category", pa.string()), ("unit_cost", pa.decimal128(10, 2)), ("supplier_id", pa.int32())],
    "warehouse": [("warehouse_id", pa.int32()), ("warehouse_name", pa.string()), ("city", pa.string()),
                  ("country", pa.string()), ("capacity_units", pa.int32())],
    "customer": [("customer_id", pa.int32()), ("customer_name", pa.string()), ("segment", pa.string()),
                 ("country", pa.string())],
}  # fmt: skip
SILVER_TYPES = {table: [*columns, ("created_at", STAMP_TYPE), ("updated_at", STAMP_TYPE)]
                for table, columns in SILVER_TYPES.items()}  # fmt: skip
# Longer than the time from a stamp to the job's snapshot (the source is read before Spark starts).
LATE_LAG_SECONDS = 20


# -- the source -------------------------------------------------------------------------------------


def connect(stack):
    conn = json.loads(stack["AIRFLOW_CONN_SUPPLYCHAIN_DB"])
    return psycopg2.connect(host=conn["host"], port=int(conn.get("port") or 5432), dbname=conn["schema"],
                            user=conn["login"], password=conn["password"])  # fmt: skip


@pytest.fixture(scope="module")
def source(stack):
    """Runs statements on the source as the application, each call one committed transaction;
    returns the last statement's rows when it has any."""

    def run(statement: str, *parameters):
        conn = connect(stack)
        try:
            with conn, conn.cursor() as cursor:
                cursor.execute(statement, parameters or None)
                return cursor.fetchall() if cursor.description else None
        finally:
            conn.close()

    return run


def recreate_source(source) -> None:
    source(SOURCE_SCHEMA.read_text())


def source_rows(stack, table: str) -> list[dict]:
    """``SELECT *`` of the table, by key, with the source's own column names."""
    conn = connect(stack)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(f"SELECT * FROM {table} ORDER BY {table}_id")
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        conn.close()


def source_clock(source) -> datetime:
    [(now,)] = source("SELECT clock_timestamp()")
    return now


# -- the job ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def job(stack, aws):
    name = f"e2e-supplychain_silver_dimensions-{uuid.uuid4().hex[:10]}"
    create_job(aws, name, f"tests/supplychain/{name}/{SCRIPT.name}", SCRIPT.read_bytes())
    return name


def new_lakehouse(aws, stack) -> str:
    bucket = f"supplychain-lakehouse-e2e-{uuid.uuid4().hex[:10]}"
    region = stack["AWS_DEFAULT_REGION"]
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    aws("s3").create_bucket(Bucket=bucket, **location)
    return bucket


def run_job(aws, job: str, batch_id: str, bucket: str, lag: float = 0) -> dict:
    """One run to its end; returns the run, its output lines and the report of its last line."""
    arguments = {"--batch_id": batch_id, "--source_secret_id": SECRET, "--lakehouse_bucket": bucket,
                 "--commit_lag_seconds": str(lag)}  # fmt: skip
    run_id = start_job_run(aws, job, **arguments)
    run = wait_for_job_run(aws, job, run_id, timeout=300)
    lines = job_log_lines(aws, run_id)
    errors = "\n".join(job_log_lines(aws, run_id, ERROR_GROUP))[-4000:]
    assert run["JobRunState"] == "SUCCEEDED", (run.get("ErrorMessage"), "\n".join(lines)[-2000:], errors)
    return {"run": run, "lines": lines, "report": json.loads(lines[-1])}


# -- the lakehouse ----------------------------------------------------------------------------------


def keys_under(aws, bucket: str, prefix: str) -> list[str]:
    pages = aws("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def read_bytes(aws, bucket: str, key: str) -> bytes:
    return aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def read_json(aws, bucket: str, key: str) -> dict:
    return json.loads(read_bytes(aws, bucket, key))


def silver(aws, bucket: str, table: str) -> dict:
    """The silver table: its objects, their schemas, and its rows by key."""
    keys = keys_under(aws, bucket, f"silver/dim_{table}/")
    tables = [pq.read_table(io.BytesIO(read_bytes(aws, bucket, key))) for key in keys]
    rows = sorted((row for t in tables for row in t.to_pylist()), key=lambda row: row[f"{table}_id"])
    return {"keys": keys, "schemas": [t.schema for t in tables], "rows": rows}


def lakehouse_state(aws, bucket: str, stack) -> dict:
    """Every silver table, and the source as it is now."""
    return {table: {**silver(aws, bucket, table), "source": source_rows(stack, table)} for table in TABLES}


def counts(report: dict) -> dict[str, tuple[int, int, int]]:
    """(changed, deleted, rows) per table, and nothing else in the report but its id and windows."""
    assert set(report) == {"batch_id", "windows", *(f"{t}_{n}" for t in TABLES for n in ("changed", "deleted", "rows"))}
    return {table: tuple(report[f"{table}_{name}"] for name in ("changed", "deleted", "rows")) for table in TABLES}


def assert_silver_is_the_source(state: dict) -> None:
    for table, found in state.items():
        assert found["keys"] and all(key.endswith(".parquet") for key in found["keys"]), found["keys"]
        assert found["rows"] == found["source"], table


# -- scenario: first run, changes, crash in the swap, renamed column ----------------------------------

SUPPLIERS = [(1, "Nordic Timber AB", "SE", 12), (2, 'Acme, "Fasteners" Ltd', "GB", 5), (3, "Zoë Ceramics", "FR", 30)]
PRODUCTS = [
    (1, "SKU-001", "Oak plank", "timber", "12.50", 1),
    (2, "SKU-002", "Bolt M8", "fasteners", "0.05", 2),
    (3, "SKU-003", "Tile", "ceramics", "3.99", 3),
    (4, "SKU-004", "Vase", "ceramics", "49.00", 3),
]
CUSTOMERS = [(1, "Globex", "retail", "US"), (2, "Initech", "", "DE"), (3, "Umbrella", "wholesale", "JP")]


def insert_base_rows(source) -> None:
    source(
        "INSERT INTO supplier (supplier_id, supplier_name, country, lead_time_days) VALUES "
        + ", ".join(["(%s, %s, %s, %s)"] * len(SUPPLIERS)),
        *[v for row in SUPPLIERS for v in row],
    )
    source(
        "INSERT INTO product (product_id, sku, product_name, category, unit_cost, supplier_id) VALUES "
        + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(PRODUCTS)),
        *[v for row in PRODUCTS for v in row],
    )
    source("INSERT INTO customer (customer_id, customer_name, segment, country) VALUES "
           + ", ".join(["(%s, %s, %s, %s)"] * len(CUSTOMERS)), *[v for row in CUSTOMERS for v in row])  # fmt: skip


def change_every_table(source) -> None:
    """Inserts, updates (updated_at = now(), as the application does) and hard deletes."""
    source(
        "INSERT INTO supplier (supplier_id, supplier_name, country, lead_time_days) VALUES (4, 'Kraków Steel', 'PL', 9)"
    )
    source("UPDATE supplier SET lead_time_days = 7, updated_at = now() WHERE supplier_id = 2")
    source(
        "INSERT INTO product (product_id, sku, product_name, category, unit_cost, supplier_id) "
        "VALUES (5, 'SKU-005', 'Steel beam', 'steel', 120.75, 4)"
    )
    source("UPDATE product SET unit_cost = 13.10, updated_at = now() WHERE product_id = 1")
    source("DELETE FROM product WHERE product_id = 4")
    source("DELETE FROM product WHERE product_id = 3")
    source("DELETE FROM supplier WHERE supplier_id = 3")
    source(
        "INSERT INTO warehouse (warehouse_id, warehouse_name, city, country, capacity_units) "
        "VALUES (1, 'North', 'Leeds', 'GB', 5000), (2, 'South', 'Lyon', 'FR', 8000)"
    )
    source("UPDATE customer SET segment = 'enterprise', updated_at = now() WHERE customer_id = 1")
    source("DELETE FROM customer WHERE customer_id = 3")  # fmt: skip


@pytest.fixture(scope="module")
def lakehouse(stack, aws, job, source):
    """A first run on the base rows (no warehouse yet), then a run after changes to every table.
    Keeps what a test needs to rebuild the state between them: the first run's silver files and
    watermarks."""
    bucket = new_lakehouse(aws, stack)
    recreate_source(source)
    insert_base_rows(source)
    first = run_job(aws, job, "dims-1", bucket)
    after_first = lakehouse_state(aws, bucket, stack)
    first_files = {key: read_bytes(aws, bucket, key) for key in keys_under(aws, bucket, "silver/")}
    first_watermarks = read_bytes(aws, bucket, WATERMARKS)

    change_every_table(source)
    second = run_job(aws, job, "dims-2", bucket)
    return {
        "bucket": bucket, "first": first, "after_first": after_first, "first_files": first_files,
        "first_watermarks": first_watermarks, "second": second, "after_second": lakehouse_state(aws, bucket, stack),
        "second_watermarks": read_json(aws, bucket, WATERMARKS),
    }  # fmt: skip


def test_a_first_run_reads_every_row_into_typed_silver_tables(aws, lakehouse):
    state, report = lakehouse["after_first"], lakehouse["first"]["report"]

    assert_silver_is_the_source(state)
    assert [len(state[table]["rows"]) for table in TABLES] == [3, 4, 0, 3]
    for table in TABLES:
        [schema] = state[table]["schemas"]  # one file per table, an empty table's too
        assert [(field.name, field.type) for field in schema] == SILVER_TYPES[table], table
    assert state["customer"]["rows"][1]["segment"] == ""  # an empty string is not null
    assert state["supplier"]["rows"][1]["supplier_name"] == 'Acme, "Fasteners" Ltd'
    assert report == read_json(aws, lakehouse["bucket"], "audit/batch_id=dims-1/silver_dimensions.json")
    # (changed, deleted, rows)
    assert counts(report) == {"supplier": (3, 0, 3), "product": (4, 0, 4), "warehouse": (0, 0, 0),
                              "customer": (3, 0, 3)}  # fmt: skip
    assert report["batch_id"] == "dims-1"
    for window in report["windows"].values():
        assert window["from"] is None and window["full"] is True
        assert datetime.fromisoformat(window["to"]) >= max(row["updated_at"] for row in state["supplier"]["rows"])
    watermarks = json.loads(lakehouse["first_watermarks"])["tables"]
    assert watermarks == {table: window["to"] for table, window in report["windows"].items()}


def test_a_second_run_applies_inserts_updates_and_deletes(aws, lakehouse):
    state, report = lakehouse["after_second"], lakehouse["second"]["report"]
    first_windows = lakehouse["first"]["report"]["windows"]

    assert_silver_is_the_source(state)  # the source with its inserts, updates and deletes
    assert [row["supplier_id"] for row in state["supplier"]["rows"]] == [1, 2, 4]
    assert [row["product_id"] for row in state["product"]["rows"]] == [1, 2, 5]
    assert str(state["product"]["rows"][0]["unit_cost"]) == "13.10"
    assert len(state["warehouse"]["schemas"]) == 1
    assert counts(report) == {"supplier": (2, 1, 3), "product": (2, 2, 3), "warehouse": (2, 0, 2),
                              "customer": (1, 1, 2)}  # fmt: skip
    for table, window in report["windows"].items():
        assert window == {"from": first_windows[table]["to"], "to": window["to"], "full": False}
    assert lakehouse["second_watermarks"]["tables"] == {t: w["to"] for t, w in report["windows"].items()}
    assert keys_under(aws, lakehouse["bucket"], WORK) == []  # the work folder goes once the batch is done
    windows = read_json(aws, lakehouse["bucket"], "_state/windows/dims-2.json")["windows"]
    assert windows == {table: {"from": w["from"], "to": w["to"]} for table, w in report["windows"].items()}


@pytest.fixture(scope="module")
def retried_after_a_crash_in_the_swap(aws, job, lakehouse):
    """The second run's state as a crash after its swap began leaves it: the new tables and
    _READY.json in the work folder, dim_supplier swapped, dim_product half-swapped (the new file
    copied in, the old one still there), the other two untouched, the watermarks not yet moved,
    no report. Then the batch is run again."""
    s3, bucket = aws("s3"), lakehouse["bucket"]
    work = f"{WORK}batch_id=dims-2/"
    new_files = {table: lakehouse["after_second"][table]["keys"] for table in TABLES}
    for key in (key for keys in new_files.values() for key in keys):
        s3.copy_object(Bucket=bucket, Key=work + key.removeprefix("silver/"), CopySource={"Bucket": bucket, "Key": key})
    names = {table: [key.rsplit("/", 1)[1] for key in keys] for table, keys in new_files.items()}
    ready = {"batch_id": "dims-2", "report": lakehouse["second"]["report"], "files": names}
    s3.put_object(Bucket=bucket, Key=work + "_READY.json", Body=json.dumps(ready).encode())
    for key, body in lakehouse["first_files"].items():
        if not key.startswith("silver/dim_supplier/"):
            s3.put_object(Bucket=bucket, Key=key, Body=body)
    for table in ("warehouse", "customer"):
        for key in new_files[table]:
            s3.delete_object(Bucket=bucket, Key=key)
    s3.put_object(Bucket=bucket, Key=WATERMARKS, Body=lakehouse["first_watermarks"])
    s3.delete_object(Bucket=bucket, Key="audit/batch_id=dims-2/silver_dimensions.json")
    window_before = read_bytes(aws, bucket, "_state/windows/dims-2.json")
    assert silver(aws, bucket, "product")["rows"] != lakehouse["after_second"]["product"]["rows"]

    retry = run_job(aws, job, "dims-2", bucket)
    return {"retry": retry, "window_before": window_before}


def test_a_retry_after_a_crash_in_the_swap_finishes_it_and_moves_the_watermarks_once(
    aws, lakehouse, retried_after_a_crash_in_the_swap
):
    bucket, retry = lakehouse["bucket"], retried_after_a_crash_in_the_swap["retry"]
    report = lakehouse["second"]["report"]

    for table in TABLES:
        found, before = silver(aws, bucket, table), lakehouse["after_second"][table]
        assert (found["keys"], found["rows"]) == (before["keys"], before["rows"]), table
    assert any("finishing the swap" in line for line in retry["lines"]), retry["lines"]
    assert retry["report"] == report == read_json(aws, bucket, "audit/batch_id=dims-2/silver_dimensions.json")
    watermarks = read_json(aws, bucket, WATERMARKS)
    assert watermarks["batch_id"] == "dims-2"
    assert watermarks["tables"] == {table: window["to"] for table, window in report["windows"].items()}
    assert read_bytes(aws, bucket, "_state/windows/dims-2.json") == retried_after_a_crash_in_the_swap["window_before"]
    assert keys_under(aws, bucket, WORK) == []


@pytest.fixture(scope="module")
def renamed(stack, aws, job, source, lakehouse, retried_after_a_crash_in_the_swap):
    """A renamed column and an update; then the third batch, run as the retry of an attempt that
    crashed before its new tables were ready: its window recorded, a stale file in its work folder."""
    s3, bucket = aws("s3"), lakehouse["bucket"]
    source("ALTER TABLE customer RENAME COLUMN segment TO customer_segment")
    source("UPDATE supplier SET supplier_name = 'Nordic Timber AS', updated_at = now() WHERE supplier_id = 1")
    watermarks = read_json(aws, bucket, WATERMARKS)["tables"]
    end = source_clock(source).astimezone(UTC).isoformat(timespec="microseconds")
    windows = {table: {"from": watermarks[table], "to": end} for table in TABLES}
    recorded = json.dumps({"batch_id": "dims-3", "windows": windows}).encode()
    s3.put_object(Bucket=bucket, Key="_state/windows/dims-3.json", Body=recorded)
    stale = lakehouse["first_files"][lakehouse["after_first"]["customer"]["keys"][0]]
    s3.put_object(Bucket=bucket, Key=f"{WORK}batch_id=dims-3/dim_customer/part-00000-stale.parquet", Body=stale)

    run = run_job(aws, job, "dims-3", bucket)
    return {"run": run, "state": lakehouse_state(aws, bucket, stack), "windows": windows, "recorded": recorded}


def test_a_renamed_source_column_reaches_silver_as_renamed(renamed):
    state, report = renamed["state"], renamed["run"]["report"]

    assert_silver_is_the_source(state)
    [schema] = state["customer"]["schemas"]
    assert "customer_segment" in schema.names and "segment" not in schema.names
    assert schema.field("customer_segment").type == pa.string()
    assert {table: window["full"] for table, window in report["windows"].items()} == {
        "supplier": False, "product": False, "warehouse": False, "customer": True}  # fmt: skip
    assert (report["customer_changed"], report["customer_deleted"], report["customer_rows"]) == (2, 0, 2)
    assert (report["supplier_changed"], report["supplier_rows"]) == (1, 3)
    assert state["supplier"]["rows"][0]["supplier_name"] == "Nordic Timber AS"


def test_a_retry_after_a_crash_before_the_tables_were_ready_reads_the_recorded_window_again(aws, lakehouse, renamed):
    bucket, report = lakehouse["bucket"], renamed["run"]["report"]

    assert any("reading again the window recorded" in line for line in renamed["run"]["lines"])
    assert {table: {"from": w["from"], "to": w["to"]} for table, w in report["windows"].items()} == renamed["windows"]
    assert read_bytes(aws, bucket, "_state/windows/dims-3.json") == renamed["recorded"]
    assert read_json(aws, bucket, WATERMARKS)["tables"] == {table: w["to"] for table, w in renamed["windows"].items()}
    assert all(not key.endswith("stale.parquet") for key in renamed["state"]["customer"]["keys"])
    assert keys_under(aws, bucket, WORK) == []


# -- scenario: a change committed late --------------------------------------------------------------


def test_a_change_committed_after_a_snapshot_with_a_stamp_inside_the_lag_reaches_silver_later(stack, aws, job, source):
    bucket = new_lakehouse(aws, stack)
    recreate_source(source)
    for supplier_id, name, country, lead_time in SUPPLIERS:  # stamped an hour ago: well outside the lag
        source("INSERT INTO supplier VALUES (%s, %s, %s, %s, now() - interval '1 hour', now() - interval '1 hour')",
               supplier_id, name, country, lead_time)  # fmt: skip
    late = connect(stack)
    try:
        with late.cursor() as cursor:  # stamped now, at its transaction's start; committed below
            cursor.execute("UPDATE supplier SET supplier_name = 'Committed late', updated_at = now() "
                           "WHERE supplier_id = 2 RETURNING updated_at")  # fmt: skip
            [(late_stamp,)] = cursor.fetchall()

        during = run_job(aws, job, "late-1", bucket, lag=LATE_LAG_SECONDS)  # cannot see the change

        window = during["report"]["windows"]["supplier"]
        assert datetime.fromisoformat(window["to"]) < late_stamp, "the job's snapshot came later than the lag"
        late.commit()
    finally:
        late.close()
    assert silver(aws, bucket, "supplier")["rows"][1]["supplier_name"] == SUPPLIERS[1][1]
    deadline = time.monotonic() + LATE_LAG_SECONDS + 60
    while (source_clock(source) - late_stamp).total_seconds() <= LATE_LAG_SECONDS + 1:
        assert time.monotonic() < deadline, "the source's clock did not move past the lag"
        time.sleep(0.5)

    after = run_job(aws, job, "late-2", bucket, lag=LATE_LAG_SECONDS)

    rows = silver(aws, bucket, "supplier")["rows"]
    assert (rows[1]["supplier_name"], rows[1]["updated_at"]) == ("Committed late", late_stamp)
    assert rows == source_rows(stack, "supplier")
    assert after["report"]["windows"]["supplier"]["from"] == window["to"]
    assert (after["report"]["supplier_changed"], after["report"]["supplier_rows"]) == (1, 3)


def test_a_batch_run_again_after_a_later_batch_leaves_silver_to_the_later_one(aws, job, stack, lakehouse):
    """The first batch's attempt stopped with its tables ready (they hold the first state); a later
    batch has since read past its window. Run again, it must not swap its older tables in."""
    s3, bucket = aws("s3"), lakehouse["bucket"]
    work = f"{WORK}batch_id=dims-1/"
    names: dict[str, list[str]] = {table: [] for table in TABLES}
    for key, body in lakehouse["first_files"].items():
        s3.put_object(Bucket=bucket, Key=work + key.removeprefix("silver/"), Body=body)
        names[key.split("/")[1].removeprefix("dim_")].append(key.rsplit("/", 1)[1])
    ready = {"batch_id": "dims-1", "report": lakehouse["first"]["report"], "files": names}
    s3.put_object(Bucket=bucket, Key=work + "_READY.json", Body=json.dumps(ready).encode())
    s3.delete_object(Bucket=bucket, Key="audit/batch_id=dims-1/silver_dimensions.json")
    before, watermarks = lakehouse_state(aws, bucket, stack), read_bytes(aws, bucket, WATERMARKS)

    report = run_job(aws, job, "dims-1", bucket)["report"]

    assert lakehouse_state(aws, bucket, stack) == before
    assert read_bytes(aws, bucket, WATERMARKS) == watermarks
    assert sorted(report["overtaken"]) == sorted(TABLES)
    assert keys_under(aws, bucket, work) == []
