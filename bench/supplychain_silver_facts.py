"""supplychain_silver_facts: the supply chain's landing-to-silver Glue job (unzip, type, check, merge)
against Spark's own CSV-to-parquet copy of the same rows, both run as Glue jobs on the local
stack's Spark runtime.

One drop of ``--supplychain-shipments`` shipments (default 1,000,000) and a fifth as many purchase
orders is written once to the stack's emulated S3 by ``devstack.sample_data.supplychain.write_batch``
(its defaults: two zip archives, each with two CSV members per table; 1 % of the rows sent twice
within the drop in an earlier state, 1 % naming an id the dimensions do not hold; plus 0.5 %
malformed rows), from the stack's ``supplychain`` source in a default ``populate``'s state. The
silver dimensions the job checks the ids against are that source's four tables, written once as
parquet with pyarrow in the contract's types (the job reads only their ids). Spark cannot read a
zip, so the baseline reads the drop's members unzipped: they are copied, unzipped, to another
prefix of the landing bucket once, before any timing.

- baseline  a Glue job whose script is, per table, ``spark.read.option("header", True)
  .csv(<the table's members>).write.mode("overwrite").parquet(<another path>)``: every column a
  string; no unzip, typing, checks, merge, rejects or report
- candidate the ``supplychain_silver_facts`` job (include/glue_scripts/supplychain) on the drop's
  archives (``--objects``): unzipped, every row typed and checked, its ids against the silver
  dimensions, the rejects with object, member and line, the merge into the silver fact tables
  (the latest updated_at wins), the crash-safe swap, the report

each timed from StartJobRun until GetJobRun reports SUCCEEDED (polled every 50 ms), alternately
(A B A B ...) after one untimed warm-up run of each on a small drop. Every candidate run starts
from the same silver, reset outside the timing: the dimensions, and no fact table, rejects, report
or work folder; and it runs under a batch id of its own over the same objects, so each run is the
drop's first load and does the same work. The candidate's report is checked against what was
written (rows read, rejects) after its first timed run.

Target: throughput of the candidate >= 0.6x the baseline's, i.e. baseline time / candidate time
>= 0.6 (medians).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import PurePosixPath

from bench.common import (
    REPO,
    Session,
    Verdict,
    empty_prefix,
    fmt_samples,
    interleave,
    median,
    progress,
    result_block,
)

NAME = "supplychain_silver_facts"
DEFAULT_REPEAT = 3
TARGET_RATIO = 0.6
BAD_SHARE = 0.005
WARMUP_SHIPMENTS = 2_000
POLL_SECONDS = 0.05
ARTIFACTS_BUCKET = "etl-glue-artifacts"
ROLE_ARN = "arn:aws:iam::123456789012:role/etl-glue-job-role"
CANDIDATE_JOB = "bench-supplychain-silver-facts"
BASELINE_JOB = "bench-supplychain-spark-csv-copy"
SCRIPT = REPO / "include" / "glue_scripts" / "supplychain" / "supplychain_silver_facts.py"
CSV_PREFIX = "bench-unzipped/"  # in the landing bucket: the drops' members, for the baseline
COPY_PREFIX = "_bench/spark-csv-copy/"  # in the lakehouse bucket, outside silver: the baseline's output
# What a candidate run writes, removed before each run: silver then holds the dimensions only.
FACT_STATE_PREFIXES = ("silver/fact_shipments/", "silver/fact_purchase_orders/", "silver/rejected/", "audit/", "_work/")
BASELINE_SCRIPT = '''\
"""Spark's plain copy of CSV files to parquet, per table: a header row, every column a string, no rules."""
import json
import sys

from awsglue.utils import getResolvedOptions
from pyspark.sql import SparkSession

args = getResolvedOptions(sys.argv, ["tables", "target"])
spark = SparkSession.builder.getOrCreate()
for table, paths in json.loads(args["tables"]).items():
    spark.read.option("header", True).csv(paths).write.mode("overwrite").parquet(f"{args['target']}{table}/")
