"""Reprocessing loaded totesys batches, oldest first or in any order, leaves the warehouse as it was.

Three batches from ``totesys_ingest``, with business days in between that change the same staff
member, their department, a counterparty, its legal address and a design each day, all loaded by
``totesys_warehouse``. Then the oldest batch and the middle one are reprocessed: every table of
the ``totesys`` schema, every column but the load time, must be as it was, and every dimension
must still show the newest version of its rows; the remodel job's state must be as it was too.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devstack.runs import task_return_value
from devstack.sample_data import totesys as source
from tests.conftest import run_dag

pytestmark = pytest.mark.e2e

INGESTION, PROCESSED = "totesys-ingestion", "totesys-processed"
STAFF_ID, COUNTERPARTY_ID, DESIGN_ID = 1, 1, 1


@pytest.fixture(scope="module")
def fresh(no_totesys, source_conn):
    """A source in its starting state, and no trace of totesys in S3 or the warehouse."""
    return source.init(source_conn, sales_orders=30, seed=27)


def change_the_same_rows(conn, day: int) -> None:
    """What the application does to the rows the test follows, one transaction, stamped now()."""
    with conn, conn.cursor() as cursor:
        cursor.execute("UPDATE staff SET email_address = %s, last_updated = now() WHERE staff_id = %s",
                       (f"staff1.day{day}@terrifictotes.com", STAFF_ID))  # fmt: skip
        cursor.execute(
            "UPDATE department SET location = %s, last_updated = now() "
            "WHERE department_id = (SELECT department_id FROM staff WHERE staff_id = %s)",
            (f"Site {day}", STAFF_ID),
        )
        cursor.execute("UPDATE counterparty SET commercial_contact = %s, last_updated = now() "
                       "WHERE counterparty_id = %s", (f"Contact {day}", COUNTERPARTY_ID))  # fmt: skip
        cursor.execute(
            "UPDATE address SET city = %s, phone = %s, last_updated = now() "
            "WHERE address_id = (SELECT legal_address_id FROM counterparty WHERE counterparty_id = %s)",
            (f"City {day}", f"0100 00000{day}", COUNTERPARTY_ID),
        )
        cursor.execute("UPDATE design SET file_name = %s, last_updated = now() WHERE design_id = %s",
                       (f"design-day{day}.json", DESIGN_ID))  # fmt: skip


def source_row(conn, statement: str, *parameters) -> tuple:
    with conn, conn.cursor() as cursor:
        cursor.execute(statement, parameters)
        return cursor.fetchone()


def dump(sql) -> dict[str, list[tuple]]:
    """Every table of the totesys schema: every column but loaded_at, every row, by primary key."""
    dumped = {}
    for (table,) in sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'totesys' "
                        "AND table_type = 'BASE TABLE' ORDER BY 1"):  # fmt: skip
        columns = [c for (c,) in sql("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                     "'totesys' AND table_name = %s ORDER BY ordinal_position", table)]  # fmt: skip
        key = [c for (c,) in sql(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY (i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY a.attnum",
            f"totesys.{table}",
        )]  # fmt: skip
        kept = [c for c in columns if c != "loaded_at"]
        dumped[table] = sql(f"SELECT {', '.join(kept)} FROM totesys.{table} ORDER BY {', '.join(key)}")
    return dumped


def remodel_state(aws) -> dict[str, list[dict]]:
    """The remodel job's own state: the latest version of every reference row it has seen."""
    s3, state = aws("s3"), {}
    for obj in s3.list_objects_v2(Bucket=PROCESSED, Prefix="state/").get("Contents", []):
        body = s3.get_object(Bucket=PROCESSED, Key=obj["Key"])["Body"].read()
        state[obj["Key"]] = pq.read_table(pa.BufferReader(body)).to_pylist()
    return state


def differences(before: dict, after: dict) -> dict:
    """Per table that differs, a few rows only before and only after."""
    out = {}
    for table in sorted(set(before) | set(after)):
        old, new = set(before.get(table, [])), set(after.get(table, []))
        if before.get(table) != after.get(table):
            out[table] = {"only before": sorted(old - new, key=repr)[:3], "only after": sorted(new - old, key=repr)[:3]}
    return out


def test_reprocessing_the_oldest_then_the_middle_batch_leaves_the_warehouse_as_it_was(
    monkeypatch, aws, dags, fresh, source_conn, sql
):
    monkeypatch.setenv("AIRFLOW_VAR_TOTESYS_COMMIT_LAG_SECONDS", "0")  # extract what was just written
    ingest, warehouse = dags["totesys_ingest"], dags["totesys_warehouse"]
    batches = []
    for day in range(3):
        if day:
            change_the_same_rows(source_conn, day)
            source.business_day(source_conn, sales_orders=4, seed=40 + day)
        dag_run, tis = run_dag(ingest)
        assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
        batch_id = task_return_value(dag_run, "plan_batch")["batch_id"]
        dag_run, tis = run_dag(warehouse, batch_id=batch_id)
        assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
        batches.append(batch_id)

    # The newest version of every followed row, with the version it came from.
    email, staff_stamp, location, department_stamp = source_row(
        source_conn, "SELECT s.email_address, s.last_updated, d.location, d.last_updated FROM staff s "
        "JOIN department d USING (department_id) WHERE staff_id = %s", STAFF_ID)  # fmt: skip
    assert location == "Site 2"
    assert sql("SELECT email_address, location, source_last_updated, department_last_updated FROM totesys.dim_staff "
               "WHERE staff_id = %s", STAFF_ID) == [(email, location, staff_stamp, department_stamp)]  # fmt: skip
    counterparty_stamp, address_stamp = source_row(
        source_conn, "SELECT c.last_updated, a.last_updated FROM counterparty c JOIN address a "
        "ON a.address_id = c.legal_address_id WHERE counterparty_id = %s", COUNTERPARTY_ID)  # fmt: skip
    assert sql("SELECT counterparty_legal_city, source_last_updated, address_last_updated "
               "FROM totesys.dim_counterparty WHERE counterparty_id = %s", COUNTERPARTY_ID) == [
        ("City 2", counterparty_stamp, address_stamp)]  # fmt: skip
    [(design_stamp,)] = [source_row(source_conn, "SELECT last_updated FROM design WHERE design_id = %s", DESIGN_ID)]
    assert sql("SELECT file_name, source_last_updated FROM totesys.dim_design WHERE design_id = %s", DESIGN_ID) == [
        ("design-day2.json", design_stamp)]  # fmt: skip
    [(address_id,)] = [source_row(source_conn, "SELECT legal_address_id FROM counterparty WHERE counterparty_id = %s",
                                  COUNTERPARTY_ID)]  # fmt: skip
    assert sql("SELECT city, source_last_updated FROM totesys.dim_location WHERE location_id = %s", address_id) == [
        ("City 2", address_stamp)]  # fmt: skip
    before, state = dump(sql), remodel_state(aws)
    assert all(before[t] for t in before), {t: len(rows) for t, rows in before.items()}
    assert len(state) == 4

    for batch_id in (batches[0], batches[1]):  # the oldest, then the middle one
        dag_run, tis = run_dag(warehouse, batch_id=batch_id, reprocess=True)
        assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}

    after = dump(sql)
    assert after == before, differences(before, after)
    assert remodel_state(aws) == state  # the remodel's state did not roll back either
    assert sql("SELECT count(DISTINCT batch_id) FROM totesys.fact_sales_order") == [(3,)]
