"""The totesys extract's batch windows on the local stack, under the faults they exist for.

- The Glue run succeeds and the Airflow task fails after it (a lost worker, a log-polling error, a
  Clear): the retry starts the same job with the same batch id and arguments. The batch is
  already complete, so nothing of it changes, and the rows changed meanwhile go to the next batch.
- A row committed late: the application stamps ``last_updated`` when its transaction starts, and
  commits after the extract's snapshot. The window trails the source's clock by the commit lag,
  so the row is extracted by a later batch, once.

The source is the ``totesys`` database, changed as the application role ``totesys_app``. Each
test follows rows of its own (staff 3; designs 11 and 12), so the tests do not depend on each
other's batches.
"""

from __future__ import annotations

import io
import json
import time
from datetime import datetime

import pyarrow.parquet as pq
import pytest

from devstack.runs import task_return_value
from devstack.sample_data import totesys as source
from tests.conftest import run_dag

pytestmark = pytest.mark.e2e

INGESTION = "totesys-ingestion"
JOB = "totesys_extract"
LATE_DESIGN, LATER_DESIGN = 11, 12
# Longer than the time from a stamp to the extract's snapshot through dag.test() (plan_batch, then
# the Glue run), so the late row is still inside the lag when the batch's window is fixed.
LAG_SECONDS = 15


@pytest.fixture(scope="module")
def fresh(no_totesys, source_conn):
    """A source in its starting state, and no trace of totesys in S3 or the warehouse."""
    return source.init(source_conn, sales_orders=20, seed=31)


@pytest.fixture
def ingest(dags, fresh):
    def run() -> str:
        dag_run, tis = run_dag(dags["totesys_ingest"])
        assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
        return task_return_value(dag_run, "plan_batch")["batch_id"]

    return run


