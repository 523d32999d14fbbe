"""A real Airflow for the end-to-end tests: ``python -m devstack airflow`` (what ``make airflow``
runs) in a folder of its own, and clients for its REST API and its stack.

Every wait is a poll with a generous deadline (a loaded 2-core CI machine), and a timeout fails
with the tails of the Airflow process logs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_HOME = REPO / ".local" / "test"
DAG_ID = "orders_pipeline"

STARTUP_TIMEOUT = 240  # stack + db migrate + four Airflow processes, on a busy machine
RUN_TIMEOUT = 240  # one batch through every layer, from the marker on
STOP_TIMEOUT = 120
SENSOR_TIMEOUT = 180  # a new continuous run reaching its deferred sensor


class Runtime:
    """A running ``python -m devstack airflow`` and clients for its REST API and its stack."""

    def __init__(self, process: subprocess.Popen, state_dir: Path, output: Path, port: int):
        self.process = process
        self.state_dir = state_dir
        self.output = output
        self.base_url = f"http://127.0.0.1:{port}"
        self.port = port
        self.env: dict[str, str] = {}
        self._http = None
        self._aws: dict[str, object] = {}

    # -- lifecycle

    def wait_until_ready(self) -> None:
        import requests

        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"python -m devstack airflow exited with {self.process.returncode}\n{self.diagnostics()}")
            try:
                if requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the API server did not answer in {STARTUP_TIMEOUT} s\n{self.diagnostics()}")
            time.sleep(1)
        from devstack.stack import read_env_file

        self.env = read_env_file(self.state_dir / "stack.env")
        self._http = requests.Session()
        # The simple auth manager in all-admins mode hands out a token without credentials.
        token = self._http.get(f"{self.base_url}/auth/token", timeout=30)
        assert token.status_code == 201, token.text
        self._http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the supervisor (it stops everything it started); kill its group if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    # -- REST API

    def api(self, method: str, path: str, expect: int | None = 200, **kwargs):
        response = self._http.request(method, f"{self.base_url}/api/v2{path}", timeout=60, **kwargs)
        if expect is not None:
            assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        return response

    def get(self, path: str, **params) -> dict:
        return self.api("GET", path, params=params).json()

    def unpause(self, dag_id: str = DAG_ID) -> None:
        """Unpause the DAG once the DAG processor has parsed it (a new DAG starts paused)."""

        def parsed():
            return self.api("GET", f"/dags/{dag_id}", expect=None).status_code == 200

        wait_for(f"the DAG processor to parse {dag_id}", parsed, 180, self)
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def runs(self) -> list[dict]:
        return self.get(f"/dags/{DAG_ID}/dagRuns", order_by="-run_after", limit=50)["dag_runs"]

    def run(self, run_id: str) -> dict:
        return self.get(f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}")

    def task_instances(self, run_id: str) -> dict[str, dict]:
        data = self.get(f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances", limit=100)
        return {ti["task_id"]: ti for ti in data["task_instances"]}

    # -- the stack

    def aws(self, service: str):
        if service not in self._aws:
            import boto3

            self._aws[service] = boto3.client(
                service,
                endpoint_url=self.env["AWS_ENDPOINT_URL"],
                region_name=self.env["AWS_DEFAULT_REGION"],
                aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            )
        return self._aws[service]

    def read_inbox(self, queue: str) -> list[dict]:
        """Every SNS message waiting in an inbox queue (deleted once read)."""
        sqs = self.aws("sqs")
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        messages = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages"):
            for message in batch:
                envelope = json.loads(message["Body"])
                messages.append({"subject": envelope.get("Subject"), **json.loads(envelope["Message"])})
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return messages

    # -- what a failure message shows

    def diagnostics(self, run_id: str | None = None) -> str:
        parts = [f"--- python -m devstack airflow (output {self.output}) ---", _tail(self.output, 3000)]
        logs = self.state_dir / "airflow" / "logs"
        for name in ("scheduler", "triggerer", "dag-processor", "api-server"):
            parts += [f"--- {logs / name}.log ---", _tail(logs / f"{name}.log", 2500)]
        if run_id and self._http is not None:
            try:
                tis = self.task_instances(run_id)
                parts.append(f"--- task states of {run_id} ---")
                parts += [f"{task}: {ti['state']}" for task, ti in tis.items()]
                for task, ti in tis.items():
                    if ti["state"] in ("failed", "up_for_retry", "upstream_failed") and ti["try_number"]:
                        path = logs / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task}"
                        parts += [f"--- log of {task} ---", _tail(path / f"attempt={ti['try_number']}.log", 3000)]
            except Exception as error:  # diagnostics must never hide the real failure
                parts.append(f"(task states unavailable: {error})")
        return "\n".join(parts)


def _tail(path: Path, size: int) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else "(missing)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _runtime_environment() -> dict[str, str]:
    """This process's environment without what the suite configures for its in-process Airflow
    (SQLite, the test DAG bundles, fast retries) or for the session's own stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ETL_", "AWS_"))}
    # Seconds, not the production half-minute, between a task's tries: the Clear test waits out a
    # Glue job's retries before it clears the run.
    return {**env, "AIRFLOW__ETL__RETRY_DELAY_SECONDS": "2"}


