"""shipping_json_to_parquet: the shipping landing-to-raw Glue job against Spark's own JSON-to-parquet
copy of the same files, both run as Glue jobs on the local stack's Spark runtime.

One batch of ``--shipments`` records (default 1,000,000; 0.5% bad lines of the three kinds, four
objects, one of them gzip) is written once to the emulated S3 by ``devstack.sample_data.shipping``.
The emulator runs in this process (``devstack.emulator.Emulator`` on a free port, provisioned by
``devstack.resources.provision``); every run starts a JVM, and both sides pay it.

- baseline  a Glue job whose script is ``spark.read.json(<the batch's objects>)
  .write.mode("overwrite").parquet(<another path>)``: Spark's schema inference and copy, no
  typing rules, no rejects, no line numbers, no report
- candidate the ``shipping_json_to_parquet`` job (include/glue_scripts/shipping) on the same
  objects: every line typed and checked, rejects with object, line and reason, the report

each timed from StartJobRun until GetJobRun reports SUCCEEDED (polled every 50 ms), alternately
(A B A B ...) after one untimed warm-up run of each on a small batch. The candidate's report is
checked against what was written (lines, rejects) after its first timed run.

Target: throughput (records per second) of the candidate >= 0.7x the baseline's, i.e. baseline
time / candidate time >= 0.7 (medians).
"""

from __future__ import annotations

import json
import time

from bench.common import (
    DUMMY_CREDENTIALS,
    REGION,
    REPO,
    Session,
    Verdict,
    fmt_samples,
    in_process_emulator,
    interleave,
    median,
    progress,
    result_block,
)

