"""The shipping pipeline end to end on the local stack: JSON lines to typed parquet, personal data
dropped, the batch's metrics answered by Athena and published to SNS, and every fault it must
survive.

``shipping_pipeline`` runs with ``dag.test()``: the sensor finds the marker, the two PySpark Glue
jobs run on the local Spark runtime, the crawlers catalogue their output, the metrics query runs
on the local Athena, and the SNS messages are read back from their inbox queues. Every test
writes a batch of its own (its own id, its own objects, named in its marker).
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from devstack.runs import task_return_value
from devstack.sample_data import shipping as sample
from tests.conftest import run_dag
from tests.e2e.glue_runs import ERROR_GROUP, OUTPUT_GROUP, job_log_lines

pytestmark = pytest.mark.e2e

LANDING, STAGING, RESULTS = sample.LANDING_BUCKET, sample.STAGING_BUCKET, sample.RESULTS_BUCKET


@pytest.fixture(scope="module")
def no_shipping(stack, aws, airflow_db, sql):
    """No shipping batch left in S3 or the audit trail: the module starts from nothing."""
    s3 = aws("s3")
    for bucket in (LANDING, STAGING, RESULTS):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
    if sql("SELECT 1 FROM information_schema.tables WHERE table_schema = 'audit' AND table_name = 'batches'"):
        sql("DELETE FROM audit.layer_counts WHERE pipeline = 'shipping'")
        sql("DELETE FROM audit.batches WHERE pipeline = 'shipping'")


@pytest.fixture
def pipeline(dags, no_shipping):
    return dags["shipping_pipeline"]


def run(pipeline, **conf):
    dag_run, tis = run_dag(pipeline, **conf)
    return dag_run, {task_id: ti.state for task_id, ti in tis.items()}


def parquet_rows(aws, prefix: str) -> list[dict]:
    s3 = aws("s3")
    rows = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=STAGING, Prefix=prefix):
        for obj in sorted(page.get("Contents", []), key=lambda o: o["Key"]):
            body = s3.get_object(Bucket=STAGING, Key=obj["Key"])["Body"].read()
            rows += pq.read_table(io.BytesIO(body)).to_pylist()
    return rows


def rejected_lines(aws, batch_id: str) -> list[dict]:
    s3 = aws("s3")
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=STAGING, Prefix=f"rejected/batch_id={batch_id}/"):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=STAGING, Key=obj["Key"])["Body"].read().decode()
            lines += [json.loads(line) for line in body.splitlines() if line.strip()]
    return sorted(lines, key=lambda r: (r["object"], r["line"]))


def failure_tries(dag_run, task_id: str) -> int:
    [ti] = [ti for ti in dag_run.get_task_instances() if ti.task_id == task_id]
    return ti.try_number


def layer_counts(sql, batch_id: str) -> dict[str, dict]:
    rows = sql("SELECT layer, details FROM audit.layer_counts WHERE pipeline = 'shipping' AND batch_id = %s", batch_id)
    return {layer: details["counts"] for layer, details in rows}


def expected_metrics(batch: sample.Batch) -> dict:
    return {
        "shipments": len(batch.records),
        "total_cost": float(sum(Decimal(str(r["shipping_cost"])).quantize(Decimal("0.01")) for r in batch.records)),
        "total_distance": sum(float(r["shipping_distance"]) for r in batch.records),
        "total_fuel_quantity": sum(float(r["quantity"]) for r in batch.records),
    }


def assert_metrics(published: dict, batch: sample.Batch) -> None:
    expected = expected_metrics(batch)
    assert published["shipments"] == expected["shipments"]
    for name in ("total_cost", "total_distance", "total_fuel_quantity"):
        assert published[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-6), name


# -- a batch with a few bad lines -----------------------------------------------------------------------------


def test_a_batch_with_half_a_percent_bad_lines_loads_reconciled_with_its_metrics(aws, pipeline, sql, inbox):
    batch = sample.write_batch(aws("s3"), "ship-good", shipments=2000, seed=1, bad_share=0.005, files=3, gzip_files=1)
    assert any(key.endswith(".gz") for key in batch.keys) and len(batch.bad) == 10

    dag_run, states = run(pipeline)

    assert dag_run.state == "success", states
    counts = layer_counts(sql, "ship-good")
    assert counts == {
        "landing": {"shipments": 2000},
        "rejected": {"rejected": 10},
        "raw": {"shipments": 1990},
        "normalized": {"shipments": 1990},
        "query": {"shipments": 1990},
    }
    # Every bad line is set aside as its object, its line and a reason; the record itself is not.
    rejected = rejected_lines(aws, "ship-good")
    assert [(r["object"], r["line"]) for r in rejected] == sorted((key, line) for key, line, _ in batch.bad)
    assert all(set(r) == {"object", "line", "reason"} and r["reason"] for r in rejected)
    # Raw is typed as the contract says, row for row with what was written.
    raw = parquet_rows(aws, "transformed_data/batch_id=ship-good/")
    assert sorted(r["shipping_id"] for r in raw) == sorted(r["shipping_id"] for r in batch.records)
    assert {type(r["shipping_cost"]) for r in raw} == {Decimal} and all(r["product_id"] is None for r in raw)
    [success] = inbox("etl-success-inbox")
    assert success["status"] == "SUCCESS" and success["batch_id"] == "ship-good"
    assert_metrics(success["metrics"], batch)
    assert success["counts"]["query"] == {"shipments": 1990}
    # The query execution id names Athena's own result file, which says the same.
    query_id = success["query_execution_id"]
    assert query_id == task_return_value(dag_run, "query_metrics")
    body = aws("s3").get_object(Bucket=RESULTS, Key=f"queries/{query_id}.csv")["Body"].read().decode()
    [row] = list(csv.DictReader(io.StringIO(body)))
    assert int(row["shipments"]) == 1990
    athena = aws("athena").get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
    assert athena["Status"]["State"] == "SUCCEEDED"
    assert athena["QueryExecutionContext"]["Database"] == "shipping-db"


def test_the_replaced_state_machines_own_query_runs_on_the_catalogued_raw_table(aws, pipeline):
    """The state machine's Athena query, exactly as it was written, over every batch loaded so far."""
    sample.write_batch(aws("s3"), "ship-sm-query", shipments=300, seed=2)
    assert run(pipeline)[0].state == "success"
    athena = aws("athena")
    query = (
        'SELECT SUM(shipping_cost) AS "Total_Cost_in_$", SUM(shipping_distance) AS "Total_Distance_in_miles", '
        'SUM(quantity) AS "Total_Fuel_Quantity_in_gal" FROM "shipping-db"."transformed_data"'
    )
    query_id = athena.start_query_execution(
        QueryString=query, ResultConfiguration={"OutputLocation": f"s3://{RESULTS}/adhoc/"}
    )["QueryExecutionId"]
    while (status := athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"])["State"] in (
        "QUEUED",
        "RUNNING",
    ):
        time.sleep(0.1)
    assert status["State"] == "SUCCEEDED", status
    header, values = athena.get_query_results(QueryExecutionId=query_id)["ResultSet"]["Rows"]
    names = [d["VarCharValue"] for d in header["Data"]]
    assert names == ["Total_Cost_in_$", "Total_Distance_in_miles", "Total_Fuel_Quantity_in_gal"]
    got = [Decimal(d["VarCharValue"]) for d in values["Data"]]
    raw = parquet_rows(aws, "transformed_data/")  # every batch the table holds
    assert got[0] == sum(r["shipping_cost"] for r in raw)
    assert float(got[1]) == pytest.approx(sum(r["shipping_distance"] for r in raw))
    assert float(got[2]) == pytest.approx(sum(r["quantity"] for r in raw))


