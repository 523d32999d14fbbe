"""glue_overhead: what the local Glue emulation adds to a job run, against the same script run directly.

Every Glue task of every DAG pays this overhead on the local stack (tests, demo), so it should stay
small next to the work. The emulator runs in this process (``devstack.emulator.Emulator`` on a free
port, provisioned by ``devstack.resources.provision``); a probe job does a little real work (writes
a 10,000-row parquet file to S3 through pyarrow) and prints how long its own process lived.

- baseline  ``python probe.py`` as a child process: wall time from spawn to exit
- candidate ``StartJobRun`` -> ``GetJobRun`` polled every 50 ms until SUCCEEDED (the script is
  downloaded from S3 and run through glue_launcher.py, its output streamed to CloudWatch Logs)

alternately (A B A B ...). Overhead = observed run time - the probe's own reported lifetime (read
back from the run's CloudWatch log stream, as ``GlueJobOperator(verbose=True)`` would).

The probe measures its lifetime as CLOCK_BOOTTIME minus its start time in /proc/self/stat, both
counted from boot: psutil's ``time.time() - create_time()`` is off by up to a second on Linux,
because psutil adds the boot time that /proc/stat gives in whole seconds.

Target: overhead <= 2 s per run (median).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench.common import (
    DUMMY_CREDENTIALS,
    PYTHON,
    REGION,
    Session,
    Verdict,
    fmt_samples,
    glue_environment,
    in_process_emulator,
    interleave,
    median,
    progress,
    result_block,
    run_child,
)

NAME = "glue_overhead"
DEFAULT_REPEAT = 7
TARGET_OVERHEAD_S = 2.0
POLL_SECONDS = 0.05
JOB_NAME = "bench-glue-overhead-probe"
ARTIFACTS_BUCKET = "etl-glue-artifacts"
SCRIPT_KEY = "bench/glue_overhead/probe.py"
ROLE_ARN = "arn:aws:iam::123456789012:role/etl-glue-job-role"

PROBE_SCRIPT = '''\
"""Glue overhead probe: writes a small parquet file to S3, then prints its own lifetime."""
import argparse
import json
import os
import time

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def lifetime() -> float:
    """Seconds since this process started, on the boot-time clock the kernel stamps starts with."""
    with open("/proc/self/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")


parser = argparse.ArgumentParser()
parser.add_argument("--JOB_RUN_ID", default="direct")
parser.add_argument("--output_bucket", required=True)
args, _ = parser.parse_known_args()
fs = pafs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], region=os.environ["AWS_DEFAULT_REGION"])
table = pa.table({"n": pa.array(range(10_000)), "label": pa.array([f"row-{i}" for i in range(10_000)])})
pq.write_table(table, f"{args.output_bucket}/bench/glue_overhead/out/{args.JOB_RUN_ID}.parquet", filesystem=fs)
print(json.dumps({"probe_seconds": lifetime()}), flush=True)
'''


class _Probe:
    def __init__(self, endpoint: str, script: Path):
        import boto3

        session = boto3.Session(
            region_name=REGION,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self.glue = session.client("glue", endpoint_url=endpoint)
        self.logs = session.client("logs", endpoint_url=endpoint)
        self.s3 = session.client("s3", endpoint_url=endpoint)
        self.env = glue_environment(endpoint)
        self.script = script

    def create_job(self) -> None:
        self.s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=SCRIPT_KEY, Body=PROBE_SCRIPT.encode())
        self.glue.create_job(
            Name=JOB_NAME,
            Role=ROLE_ARN,
            Command={
                "Name": "glueetl",
                "ScriptLocation": f"s3://{ARTIFACTS_BUCKET}/{SCRIPT_KEY}",
                "PythonVersion": "3",
            },
            GlueVersion="5.0",
            DefaultArguments={"--job-language": "python", "--output_bucket": ARTIFACTS_BUCKET},
        )

    def direct(self, index: int) -> dict:
        run = run_child(
            [PYTHON, str(self.script), "--JOB_RUN_ID", f"direct-{index}", "--output_bucket", ARTIFACTS_BUCKET],
            env=self.env,
        )
        return {"wall_s": run.seconds, "probe_s": run.last_json()["probe_seconds"]}

    def via_glue(self, index: int) -> dict:
        started = time.perf_counter()
        run_id = self.glue.start_job_run(JobName=JOB_NAME)["JobRunId"]
        while True:
            run = self.glue.get_job_run(JobName=JOB_NAME, RunId=run_id)["JobRun"]
            if run["JobRunState"] not in ("STARTING", "RUNNING", "STOPPING", "WAITING"):
                break
            time.sleep(POLL_SECONDS)
        observed = time.perf_counter() - started
        if run["JobRunState"] != "SUCCEEDED":
            raise RuntimeError(f"probe run {run_id} ended {run['JobRunState']}: {run.get('ErrorMessage')}")
        return {"wall_s": observed, "probe_s": self._reported_lifetime(run_id)}

    def _reported_lifetime(self, run_id: str) -> float:
        events = self.logs.get_log_events(logGroupName="/aws-glue/jobs/output", logStreamName=run_id)["events"]
        for event in reversed(events):
            if event["message"].startswith("{"):
                return json.loads(event["message"])["probe_seconds"]
        raise RuntimeError(f"probe run {run_id} logged no lifetime; its output: {events}")


def run(session: Session) -> list[Verdict]:
    repeat = session.repeats(DEFAULT_REPEAT, minimum=5)
    with tempfile.TemporaryDirectory(prefix="bench-glue-") as folder, in_process_emulator() as endpoint:
        script = Path(folder) / "probe.py"
        script.write_text(PROBE_SCRIPT)
        progress(f"emulator on {endpoint}; creating the probe job")
        probe = _Probe(endpoint, script)
        probe.create_job()
        probe.direct(-1), probe.via_glue(-1)  # warm-up: bytecode, page cache, first-request paths
        direct, glue = interleave(
            probe.direct,
            probe.via_glue,
            repeat,
            label="run pair",
            describe=lambda a, b: (
                f"direct {a['wall_s']:.2f} s, via Glue {b['wall_s']:.2f} s (probe lived {b['probe_s']:.2f} s)"
            ),
        )
    overheads = [s["wall_s"] - s["probe_s"] for s in glue]
    spawn_overhead = median([s["wall_s"] - s["probe_s"] for s in direct])
    direct_wall, direct_life = median([s["wall_s"] for s in direct]), median([s["probe_s"] for s in direct])
    glue_wall, glue_life = median([s["wall_s"] for s in glue]), median([s["probe_s"] for s in glue])
    overhead = median(overheads)
    return [
        result_block(
            NAME,
            "local Glue job run overhead",
            measured=f"probe job (10k-row parquet to S3), {repeat} interleaved pairs, medians; poll every 50 ms",
            baseline=("python probe.py", f"{direct_wall:.2f} s wall (probe lifetime {direct_life:.2f} s)"),
            candidate=("StartJobRun..SUCCEEDED", f"{glue_wall:.2f} s observed (probe lifetime {glue_life:.2f} s)"),
            difference=(
                f"emulator overhead {overhead:.2f} s per run (observed - probe lifetime; samples "
                f"{fmt_samples(overheads)}); a direct run's spawn and exit alone take {spawn_overhead:.2f} s, "
                f"so the emulation itself adds {overhead - spawn_overhead:+.2f} s"
            ),
            ratio=f"run time via Glue / direct run time = {glue_wall / direct_wall:.2f}x",
            target=f"overhead <= {TARGET_OVERHEAD_S:.0f} s",
            passed=overhead <= TARGET_OVERHEAD_S,
        )
    ]
