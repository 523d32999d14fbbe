"""The real totesys data as the source's starting state, through both totesys pipelines.

The real database's eleven tables, exported as parquet, are read from the folder named by the
environment variable ``TOTESYS_REAL_DATA`` (default: ``REAL_DATA`` below, outside the checkout).
The data is not part of the project; without it the test fails, saying where it looked. Loaded
as ``python -m devstack.sample_data.totesys init --from-real`` loads it, it keeps its quirks for
the pipeline to handle: prices written as floats, dates as ``YYYY-MM-DD`` text, timestamps
without a time zone, and transactions whose order id on the other side is null.

``totesys_ingest`` then ``totesys_warehouse`` take everything; a simulated business day and a
second cycle carry the day's changes. The counts per warehouse table are printed.
"""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from devstack.runs import task_return_value
from devstack.sample_data import totesys as source
from tests.conftest import run_dag
from tests.e2e.totesys_star import DIMENSIONS, FACT_DATES, FACTS, FOREIGN_KEYS

pytestmark = pytest.mark.e2e

REAL_DATA = Path(os.environ.get("TOTESYS_REAL_DATA") or Path(__file__).parents[3] / "shared" / "data" / "totesys-real")
INGESTION, PROCESSED = "totesys-ingestion", "totesys-processed"


@pytest.fixture(scope="module")
def clean(no_totesys):
    """No trace of totesys in S3 or the warehouse."""


def source_query(conn, statement: str, *parameters) -> list[tuple]:
    with conn, conn.cursor() as cursor:
        cursor.execute(statement, parameters)
        return cursor.fetchall()


def warehouse_counts(sql) -> dict[str, int]:
    return {t: sql(f"SELECT count(*) FROM totesys.{t}")[0][0] for t in (*DIMENSIONS, *FACTS)}


def cycle(dags, inbox) -> tuple[str, dict, dict]:
    """totesys_ingest, then totesys_warehouse on its batch: (batch id, marker counts, SUCCESS message)."""
    dag_run, tis = run_dag(dags["totesys_ingest"])
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    batch_id = task_return_value(dag_run, "plan_batch")["batch_id"]
    inbox("etl-success-inbox")  # only this batch's message from here
    dag_run, tis = run_dag(dags["totesys_warehouse"], batch_id=batch_id)
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    [success] = inbox("etl-success-inbox")
    assert success["subject"] == f"SUCCESS totesys {batch_id}"
    assert success["status"] == "SUCCESS"
    return batch_id, success["counts"]["landing"], success


