"""The totesys pipelines end to end on the local stack.

The source is the ``totesys`` database of the embedded PostgreSQL, reached only through the
password-protected role ``totesys_app`` whose credentials the extract job reads from Secrets
Manager. ``totesys_ingest`` extracts the changes into ``totesys-ingestion`` and writes the
marker; ``totesys_warehouse`` takes the batch to the star schema. The tests run in file order
and share the source, the buckets and the warehouse: each builds on the state the one before
it left, as the days of a real source do.
"""

from __future__ import annotations

import json

import pytest

from devstack.resources import read_inbox
from devstack.runs import task_return_value
from devstack.sample_data import totesys as source
from tests.conftest import AIRFLOW_HOME, run_dag
from tests.e2e.totesys_star import DIMENSIONS, FACTS, FOREIGN_KEYS

pytestmark = pytest.mark.e2e

INGESTION, PROCESSED = "totesys-ingestion", "totesys-processed"


@pytest.fixture(scope="module")
def warehouse(sql):
    return sql


@pytest.fixture(scope="module")
def fresh(no_totesys, source_conn):
    """A source in its starting state, and no trace of totesys in S3 or the warehouse."""
    return source.init(source_conn, sales_orders=40, seed=7)


@pytest.fixture
def inbox(aws):
    def read(topic: str) -> list[dict]:
        return [{"subject": e.get("Subject"), **json.loads(e["Message"])} for e in read_inbox(aws("sqs"), topic)]

    read("etl-success")
    read("etl-failure")
    return read


@pytest.fixture
def ingest(dags, fresh):
    def run(**conf):
        dag_run, tis = run_dag(dags["totesys_ingest"], **conf)
        plan = task_return_value(dag_run, "plan_batch") if tis["plan_batch"].state == "success" else None
        return dag_run, tis, (plan or {}).get("batch_id")

    return run


@pytest.fixture
def load(dags, fresh):
    def run(batch_id: str, **conf):
        return run_dag(dags["totesys_warehouse"], batch_id=batch_id, **conf)

    return run


def counts(warehouse) -> dict[str, int]:
    return {t: warehouse(f"SELECT count(*) FROM totesys.{t}")[0][0] for t in (*DIMENSIONS, *FACTS)}


def snapshot(warehouse) -> dict[str, list]:
    """Every warehouse row, as text, without load bookkeeping columns."""
    return {
        t: warehouse(f"SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM totesys.{t} AS x")[0][0]
        for t in (*DIMENSIONS, *FACTS)
    }


def marker(aws, batch_id: str) -> dict:
    s3 = aws("s3")
    for key in (f"batch-completion/{batch_id}.json", f"batch-archive/loaded/{batch_id}.json"):
        try:
            return json.loads(s3.get_object(Bucket=INGESTION, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            continue
    raise AssertionError(f"no marker for {batch_id}")


def watermarks(aws) -> dict:
    return json.loads(aws("s3").get_object(Bucket=INGESTION, Key="watermarks.json")["Body"].read())["tables"]


# -- the tests, in the order the source lives them ----------------------------------------------------


def test_a_first_load_fills_every_warehouse_table_and_every_fact_key_finds_its_dimension(
    aws, ingest, load, warehouse, inbox, fresh
):
    dag_run, tis, batch_id = ingest()
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    assert marker(aws, batch_id)["expected_counts"] == fresh  # everything, the first time

    dag_run, tis = load(batch_id)

    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    loaded = counts(warehouse)
    assert all(loaded[t] > 0 for t in loaded), loaded
    for fact, table in FACTS.items():
        assert loaded[fact] == fresh[table]
    assert loaded["dim_staff"] == fresh["staff"] and loaded["dim_location"] == fresh["address"]
    for fact, column, dimension, key in FOREIGN_KEYS:
        orphans = warehouse(
            f"SELECT count(*) FROM totesys.{fact} AS f WHERE NOT EXISTS "
            f"(SELECT 1 FROM totesys.{dimension} AS d WHERE d.{key} = f.{column})"
        )[0][0]
        assert orphans == 0, f"{fact}.{column} has {orphans} rows without a {dimension} row"
    [success] = inbox("etl-success")
    assert success["subject"] == f"SUCCESS totesys {batch_id}"
    assert success["counts"]["warehouse"]["fact_sales_order"] == fresh["sales_order"]
    assert success["counts"]["landing"] == fresh
    assert "fact_payment" in success["counts_table"]
    assert inbox("etl-failure") == []
    status = warehouse("SELECT status FROM audit.batches WHERE pipeline = 'totesys' AND batch_id = %s", batch_id)
    assert status == [("SUCCESS",)]
    # A layer of many tables is audited as their rows together, each table's count in the details.
    audited = warehouse("SELECT layer, row_count, details FROM audit.layer_counts WHERE batch_id = %s", batch_id)
    landing = next((row_count, details) for layer, row_count, details in audited if layer == "landing")
    assert landing == (sum(fresh.values()), {"counts": fresh, "files": len(fresh)})


def test_after_a_business_day_changes_are_new_fact_versions_and_dimensions_show_the_latest_values(
    aws, ingest, load, warehouse, source_conn
):
    before = counts(warehouse)
    day = source.business_day(source_conn, sales_orders=6, seed=8)

    dag_run, tis, batch_id = ingest()
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    expected = marker(aws, batch_id)["expected_counts"]
    for table in ("sales_order", "purchase_order", "payment", "transaction"):
        assert expected[table] == day["inserted"][table] + len(day["updated"].get(table, []))
    assert expected["staff"] == 2 and expected["counterparty"] == 2 and expected["currency"] == 0
    dag_run, tis = load(batch_id)
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}

    after = counts(warehouse)
    for fact, table in FACTS.items():  # unchanged rows add nothing
        assert after[fact] - before[fact] == expected[table], fact
    for sales_order_id in day["updated"]["sales_order"]:
        versions = warehouse(
            "SELECT units_sold FROM totesys.fact_sales_order WHERE sales_order_id = %s "
            "ORDER BY last_updated_date, last_updated_time",
            sales_order_id,
        )
        assert len(versions) == 2 and versions[1][0] > versions[0][0]
    for staff_id in day["updated"]["staff"]:
        email = warehouse("SELECT email_address FROM totesys.dim_staff WHERE staff_id = %s", staff_id)[0][0]
        assert email == f"staff{staff_id}.8@terrifictotes.com"
    # Type 1: dimensions are updated in place, never grow with a change.
    for dimension in ("dim_staff", "dim_counterparty", "dim_location", "dim_currency", "dim_design"):
        assert after[dimension] == before[dimension], dimension
    assert after["dim_transaction"] - before["dim_transaction"] == day["inserted"]["transaction"]


def test_a_rerun_of_the_same_batch_changes_nothing(aws, ingest, load, warehouse, inbox):
    batch_id = warehouse(
        "SELECT batch_id FROM audit.batches WHERE pipeline = 'totesys' AND status = 'SUCCESS' "
        "ORDER BY finished_at DESC LIMIT 1"
    )[0][0]
    before = snapshot(warehouse)

    dag_run, _ = load(batch_id)  # already loaded: a no-op that says so
    assert dag_run.state == "success"
    assert any("no-op" in message.get("note", "") for message in inbox("etl-success"))
    dag_run, tis = load(batch_id, reprocess=True)  # loaded again: the same state
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}

    assert snapshot(warehouse) == before


