"""glue_spark_overhead: a PySpark Glue job run's fixed cost on the local stack, against a bare
PySpark session start.

A Glue job whose script imports pyspark runs on PySpark in local mode: every run starts a JVM,
which dwarfs everything else the emulation does. This benchmark checks that the emulation adds
little to that start. The emulator runs in this process (``devstack.emulator.Emulator`` on a free
port, provisioned by ``devstack.resources.provision``).

- baseline  ``python -c "from pyspark.sql import SparkSession;
  SparkSession.builder.master('local[2]').getOrCreate().stop()"`` as a child process: wall time
  from spawn until it and its JVM have ended (their output pipes closed)
- candidate ``StartJobRun`` -> ``GetJobRun`` polled every 50 ms until SUCCEEDED, of a job whose
  script only starts a SparkSession and stops it (the script downloaded from S3, the runtime
  chosen, spark-defaults.conf written, the process run through glue_launcher.py with its output
  streamed to CloudWatch Logs, the run ended when its JVM has)

alternately (A B A B ...). After each pair, reported beside them: the same session start with the
run's own ``spark-defaults.conf``, run directly (what the emulation itself adds is the job's run
time minus this), and a Python-only job's run (the plain path, no JVM).

Target: the PySpark job's run time <= 1.5x the bare session start (medians).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import (
    DUMMY_CREDENTIALS,
    PYTHON,
    REGION,
    Session,
    Verdict,
    clean_environment,
    fmt_samples,
    in_process_emulator,
    interleave,
    median,
    progress,
    result_block,
)

NAME = "glue_spark_overhead"
DEFAULT_REPEAT = 5
TARGET_RATIO = 1.5
POLL_SECONDS = 0.05
ARTIFACTS_BUCKET = "etl-glue-artifacts"
ROLE_ARN = "arn:aws:iam::123456789012:role/etl-glue-job-role"
SPARK_JOB = "bench-glue-spark-overhead-session"
PYTHON_JOB = "bench-glue-spark-overhead-python"

BARE_SESSION = "from pyspark.sql import SparkSession; SparkSession.builder.master('local[2]').getOrCreate().stop()"
CONFIGURED_SESSION = "from pyspark.sql import SparkSession; SparkSession.builder.getOrCreate().stop()"
SPARK_SCRIPT = '''\
"""Starts a SparkSession (local[2], from the run's spark-defaults.conf) and stops it."""
from pyspark.sql import SparkSession

SparkSession.builder.getOrCreate().stop()
'''
PYTHON_SCRIPT = '''\
"""A Python-only job: the plain path, no JVM."""
print("done")
'''


class _Jobs:
    def __init__(self, endpoint: str):
        import boto3

        session = boto3.Session(
            region_name=REGION,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self.glue = session.client("glue", endpoint_url=endpoint)
        self.s3 = session.client("s3", endpoint_url=endpoint)
        for name, script in ((SPARK_JOB, SPARK_SCRIPT), (PYTHON_JOB, PYTHON_SCRIPT)):
            key = f"bench/glue_spark_overhead/{name}.py"
            self.s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=script.encode())
            self.glue.create_job(
                Name=name,
                Role=ROLE_ARN,
                Command={"Name": "glueetl", "ScriptLocation": f"s3://{ARTIFACTS_BUCKET}/{key}", "PythonVersion": "3"},
                GlueVersion="5.0",
            )

    def run(self, name: str) -> float:
        """Seconds from StartJobRun until GetJobRun reports SUCCEEDED."""
        started = time.perf_counter()
        run_id = self.glue.start_job_run(JobName=name)["JobRunId"]
        while True:
            run = self.glue.get_job_run(JobName=name, RunId=run_id)["JobRun"]
            if run["JobRunState"] not in ("STARTING", "RUNNING", "STOPPING", "WAITING"):
                break
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
        if run["JobRunState"] != "SUCCEEDED":
            raise RuntimeError(f"{name} run {run_id} ended {run['JobRunState']}: {run.get('ErrorMessage')}")
        return seconds


def bare_session(_index: int = 0) -> float:
    return session_start(BARE_SESSION, clean_environment())


def configured_session(endpoint: str, conf_dir: Path) -> float:
    """The session start with the spark-defaults.conf and environment a job run gets."""
    from devstack.glue_spark import runtime

    defaults = runtime.spark_defaults(
        endpoint,
        runtime.spark_jars(),
        DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        REGION,
    )
    env = runtime.spark_environment(clean_environment(), runtime.write_spark_conf(conf_dir, defaults))
    return session_start(CONFIGURED_SESSION, env)


def session_start(code: str, env: dict[str, str]) -> float:
    """Seconds from spawning ``python -c code`` until it and its JVM have closed their output."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, "-c", code],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output, _ = process.communicate(timeout=600)  # until EOF: the JVM holds the pipe until it exits
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"the session start exited with {process.returncode}:\n{output.decode()[-3000:]}")
    return seconds


def run(session: Session) -> list[Verdict]:
    repeat = session.repeats(DEFAULT_REPEAT, minimum=3)
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as folder, in_process_emulator() as endpoint:
        progress(f"emulator on {endpoint}; creating the jobs")
        jobs = _Jobs(endpoint)
        conf_dir = Path(folder) / "spark-conf"
        # warm-up: the JVM's and the jars' pages, bytecode, first-request paths
        bare_session(), jobs.run(SPARK_JOB), configured_session(endpoint, conf_dir), jobs.run(PYTHON_JOB)
        configured_runs: list[float] = []
        python_runs: list[float] = []

        def spark_job(_index: int) -> float:
            seconds = jobs.run(SPARK_JOB)
            configured_runs.append(configured_session(endpoint, conf_dir))
            python_runs.append(jobs.run(PYTHON_JOB))
            return seconds

        bare, spark = interleave(
            bare_session,
            spark_job,
            repeat,
            label="run pair",
            describe=lambda a, b: (
                f"bare session {a:.2f} s, PySpark job {b:.2f} s, its session run directly "
                f"{configured_runs[-1]:.2f} s, Python job {python_runs[-1]:.2f} s"
            ),
        )
    bare_s, spark_s, python_s = median(bare), median(spark), median(python_runs)
    configured_s = median(configured_runs)
    ratio = spark_s / bare_s
    return [
        result_block(
            NAME,
            "local PySpark Glue job run: fixed cost",
            measured=(
                f"a job that starts a SparkSession and stops it, {repeat} interleaved pairs, medians; poll every 50 ms"
            ),
            baseline=("bare PySpark session", f"{bare_s:.2f} s (samples {fmt_samples(bare)})"),
            candidate=("StartJobRun..SUCCEEDED", f"{spark_s:.2f} s (samples {fmt_samples(spark)})"),
            difference=(
                f"{spark_s - bare_s:+.2f} s against the bare session start; the job's session with its "
                f"spark-defaults.conf (local[2], S3A jars, client-compiler JVM), run directly, takes "
                f"{configured_s:.2f} s, so the emulation itself adds {spark_s - configured_s:+.2f} s"
            ),
            ratio=f"PySpark job run / bare session start = {ratio:.2f}x",
            details=[
                f"direct     {configured_s:.2f} s for the job's session run directly "
                f"(samples {fmt_samples(configured_runs)})",
                f"python job {python_s:.2f} s per run on the plain path (no JVM; samples {fmt_samples(python_runs)})",
            ],
            target=f"PySpark job run <= {TARGET_RATIO}x the bare session start",
            passed=ratio <= TARGET_RATIO,
        )
    ]
