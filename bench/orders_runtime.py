"""orders_runtime: small batches through ``orders_pipeline`` on the real scheduler, triggerer and
LocalExecutor (what ``make airflow`` runs), from the claim to the run's success, against the work.

``dag.test()`` runs every task in one process, one after another; a real Airflow starts each task
in a process of its own, through the scheduler's loop, and runs independent tasks side by side. On
a small batch (``BENCH_RUNTIME_ORDERS`` / ``--runtime-orders``, default 2,000) that machinery is
most of the time, so this is where its cost shows.

``python -m devstack airflow`` starts in a folder of the command's (its own stack, on free ports),
in the sensor start mode; each batch's marker is written while the continuous run waits for it.

- baseline  the work: time inside the three Glue scripts (each job run's StartedOn..CompletedOn,
  stamped by the emulator when the run starts and ends) plus the durations of the SQL tasks on
  the critical path (an upper bound on the time inside SQL);
- candidate the run from ``claim_batch`` starting to the run's end (the wait for the marker is
  the start mode's, measured by the event-mode tests).

One untimed warm-up batch, then ``--repeat`` batches (default 3), medians. Target: claim to
success at most 2x the work.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from bench.common import (
    PYTHON,
    REPO,
    Session,
    Verdict,
    clean_environment,
    median,
    progress,
    result_block,
)

NAME = "orders_runtime"
DAG_ID = "orders_pipeline"
TARGET_RATIO = 2.0
GLUE_JOBS = ("orders_audit_landing", "orders_landing_to_staging", "orders_staging_to_warehouse_staging")
# The SQL tasks on the way from the claim to the end (create_warehouse_tables runs beside the landing
# layer, so its time is hidden, not saved): their whole durations, an upper bound on the SQL.
SQL_TASKS = ("load_final_table",)  # with the warehouse layers' audit counts
STARTUP_TIMEOUT = 300  # the stack, the metadata database's migration, four Airflow processes
RUN_TIMEOUT = 300


class _Airflow:
    """``python -m devstack airflow`` in a folder of its own, and what the benchmark asks of it."""

    def __init__(self, workdir: Path):
        self.state_dir = Path(tempfile.mkdtemp(prefix="runtime-", dir=workdir))
        self.base_url = f"http://127.0.0.1:{_free_port()}"
        self.output = self.state_dir / "devstack-airflow.log"
        with self.output.open("w") as log:
            self.process = subprocess.Popen(
                [PYTHON, "-m", "devstack", "airflow", "--port", self.base_url.rsplit(":", 1)[1],
                 "--state-dir", str(self.state_dir), "--aws-port", "0", "--pg-port", "0", "--exit-with-parent"],
                cwd=REPO, env=clean_environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._token: str | None = None
        self._clients: dict[str, object] = {}

    def wait_until_ready(self) -> None:
        self._wait("the API server", lambda: self._answers("/api/v2/monitor/health"), STARTUP_TIMEOUT)
        # The simple auth manager in all-admins mode hands out a token without credentials.
        request = urllib.request.Request(f"{self.base_url}/auth/token")
        self._token = json.loads(urllib.request.urlopen(request, timeout=30).read())["access_token"]
        self._wait(f"the DAG processor to parse {DAG_ID}", lambda: self._answers(f"/api/v2/dags/{DAG_ID}"), 180)
        self.api("PATCH", f"/dags/{DAG_ID}", {"is_paused": False})

    def api(self, method: str, path: str, body: dict | None = None, **params) -> dict:
        query = "&".join(f"{key}={value}" for key, value in params.items())
        request = urllib.request.Request(
            f"{self.base_url}/api/v2{path}" + (f"?{query}" if query else ""),
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        return json.loads(urllib.request.urlopen(request, timeout=60).read())

    def aws(self, service: str):
        if service not in self._clients:
            import boto3

            from devstack.stack import read_env_file

            env = read_env_file(self.state_dir / "stack.env")
            self._clients[service] = boto3.client(
                service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            )  # fmt: skip
        return self._clients[service]

    def run_that_claimed(self, batch_id: str, known: set[str]) -> dict:
        """The finished run (not one of ``known``) whose claim names ``batch_id``."""

        def finished():
            for run in self.api("GET", f"/dags/{DAG_ID}/dagRuns", order_by="-run_after", limit=20)["dag_runs"]:
                if run["dag_run_id"] in known or run["state"] not in ("success", "failed"):
                    continue
                claim = f"/dags/{DAG_ID}/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances/claim_batch"
                try:
                    entry = self.api("GET", f"{claim}/xcomEntries/claim", deserialize="true")
                except urllib.error.HTTPError as error:
                    if error.code != 404:  # 404: a run that claimed nothing (skipped or failed claim)
                        raise
                    continue
                if (entry.get("value") or {}).get("batch_id") == batch_id:
                    return run
            return None

        run = self._wait(f"the run of batch {batch_id}", finished, RUN_TIMEOUT, interval=1.0)
        if run["state"] != "success":
            raise RuntimeError(f"{DAG_ID} run {run['dag_run_id']} of {batch_id} failed; logs in {self.state_dir}")
        return run

    def task_instances(self, run_id: str) -> dict[str, dict]:
        path = f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return {ti["task_id"]: ti for ti in self.api("GET", path, limit=100)["task_instances"]}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # devstack stops Airflow, then its stack
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _answers(self, path: str) -> bool:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            request = urllib.request.Request(f"{self.base_url}{path}", headers=headers)
            return urllib.request.urlopen(request, timeout=5).status == 200
        except OSError:
            return False

    def _wait(self, what: str, condition, timeout: float, interval: float = 0.5):
        deadline = time.monotonic() + timeout
        while not (result := condition()):
            if self.process.poll() is not None:
                raise RuntimeError(f"python -m devstack airflow exited while waiting for {what}; see {self.output}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: not within {timeout} s; logs in {self.state_dir}")
            time.sleep(interval)
        return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _one_batch(airflow: _Airflow, batch_id: str, orders: int, day: int, known: set[str]) -> dict:
    from devstack.sample_data.orders import write_orders_batch
    from etl_toolkit import environment

    started_at = datetime(2024, 6, 1, 8, tzinfo=UTC) + timedelta(days=day)
    landing = environment.LOCAL["buckets"]["orders_landing"]
    write_orders_batch(airflow.aws("s3"), landing, batch_id, orders=orders, started_at=started_at)
    run = airflow.run_that_claimed(batch_id, known)
    known.add(run["dag_run_id"])
    tis = airflow.task_instances(run["dag_run_id"])
    claimed, ended = _at(tis["claim_batch"]["start_date"]), _at(run["end_date"])
    glue = 0.0
    for job in GLUE_JOBS:
        for job_run in airflow.aws("glue").get_job_runs(JobName=job)["JobRuns"]:
            if job_run.get("Arguments", {}).get("--batch_id") == batch_id and job_run.get("CompletedOn"):
                glue += (job_run["CompletedOn"] - job_run["StartedOn"]).total_seconds()
    sql = sum(tis[task]["duration"] or 0.0 for task in SQL_TASKS)
    # The tasks of the measured window (not the sensor, which waited for this batch to be written).
    durations = {task: ti["duration"] or 0.0 for task, ti in tis.items()
                 if ti["start_date"] and _at(ti["start_date"]) >= claimed}  # fmt: skip
    return {"wall": (ended - claimed).total_seconds(), "glue": glue, "sql": sql, "durations": durations}


def run(session: Session) -> list[Verdict]:
    orders, repeat = session.runtime_orders, session.repeats(3)
    workdir = session.workdir / NAME
    workdir.mkdir(parents=True, exist_ok=True)
    progress("starting python -m devstack airflow (its own stack on free ports) ...")
    airflow = _Airflow(workdir)
    try:
        airflow.wait_until_ready()
        known: set[str] = set()
        progress(f"warm-up batch of {orders:,} orders (untimed) ...")
        _one_batch(airflow, "runtime-warmup", orders, 0, known)
        runs = []
        for index in range(repeat):
            result = _one_batch(airflow, f"runtime-{index + 1}", orders, index + 1, known)
            runs.append(result)
            progress(f"batch {index + 1}/{repeat}: claim to success {result['wall']:.1f} s, "
                     f"work {result['glue'] + result['sql']:.1f} s")  # fmt: skip
    finally:
        airflow.stop()

    wall, glue, sql = (median([r[key] for r in runs]) for key in ("wall", "glue", "sql"))
    work = glue + sql
    ratio = wall / work
    samples = ", ".join(f"{r['wall']:.1f}" for r in runs)
    slowest = sorted(runs[-1]["durations"].items(), key=lambda item: -item[1])[:6]
    return [
        result_block(
            NAME,
            f"{DAG_ID}, {orders:,} orders on the real scheduler and LocalExecutor",
            measured=f"{repeat} batches after a warm-up, medians; claim_batch start to the run's end",
            baseline=("work: Glue + SQL", f"{work:.1f} s (Glue scripts {glue:.1f} s + warehouse SQL <= {sql:.1f} s)"),
            candidate=("claim -> success", f"{wall:.1f} s (runs {samples} s)"),
            difference=f"orchestration {wall - work:.1f} s",
            ratio=f"claim-to-success / work = {ratio:.2f}",
            target=f"ratio <= {TARGET_RATIO:.0f}",
            passed=ratio <= TARGET_RATIO,
            details=["slowest tasks of the last run: " + ", ".join(f"{t} {s:.1f} s" for t, s in slowest)],
        )
    ]
