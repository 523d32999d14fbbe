"""devstack.glue_jobs: a job run gets its ``--extra-py-files`` on the script's path, as on AWS Glue.

moto runs in server mode on loopback with the local Glue runtime installed, and is reached over
HTTP only. Every test uses buckets and jobs of its own.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devstack import glue_jobs
from devstack.sample_data.orders import LANDING_SCHEMA

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/etl-glue-job-role"
ORDERS_SCRIPTS = Path(__file__).resolve().parents[2] / "include" / "glue_scripts" / "orders"

SCRIPT = b"""
import sys
import greeting
import zipped_tools.shout

print("job says:", zipped_tools.shout.shout(greeting.greet("extra files")))
print("arguments:", sys.argv[sys.argv.index("--extra-py-files") + 1])
"""
GREETING = b'def greet(name):\n    return f"hello, {name}"\n'
SHOUT = b"def shout(text):\n    return text.upper()\n"


@pytest.fixture(scope="module")
def client(moto_endpoint: str) -> Callable[[str], object]:
    glue_jobs.install(moto_endpoint)

    def make(service: str):
        return boto3.client(service, endpoint_url=moto_endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip

    return make


@pytest.fixture
def bucket(client) -> str:
    name = f"glue-artifacts-{uuid.uuid4().hex[:12]}"
    client("s3").create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


def zipped(files: dict[str, bytes]) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    return sink.getvalue()


def run_job(client, script_location: str, default_arguments: dict[str, str], arguments: dict[str, str]) -> dict:
    glue = client("glue")
    name = f"job-{uuid.uuid4().hex[:8]}"
    glue.create_job(Name=name, Role=ROLE, GlueVersion="5.0", DefaultArguments=default_arguments,
                    Command={"Name": "glueetl", "ScriptLocation": script_location})  # fmt: skip
    run_id = glue.start_job_run(JobName=name, Arguments=arguments)["JobRunId"]
    deadline = time.monotonic() + 120
    while (run := glue.get_job_run(JobName=name, RunId=run_id)["JobRun"])["JobRunState"] in ("STARTING", "RUNNING"):
        assert time.monotonic() < deadline, "the job run did not end"
        time.sleep(0.2)
    return run


def output(client, run: dict, group: str = "/aws-glue/jobs/output") -> list[str]:
    """The run's lines in a log group (none when nothing was ever written there)."""
    logs = client("logs")
    try:
        events = logs.filter_log_events(logGroupName=group, logStreamNames=[run["Id"]])["events"]
    except logs.exceptions.ResourceNotFoundException:
        return []
    return [event["message"] for event in events]


def test_a_py_file_and_a_zip_archive_are_importable_by_the_script(client, bucket):
    s3 = client("s3")
    s3.put_object(Bucket=bucket, Key="scripts/job.py", Body=SCRIPT)
    s3.put_object(Bucket=bucket, Key="libs/greeting.py", Body=GREETING)
    s3.put_object(Bucket=bucket, Key="libs/tools.zip",
                  Body=zipped({"zipped_tools/__init__.py": b"", "zipped_tools/shout.py": SHOUT}))  # fmt: skip
    extra = f"s3://{bucket}/libs/greeting.py, s3://{bucket}/libs/tools.zip"

    # from the job's default arguments, as a deployed job carries them
    run = run_job(client, f"s3://{bucket}/scripts/job.py", {"--extra-py-files": extra}, {})

    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    assert output(client, run) == ["job says: HELLO, EXTRA FILES", f"arguments: {extra}"]

    # from the run's arguments, which override the job's
    run = run_job(client, f"s3://{bucket}/scripts/job.py", {"--extra-py-files": f"s3://{bucket}/libs/none.py"},
                  {"--extra-py-files": extra})  # fmt: skip

    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")


@pytest.mark.parametrize("missing", ["s3://{bucket}/libs/missing.py", "s3://no-such-bucket-{bucket}/tools.zip"])
def test_a_missing_extra_py_file_fails_the_run_naming_it(client, bucket, missing):
    s3 = client("s3")
    s3.put_object(Bucket=bucket, Key="scripts/job.py", Body=SCRIPT)
    s3.put_object(Bucket=bucket, Key="libs/greeting.py", Body=GREETING)
    missing = missing.format(bucket=bucket)

    run = run_job(client, f"s3://{bucket}/scripts/job.py",
                  {"--extra-py-files": f"s3://{bucket}/libs/greeting.py,{missing}"}, {})  # fmt: skip

    assert run["JobRunState"] == "FAILED"
    assert missing in run["ErrorMessage"] and "--extra-py-files" in run["ErrorMessage"]
    assert output(client, run, "/aws-glue/jobs/error") == [f"local Glue emulator: {run['ErrorMessage']}"]
    assert output(client, run) == []  # the script never started


def test_a_script_without_its_extra_py_file_cannot_import_it(client, bucket):
    client("s3").put_object(Bucket=bucket, Key="scripts/job.py", Body=SCRIPT)

    run = run_job(client, f"s3://{bucket}/scripts/job.py", {}, {})

    assert run["JobRunState"] == "FAILED"
    assert "No module named 'greeting'" in run["ErrorMessage"]


def test_the_orders_audit_runs_as_a_glue_job_with_orders_batch_as_an_extra_py_file(client, bucket):
    """The shape the orders jobs are deployed in: the script, and the shared module beside it."""
    s3 = client("s3")
    for name in ("orders_audit_landing.py", "orders_batch.py"):
        s3.upload_file(str(ORDERS_SCRIPTS / name), bucket, f"scripts/orders/{name}")
    s3.put_object(Bucket=bucket, Key="orders/year=2026/month=11/day=25/hour=08/orders-1", Body=orders_parquet())
    arguments = {"--batch_id": "B1", "--landing_bucket": bucket, "--landing_prefix": "orders/",
                 "--started_at": "2026-11-25T08:00:00Z", "--completed_at": "2026-11-25T08:30:00Z",
                 "--audit_bucket": bucket, "--audit_key": "audit/B1.json"}  # fmt: skip

    run = run_job(client, f"s3://{bucket}/scripts/orders/orders_audit_landing.py",
                  {"--extra-py-files": f"s3://{bucket}/scripts/orders/orders_batch.py"}, arguments)  # fmt: skip

    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    audit = json.loads(s3.get_object(Bucket=bucket, Key="audit/B1.json")["Body"].read())
    assert (audit["orders"], audit["order_lines"], audit["duplicates_dropped"]) == (2, 3, 1)
    assert json.loads(output(client, run)[-1]) == audit


def orders_parquet() -> bytes:
    """Batch B1: order a twice (the later copy has 1 line), order b with 2 lines."""

    def row(order_id: str, minute: int, lines: int) -> dict:
        products = [{"product_code": "P", "product_name": "n", "quantity": 1, "unit_price": None}] * lines
        return {"order_id": order_id, "run_id": "B1", "products": products,
                "processing_ts": datetime(2026, 11, 25, 8, minute, tzinfo=UTC)}  # fmt: skip

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([row("a", 1, 5), row("a", 2, 1), row("b", 3, 2)], schema=LANDING_SCHEMA), sink)
    return sink.getvalue()