# -- bad input ------------------------------------------------------------------------------------------------


def test_a_batch_with_five_percent_bad_lines_fails_naming_the_share_and_the_first_reasons(aws, pipeline, sql, inbox):
    sample.write_batch(aws("s3"), "ship-too-bad", shipments=400, seed=3, bad_share=0.05)

    dag_run, states = run(pipeline)

    assert dag_run.state == "failed" and states["json_to_parquet"] == "failed", states
    assert failure_tries(dag_run, "json_to_parquet") == 1  # refused: the same lines would fail again
    [failure] = inbox("etl-failure-inbox")
    assert failure["batch_id"] == "ship-too-bad" and failure["task_id"] == "json_to_parquet"
    assert "20 of 400" in failure["error"] and "5.0%" in failure["error"]
    assert "line" in failure["error"]  # the first reasons, with their lines
    assert parquet_rows(aws, "transformed_data/batch_id=ship-too-bad/") == []
    assert sql("SELECT status FROM audit.batches WHERE pipeline = 'shipping' AND batch_id = 'ship-too-bad'") == [
        ("FAILED",)
    ]
    # The marker is set aside where the next run (or a person) finds it, with the reason.
    archived = aws("s3").get_object(Bucket=LANDING, Key="batch-archive/failed/ship-too-bad.json")
    assert archived["Body"].read()


