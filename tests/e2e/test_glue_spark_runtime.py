"""Glue job runs on the local stack's Spark runtime, through the Glue API as Airflow uses it.

A ``glueetl`` job whose script imports pyspark (or awsglue) runs on PySpark in local mode with
``s3://``, ``s3a://`` and ``s3n://`` paths on the emulated S3; a Python-only script keeps the plain
Python path, which starts no JVM; a ``pythonshell`` job has no Spark, as on AWS. Each Spark run
starts a JVM (seconds), so this module starts only three of them.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid

import pyarrow.parquet as pq
import pytest

from tests.e2e.glue_runs import (
    ARTIFACTS,
    ERROR_GROUP,
    create_job,
    job_log_lines,
    start_job_run,
    wait_for_job_run,
)

pytestmark = pytest.mark.e2e

BUCKET = ARTIFACTS  # the runs' data sits beside the scripts

ROWS = [
    {"order_id": "o-1", "quantity": 2, "unit_price": 9.5, "status": "shipped"},
    {"order_id": "o-2", "quantity": 1, "unit_price": 120.0, "status": "new"},
    {"order_id": "o-3", "quantity": 7, "unit_price": 0.25, "status": "shipped"},
]

JSON_TO_PARQUET = """\
import json
import os
import sys

from pyspark.sql import SparkSession

print("ARGV " + json.dumps(sys.argv), flush=True)
print("STATE_DIR " + os.environ["GLUE_LOCAL_STATE_DIR"], flush=True)
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
spark = SparkSession.builder.getOrCreate()
orders = spark.read.json(args["--source"])
orders.write.mode("overwrite").parquet(args["--target_s3a"])
orders.write.mode("overwrite").parquet(args["--target_s3n"])
print(f"copied {orders.count()} orders", flush=True)
spark.stop()
"""

FAILS_IN_SPARK = """\
import sys

from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
spark.read.json(sys.argv[sys.argv.index("--source") + 1]).count()
"""

RUNS_UNTIL_STOPPED = """\
import os
import time

from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
jvm_pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
print(f"PIDS {os.getpid()} {jvm_pid}", flush=True)
time.sleep(600)
"""

PYTHON_ONLY = """\
import json
import os
import sys

print("PYTHON_ONLY " + json.dumps({"spark_loaded": "pyspark" in sys.modules,
                                   "state_dir": os.environ["GLUE_LOCAL_STATE_DIR"]}), flush=True)