def everything(aws) -> dict[str, bytes]:
    s3 = aws("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=INGESTION)
    return {o["Key"]: s3.get_object(Bucket=INGESTION, Key=o["Key"])["Body"].read()
            for page in pages for o in page.get("Contents", [])}  # fmt: skip


def landed(aws, batch_id: str, table: str) -> list[dict]:
    body = aws("s3").get_object(Bucket=INGESTION, Key=f"batches/{batch_id}/{table}.parquet")["Body"].read()
    return pq.read_table(io.BytesIO(body)).to_pylist()


def read_json(aws, key: str) -> dict:
    return json.loads(aws("s3").get_object(Bucket=INGESTION, Key=key)["Body"].read())


def retry_job_run(aws, batch_id: str) -> tuple[dict, list[str]]:
    """Start the extract again exactly as the task's retry does: StartJobRun with the arguments of
    the batch's run. Returns the finished run and its output lines."""
    glue = aws("glue")
    [previous] = [r for r in glue.get_job_runs(JobName=JOB)["JobRuns"] if r["Arguments"]["--batch_id"] == batch_id]
    run_id = glue.start_job_run(JobName=JOB, Arguments=previous["Arguments"])["JobRunId"]
    deadline = time.monotonic() + 120
    while (run := glue.get_job_run(JobName=JOB, RunId=run_id)["JobRun"])["JobRunState"] in ("STARTING", "RUNNING"):
        assert time.monotonic() < deadline, f"the retried run {run_id} did not finish"
        time.sleep(0.5)
    events = aws("logs").filter_log_events(logGroupName="/aws-glue/jobs/output", logStreamNames=[run_id])["events"]
    return run, [event["message"] for event in events]


def test_a_retry_after_the_glue_run_succeeded_leaves_the_batch_as_it_was_and_the_next_batch_has_the_changes(
    monkeypatch, aws, ingest, source_conn
):
    monkeypatch.setenv("AIRFLOW_VAR_TOTESYS_COMMIT_LAG_SECONDS", "0")  # extract what was just written
    batch_id = ingest()
    written = everything(aws)
    assert f"batches/{batch_id}/_window.json" in written and f"batch-completion/{batch_id}.json" in written
    with source_conn, source_conn.cursor() as cursor:  # the application changes a row meanwhile
        cursor.execute("UPDATE staff SET email_address = 'retry@terrifictotes.com', last_updated = now() "
                       "WHERE staff_id = 3 RETURNING last_updated")  # fmt: skip
        [(changed_at,)] = cursor.fetchall()

    run, output = retry_job_run(aws, batch_id)

    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    assert any(f"batch {batch_id} is already complete" in line for line in output), output
    assert everything(aws) == written  # the batch's files, window and marker, and the watermarks, byte for byte
    next_batch = ingest()
    [staff] = [row for row in landed(aws, next_batch, "staff") if row["staff_id"] == 3]
    assert (staff["email_address"], staff["last_updated"]) == ("retry@terrifictotes.com", changed_at)
    assert not [row for row in landed(aws, batch_id, "staff") if row["email_address"] == "retry@terrifictotes.com"]


def test_a_row_committed_after_the_snapshot_with_an_older_stamp_is_extracted_by_a_later_batch_once(
    monkeypatch, stack, aws, ingest
):
    monkeypatch.setenv("AIRFLOW_VAR_TOTESYS_COMMIT_LAG_SECONDS", str(LAG_SECONDS))
    late = source.connect(stack["AIRFLOW_CONN_TOTESYS_DB"])
    try:
        with late.cursor() as cursor:  # stamped now, at its transaction's start; committed below
            cursor.execute("UPDATE design SET design_name = 'Committed late', last_updated = now() "
                           "WHERE design_id = %s RETURNING last_updated", (LATE_DESIGN,))  # fmt: skip
            [(late_stamp,)] = cursor.fetchall()
        # A later stamp, committed at once: the newest row the next snapshot sees is after the late one.
        [(later_stamp,)] = source_sql(stack, "UPDATE design SET design_name = 'Committed at once', "
                                             "last_updated = now() WHERE design_id = %s RETURNING last_updated",
                                      LATER_DESIGN)  # fmt: skip
        assert later_stamp > late_stamp

        during = ingest()  # the late row is not committed: this batch's snapshot cannot see it

        window = read_json(aws, f"batches/{during}/_window.json")["windows"]["design"]
        assert datetime.fromisoformat(window["to"]) < late_stamp, "the transaction stayed open longer than the lag"
        late.commit()
    finally:
        late.close()
    assert not {row["design_id"] for row in landed(aws, during, "design")} & {LATE_DESIGN, LATER_DESIGN}
    deadline = time.monotonic() + LAG_SECONDS + 60
    while lagged_clock(stack) <= later_stamp:  # the window of a batch started now covers both stamps
        assert time.monotonic() < deadline, "the source's clock did not move past the lag"
        time.sleep(0.5)

    after = ingest()

    rows = {row["design_id"]: row for row in landed(aws, after, "design")}
    assert (rows[LATE_DESIGN]["design_name"], rows[LATE_DESIGN]["last_updated"]) == ("Committed late", late_stamp)
    assert rows[LATER_DESIGN]["design_name"] == "Committed at once"
    batches = sorted({key.split("/")[1] for key in everything(aws) if key.startswith("batches/")})
    carried = [batch_id for batch_id in batches for row in landed(aws, batch_id, "design")
               if (row["design_id"], row["last_updated"]) == (LATE_DESIGN, late_stamp)]  # fmt: skip
    assert carried == [after]  # by exactly one batch


def source_sql(stack, statement: str, *parameters) -> list[tuple]:
    """One committed statement as the application's role."""
    conn = source.connect(stack["AIRFLOW_CONN_TOTESYS_DB"])
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(statement, parameters)
            return cursor.fetchall()
    finally:
        conn.close()


def lagged_clock(stack) -> datetime:
    """The source's clock minus the lag: where a window fixed now would end."""
    [(end,)] = source_sql(stack, "SELECT localtimestamp - make_interval(secs => %s)", LAG_SECONDS)
    return end
