"""A batch's lifecycle under faults: races, dead runs, a notifier that cannot publish, a marker
written again mid-run, counts moved into TaskGroups, ties, and a landing history full of other
batches whose data must never be read.

The claims run against the stack's real PostgreSQL, the pipelines through ``dag.test()`` with
their real Glue jobs, and every fault is injected into the real thing (a topic that does not
exist, a ledger left by runs that died, corrupted data pages), never mocked.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from datetime import UTC, timedelta

import pytest

from devstack.sample_data.orders import write_marker, write_orders_batch
from etl_toolkit import environment, ledger
from etl_toolkit.contract import ClaimRefused, HolderUnknown
from etl_toolkit.markers import version_of
from tests.conftest import run_dag
from tests.faults import corrupt_data_pages

pytestmark = pytest.mark.e2e

LANDING = "fo-to-dw-orders-landing-area"


def key_exists(aws, key: str, bucket: str = LANDING) -> bool:
    return "Contents" in aws("s3").list_objects_v2(Bucket=bucket, Prefix=key)


def audit_row(warehouse, batch_id: str, pipeline: str = "orders") -> dict | None:
    rows = warehouse(
        "SELECT status, dag_run_id, attempts, rerun_requested, error FROM audit.batches "
        "WHERE pipeline = %s AND batch_id = %s",
        pipeline,
        batch_id,
    )
    names = ["status", "holder", "attempts", "rerun_requested", "error"]
    return dict(zip(names, rows[0], strict=True)) if rows else None


def claim_as(run_id: str, batch_id: str, *, alive=lambda holder: True, pipeline: str = "lifecycle-test"):
    return ledger.claim(
        pipeline,
        batch_id,
        run_id=run_id,
        marker_key=f"batch-completion/{batch_id}.json",
        marker_version="etag@2026-01-01T00:00:00+00:00",
        expected_counts={},
        requested=False,
        reprocess=False,
        holder_alive=alive,
        max_attempts=3,
    )


# -- claiming ------------------------------------------------------------------------------------


def test_two_concurrent_first_claims_of_one_batch_leave_exactly_one_holder(stack, warehouse):
    """Both claims start together on a batch with no audit row yet, twenty times over: one wins,
    the other is told that a live run holds the batch."""
    for round_number in range(20):
        batch_id = f"race-{uuid.uuid4().hex[:8]}"
        start = threading.Barrier(2)
        outcomes: dict[str, object] = {}

        def contend(run_id: str, batch_id=batch_id, start=start, outcomes=outcomes) -> None:
            start.wait()
            try:
                outcomes[run_id] = claim_as(run_id, batch_id).action
            except ClaimRefused as refused:
                outcomes[run_id] = refused
            except Exception as error:  # anything else is a failure of the claim, shown in the assertion
                outcomes[run_id] = f"{type(error).__name__}: {error}"

        threads = [threading.Thread(target=contend, args=(f"run-{side}",)) for side in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        winners = [run for run, outcome in outcomes.items() if outcome == "claim"]
        losers = [outcome for outcome in outcomes.values() if isinstance(outcome, ClaimRefused)]
        assert len(winners) == 1 and len(losers) == 1, (round_number, outcomes)
        assert "holds the batch and is still running" in str(losers[0])
        assert audit_row(warehouse, batch_id, "lifecycle-test")["holder"] == winners[0]


def test_a_holder_whose_liveness_cannot_be_told_keeps_its_batch(stack, warehouse):
    batch_id = f"unknown-{uuid.uuid4().hex[:8]}"
    assert claim_as("run-holder", batch_id).action == "claim"

    def cannot_tell(holder: str) -> bool:
        raise HolderUnknown(f"cannot tell whether run {holder} still runs: the API server did not answer")

    with pytest.raises(HolderUnknown, match="run-holder"):
        claim_as("run-other", batch_id, alive=cannot_tell)
    assert audit_row(warehouse, batch_id, "lifecycle-test")["holder"] == "run-holder"


def test_the_liveness_check_outside_a_task_raises_instead_of_answering_dead():
    from etl_toolkit.tasks.batches import _holder_alive

    with pytest.raises(HolderUnknown, match="cannot tell whether run manual__1 of orders_pipeline still runs"):
        _holder_alive("orders_pipeline")("manual__1")


# -- failing ---------------------------------------------------------------------------------------


def test_a_failure_notification_that_cannot_be_published_still_sets_the_batch_aside(
    aws, orders_dag, inbox, warehouse, batch_start, monkeypatch, caplog
):
    """The failure topic does not exist: the batch is set aside first all the same (marker in the
    failed archive, ledger FAILED), the publish error is logged loudly, and the next batch runs."""
    marker = write_orders_batch(aws("s3"), LANDING, "life-unpublished", orders=40, seed=41,
                                started_at=batch_start, write_marker=False)  # fmt: skip
    wrong = dict(marker["expected_counts"], orders=marker["expected_counts"]["orders"] + 1)
    write_marker(aws("s3"), LANDING, "life-unpublished", {**marker, "expected_counts": wrong})
    unpublishable = {**environment.LOCAL, "topics": {**environment.LOCAL["topics"], "failure": "no-such-topic"}}
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ENVIRONMENT", json.dumps(unpublishable))

    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "failed" and tis["count_landing"].state == "failed"
    assert "COULD NOT PUBLISH the failure notification 'FAILURE orders life-unpublished'" in caplog.text
    assert inbox("etl-failure-inbox") == []
    assert key_exists(aws, "batch-archive/failed/life-unpublished.json")
    assert not key_exists(aws, "batch-completion/life-unpublished.json")
    assert audit_row(warehouse, "life-unpublished")["status"] == "FAILED"

    monkeypatch.delenv("AIRFLOW_VAR_ETL_ENVIRONMENT")
    write_orders_batch(aws("s3"), LANDING, "life-after-unpublished", orders=30, seed=42,
                       started_at=batch_start + timedelta(hours=3))  # fmt: skip
    assert run_dag(orders_dag)[0].state == "success"
    assert audit_row(warehouse, "life-after-unpublished")["status"] == "SUCCESS"

    # With the topic put right, the next failure is published again (the notifier resolves its
    # topic for every failure, not once for the life of the DAG object).
    write_marker(aws("s3"), LANDING, "life-topic-fixed", "{not json")
    assert run_dag(orders_dag)[0].state == "failed"
    assert [m["subject"] for m in inbox("etl-failure-inbox")] == ["FAILURE orders life-topic-fixed"]


def test_tasks_of_a_run_that_fail_side_by_side_publish_one_failure_and_a_cleared_run_announces_again(
    aws, stack, airflow_db, inbox, warehouse, batch_start
):
    """Two tasks of one run fail at the same moment (as a layer's audits and the next job can): one
    sets the batch aside and publishes, the other publishes nothing. Once the run is cleared (its
    clear number goes up), its next failure is announced again."""
    from types import SimpleNamespace

    from etl_toolkit.tasks.notify import BatchFailureNotifier

    batch_id, run_id = "life-side-by-side", f"manual__{uuid.uuid4()}"
    marker = write_orders_batch(aws("s3"), LANDING, batch_id, orders=5, seed=45, started_at=batch_start)
    head = aws("s3").head_object(Bucket=LANDING, Key=f"batch-completion/{batch_id}.json")
    ledger.claim("orders", batch_id, run_id=run_id, marker_key=f"batch-completion/{batch_id}.json",
                 marker_version=version_of(head),
                 expected_counts=marker["expected_counts"], requested=False, reprocess=False,
                 holder_alive=lambda holder: True, max_attempts=3)  # fmt: skip

    def fail(task_id: str, clear_number: int, barrier: threading.Barrier | None = None) -> None:
        context = {
            "ti": SimpleNamespace(dag_id="orders_pipeline", task_id=task_id, try_number=1, log_url=""),
            "run_id": run_id,
            "dag_run": SimpleNamespace(clear_number=clear_number),
            "exception": RuntimeError(f"{task_id} broke"),
            "params": {},
        }
        notifier = BatchFailureNotifier(pipeline="orders", landing_bucket=LANDING)
        if barrier:
            barrier.wait()
        notifier.notify(context)

    barrier = threading.Barrier(2)
    side_by_side = [threading.Thread(target=fail, args=(task, 0, barrier)) for task in ("check_schema", "next_job")]
    for thread in side_by_side:
        thread.start()
    for thread in side_by_side:
        thread.join()

    [failure] = inbox("etl-failure-inbox")
    assert failure["task_id"] in ("check_schema", "next_job") and failure["batch_id"] == batch_id
    assert audit_row(warehouse, batch_id)["status"] == "FAILED"
    assert key_exists(aws, f"batch-archive/failed/{batch_id}.json")

    fail("check_schema", 0)  # the same run, not cleared: its retries running out later
    assert inbox("etl-failure-inbox") == []
    fail("check_schema", 1)  # cleared in the UI, and failed again
    assert [m["error"] for m in inbox("etl-failure-inbox")] == ["RuntimeError: check_schema broke"]


@pytest.mark.parametrize(
    ("variable", "reason", "topic"),
    [
        ("{not json", "is not valid JSON", "etl-failure"),
        # The failure topic can still be read from the broken Variable: the failure goes there.
        (json.dumps({**environment.LOCAL, "buckets": {}}), "buckets.orders_landing is missing", "etl-failure"),
    ],
    ids=["not-json", "missing-key"],
)
def test_a_broken_environment_variable_fails_the_run_at_once_and_is_announced(
    aws, orders_dag, inbox, warehouse, batch_start, monkeypatch, variable, reason, topic
):
    """The environment's Variable is broken: the first task fails at once (no retries) naming the
    Variable and the key, the failure notification still goes out, and the batch stays pending for
    the run after the Variable is put right."""
    write_orders_batch(aws("s3"), LANDING, "life-bad-config", orders=10, seed=45, started_at=batch_start)
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ENVIRONMENT", variable)

    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "failed"
    first = tis["wait_for_marker"]
    assert first.state == "failed" and first.try_number == 1
    [message] = inbox(f"{topic}-inbox")
    assert message["subject"] == "FAILURE orders -"  # no batch was claimed
    assert f"Airflow Variable etl_environment{':' if 'missing' in reason else ''} " in message["error"]
    assert reason in message["error"]
    assert key_exists(aws, "batch-completion/life-bad-config.json")  # never claimed: still pending

    monkeypatch.delenv("AIRFLOW_VAR_ETL_ENVIRONMENT")
    assert run_dag(orders_dag)[0].state == "success"
    assert audit_row(warehouse, "life-bad-config")["status"] == "SUCCESS"


def test_a_batch_whose_runs_keep_dying_is_given_up_after_three_attempts_and_the_next_one_loads(
    aws, orders_dag, inbox, warehouse, batch_start
):
    """Three runs claimed the batch and died without closing it (a worker lost each time): the
    ledger says RUNNING, attempt 3, and the marker is still pending. The next claim gives up on it
    (set aside, announced) and goes on to the batch behind it in the same run."""
    write_orders_batch(aws("s3"), LANDING, "life-poison", orders=20, seed=43, started_at=batch_start)
    time.sleep(1.1)  # S3 LastModified has one-second resolution: the poison batch is the oldest
    write_orders_batch(aws("s3"), LANDING, "life-behind-poison", orders=20, seed=44,
                       started_at=batch_start + timedelta(hours=3))  # fmt: skip
    body = aws("s3").get_object(Bucket=LANDING, Key="batch-completion/life-poison.json")
    version = f"{body['ETag'].strip(chr(34))}@{body['LastModified'].isoformat()}"
    for attempt in (1, 2, 3):
        decision = ledger.claim(
            "orders", "life-poison", run_id=f"manual__died-{attempt}", marker_key="batch-completion/life-poison.json",
            marker_version=version, expected_counts={}, requested=False, reprocess=False,
            holder_alive=lambda holder: False, max_attempts=3,
        )  # fmt: skip
        assert (decision.action, decision.attempts) == ("claim", attempt)

    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    poison = audit_row(warehouse, "life-poison")
    assert poison["status"] == "FAILED" and "gave up after 3 attempts" in poison["error"]
    assert key_exists(aws, "batch-archive/failed/life-poison.json")
    assert not key_exists(aws, "batch-completion/life-poison.json")
    assert audit_row(warehouse, "life-behind-poison")["status"] == "SUCCESS"
    [failure] = inbox("etl-failure-inbox")
    assert failure["subject"] == "FAILURE orders life-poison" and "gave up after 3 attempts" in failure["error"]
    assert [m["subject"] for m in inbox("etl-success-inbox")] == ["SUCCESS orders life-behind-poison"]


def test_a_marker_written_again_while_its_batch_runs_is_kept_and_the_batch_runs_again(
    aws, orders_dag, warehouse, batch_start
):
    import psutil

    marker = write_orders_batch(aws("s3"), LANDING, "life-rewritten", orders=300, seed=45, started_at=batch_start)
    rewritten = []

    def rewrite_while_the_glue_job_runs():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not rewritten:
            for process in psutil.process_iter(["cmdline"]):
                cmdline = " ".join(process.info["cmdline"] or [])
                if "orders_landing_to_staging.py" in cmdline and "life-rewritten" in cmdline:
                    write_marker(aws("s3"), LANDING, "life-rewritten", marker)  # upstream completes it again
                    rewritten.append(time.monotonic())
                    return
            time.sleep(0.05)

    time.sleep(1.1)  # a rewrite in the marker's own second would carry the same version
    writer = threading.Thread(target=rewrite_while_the_glue_job_runs, daemon=True)
    writer.start()
    dag_run, tis = run_dag(orders_dag)
    writer.join(timeout=5)

    assert rewritten, "the Glue job was never caught running"
    assert dag_run.state == "success"
    success = tis["notify_success"].xcom_pull(task_ids="notify_success")
    assert success["marker"]["kept"] == "batch-completion/life-rewritten.json"
    assert success["marker_kept"].startswith("batch-completion/life-rewritten.json kept pending")
    assert key_exists(aws, "batch-completion/life-rewritten.json")
    assert audit_row(warehouse, "life-rewritten")["rerun_requested"] is True

    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "success" and tis["load_final_table"].state == "success"  # loaded again, no no-op
    assert not key_exists(aws, "batch-completion/life-rewritten.json")
    assert key_exists(aws, "batch-archive/loaded/life-rewritten.json")
    assert audit_row(warehouse, "life-rewritten")["rerun_requested"] is False


# -- counting ----------------------------------------------------------------------------------------


def put_rows(aws, bucket: str, key: str, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"n": list(range(rows))}), buffer)
    aws("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


@pytest.fixture
def grouped_dag(dags, airflow_db, stack, aws):
    from botocore.exceptions import ClientError

    try:
        aws("s3").create_bucket(
            Bucket="toolkit-grouped-landing",
            CreateBucketConfiguration={"LocationConstraint": stack["AWS_DEFAULT_REGION"]},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return dags["toolkit_grouped_counts"]


def test_counts_renamed_and_inside_task_groups_are_still_reconciled(aws, grouped_dag, inbox):
    bucket = "toolkit-grouped-landing"
    put_rows(aws, bucket, "data/grouped-good/part-0.parquet", 5)
    put_rows(aws, bucket, "copy/grouped-good/part-0.parquet", 5)
    write_marker(aws("s3"), bucket, "grouped-good", {"expected_counts": {"rows": 5}})

    dag_run, tis = run_dag(grouped_dag)

    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    summary = tis["reconcile"].xcom_pull(task_ids="reconcile")
    assert summary["counts"] == {"landing": {"rows": 5}, "copy": {"rows": 5}}
    [success] = inbox("etl-success-inbox")
    assert success["counts"] == {"landing": {"rows": 5}, "copy": {"rows": 5}}

    put_rows(aws, bucket, "data/grouped-short/part-0.parquet", 5)
    put_rows(aws, bucket, "copy/grouped-short/part-0.parquet", 4)
    write_marker(aws("s3"), bucket, "grouped-short", {"expected_counts": {"rows": 5}})

    dag_run, tis = run_dag(grouped_dag)

    assert dag_run.state == "failed" and tis["copy_checks.rows_copied"].state == "failed"
    [failure] = inbox("etl-failure-inbox")
    assert "does not reconcile at layer copy: copy has 4 rows, landing has 5" in failure["error"]


def test_order_copies_with_equal_processing_ts_reconcile(aws, orders_dag, warehouse, batch_start):
    """Re-delivered copies that tie on processing_ts, in another object: the audit job and the
    transform break the tie with the same rule, so the counts agree."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = write_orders_batch(aws("s3"), LANDING, "life-ties", orders=50, seed=46, started_at=batch_start,
                                duplicate_rate=0, write_marker=False)  # fmt: skip
    prefix = f"orders/year={batch_start:%Y}/month={batch_start:%m}/day={batch_start:%d}/hour={batch_start:%H}/"
    first = aws("s3").list_objects_v2(Bucket=LANDING, Prefix=prefix)["Contents"][0]["Key"]
    table = pq.read_table(io.BytesIO(aws("s3").get_object(Bucket=LANDING, Key=first)["Body"].read()))
    # The same orders, same processing_ts, one product fewer each, in an object whose key sorts last:
    # the tie goes to it, so its lines are the ones loaded.
    rows = [{**row, "products": (row["products"] or [])[:-1]} for row in table.to_pylist()]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), buffer)
    aws("s3").put_object(Bucket=LANDING, Key=f"{prefix}zz-tied-copies.parquet", Body=buffer.getvalue())
    write_marker(aws("s3"), LANDING, "life-ties", {"started_at": marker["started_at"],
                                                   "completed_at": marker["completed_at"]})  # fmt: skip

    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    landing = tis["count_landing"].xcom_pull(task_ids="count_landing")
    assert landing["details"]["duplicates_dropped"] == len(rows)
    dropped_lines = sum(1 for row in table.to_pylist() if row["products"])
    assert landing["counts"]["order_lines"] == marker["expected_counts"]["order_lines"] - dropped_lines
    final = warehouse("SELECT count(*) FROM orders.fact_order_lines WHERE run_id = %s", "life-ties")[0][0]
    assert final == landing["counts"]["order_lines"]
    loaded = dict(warehouse("SELECT order_id, count(*) FROM orders.fact_order_lines WHERE run_id = %s GROUP BY 1",
                            "life-ties"))  # fmt: skip
    assert all(loaded.get(row["order_id"], 0) == len(row["products"]) for row in rows)