def test_a_file_that_is_not_json_lines_fails_the_batch_naming_it(aws, pipeline, inbox):
    s3 = aws("s3")
    key = f"{sample.PREFIX}ship-csv/shipments.json"
    s3.put_object(Bucket=LANDING, Key=key, Body=b"shipping_id,shipping_date,customer_name\n1,2024/01/02,x\n" * 20)
    sample.write_marker(s3, "ship-csv", objects=[key])

    dag_run, states = run(pipeline)

    assert dag_run.state == "failed" and states["json_to_parquet"] == "failed", states
    [failure] = inbox("etl-failure-inbox")
    assert key in failure["error"] and "not JSON lines" in failure["error"]


def test_an_empty_batch_succeeds_with_zero_metrics(aws, pipeline, sql, inbox):
    sample.write_marker(aws("s3"), "ship-empty", objects=[], shipments=0)

    dag_run, states = run(pipeline)

    assert dag_run.state == "success", states
    assert layer_counts(sql, "ship-empty")["query"] == {"shipments": 0}
    [success] = inbox("etl-success-inbox")
    assert success["metrics"] == {"shipments": 0, "total_cost": 0.0, "total_distance": 0.0, "total_fuel_quantity": 0.0}


# -- faults ---------------------------------------------------------------------------------------------------


def test_the_athena_query_failing_publishes_athenas_reason(aws, pipeline, inbox, monkeypatch):
    """The normalized table disappears from the catalog just before the query: Athena's own error."""
    from etl_toolkit.tasks.athena import BatchQuery

    sample.write_batch(aws("s3"), "ship-athena-fails", shipments=50, seed=4)
    real_execute = BatchQuery.execute

    def table_dropped_first(self, context):
        glue = aws("glue")
        try:
            glue.delete_table(DatabaseName="shipping-db", Name="normalized")
        except glue.exceptions.EntityNotFoundException:  # the task's retry: dropped already
            pass
        return real_execute(self, context)

    monkeypatch.setattr(BatchQuery, "execute", table_dropped_first)
    dag_run, states = run(pipeline)

    assert dag_run.state == "failed" and states["query_metrics"] == "failed", states
    assert failure_tries(dag_run, "query_metrics") == 1  # Athena says the error is not retryable
    [failure] = inbox("etl-failure-inbox")
    assert failure["task_id"] == "query_metrics"
    assert "FAILED: TABLE_NOT_FOUND" in failure["error"] and "shipping-db.normalized" in failure["error"]


def test_the_same_marker_again_is_a_no_op(aws, pipeline, sql, inbox):
    batch = sample.write_batch(aws("s3"), "ship-twice", shipments=100, seed=5)
    assert run(pipeline)[0].state == "success"
    inbox("etl-success-inbox")
    before = parquet_rows(aws, "transformed_data/batch_id=ship-twice/")

    sample.write_marker(aws("s3"), "ship-twice", objects=batch.keys, shipments=batch.lines)
    dag_run, states = run(pipeline)

    assert dag_run.state == "success", states
    assert states["json_to_parquet"] == "skipped" and states["query_metrics"] == "skipped"
    assert parquet_rows(aws, "transformed_data/batch_id=ship-twice/") == before
    [success] = inbox("etl-success-inbox")
    assert "already loaded" in success["note"]


def test_a_batch_reprocessed_after_its_files_went_missing_keeps_its_earlier_load(aws, pipeline, inbox):
    """A marker without ``objects`` takes what is under the batch's folder: when some of it is gone,
    the lines read fall short of the marker's count and the raw layer is left as it was."""
    batch = sample.write_batch(aws("s3"), "ship-gone", shipments=300, seed=8, list_objects=False)
    assert run(pipeline)[0].state == "success"
    inbox("etl-success-inbox")
    before = parquet_rows(aws, "transformed_data/batch_id=ship-gone/")
    s3 = aws("s3")
    for key in batch.keys[1:]:  # a lifecycle rule (or a person) removed them since
        s3.delete_object(Bucket=LANDING, Key=key)
    sample.write_marker(s3, "ship-gone", shipments=batch.lines)

    dag_run, states = run(pipeline, batch_id="ship-gone", reprocess=True)

    assert dag_run.state == "failed" and states["json_to_parquet"] == "failed", states
    assert failure_tries(dag_run, "json_to_parquet") == 1
    [failure] = inbox("etl-failure-inbox")
    assert f"the marker expects {batch.lines} shipments" in failure["error"]
    assert parquet_rows(aws, "transformed_data/batch_id=ship-gone/") == before