"""


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_inline_job(aws, name: str, script: str, command: str = "glueetl", **job) -> None:
    """A job whose script is the text given."""
    create_job(aws, name, f"tests/glue-spark/{name}.py", script.encode(), command, **job)


def line_starting(lines: list[str], prefix: str) -> str:
    found = [line for line in lines if line.startswith(prefix)]
    assert found, f"no line starting {prefix!r} in the run's output: {lines}"
    return found[-1].removeprefix(prefix)


def read_parquet_folder(aws, bucket: str, prefix: str) -> list[dict]:
    s3 = aws("s3")
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    assert f"{prefix}_SUCCESS" in keys, keys
    rows = []
    for key in keys:
        if key.endswith(".parquet"):
            rows += pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())).to_pylist()
    return sorted(rows, key=lambda row: row["order_id"])


def process_is_gone(pid: int) -> bool:
    """No such process, or only its exit status left (a zombie no one has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def spark_copy(stack, aws):
    """One Spark run: JSON from s3:// to parquet over s3a:// and s3n://, with the job's and the
    run's own arguments."""
    name = _unique("spark-json-to-parquet")
    prefix = f"glue-spark/{name}"
    body = "\n".join(json.dumps(row) for row in ROWS) + "\n"
    aws("s3").put_object(Bucket=BUCKET, Key=f"{prefix}/in/orders.json", Body=body.encode())
    create_inline_job(
        aws,
        name,
        JSON_TO_PARQUET,
        DefaultArguments={"--source": f"s3://{BUCKET}/{prefix}/in/", "--target_s3a": f"s3a://{BUCKET}/{prefix}/a/"},
    )
    started = time.monotonic()
    run_id = start_job_run(aws, name, **{"--target_s3n": f"s3n://{BUCKET}/{prefix}/n/"})
    run = wait_for_job_run(aws, name, run_id, timeout=240)
    return {
        "name": name,
        "prefix": prefix,
        "run": run,
        "seconds": time.monotonic() - started,
        "output": job_log_lines(aws, run_id),
        "errors": job_log_lines(aws, run_id, ERROR_GROUP),
    }


def test_a_pyspark_script_reads_json_from_s3_and_writes_parquet_over_s3a_and_s3n(spark_copy, aws):
    run = spark_copy["run"]
    assert run["JobRunState"] == "SUCCEEDED", (run.get("ErrorMessage"), spark_copy["errors"][-30:])
    assert "copied 3 orders" in spark_copy["output"]
    for folder in ("a", "n"):
        rows = read_parquet_folder(aws, BUCKET, f"{spark_copy['prefix']}/{folder}/")
        assert rows == ROWS, folder
    assert run["ExecutionTime"] >= 1


def test_a_spark_run_gets_the_arguments_aws_glue_passes(spark_copy, aws):
    argv = json.loads(line_starting(spark_copy["output"], "ARGV "))
    args = dict(zip(argv[1::2], argv[2::2], strict=True))
    run = spark_copy["run"]
    assert args["--JOB_NAME"] == spark_copy["name"]
    assert args["--JOB_RUN_ID"] == run["Id"] and args["--JOB_ID"] == run["Id"]
    assert args["--TempDir"] == "s3://aws-glue-assets-local/temporary/"
    assert args["--job-bookmark-option"] == "job-bookmark-disable"
    assert args["--job-language"] == "python"
    # the job's default arguments and the run's own, after the reserved ones
    assert args["--source"].startswith("s3://") and args["--target_s3n"].startswith("s3n://")
    assert argv.index("--JOB_NAME") < argv.index("--source")
    buckets = {bucket["Name"] for bucket in aws("s3").list_buckets()["Buckets"]}
    assert "aws-glue-assets-local" in buckets  # --TempDir's bucket exists for the script to use


def test_a_failing_spark_script_fails_the_run_with_its_exception_line(stack, aws):
    name = _unique("spark-fails")
    create_inline_job(aws, name, FAILS_IN_SPARK)
    missing = f"s3://{BUCKET}/glue-spark/{name}/nothing-here/"
    run_id = start_job_run(aws, name, **{"--source": missing})
    run = wait_for_job_run(aws, name, run_id, timeout=240)
    assert run["JobRunState"] == "FAILED"
    message = run["ErrorMessage"]
    assert message.startswith("pyspark.errors.exceptions.captured.AnalysisException: "), message
    assert "Path does not exist" in message and missing.rstrip("/") in message, message
    errors = job_log_lines(aws, run_id, ERROR_GROUP)
    assert any(line.startswith("Traceback") for line in errors)


def test_batch_stop_job_run_stops_a_spark_run_and_its_jvm(stack, aws):
    glue = aws("glue")
    name = _unique("spark-stopped")
    create_inline_job(aws, name, RUNS_UNTIL_STOPPED, ExecutionProperty={"MaxConcurrentRuns": 1})
    run_id = start_job_run(aws, name)
    deadline = time.monotonic() + 180
    while not any(line.startswith("PIDS ") for line in job_log_lines(aws, run_id)):
        run = glue.get_job_run(JobName=name, RunId=run_id)["JobRun"]
        errors = job_log_lines(aws, run_id, ERROR_GROUP)
        assert run["JobRunState"] == "RUNNING", (run.get("ErrorMessage"), errors[-30:])
        assert time.monotonic() < deadline, "the Spark session did not start"
        time.sleep(0.5)
    python_pid, jvm_pid = map(int, line_starting(job_log_lines(aws, run_id), "PIDS ").split())
    assert not process_is_gone(jvm_pid)
    with pytest.raises(glue.exceptions.ConcurrentRunsExceededException):
        glue.start_job_run(JobName=name)  # MaxConcurrentRuns holds while the JVM runs

    answer = glue.batch_stop_job_run(JobName=name, JobRunIds=[run_id])
    assert answer["SuccessfulSubmissions"] == [{"JobName": name, "JobRunId": run_id}]
    run = wait_for_job_run(aws, name, run_id, timeout=60)
    assert run["JobRunState"] == "STOPPED"
    assert process_is_gone(python_pid) and process_is_gone(jvm_pid)


def test_a_python_only_script_runs_without_spark_and_fast(stack, aws):
    name = _unique("python-only")
    create_inline_job(aws, name, PYTHON_ONLY)
    started = time.monotonic()
    run_id = start_job_run(aws, name)
    run = wait_for_job_run(aws, name, run_id, timeout=240, poll=0.05)
    seconds = time.monotonic() - started
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    report = json.loads(line_starting(job_log_lines(aws, run_id), "PYTHON_ONLY "))
    assert report["spark_loaded"] is False
    # A JVM alone takes seconds to start; a plain Python run is a process start and a few requests.
    assert seconds < 2.0, f"a Python-only run took {seconds:.2f} s"


def test_a_python_shell_job_has_no_spark_but_has_get_resolved_options(stack, aws):
    name = _unique("python-shell-spark")
    create_inline_job(aws, name, "from awsglue.context import GlueContext\n", command="pythonshell")
    run = wait_for_job_run(aws, name, start_job_run(aws, name), timeout=240)
    assert run["JobRunState"] == "FAILED"
    assert "'awsglue.context' is not available in a Python shell job" in run["ErrorMessage"]

    name = _unique("python-shell-options")
    script = (
        "import sys\n"
        "from awsglue.utils import getResolvedOptions\n"
        "args = getResolvedOptions(sys.argv, ['JOB_NAME', 'greeting'])\n"
        "print(f\"RESOLVED {args['JOB_NAME']} {args['greeting']}\")\n"
    )
    create_inline_job(aws, name, script, command="pythonshell")
    run = wait_for_job_run(aws, name, start_job_run(aws, name, **{"--greeting": "hello"}), timeout=240)
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    assert line_starting(job_log_lines(aws, run["Id"]), "RESOLVED ") == f"{name} hello"


def test_get_and_reset_job_bookmark_answer_from_the_runs_state_dir(stack, aws):
    glue = aws("glue")
    name = _unique("bookmarked")
    create_inline_job(aws, name, PYTHON_ONLY)
    run = wait_for_job_run(aws, name, start_job_run(aws, name), timeout=240)
    state_dir = json.loads(line_starting(job_log_lines(aws, run["Id"]), "PYTHON_ONLY "))["state_dir"]
    assert glue.get_job_bookmark(JobName=name)["JobBookmarkEntry"] == {
        "JobName": name, "Version": 0, "Run": 0, "Attempt": 0,
    }  # fmt: skip

    # What the local awsglue's Job.commit() writes (the stack runs on this machine: same folder).
    entry = {
        "JobName": name,
        "Version": 1,
        "Run": 1,
        "Attempt": 0,
        "PreviousRunId": None,
        "RunId": run["Id"],
        "JobBookmark": json.dumps({"source": {"objects": {"s3://b/k.json": "etag"}}}),
    }
    os.makedirs(os.path.join(state_dir, "bookmarks"), exist_ok=True)
    with open(os.path.join(state_dir, "bookmarks", f"{name}.json"), "w") as sink:
        json.dump(entry, sink)
    got = glue.get_job_bookmark(JobName=name)["JobBookmarkEntry"]
    assert got == {key: value for key, value in entry.items() if value is not None}

    reset = glue.reset_job_bookmark(JobName=name)["JobBookmarkEntry"]
    assert reset["JobName"] == name and reset["Version"] == 0
    assert glue.get_job_bookmark(JobName=name)["JobBookmarkEntry"]["Run"] == 0
    assert not os.path.exists(os.path.join(state_dir, "bookmarks", f"{name}.json"))
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_job_bookmark(JobName=_unique("no-such-job"))