def test_a_marker_without_timestamps_reads_the_data_of_its_own_files_only(aws, orders_dag, warehouse):
    """Fifty other batches sit under the landing prefix with corrupted data pages but intact
    footers. A marker with no window makes every task look at the whole prefix: listings and
    footers only, or the run would fail on the first corrupted page."""
    from datetime import datetime

    import pyarrow.parquet as pq

    start = datetime(2019, 3, 1, 8, tzinfo=UTC)
    for number in range(50):
        other = f"life-history-{number:02d}"
        write_orders_batch(aws("s3"), LANDING, other, orders=20, seed=100 + number,
                           started_at=start + timedelta(days=number), write_marker=False)  # fmt: skip
        day = start + timedelta(days=number)
        prefix = f"orders/year={day:%Y}/month={day:%m}/day={day:%d}/"
        for obj in aws("s3").list_objects_v2(Bucket=LANDING, Prefix=prefix)["Contents"]:
            data = aws("s3").get_object(Bucket=LANDING, Key=obj["Key"])["Body"].read()
            damaged = corrupt_data_pages(data)
            with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises, the data is unreadable
                pq.read_table(io.BytesIO(damaged))
            aws("s3").put_object(Bucket=LANDING, Key=obj["Key"], Body=damaged)
    marker = write_orders_batch(aws("s3"), LANDING, "life-no-window", orders=60, seed=47,
                                started_at=start + timedelta(days=60), write_marker=False)  # fmt: skip
    write_marker(aws("s3"), LANDING, "life-no-window", {"expected_counts": marker["expected_counts"]})

    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    landing = tis["count_landing"].xcom_pull(task_ids="count_landing")
    assert landing["counts"] == marker["expected_counts"]
    assert landing["details"]["objects_listed"] > 50
    final = warehouse("SELECT count(*) FROM orders.fact_order_lines WHERE run_id = %s", "life-no-window")[0][0]
    assert final == marker["expected_counts"]["order_lines"]
    report = json.loads(aws("s3").get_object(
        Bucket="fo-to-dw-orders-staging-area", Key="audit/landing/run_id=life-no-window/counts.json")["Body"].read())
    own_day = start + timedelta(days=60)
    assert report["objects"] and all(f"month={own_day:%m}/day={own_day:%d}/" in key for key in report["objects"])


def test_a_broken_rewrite_of_a_loaded_batchs_marker_fails_but_leaves_the_batch_loaded(
    aws, orders_dag, inbox, warehouse, batch_start
):
    write_orders_batch(aws("s3"), LANDING, "life-loaded-then-broken", orders=20, seed=48, started_at=batch_start)
    assert run_dag(orders_dag)[0].state == "success"

    write_marker(aws("s3"), LANDING, "life-loaded-then-broken", "{not json")
    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "failed" and tis["claim_batch"].state == "failed"
    assert [m["subject"] for m in inbox("etl-failure-inbox")] == ["FAILURE orders life-loaded-then-broken"]
    assert audit_row(warehouse, "life-loaded-then-broken")["status"] == "SUCCESS"
    # The broken rewrite is rejected beside its reason; the loaded marker stays where a reprocess finds it.
    assert key_exists(aws, "batch-archive/rejected/life-loaded-then-broken.json")
    assert key_exists(aws, "batch-archive/loaded/life-loaded-then-broken.json")
    assert not key_exists(aws, "batch-archive/failed/life-loaded-then-broken.json")