def test_a_pyspark_job_that_dies_mid_run_is_retried_with_the_same_output(aws, pipeline, sql, inbox):
    import psutil

    batch = sample.write_batch(aws("s3"), "ship-killed", shipments=3000, seed=6, bad_share=0.002)
    killed = []

    def kill_first_run():
        """SIGKILL the first json_to_parquet run of this batch once Spark is working."""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            for process in psutil.process_iter(["cmdline", "create_time"]):
                cmdline = " ".join(process.info["cmdline"] or [])
                if "shipping_json_to_parquet" in cmdline and "ship-killed" in cmdline and "java" not in cmdline:
                    if time.time() - process.info["create_time"] > 6:
                        process.kill()
                        killed.append(process.pid)
                        return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_run, daemon=True)
    killer.start()
    dag_run, tis = run_dag(pipeline)
    killer.join(timeout=5)

    assert killed, "the job was never caught running"
    assert dag_run.state == "success"
    assert tis["json_to_parquet"].try_number == 2
    raw = parquet_rows(aws, "transformed_data/batch_id=ship-killed/")
    assert len(raw) == len(batch.records)
    assert sorted(r["shipping_id"] for r in raw) == sorted(r["shipping_id"] for r in batch.records)
    assert layer_counts(sql, "ship-killed")["normalized"] == {"shipments": len(batch.records)}
    [success] = inbox("etl-success-inbox")
    assert_metrics(success["metrics"], batch)


# -- personal data --------------------------------------------------------------------------------------------

PLANTED = [
    ("Quizzaxle Vontrubeck", "88 Zyphorian Mews"),
    ("Ørjan Krzyżanowskiqq", "17 Vexhollow Straße"),
    ("Marguerite Plinthwhistle", "4021 Obscurant Lane"),
]


def test_personal_data_goes_no_further_than_the_raw_layer(aws, pipeline, sql, inbox, stack, capfd, caplog):
    """Distinctive names and addresses go in; after json_to_parquet they appear in no task log, no
    XCom, no rendered template, no normalized file, no query result and no notification."""
    import logging

    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    caplog.set_level(logging.INFO)
    capfd.readouterr()
    batch = sample.write_batch(aws("s3"), "ship-pii", shipments=600, seed=7, customers=PLANTED)
    planted = [text for pair in PLANTED for text in pair]
    assert sum(r["customer_name"] in dict(PLANTED) for r in batch.records) > 100

    dag_run, states = run(pipeline)
    assert dag_run.state == "success", states
    # The raw layer does keep them: it is what the contract calls raw.
    raw = parquet_rows(aws, "transformed_data/batch_id=ship-pii/")
    assert {r["customer_name"] for r in raw} == {name for name, _ in PLANTED}

    places: dict[str, str] = {}
    captured = capfd.readouterr()
    # dag.test() runs every task in this process: their logs are these records and this output.
    places["task logs"] = "\n".join([caplog.text, captured.out, captured.err])
    with create_session() as session:
        xcoms = session.query(XComModel).filter_by(dag_id=pipeline.dag_id, run_id=dag_run.run_id).all()
        places["XCom"] = "\n".join(f"{x.task_id} {x.key} {x.value}" for x in xcoms)
        rendered = session.query(RenderedTaskInstanceFields).filter_by(dag_id=pipeline.dag_id, run_id=dag_run.run_id)
        places["rendered templates"] = "\n".join(json.dumps(r.rendered_fields, default=str) for r in rendered)
    normalized = parquet_rows(aws, "normalized/batch_id=ship-pii/")
    assert (
        len(normalized) == len(raw) and "customer_name" not in normalized[0] and "street_address" not in normalized[0]
    )
    places["normalized files"] = json.dumps(normalized, default=str)
    s3 = aws("s3")
    results = [
        o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=RESULTS) for o in p.get("Contents", [])
    ]
    places["query results"] = "\n".join(
        s3.get_object(Bucket=RESULTS, Key=key)["Body"].read().decode(errors="replace") for key in results
    )
    places["notifications"] = json.dumps(inbox("etl-success-inbox") + inbox("etl-failure-inbox"), ensure_ascii=False)
    normalize_runs = [
        r["Id"] for r in aws("glue").get_job_runs(JobName="shipping_normalize")["JobRuns"]
        if r["Arguments"].get("--batch_id") == "ship-pii"
    ]  # fmt: skip
    assert normalize_runs
    texts = []
    for group in (OUTPUT_GROUP, ERROR_GROUP):
        for run_id in normalize_runs:
            texts += job_log_lines(aws, run_id, group)
    places["normalize job logs"] = "\n".join(texts)

    # The logs were captured: the last task's line, and the normalize job's own output, are there.
    assert "Batch ship-pii reconciles" in places["task logs"]
    assert "[shipping_normalize]" in places["task logs"]
    for where, text in places.items():
        found = [value for value in planted if value in text]
        assert not found, f"personal data in the {where}: {found}"