def test_an_ingestion_with_no_changes_gives_a_zero_count_batch_that_succeeds(aws, ingest, load, warehouse, inbox):
    before = snapshot(warehouse)

    dag_run, tis, batch_id = ingest()
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    assert set(marker(aws, batch_id)["expected_counts"].values()) == {0}
    dag_run, tis = load(batch_id)

    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    assert snapshot(warehouse) == before
    [success] = inbox("etl-success")
    assert set(success["counts"]["warehouse"].values()) == {0}


def test_a_failed_table_extract_moves_no_watermark_and_the_next_run_picks_the_changes_up(
    aws, ingest, load, warehouse, source_conn, inbox
):
    day = source.business_day(source_conn, sales_orders=3, seed=9)
    marks = watermarks(aws)
    with source_conn, source_conn.cursor() as cursor:  # the application's release broke a table
        cursor.execute("ALTER TABLE payment RENAME COLUMN paid TO paid_flag")
    try:
        dag_run, tis, batch_id = ingest()
    finally:
        with source_conn, source_conn.cursor() as cursor:
            cursor.execute("ALTER TABLE payment RENAME COLUMN paid_flag TO paid")

    assert dag_run.state == "failed"
    assert tis["extract"].state == "failed"
    assert watermarks(aws) == marks
    assert "Contents" not in aws("s3").list_objects_v2(Bucket=INGESTION, Prefix=f"batch-completion/{batch_id}")
    failure = inbox("etl-failure")[-1]
    assert failure["task_id"] == "extract" and "payment" in failure["error"]

    dag_run, tis, batch_id = ingest()
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    expected = marker(aws, batch_id)["expected_counts"]
    assert expected["payment"] == day["inserted"]["payment"] + len(day["updated"]["payment"])
    assert expected["sales_order"] == day["inserted"]["sales_order"] + len(day["updated"]["sales_order"])
    assert load(batch_id)[0].state == "success"


def test_a_configured_table_name_such_as_sql_is_refused_before_any_sql_runs(aws, ingest, source_conn, inbox):
    marks = watermarks(aws)

    dag_run, tis, _ = ingest(tables=["staff; DROP TABLE staff"])

    assert dag_run.state == "failed"
    assert tis["plan_batch"].state == "failed"
    assert tis["extract"].state != "success"  # never started
    assert tis["plan_batch"].try_number == 1  # refused at once, no retry
    with source_conn, source_conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM staff")
        assert cursor.fetchone()[0] > 0
    assert watermarks(aws) == marks
    [failure] = inbox("etl-failure")
    assert "staff; DROP TABLE staff" in failure["error"] and "refused" in failure["error"]


def test_the_password_appears_in_no_task_log_xcom_rendered_template_or_notification(
    stack, aws, ingest, load, inbox, capfd
):
    password = json.loads(stack["AIRFLOW_CONN_TOTESYS_DB"])["password"]
    assert len(password) >= 8

    dag_run, _, batch_id = ingest()
    assert dag_run.state == "success"
    assert load(batch_id)[0].state == "success"
    messages = inbox("etl-success") + inbox("etl-failure")

    output = capfd.readouterr()
    assert password not in output.out + output.err  # the task logs of dag.test()
    assert password.encode() not in (AIRFLOW_HOME / "airflow.db").read_bytes()  # XComs, rendered templates
    for log_file in AIRFLOW_HOME.rglob("*.log"):
        assert password not in log_file.read_text(errors="replace"), log_file
    assert messages and password not in json.dumps(messages)
    logs = aws("logs")
    for group in ("/aws-glue/jobs/output", "/aws-glue/jobs/error"):
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
            assert not [e for e in page["events"] if password in e["message"]], group