'''


class _Jobs:
    """The two Glue jobs on the stack, and runs of them timed from StartJobRun to SUCCEEDED."""

    def __init__(self, session: Session):
        self.glue = session.stack().client("glue")
        self.s3 = session.stack().client("s3")
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


# Source column types (PostgreSQL type OIDs) -> the silver dimensions' parquet types (the contract's).
def _arrow_types() -> dict:
    import pyarrow as pa

    text = pa.string()
    return {23: pa.int32(), 1700: pa.decimal128(10, 2), 25: text, 1042: text, 1043: text,
            1184: pa.timestamp("us", tz="UTC")}  # fmt: skip


def write_dimensions(session: Session) -> dict[str, int]:
    """The source's four tables as the silver dimensions (one parquet file each), as the dimensions
    job leaves them after a first load; returns the rows per table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from devstack.sample_data import supplychain

    types = _arrow_types()
    s3 = session.stack().client("s3")
    conn = session.stack().supplychain_connection()
    rows_per_table = {}
    try:
        for table in supplychain.SOURCE_TABLES:
            with conn, conn.cursor() as cursor:
                cursor.execute(f"SELECT * FROM {table} ORDER BY 1")  # fixed names
                rows = cursor.fetchall()
                columns = [(column.name, types[column.type_code]) for column in cursor.description]
            frame = pa.table(
                {name: pa.array([row[i] for row in rows], type=kind) for i, (name, kind) in enumerate(columns)}
            )
            buffer = io.BytesIO()
            pq.write_table(frame, buffer)
            key = f"silver/dim_{table}/part-00000.parquet"
            s3.put_object(Bucket=supplychain.LAKEHOUSE_BUCKET, Key=key, Body=buffer.getvalue())
            rows_per_table[table] = len(rows)
    finally:
        conn.close()
    return rows_per_table


def unzip_for_spark(s3, batch) -> tuple[dict[str, list[str]], int]:
    """Every member of the drop's archives as a plain CSV object under ``CSV_PREFIX``; returns the
    ``s3://`` paths per table and the bytes unzipped."""
    from devstack.sample_data import supplychain

    bucket = supplychain.LANDING_BUCKET
    paths: dict[str, list[str]] = {table: [] for table in supplychain.FACT_TABLES}
    unzipped = 0
    for key in batch.keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            for name in archive.namelist():
                base = PurePosixPath(name).name
                table = next(t for t in supplychain.FACT_TABLES if base.startswith(t))
                target = f"{CSV_PREFIX}{batch.batch_id}/{PurePosixPath(key).stem}/{base}"
                data = archive.read(name)
                s3.put_object(Bucket=bucket, Key=target, Body=data)
                paths[table].append(f"s3://{bucket}/{target}")
                unzipped += len(data)
    return paths, unzipped


def _write_drop(session: Session, batch_id: str, shipments: int, seed: int):
    from devstack.sample_data import supplychain

    ids, catalog = session.supplychain_source()
    return supplychain.write_batch(
        session.stack().client("s3"), batch_id, ids=ids, catalog=catalog, shipments=shipments,
        purchase_orders=max(1, shipments // 5), seed=seed, bad_share=BAD_SHARE, marker=False, keep_rows=False,
    )  # fmt: skip


def _check_report(s3, batch, batch_id: str) -> dict:
    """The candidate's report against the drop written: rows read and rejected per table, and
    landing = silver + rejected + superseded."""
    from devstack.sample_data import supplychain

    key = f"audit/batch_id={batch_id}/silver_facts.json"
    report = json.loads(s3.get_object(Bucket=supplychain.LAKEHOUSE_BUCKET, Key=key)["Body"].read())
    for table in supplychain.FACT_TABLES:
        expected = (batch.expected_counts[table], sum(reject.table == table for reject in batch.rejects))
        found = (report[f"landing_{table}"], report[f"rejected_{table}"])
        parts = report[f"silver_{table}"] + report[f"rejected_{table}"] + report[f"superseded_{table}"]
        if found != expected or parts != found[0]:
            raise RuntimeError(
                f"the job's report {report} does not match the drop written: {table} (landing, rejected) "
                f"{found}, expected {expected}; silver + rejected + superseded = {parts}"
            )
    return report


def run(session: Session) -> list[Verdict]:
    from devstack.sample_data import supplychain

    repeat = session.repeats(DEFAULT_REPEAT)
    shipments, purchase_orders = session.supplychain_shipments, session.supplychain_purchase_orders
    session.reset_supplychain()
    session.supplychain_source()
    try:
        dimensions = write_dimensions(session)
        progress(f"silver dimensions written with pyarrow: {', '.join(f'{t} {n:,}' for t, n in dimensions.items())}")
        jobs = _Jobs(session)
        s3 = jobs.s3
        progress(f"writing a drop of {shipments:,} shipments and {purchase_orders:,} purchase orders "
                 f"({BAD_SHARE:.1%} malformed) ...")  # fmt: skip
        started = time.perf_counter()
        batch = _write_drop(session, "bench-big", shipments, seed=7)
        zipped = sum(s3.head_object(Bucket=supplychain.LANDING_BUCKET, Key=key)["ContentLength"] for key in batch.keys)
        progress(
            f"drop written in {time.perf_counter() - started:.1f} s: {len(batch.keys)} archives, "
            f"{zipped / 1e6:,.0f} MB; rows {batch.expected_counts}, {len(batch.rejects):,} to reject"
        )
        csv_paths, unzipped = unzip_for_spark(s3, batch)
        progress(f"members unzipped for the baseline (untimed): {unzipped / 1e6:,.0f} MB of CSV")
        warmup = _write_drop(session, "bench-warmup", WARMUP_SHIPMENTS, seed=8)
        warmup_paths, _ = unzip_for_spark(s3, warmup)

        def baseline_arguments(paths: dict[str, list[str]]) -> dict[str, str]:
            return {"--tables": json.dumps(paths), "--target": f"s3://{supplychain.LAKEHOUSE_BUCKET}/{COPY_PREFIX}"}

        def candidate_arguments(drop, batch_id: str) -> dict[str, str]:
            return {
                "--batch_id": batch_id,
                "--landing_bucket": supplychain.LANDING_BUCKET,
                "--lakehouse_bucket": supplychain.LAKEHOUSE_BUCKET,
                "--objects": json.dumps(drop.keys),
                "--prefix": supplychain.PREFIX,
            }

        def reset_silver() -> None:
            for prefix in FACT_STATE_PREFIXES:
                empty_prefix(s3, supplychain.LAKEHOUSE_BUCKET, prefix)

        progress("warm-up: one run of each job on a small drop (untimed)")
        jobs.run(BASELINE_JOB, baseline_arguments(warmup_paths))
        reset_silver()
        jobs.run(CANDIDATE_JOB, candidate_arguments(warmup, "bench-warmup"))

        reports: list[dict] = []

        def candidate(index: int) -> float:
            reset_silver()  # untimed: every run starts from the dimensions alone
            batch_id = f"bench-big-run{index + 1}"
            seconds = jobs.run(CANDIDATE_JOB, candidate_arguments(batch, batch_id))
            if not reports:
                reports.append(_check_report(s3, batch, batch_id))
            return seconds

        baseline_s, candidate_s = interleave(
            lambda _index: jobs.run(BASELINE_JOB, baseline_arguments(csv_paths)),
            candidate,
            repeat,
            label="run pair",
            describe=lambda a, b: f"spark.read.csv copy {a:.1f} s, supplychain_silver_facts {b:.1f} s",
        )
    finally:
        session.reset_supplychain()  # the drops and their copies leave the emulator's memory
    rows = sum(batch.expected_counts.values())
    base, cand = median(baseline_s), median(candidate_s)
    ratio = base / cand
    report = reports[0]
    return [
        result_block(
            NAME,
            "supply chain landing to silver: zipped CSV drop, typed, checked and merged",
            measured=(
                f"{rows:,} rows ({batch.expected_counts['shipments']:,} shipments, "
                f"{batch.expected_counts['purchase_orders']:,} purchase orders; {len(batch.rejects):,} to reject), "
                f"{len(batch.keys)} zips ({zipped / 1e6:,.0f} MB; {unzipped / 1e6:,.0f} MB of CSV), "
                f"StartJobRun..SUCCEEDED, {repeat} interleaved pairs, medians"
            ),
            baseline=(
                "spark.read.csv copy",
                f"{base:.1f} s, {rows / base:,.0f} rows/s (samples {fmt_samples(baseline_s, digits=1)})",
            ),
            candidate=(
                "supplychain_silver_facts",
                f"{cand:.1f} s, {rows / cand:,.0f} rows/s (samples {fmt_samples(candidate_s, digits=1)})",
            ),
            difference=f"{cand - base:+.1f} s per run (both include the JVM start)",
            ratio=f"throughput candidate / baseline = baseline time / candidate time = {ratio:.2f}x",
            details=[
                "report of the first timed run: "
                + ", ".join(
                    f"{table} landing {report[f'landing_{table}']:,} = silver {report[f'silver_{table}']:,} + "
                    f"rejected {report[f'rejected_{table}']:,} + superseded {report[f'superseded_{table}']:,}"
                    for table in supplychain.FACT_TABLES
                )
            ],
            target=f">= {TARGET_RATIO}x the baseline's throughput",
            passed=ratio >= TARGET_RATIO,
        )
    ]