NAME = "shipping_json_to_parquet"
DEFAULT_REPEAT = 3
TARGET_RATIO = 0.7
BAD_SHARE = 0.005
FILES, GZIP_FILES = 4, 1
WARMUP_SHIPMENTS = 2_000
POLL_SECONDS = 0.05
ARTIFACTS_BUCKET = "etl-glue-artifacts"
ROLE_ARN = "arn:aws:iam::123456789012:role/etl-glue-job-role"
CANDIDATE_JOB = "bench-shipping-json-to-parquet"
BASELINE_JOB = "bench-shipping-spark-json-copy"
SCRIPT = REPO / "include" / "glue_scripts" / "shipping" / "shipping_json_to_parquet.py"
BASELINE_SCRIPT = '''\
"""Spark's plain copy of JSON lines to parquet: schema inference, no rules."""
import json
import sys

from awsglue.utils import getResolvedOptions
from pyspark.sql import SparkSession

args = getResolvedOptions(sys.argv, ["paths", "target"])
spark = SparkSession.builder.getOrCreate()
spark.read.json(json.loads(args["paths"])).write.mode("overwrite").parquet(args["target"])
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
        for name, script in ((CANDIDATE_JOB, SCRIPT.read_text()), (BASELINE_JOB, BASELINE_SCRIPT)):
            key = f"bench/{NAME}/{name}.py"
            self.s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=script.encode())
            self.glue.create_job(
                Name=name,
                Role=ROLE_ARN,
                Command={"Name": "glueetl", "ScriptLocation": f"s3://{ARTIFACTS_BUCKET}/{key}", "PythonVersion": "3"},
                GlueVersion="5.0",
            )

    def run(self, name: str, arguments: dict[str, str]) -> float:
        """Seconds from StartJobRun until GetJobRun reports SUCCEEDED."""
        started = time.perf_counter()
        run_id = self.glue.start_job_run(JobName=name, Arguments=arguments)["JobRunId"]
        while True:
            run = self.glue.get_job_run(JobName=name, RunId=run_id)["JobRun"]
            if run["JobRunState"] not in ("STARTING", "RUNNING", "STOPPING", "WAITING"):
                break
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
        if run["JobRunState"] != "SUCCEEDED":
            raise RuntimeError(f"{name} run {run_id} ended {run['JobRunState']}: {run.get('ErrorMessage')}")
        return seconds


def _arguments(batch) -> tuple[dict[str, str], dict[str, str]]:
    """(baseline, candidate) job arguments for a written batch."""
    from devstack.sample_data import shipping

    paths = [f"s3://{shipping.LANDING_BUCKET}/{key}" for key in batch.keys]
    baseline = {
        "--paths": json.dumps(paths),
        "--target": f"s3://{shipping.STAGING_BUCKET}/bench-spark-json-copy/batch_id={batch.batch_id}/",
    }
    candidate = {
        "--batch_id": batch.batch_id,
        "--landing_bucket": shipping.LANDING_BUCKET,
        "--staging_bucket": shipping.STAGING_BUCKET,
        "--objects": json.dumps(batch.keys),
    }
    return baseline, candidate


def run(session: Session) -> list[Verdict]:
    from devstack.sample_data import shipping

    repeat = session.repeats(DEFAULT_REPEAT)
    shipments = session.shipments
    with in_process_emulator() as endpoint:
        progress(f"emulator on {endpoint}; creating the jobs")
        jobs = _Jobs(endpoint)
        progress(
            f"writing {shipments:,} shipping records ({BAD_SHARE:.1%} bad, {FILES} objects, {GZIP_FILES} gzip) ..."
        )
        started = time.perf_counter()
        batch = shipping.write_batch(
            jobs.s3, "bench-big", shipments=shipments, seed=7, bad_share=BAD_SHARE, files=FILES,
            gzip_files=GZIP_FILES, write_marker=False, keep_records=False,
        )  # fmt: skip
        sizes = [jobs.s3.head_object(Bucket=shipping.LANDING_BUCKET, Key=key)["ContentLength"] for key in batch.keys]
        progress(f"batch written in {time.perf_counter() - started:.1f} s: {sum(sizes) / 1e6:,.0f} MB in landing")
        warmup = shipping.write_batch(
            jobs.s3, "bench-warmup", shipments=WARMUP_SHIPMENTS, seed=8, bad_share=BAD_SHARE, files=FILES,
            gzip_files=GZIP_FILES, write_marker=False, keep_records=False,
        )  # fmt: skip
        warm_baseline, warm_candidate = _arguments(warmup)
        progress("warm-up: one run of each job on a small batch (untimed)")
        jobs.run(BASELINE_JOB, warm_baseline), jobs.run(CANDIDATE_JOB, warm_candidate)

        baseline_args, candidate_args = _arguments(batch)
        checked: list[dict] = []

        def candidate(_index: int) -> float:
            seconds = jobs.run(CANDIDATE_JOB, candidate_args)
            if not checked:
                key = f"audit/batch_id={batch.batch_id}/json_to_parquet.json"
                report = json.loads(jobs.s3.get_object(Bucket=shipping.STAGING_BUCKET, Key=key)["Body"].read())
                expected = (shipments, len(batch.bad), shipments - len(batch.bad))
                if (report["landing"], report["rejected"], report["raw"]) != expected:
                    raise RuntimeError(f"the job's report {report} does not match the batch written {expected}")
                checked.append(report)
            return seconds

        baseline_s, candidate_s = interleave(
            lambda _index: jobs.run(BASELINE_JOB, baseline_args),
            candidate,
            repeat,
            label="run pair",
            describe=lambda a, b: f"spark.read.json copy {a:.1f} s, shipping_json_to_parquet {b:.1f} s",
        )
    base, cand = median(baseline_s), median(candidate_s)
    ratio = base / cand
    return [
        result_block(
            NAME,
            "shipping landing to raw: typed, checked JSON lines to parquet",
            measured=(
                f"{shipments:,} records ({len(batch.bad):,} bad), {FILES} objects ({GZIP_FILES} gzip, "
                f"{sum(sizes) / 1e6:,.0f} MB), StartJobRun..SUCCEEDED, {repeat} interleaved pairs, medians"
            ),
            baseline=(
                "spark.read.json copy",
                f"{base:.1f} s, {shipments / base:,.0f} records/s (samples {fmt_samples(baseline_s, digits=1)})",
            ),
            candidate=(
                "shipping_json_to_parquet",
                f"{cand:.1f} s, {shipments / cand:,.0f} records/s (samples {fmt_samples(candidate_s, digits=1)})",
            ),
            difference=f"{cand - base:+.1f} s per run (both include the JVM start)",
            ratio=f"throughput candidate / baseline = baseline time / candidate time = {ratio:.2f}x",
            target=f">= {TARGET_RATIO}x the baseline's throughput",
            passed=ratio >= TARGET_RATIO,
        )
    ]
