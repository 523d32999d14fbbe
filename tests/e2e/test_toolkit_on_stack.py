"""The toolkit's AWS pieces through ``dag.test()`` on the local stack: Glue jobs that really run,
crawlers that really catalog, failure notifications that are really published and read back."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from devstack.resources import read_inbox
from tests.conftest import run_dag

pytestmark = pytest.mark.e2e

SCRIPTS = Path(__file__).parent / "glue_scripts"
BUCKET = "fo-to-dw-orders-staging-area"


def drain(aws, topic: str) -> list[dict]:
    """Every message waiting in a topic's inbox queue (the SNS envelopes)."""
    return read_inbox(aws("sqs"), topic)


def test_a_glue_job_runs_its_script_and_writes_parquet_to_s3(stack, aws, airflow_db, dags, capfd):
    key = f"toolkit-test/{uuid.uuid4().hex}/part-0.parquet"
    _, tis = run_dag(dags["toolkit_glue_writes_parquet"], bucket=BUCKET, key=key, rows=42)
    assert tis["write_parquet"].state == "success"

    import io

    import pyarrow.parquet as pq

    body = aws("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert pq.read_table(io.BytesIO(body)).num_rows == 42
    # verbose=True: the line the script printed, read back from CloudWatch, is in the task log.
    assert f"wrote 42 rows to s3://{BUCKET}/{key}" in capfd.readouterr().out


def test_a_failing_script_fails_its_task_with_the_script_error_and_publishes_the_failure(
    stack, aws, airflow_db, dags, capfd
):
    drain(aws, "etl-failure")
    _, tis = run_dag(dags["toolkit_glue_fails"], batch_id="b-42")
    assert tis["fail"].state == "failed"
    log = capfd.readouterr().out
    assert "RuntimeError: cannot process batch b-42: source table is empty" in log

    [envelope] = drain(aws, "etl-failure")
    assert envelope["Subject"] == "FAILURE toolkit_test b-42"
    body = json.loads(envelope["Message"])
    assert body["status"] == "FAILURE" and body["task_id"] == "fail" and body["dag_id"] == "toolkit_glue_fails"
    assert "cannot process batch b-42: source table is empty" in body["error"]
    assert body["try_number"] == 1 and body["log_url"].startswith("http")


def test_a_crawler_catalogs_hive_partitions_that_the_partition_sensor_then_finds(stack, aws, airflow_db, dags):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    prefix = f"crawl-{uuid.uuid4().hex[:8]}"
    for hour in ("09", "10"):
        buffer = io.BytesIO()
        pq.write_table(pa.table({"order_id": ["a", "b"], "quantity": pa.array([1, 2], pa.int32())}), buffer)
        aws("s3").put_object(
            Bucket=BUCKET, Key=f"{prefix}/events/year=2026/month=11/day=25/hour={hour}/part-0.parquet",
            Body=buffer.getvalue(),
        )  # fmt: skip

    _, tis = run_dag(
        dags["toolkit_crawl_then_sense_partition"],
        path=f"s3://{BUCKET}/{prefix}/events/",
        crawler=f"{prefix}-crawler",
        hour="10",
    )
    assert tis["crawl"].state == "success" and tis["wait_for_partition"].state == "success"
    table = aws("glue").get_table(DatabaseName="toolkit_test", Name="events")["Table"]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["year", "month", "day", "hour"]
    assert {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]} == {
        "order_id": "string",
        "quantity": "int",
    }


def test_a_quiet_day_ends_the_marker_wait_skipped_not_failed(stack, aws, airflow_db, dags, capfd):
    bucket = f"toolkit-markers-{uuid.uuid4().hex[:8]}"
    s3 = aws("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name})
    drain(aws, "etl-failure")

    _, tis = run_dag(dags["toolkit_wait_for_marker"], bucket=bucket)

    assert tis["wait_for_marker"].state == "skipped" and tis["after_the_marker"].state == "skipped"
    assert f"no marker under s3://{bucket}/batch-completion/ within 3 s" in capfd.readouterr().out
    assert drain(aws, "etl-failure") == []


def test_a_marker_wait_that_cannot_read_its_bucket_fails_and_publishes_the_failure(
    stack, aws, airflow_db, dags
):
    drain(aws, "etl-failure")

    _, tis = run_dag(dags["toolkit_wait_for_marker"], bucket="toolkit-no-such-bucket")

    assert tis["wait_for_marker"].state == "failed"  # not skipped: this is no quiet day
    [envelope] = drain(aws, "etl-failure")
    body = json.loads(envelope["Message"])
    assert body["task_id"] == "wait_for_marker" and "NoSuchBucket" in body["error"]


def test_the_deferred_marker_wait_reports_an_unreadable_bucket_as_an_error_event(stack):
    """The triggerer's side of the same failure: an error event, which the sensor turns into a
    failed task (the sensor does not soft-fail, so such an error is never taken for a quiet day)."""
    import asyncio

    from etl_toolkit.tasks.batches import MarkerOrQueuedRunTrigger

    trigger = MarkerOrQueuedRunTrigger(
        dag_id="toolkit_wait_for_marker",
        bucket_name="toolkit-no-such-bucket",
        bucket_key="batch-completion/*",
        wildcard_match=True,
        aws_conn_id="aws_default",
        poke_interval=1,
    )

    async def first_event():
        return await anext(trigger.run())

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    assert event.payload["status"] == "error" and "NoSuchBucket" in event.payload["message"]
