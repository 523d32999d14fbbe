"""Totesys batches are change data capture: they load in the order they were extracted, and a batch
that fails holds the ones after it until it loads; then they follow by themselves, in order.

The fault is real: a check constraint added to the warehouse refuses the failing batch's new fact
rows, so its load fails as a broken deploy or a bad migration would make it fail; dropping the
constraint is the fix.
"""

from __future__ import annotations

import json

import pytest

from devstack.resources import read_inbox
from devstack.runs import task_return_value
from devstack.sample_data import totesys as source
from tests.conftest import run_dag

pytestmark = pytest.mark.e2e

INGESTION, PROCESSED = "totesys-ingestion", "totesys-processed"
REFUSE = "ALTER TABLE totesys.fact_sales_order ADD CONSTRAINT refuse_new_rows CHECK (sales_order_id < 0) NOT VALID"


@pytest.fixture(scope="module")
def fresh(no_totesys, source_conn):
    """A source in its starting state, and no trace of totesys in S3 or the warehouse."""
    return source.init(source_conn, sales_orders=30, seed=17)


def failure_messages(aws) -> list[dict]:
    return [{"subject": e.get("Subject"), **json.loads(e["Message"])} for e in read_inbox(aws("sqs"), "etl-failure")]


def key_exists(aws, key: str) -> bool:
    return "Contents" in aws("s3").list_objects_v2(Bucket=INGESTION, Prefix=key)


def test_a_failed_batch_holds_the_ones_after_it_until_it_loads_then_they_follow_in_order(
    aws, dags, fresh, source_conn, sql
):
    ingest, warehouse = dags["totesys_ingest"], dags["totesys_warehouse"]

    def extract() -> str:
        dag_run, _ = run_dag(ingest)
        assert dag_run.state == "success"
        return task_return_value(dag_run, "plan_batch")["batch_id"]

    first = extract()
    assert run_dag(warehouse)[0].state == "success"
    source.business_day(source_conn, sales_orders=4, seed=18)
    failing = extract()
    source.business_day(source_conn, sales_orders=4, seed=19)
    held = extract()
    assert first < failing < held  # batch ids sort in extraction order
    failure_messages(aws)

    sql(REFUSE)
    try:
        dag_run, tis = run_dag(warehouse)
        assert dag_run.state == "failed" and tis["load_warehouse"].state == "failed"
        assert [m["subject"] for m in failure_messages(aws)] == [f"FAILURE totesys {failing}"]

        # The batch after it arrives: it is held, not loaded over the gap, and the message says why.
        dag_run, tis = run_dag(warehouse)
        assert dag_run.state == "failed" and tis["claim_batch"].state == "failed"
        [message] = failure_messages(aws)
        assert message["subject"] == f"FAILURE totesys {held}"
        assert "pipeline totesys is held" in message["error"]
        assert f"waiting for batch {failing}, which failed" in message["error"]
        assert key_exists(aws, f"batch-archive/held/{held}.json")
        assert not key_exists(aws, f"batch-completion/{held}.json")
        assert sql("SELECT count(*) FROM audit.batches WHERE pipeline = 'totesys' AND batch_id = %s", held) == [(0,)]
    finally:
        sql("ALTER TABLE totesys.fact_sales_order DROP CONSTRAINT IF EXISTS refuse_new_rows")

    # Fixed, the failed batch is run again from the UI; the held one then follows by itself.
    dag_run, tis = run_dag(warehouse, batch_id=failing)
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    assert key_exists(aws, f"batch-completion/{held}.json")
    dag_run, tis = run_dag(warehouse)
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}

    loaded = sql(
        "SELECT batch_id FROM audit.batches WHERE pipeline = 'totesys' AND status = 'SUCCESS' ORDER BY finished_at"
    )
    assert [batch_id for (batch_id,) in loaded] == [first, failing, held]
    assert key_exists(aws, f"batch-archive/loaded/{held}.json")
    assert not key_exists(aws, f"batch-archive/held/{held}.json")