def test_the_real_data_goes_through_both_pipelines_and_a_business_day_after_it(
    monkeypatch, capsys, dags, clean, source_conn, sql, inbox
):
    if not REAL_DATA.is_dir():
        pytest.fail(
            f"the real totesys data is not at {REAL_DATA}: set TOTESYS_REAL_DATA to the folder that holds "
            "the eleven <table>.parquet files"
        )
    monkeypatch.setenv("AIRFLOW_VAR_TOTESYS_COMMIT_LAG_SECONDS", "0")  # extract what was just written
    exported = {table: pq.read_metadata(REAL_DATA / f"{table}.parquet").num_rows for table in source.TABLES}

    loaded = source.init_from_real(source_conn, REAL_DATA)

    assert loaded == exported

    # -- the first cycle: everything ------------------------------------------------------------------
    batch_id, landing, success = cycle(dags, inbox)
    assert landing == loaded
    counts = warehouse_counts(sql)
    with capsys.disabled():  # shown whatever pytest's capture
        print(f"\nreal data, batch {batch_id}: source rows {sum(loaded.values())}; warehouse rows per table:")
        for table, rows in counts.items():
            print(f"  {table:<22}{rows:>8}")
    assert all(rows > 0 for rows in counts.values()), counts
    for fact, table in FACTS.items():
        assert counts[fact] == loaded[table], fact
        assert success["counts"]["warehouse"][fact] == loaded[table], fact
    for dimension, table in (("dim_staff", "staff"), ("dim_location", "address"), ("dim_currency", "currency"),
                             ("dim_design", "design"), ("dim_counterparty", "counterparty"),
                             ("dim_payment_type", "payment_type"), ("dim_transaction", "transaction")):  # fmt: skip
        assert counts[dimension] == loaded[table], dimension
    for fact, column, dimension, key in FOREIGN_KEYS:
        orphans = sql(f"SELECT count(*) FROM totesys.{fact} AS f WHERE NOT EXISTS "
                      f"(SELECT 1 FROM totesys.{dimension} AS d WHERE d.{key} = f.{column})")[0][0]  # fmt: skip
        assert orphans == 0, f"{fact}.{column}: {orphans} rows without a {dimension} row"
    referenced = sql(" UNION ".join(f"SELECT {c} FROM totesys.{f}" for f, cs in FACT_DATES.items() for c in cs))
    assert {d for (d,) in referenced} == {d for (d,) in sql("SELECT date_id FROM totesys.dim_date")}

    # The quirks, read as the warehouse's types: the same money, the same days, the null sides kept.
    [(source_money, source_days)] = source_query(
        source_conn, "SELECT sum(unit_price), count(DISTINCT agreed_delivery_date) FROM sales_order")
    assert sql("SELECT sum(unit_price), count(DISTINCT agreed_delivery_date) FROM totesys.fact_sales_order") == [
        (source_money, source_days)]  # fmt: skip
    [(payments,)] = source_query(source_conn, "SELECT sum(payment_amount) FROM payment")
    assert sql("SELECT sum(payment_amount) FROM totesys.fact_payment") == [(payments,)]
    assert isinstance(payments, Decimal)
    [(sales, purchases)] = source_query(
        source_conn, "SELECT count(*) FILTER (WHERE transaction_type = 'SALE'), "
        "count(*) FILTER (WHERE transaction_type = 'PURCHASE') FROM transaction")  # fmt: skip
    assert sql("SELECT count(sales_order_id), count(purchase_order_id) FROM totesys.dim_transaction") == [
        (sales, purchases)]  # fmt: skip
    [(order_id, delivery, created_at)] = source_query(
        source_conn, "SELECT sales_order_id, agreed_delivery_date, created_at FROM sales_order "
        "ORDER BY sales_order_id LIMIT 1")  # fmt: skip
    assert sql("SELECT agreed_delivery_date, created_date, created_time FROM totesys.fact_sales_order "
               "WHERE sales_order_id = %s", order_id) == [
        (date.fromisoformat(delivery), created_at.date(), created_at.time())]  # fmt: skip

    # -- a business day, and the second cycle: the day's changes ---------------------------------------
    day = source.business_day(source_conn, sales_orders=20, seed=8)

    second_batch, expected, success = cycle(dags, inbox)
    after = warehouse_counts(sql)
    with capsys.disabled():
        print(f"after a business day, batch {second_batch}: changed source rows {sum(expected.values())}; "
              "warehouse rows per table:")
        for table, rows in after.items():
            print(f"  {table:<22}{rows:>8}  (+{rows - counts[table]})")
    for table in ("sales_order", "purchase_order", "payment", "transaction"):
        assert expected[table] == day["inserted"][table] + len(day["updated"].get(table, [])), table
    for fact, table in FACTS.items():
        assert after[fact] - counts[fact] == expected[table], fact
        assert success["counts"]["warehouse"][fact] == expected[table], fact
    assert after["dim_transaction"] - counts["dim_transaction"] == day["inserted"]["transaction"]
    for staff_id in day["updated"]["staff"]:
        assert sql("SELECT email_address FROM totesys.dim_staff WHERE staff_id = %s", staff_id) == [
            (f"staff{staff_id}.8@terrifictotes.com",)]  # fmt: skip
    for sales_order_id in day["updated"]["sales_order"]:
        versions = sql("SELECT units_sold FROM totesys.fact_sales_order WHERE sales_order_id = %s "
                       "ORDER BY last_updated_date, last_updated_time", sales_order_id)  # fmt: skip
        assert len(versions) == 2 and versions[1][0] > versions[0][0]
    for payment_id in day["updated"]["payment"]:
        latest = sql("SELECT paid FROM totesys.fact_payment WHERE payment_id = %s "
                     "ORDER BY last_updated_date DESC, last_updated_time DESC LIMIT 1", payment_id)  # fmt: skip
        assert latest == [(True,)]