@contextmanager
def started_runtime(request, env: dict[str, str] | None = None, prefix: str = "real-runtime-") -> Iterator[Runtime]:
    """A running Airflow, stopped on the way out; its folder is kept after a failed test, for its logs.
    ``env``: Airflow configuration on top (``AIRFLOW__ETL__START_MODE`` ...)."""
    # A folder of its own: two sessions running these tests at once must not share one.
    TEST_HOME.mkdir(parents=True, exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=TEST_HOME))
    output = state_dir / "devstack-airflow.log"
    port = _free_port()
    failed_before = request.session.testsfailed
    with output.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "airflow", "--port", str(port), "--state-dir", str(state_dir),
             "--aws-port", "0", "--pg-port", "0", "--exit-with-parent"],
            cwd=REPO, env={**_runtime_environment(), **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    runtime = Runtime(process, state_dir, output, port)
    try:
        runtime.wait_until_ready()
        yield runtime
    finally:
        runtime.stop()
    if request.session.testsfailed == failed_before:
        import shutil

        shutil.rmtree(state_dir, ignore_errors=True)


def wait_for(what, condition, timeout: float, runtime: Runtime, run_id: str | None = None, interval=1.0):
    """Poll ``condition()`` until it returns something truthy; fail with the logs on timeout.
    ``what`` describes the wait: a string, or a function returning one when the wait fails."""
    deadline = time.monotonic() + timeout
    while True:
        if runtime.process.poll() is not None:
            pytest.fail(f"Airflow exited while waiting for {_describe(what)}\n{runtime.diagnostics(run_id)}")
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{_describe(what)}: not within {timeout} s\n{runtime.diagnostics(run_id)}")
        time.sleep(interval)


def _describe(what) -> str:
    return what() if callable(what) else what


def waiting_run(runtime: Runtime, after: set[str]) -> str:
    """The continuous run (not one of ``after``) whose sensor is deferred in the triggerer."""

    def deferred():
        for run in runtime.runs():
            if run["dag_run_id"] in after or run["state"] != "running":
                continue
            ti = runtime.task_instances(run["dag_run_id"]).get("wait_for_marker", {})
            if ti.get("state") == "deferred":
                return run["dag_run_id"]
        return None

    return wait_for("a continuous run with wait_for_marker deferred", deferred, SENSOR_TIMEOUT, runtime)


def trigger_polling(runtime: Runtime, run_id: str) -> None:
    """Until the triggerer has made the sensor's first S3 check and gone to sleep: a marker written
    now waits for the next check, a whole poke_interval later (the worst case)."""

    def assigned():
        trigger = runtime.task_instances(run_id)["wait_for_marker"].get("trigger") or {}
        return trigger.get("triggerer_id") is not None

    wait_for("the triggerer to take the sensor's trigger", assigned, SENSOR_TIMEOUT, runtime, run_id)
    logs = runtime.state_dir / "airflow" / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=wait_for_marker"
    deadline = time.monotonic() + 60
    # The trigger logs "... Sleeping for <poke_interval> seconds" after a check that found nothing. Should
    # it ever be worded differently, the test goes on (it measures a shorter wait, that's all).
    while time.monotonic() < deadline:
        if any("Sleeping for" in log.read_text(errors="replace") for log in logs.glob("*.trigger.*")):
            return
        time.sleep(0.5)


def finished(runtime: Runtime, run_id: str, timeout: float = RUN_TIMEOUT) -> dict:
    def done():
        run = runtime.run(run_id)
        return run if run["state"] in ("success", "failed") else None

    return wait_for(f"run {run_id} to finish", done, timeout, runtime, run_id=run_id, interval=2)


def message(runtime: Runtime, queue: str, subject: str, run_id: str, timeout: float = 60) -> dict:
    """The message with this subject from this run (the queue is read, and so emptied, on the way)."""
    seen: list[dict] = []

    def arrived():
        seen.extend(runtime.read_inbox(queue))
        return next((m for m in seen if m["subject"] == subject and m.get("dag_run_id") == run_id), None)

    def what():
        return f"{subject!r} from {run_id} in {queue} (read instead: {[m['subject'] for m in seen]})"

    return wait_for(what, arrived, timeout, runtime, run_id)


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# -- the tests, in the order they build on each other -----------------------------------------
