"""The event start mode under ``dag.test()``: what a run does once the marker's event started it.

The DAG is parsed as a deployment with ``[etl] orders_start_mode = event`` parses it: scheduled on
the markers' Asset (or the sweep's time), no sensor, and a teardown that asks for the next run
while markers stay pending. The events themselves (S3 -> EventBridge -> SQS -> the triggerer)
are proven on the real runtime (``test_event_runtime.py``) and in ``tests/unit``.
"""

from __future__ import annotations

import pytest

from devstack.sample_data.orders import write_orders_batch
from tests.conftest import run_dag

pytestmark = pytest.mark.e2e

LANDING = "fo-to-dw-orders-landing-area"
ASSET = "orders_batch_markers"


@pytest.fixture(scope="module")
def events_dag(airflow_db, stack):
    """``orders_pipeline`` as the event start mode builds it."""
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__ETL__ORDERS_START_MODE", "event")
        bag = DagBag(dag_folder=str(REPO / "dags" / "orders_pipeline.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["orders_pipeline"]


def next_run_requests(run_id: str) -> int:
    """Asset events on the markers' Asset that a run's teardown sent (each is one more run)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        extras = session.scalars(query.where(AssetModel.name == ASSET)).all()
    return sum(1 for extra in extras if (extra or {}).get("requested_by") == run_id)


def test_the_event_mode_schedules_on_the_markers_asset_or_the_sweep_and_has_no_sensor(events_dag):
    from airflow.sdk import AssetOrTimeSchedule

    assert isinstance(events_dag.timetable, AssetOrTimeSchedule)
    asset = events_dag.timetable.asset_condition
    assert asset.name == ASSET and asset.uri == f"s3://{LANDING}/batch-completion"
    [watcher] = asset.watchers
    assert type(watcher.trigger).__name__ == "MarkerEventTrigger" and watcher.trigger.queue == "orders_markers"
    assert "wait_for_marker" not in events_dag.task_ids
    teardown = events_dag.get_task("request_next_run")
    assert teardown.is_teardown and not teardown.downstream_list
    # after every other task (each one directly: a failure ends the main line early), the one leaf,
    # and a teardown (it never changes the run's state)
    assert teardown.upstream_task_ids == set(events_dag.task_ids) - {"request_next_run"}
    assert {task.task_id for task in events_dag.tasks if not task.downstream_list} == {"request_next_run"}


def test_runs_take_pending_batches_oldest_first_and_ask_for_one_more_while_any_is_pending(
    aws, events_dag, warehouse, batch_start
):
    from datetime import timedelta

    s3 = aws("s3")
    first = write_orders_batch(s3, LANDING, "ev-first", orders=60, seed=41, started_at=batch_start)
    write_orders_batch(s3, LANDING, "ev-second", orders=60, seed=42, started_at=batch_start + timedelta(hours=2))

    dag_run, tis = run_dag(events_dag)
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    assert tis["claim_batch"].xcom_pull(task_ids="claim_batch", key="claim")["batch_id"] == "ev-first"
    loaded = warehouse("SELECT count(*) FROM orders.fact_order_lines WHERE run_id = %s", "ev-first")[0][0]
    assert loaded == first["expected_counts"]["order_lines"]
    assert tis["request_next_run"].state == "success"
    assert next_run_requests(dag_run.run_id) == 1  # ev-second is still pending

    dag_run, tis = run_dag(events_dag)
    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    assert tis["claim_batch"].xcom_pull(task_ids="claim_batch", key="claim")["batch_id"] == "ev-second"
    assert next_run_requests(dag_run.run_id) == 0  # nothing left: no more runs

    dag_run, tis = run_dag(events_dag)  # what the sweep does when nothing is pending
    assert tis["claim_batch"].state == "skipped"
    assert tis["request_next_run"].state == "success" and next_run_requests(dag_run.run_id) == 0
