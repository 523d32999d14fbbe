"""What every benchmark shares: timing, A/B interleaving, the result block, child processes with
their peak memory, the local stack (started on first use and stopped at the end, even on error),
whole-DAG runs with ``dag.test()`` and their orchestration share, and the sample data (orders
batches, the totesys and supply-chain sources; the e-commerce benchmark writes its own
transactions).

A benchmark never trusts an absolute number on these shared, noisy machines: it runs a baseline
and a candidate in the same command, alternating them (A B A B ...) so that a slow spell hits both,
and compares medians.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devstack.airflow_config import local_airflow_config

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
GLUE_LAUNCHER = REPO / "devstack" / "glue_launcher.py"
ORDERS_SCRIPTS = REPO / "include" / "glue_scripts" / "orders"
TOTESYS_SCRIPTS = REPO / "include" / "glue_scripts" / "totesys"
LANDING_BUCKET = "fo-to-dw-orders-landing-area"
STAGING_BUCKET = "fo-to-dw-orders-staging-area"
REGION = "eu-west-1"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
DEFAULT_ORDERS = 1_000_000
DEFAULT_DAG_ORDERS = 100_000
DEFAULT_RUNTIME_ORDERS = 2_000
WARMUP_ORDERS = 1_000
TOTESYS_BUCKETS = ("totesys-ingestion", "totesys-processed")
DEFAULT_TOTESYS_SALES_ORDERS = 100_000
WARMUP_TOTESYS_SALES_ORDERS = 1_000
TOTESYS_SEED = 7  # the simulator's own default
DEFAULT_ECOMMERCE_TRANSACTIONS = 1_000_000
DEFAULT_SHIPMENTS = 1_000_000
DEFAULT_SUPPLYCHAIN_SHIPMENTS = 1_000_000  # and a fifth as many purchase orders
SUPPLYCHAIN_SEED = 0  # the generator's own default

_STARTED = time.monotonic()


# -- timing and printing ----------------------------------------------------------------------------


def progress(message: str) -> None:
    """One line of progress on long work, stamped with the time since the command started."""
    print(f"  [{time.monotonic() - _STARTED:7.1f} s] {message}", flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def interleave(
    baseline: Callable[[int], Any],
    candidate: Callable[[int], Any],
    repeat: int,
    *,
    label: str = "pair",
    describe: Callable[[Any, Any], str] | None = None,
) -> tuple[list[Any], list[Any]]:
    """Run baseline and candidate alternately, ``repeat`` times each (A B A B ...); returns both
    lists of samples. Each callable gets the pair's index; a progress line follows every pair."""
    a_samples: list[Any] = []
    b_samples: list[Any] = []
    for index in range(repeat):
        a_samples.append(baseline(index))
        b_samples.append(candidate(index))
        detail = f": {describe(a_samples[-1], b_samples[-1])}" if describe else ""
        progress(f"{label} {index + 1}/{repeat}{detail}")
    return a_samples, b_samples


@dataclass
class Verdict:
    """The outcome of one result block, for the summary at the end of the command."""

    benchmark: str
    title: str
    passed: bool | None  # None: no target is set, the block only reports


def result_block(
    benchmark: str,
    title: str,
    *,
    measured: str,
    baseline: tuple[str, str],
    candidate: tuple[str, str],
    difference: str,
    ratio: str,
    target: str,
    passed: bool | None,
    details: Sequence[str] = (),
) -> Verdict:
    """Print one result block: what was measured, baseline, candidate, difference, ratio, target."""
    verdict = "PASS" if passed else "MISS" if passed is not None else "REPORT ONLY"
    rule = "-" * 96
    width = max(len(baseline[0]), len(candidate[0]), 10)
    lines = [
        rule,
        f"{benchmark} | {title}",
        f"  measured   {measured}",
        f"  baseline   {baseline[0]:<{width}}  {baseline[1]}",
        f"  candidate  {candidate[0]:<{width}}  {candidate[1]}",
        f"  difference {difference}",
        f"  ratio      {ratio}",
        *(f"  {line}" for line in details),
        f"  target     {target}  =>  {verdict}",
        rule,
    ]
    print("\n".join(lines), flush=True)
    return Verdict(benchmark, title, passed)


def fmt_samples(values: Sequence[float], scale: float = 1.0, unit: str = "s", digits: int = 2) -> str:
    return "[" + ", ".join(f"{v * scale:.{digits}f}" for v in values) + f"] {unit}"


def use_private_bytecode_cache(folder: Path) -> None:
    """Let every child process cache its bytecode under ``folder`` (not in .venv or the repo).

    A caller's PYTHONDONTWRITEBYTECODE would make every child compile Airflow, pandas, pyarrow ...
    from source again (``import airflow.sdk``: about 3.5 s instead of 1.5 s here), which no real
    deployment pays; the benchmarks measure the code, so each does untimed warm-up runs and then
    reads compiled bytecode from this cache.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(folder)


# -- child processes ----------------------------------------------------------------------------------


@dataclass
class ChildRun:
    """One child process: wall time from spawn to exit, its own peak RSS, exit code, output."""

    seconds: float
    peak_rss_mb: float
    returncode: int
    output: str

    def last_json(self) -> dict:
        """The last line of the output that is a JSON object (the scripts end with one)."""
        for line in reversed(self.output.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    return json.loads(line)
        raise ValueError(f"no JSON summary line in the output:\n{self.output[-2000:]}")


# Why a trampoline: Linux carries a process's peak RSS across exec, and a child that Python's
# subprocess starts (vfork + exec) inherits this process's own peak as its ru_maxrss; once this
# process has held a big table, even /bin/true would "peak" at its size. A bare interpreter
# (``python -S``, a few MB) forks the real child instead, times it from fork to exit and reports
# that child's own wait4 rusage on its last stderr line.
_TRAMPOLINE = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
sys.stderr.write(f"\\n@@trampoline {seconds!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}\\n")
sys.exit(0)
"""
_TRAMPOLINE_LINE = "@@trampoline "


def run_child(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float = 3600,
    check: bool = True,
    log_path: Path | None = None,
) -> ChildRun:
    """Run ``argv`` (its first item an executable path) and return its wall time from fork to exit
    and its own peak RSS (see _TRAMPOLINE). Output (stdout and stderr) goes to ``log_path`` if
    given, else to a temporary file. The child runs in a process group of its own, which is killed
    if this process is interrupted or the timeout passes."""
    with open(log_path, "w+b") if log_path else tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            [PYTHON, "-S", "-c", _TRAMPOLINE, *map(str, argv)],
            env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
        killer = threading.Timer(timeout, _kill_group, args=(process,))
        killer.start()
        try:
            process.wait()
        except BaseException:
            _kill_group(process)
            raise
        finally:
            killer.cancel()
        out.seek(0)
        output = out.read().decode("utf-8", errors="replace")
    output, _, report = output.rpartition(_TRAMPOLINE_LINE)
    if not report:
        raise RuntimeError(f"{argv[0]} did not run (killed after {timeout:.0f} s?):\n{output[-3000:]}")
    seconds, max_rss_kib, returncode = report.split()
    run = ChildRun(float(seconds), int(max_rss_kib) / 1024, int(returncode), output)
    if check and run.returncode != 0:
        where = f" (full log: {log_path})" if log_path else ""
        raise RuntimeError(f"{' '.join(map(str, argv[:4]))} ... exited with {run.returncode}{where}:\n{output[-3000:]}")
    return run


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def clean_environment() -> dict[str, str]:
    """This process's environment without anything that would point a child at another stack or
    Airflow (a sourced stack.env, an AWS profile)."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "AWS_", "ETL_")) and key != "PYTHONPATH"
    }


def glue_environment(endpoint_url: str) -> dict[str, str]:
    """The environment the local Glue emulation gives a job's process (glue_jobs._environment)."""
    return {
        **clean_environment(),
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "PYTHONUNBUFFERED": "1",
        **DUMMY_CREDENTIALS,
    }


def glue_command(script: Path, job_run_id: str, arguments: dict[str, str]) -> list[str]:
    """A job script run as the local Glue emulation runs it: through glue_launcher.py."""
    argv = [PYTHON, "-u", str(GLUE_LAUNCHER), str(script), "--JOB_NAME", script.stem, "--JOB_RUN_ID", job_run_id]
    for name, value in arguments.items():
        argv += [name, value]
    return argv


# -- the local stack ---------------------------------------------------------------------------------------


class Stack:
    """The local stack exactly as the test suite's fixture starts it (``python -m devstack up`` on
    free ports, no Airflow database), in a process of its own so that the emulator's work is not
    charged to this process; it stops with this process, even if this one is killed."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.env: dict[str, str] = {}
        self._process: subprocess.Popen | None = None
        self._log = state_dir / "stack.log"

    def start(self) -> Stack:
        from devstack.stack import read_env_file

        self.state_dir.mkdir(parents=True, exist_ok=True)
        env_file = self.state_dir / "stack.env"
        progress("starting the local stack (moto + embedded PostgreSQL) on free ports ...")
        with self._log.open("w") as log:
            self._process = subprocess.Popen(
                [
                    PYTHON, "-m", "devstack", "up", "--state-dir", str(self.state_dir),
                    "--aws-port", "0", "--pg-port", "0", "--no-airflow-db", "--exit-with-parent",
                ],
                cwd=REPO, env=clean_environment(), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while not env_file.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the local stack did not start:\n{self._log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        self.env = read_env_file(env_file)
        progress(f"local stack ready: AWS {self.endpoint_url}, PostgreSQL port {self.warehouse['port']}")
        return self

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    @property
    def endpoint_url(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]

    @property
    def warehouse(self) -> dict:
        """The warehouse_db connection (host, port, schema, login, password)."""
        return json.loads(self.env["AIRFLOW_CONN_WAREHOUSE_DB"])

    def warehouse_connection(self):
        import psycopg2

        conn = self.warehouse
        return psycopg2.connect(
            host=conn["host"], port=conn["port"], dbname=conn["schema"], user=conn["login"], password=conn["password"]
        )

    def totesys_connection(self):
        """A connection to the totesys source as its application role (``totesys_app``)."""
        from devstack.sample_data.totesys import connect

        return connect(self.env["AIRFLOW_CONN_TOTESYS_DB"])

    def supplychain_connection(self):
        """A connection to the supply-chain source as its application role (``supplychain_app``)."""
        from devstack.sample_data.supplychain import connect

        return connect(self.env["AIRFLOW_CONN_SUPPLYCHAIN_DB"])

    def client(self, service: str):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )


@contextlib.contextmanager
def in_process_emulator() -> Iterator[str]:
    """The AWS emulator alone, in this process on a free port, provisioned as the stack does
    (buckets, topics, role; no database secrets); yields its endpoint URL."""
    import boto3

    from devstack import resources
    from devstack.emulator import Emulator
    from devstack.stack import _EndpointSession

    emulator = Emulator("127.0.0.1", 0)
    endpoint = emulator.start()
    try:
        session = boto3.Session(
            region_name=resources.REGION,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        resources.provision(_EndpointSession(session, endpoint), {})
        yield endpoint
    finally:
        emulator.stop()


# -- Airflow runs of whole DAGs (orders_dag, totesys_cycle) ----------------------------------------------

_TASK_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+)")


def airflow_environment(stack: Stack, airflow_home: Path) -> dict[str, str]:
    """The stack's variables plus the test suite's Airflow settings (tests/conftest.py)."""
    stack_vars = {k: v for k, v in stack.env.items() if not k.startswith(("AIRFLOW_HOME", "AIRFLOW__"))}
    bundle_class = "airflow.dag_processing.bundles.local.LocalDagBundle"
    bundles = [{"name": "dags-folder", "classpath": bundle_class, "kwargs": {}}]
    return {
        **clean_environment(),
        **stack_vars,
        "PYTHONPATH": f"{REPO}:{REPO / 'plugins'}",
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
        **local_airflow_config(),  # as make airflow: Glue polled every 0.1 s, shared AWS models
        "AIRFLOW__ETL__RETRY_DELAY_SECONDS": "1",
        "ETL_INCLUDE_DIR": str(REPO / "include"),
    }


def airflow_setup(session: Session, name: str, dag_files: Sequence[str] = ()) -> tuple[Path, dict[str, str]]:
    """A work folder for the benchmark and the environment of an Airflow with a migrated SQLite
    metadata database of its own (migrated here, untimed).

    ``dag_files``: the DAG bundle holds these files of ``dags/`` alone (linked), not the whole
    folder. ``dag.test()`` parses and writes every DAG of its bundle again on each call (about
    0.25 s for the project's six DAGs): a cost of the test harness that grows with the folder and
    that no scheduler pays for a run.
    """
    workdir = session.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    airflow_home = Path(tempfile.mkdtemp(prefix="airflow-home-", dir=workdir))
    env = airflow_environment(session.stack(), airflow_home)
    if dag_files:
        bundle = airflow_home / "dags"
        bundle.mkdir()
        for dag_file in dag_files:
            (bundle / dag_file).symlink_to(REPO / "dags" / dag_file)
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(bundle)
    progress("airflow db migrate (SQLite, untimed) ...")
    run_child([PYTHON, "-m", "airflow", "db", "migrate"], env=env)
    return workdir, env


def run_dag_child(module: str, args: Sequence[str], env: dict[str, str], log_file: Path, label: str) -> ChildRun:
    """A child that runs DAGs with ``dag.test()``: ``module``'s file run as a script with ``args``,
    with a progress line per finished task while it runs.

    A script, as an Airflow component's entry point is, not ``python -m``: runpy's frozen frames at
    the bottom of the stack would make every AWS client cost ~30 ms more (the Amazon provider walks
    the stack with ``inspect.stack()`` for each client's user agent, and a frame without a source
    file costs a scan of every loaded module), a cost no Airflow worker pays.
    """
    script = REPO / (module.replace(".", "/") + ".py")
    stop = threading.Event()
    follower = threading.Thread(target=_follow_tasks, args=(log_file, stop, label), daemon=True)
    follower.start()
    try:
        # -P: the project's root on the path (the environment's PYTHONPATH), not bench/ (the script's)
        return run_child([PYTHON, "-P", script, *args], env=env, log_path=log_file)
    finally:
        stop.set()
        follower.join()


def _follow_tasks(log_file: Path, stop: threading.Event, label: str) -> None:
    position = 0
    while not stop.wait(1.0):
        if not log_file.exists():
            continue
        with log_file.open(errors="replace") as log:
            log.seek(position)
            for line in log:
                if match := _TASK_END.search(line):
                    progress(f"{label}: task {match[1]} finished")
            position = log.tell()


def task_records(dag_run) -> list[dict]:
    """In the child: each task instance of a finished ``dag.test()`` run, as JSON."""
    return [
        {"task_id": ti.task_id, "state": str(ti.state), "duration": ti.duration, "try_number": ti.try_number}
        for ti in dag_run.get_task_instances()
    ]


def glue_job_runs(jobs: Sequence[str], since: datetime) -> list[dict]:
    """In the child: the runs of these Glue jobs started since ``since``, each with its seconds from
    StartedOn to CompletedOn (the emulator stamps them when the script's process starts and ends)."""
    import boto3

    glue = boto3.client("glue")
    runs = []
    for job in jobs:
        for job_run in glue.get_job_runs(JobName=job)["JobRuns"]:
            if job_run["StartedOn"] >= since and job_run.get("CompletedOn"):
                seconds = (job_run["CompletedOn"] - job_run["StartedOn"]).total_seconds()
                runs.append({"job": job, "seconds": seconds, "execution_time": job_run.get("ExecutionTime")})
    return runs


def orchestration_breakdown(result: dict, glue_tasks: Sequence[str], sql_tasks: Sequence[str]) -> dict:
    """Where the wall time of ``dag.test()`` run(s) went: ``result`` holds ``wall_seconds``, the
    ``tasks`` (task_records) and the ``glue_runs`` (glue_job_runs) of the run(s).

    work = time inside the Glue scripts + the durations of the SQL tasks (an upper bound on time
    inside warehouse SQL); orchestration share = wall - work.
    """
    duration = {t["task_id"]: t["duration"] or 0.0 for t in result["tasks"]}
    glue = sum(r["seconds"] for r in result["glue_runs"])
    sql = sum(duration.get(task_id, 0.0) for task_id in sql_tasks)
    in_tasks = sum(duration.values())
    in_glue_tasks = sum(duration.get(task_id, 0.0) for task_id in glue_tasks)
    return {
        "wall": result["wall_seconds"],
        "glue": glue,
        "sql": sql,
        "orchestration": result["wall_seconds"] - glue - sql,
        "glue_operator": in_glue_tasks - glue,  # upload, update_job, start, polling, log fetching
        "other_tasks": in_tasks - in_glue_tasks - sql,  # sensor, claim, checks, audits, crawlers, ...
        "between_tasks": result["wall_seconds"] - in_tasks,
        "durations": duration,
    }


def empty_prefix(s3, bucket: str, prefix: str) -> int:
    """Delete every object under ``prefix`` (``""``: the whole bucket); returns how many."""
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
    return deleted


# -- what benchmarks of one command share ----------------------------------------------------------------


@dataclass
class OrdersBatch:
    """A batch of sample orders in the landing bucket, in hour partitions no other batch uses."""

    batch_id: str
    orders: int
    marker: dict
    staged: bool = False  # the landing-to-staging script has written its staging partition

    @property
    def order_lines(self) -> int:
        return self.marker["expected_counts"]["order_lines"]

    def landing_arguments(self) -> dict[str, str]:
        return {
            "--batch_id": self.batch_id,
            "--started_at": self.marker["started_at"],
            "--completed_at": self.marker["completed_at"],
            "--landing_bucket": LANDING_BUCKET,
            "--landing_prefix": "orders/",
            "--staging_bucket": STAGING_BUCKET,
            "--staging_prefix": "orders/",
        }


@dataclass
class Session:
    """One ``python -m bench`` command: its options, and the stack and the sample batches that
    several benchmarks use, made on first use and torn down by ``close()``."""

    orders: int
    repeat: int | None
    dag_orders: int = DEFAULT_DAG_ORDERS
    runtime_orders: int = DEFAULT_RUNTIME_ORDERS
    totesys_sales_orders: int = DEFAULT_TOTESYS_SALES_ORDERS
    ecommerce_transactions: int = DEFAULT_ECOMMERCE_TRANSACTIONS
    shipments: int = DEFAULT_SHIPMENTS
    supplychain_shipments: int = DEFAULT_SUPPLYCHAIN_SHIPMENTS
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-")))
    _stack: Stack | None = None
    _totesys_source: tuple[int, dict[str, int]] | None = None  # (sales orders, rows per table)
    _supplychain_source: tuple[dict[str, list[int]], Any] | None = None  # (ids per table, Catalog)
    _batches: dict[int, OrdersBatch] = field(default_factory=dict)
    _days: Iterator[int] = field(default_factory=lambda: iter(range(1, 10_000)))

    def repeats(self, default: int, minimum: int = 1) -> int:
        return max(minimum, self.repeat or default)

    def __post_init__(self) -> None:
        use_private_bytecode_cache(self.workdir / "pycache")

    def stack(self) -> Stack:
        if self._stack is None:
            self._stack = Stack(self.workdir / "stack")
            self._stack.start()
        return self._stack

    def new_batch(self, orders: int, *, write_marker: bool = False) -> OrdersBatch:
        """Write a fresh batch of ``orders`` orders to landing, on a day of its own."""
        from devstack.sample_data.orders import write_orders_batch

        s3 = self.stack().client("s3")
        day = next(self._days)
        batch_id = f"bench-{orders}-d{day}"
        started_at = datetime(2024, 1, 1, 8, tzinfo=UTC) + timedelta(days=day)
        progress(f"writing sample batch {batch_id}: {orders:,} orders to s3://{LANDING_BUCKET}/orders/ ...")
        started = time.perf_counter()
        marker = write_orders_batch(
            s3,
            LANDING_BUCKET,
            batch_id,
            orders=orders,
            started_at=started_at,
            write_marker=write_marker,
        )
        progress(
            f"batch {batch_id} written in {time.perf_counter() - started:.1f} s: "
            f"{marker['expected_counts']['order_lines']:,} order lines after dedupe"
        )
        return OrdersBatch(batch_id, orders, marker)

    def orders_batch(self, orders: int) -> OrdersBatch:
        """A batch of ``orders`` orders (no marker), written once per command and shared."""
        if orders not in self._batches:
            self._batches[orders] = self.new_batch(orders)
        return self._batches[orders]

    def warmup_batch(self) -> OrdersBatch:
        """A small batch for untimed warm-up runs (bytecode cache, page cache, first connections)."""
        return self.orders_batch(WARMUP_ORDERS)

    def staged_batch(self, orders: int) -> OrdersBatch:
        """The shared batch with its staging partition written by the landing-to-staging script."""
        batch = self.orders_batch(orders)
        if not batch.staged:
            progress(f"running orders_landing_to_staging.py on {batch.batch_id} to fill its staging partition ...")
            run = run_child(
                glue_command(ORDERS_SCRIPTS / "orders_landing_to_staging.py", "bench-stage", batch.landing_arguments()),
                env=glue_environment(self.stack().endpoint_url),
            )
            summary = run.last_json()
            if summary["lines_written"] != batch.order_lines:
                raise RuntimeError(f"staging has {summary['lines_written']} lines, expected {batch.order_lines}")
            batch.staged = True
        return batch

    def totesys_source(self, sales_orders: int) -> dict[str, int]:
        """The totesys source in the simulator's starting state with ``sales_orders`` sales orders
        (``devstack.sample_data.totesys init``, its default seed); made again only when a different
        size is asked for (the benchmarks only read it). Returns the rows per table."""
        if self._totesys_source is None or self._totesys_source[0] != sales_orders:
            from devstack.sample_data import totesys

            progress(f"totesys source: init with {sales_orders:,} sales orders (seed {TOTESYS_SEED}) ...")
            started = time.perf_counter()
            conn = self.stack().totesys_connection()
            try:
                counts = totesys.init(conn, sales_orders=sales_orders, seed=TOTESYS_SEED)
            finally:
                conn.close()
            progress(
                f"totesys source ready in {time.perf_counter() - started:.1f} s: {sum(counts.values()):,} rows "
                f"({', '.join(f'{table} {n:,}' for table, n in counts.items() if n >= 1000)}, ...)"
            )
            self._totesys_source = (sales_orders, counts)
        return dict(self._totesys_source[1])

    def reset_totesys(self) -> None:
        """No trace of totesys outside its source: empty totesys buckets (batches, markers,
        watermarks, processed tables), no ``totesys`` warehouse schema, no totesys audit rows."""
        s3 = self.stack().client("s3")
        for bucket in TOTESYS_BUCKETS:
            empty_prefix(s3, bucket, "")
        conn = self.stack().warehouse_connection()
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute("DROP SCHEMA IF EXISTS totesys CASCADE")
                cursor.execute("SELECT to_regclass('audit.batches') IS NOT NULL")
                if cursor.fetchone()[0]:
                    cursor.execute("DELETE FROM audit.layer_counts WHERE pipeline = 'totesys'")
                    cursor.execute("DELETE FROM audit.batches WHERE pipeline = 'totesys'")
        finally:
            conn.close()

    @property
    def supplychain_purchase_orders(self) -> int:
        return max(1, self.supplychain_shipments // 5)

    def supplychain_source(self) -> tuple[dict[str, list[int]], Any]:
        """The supply-chain source in a default ``populate``'s starting state (``devstack.sample_data
        .supplychain``, its default sizes and seed), made once per command (the benchmarks only read
        it). Returns the ids per table and the catalog, which ``write_batch`` takes."""
        if self._supplychain_source is None:
            from devstack.sample_data import supplychain

            conn = self.stack().supplychain_connection()
            try:
                supplychain.create_source(conn)
                counts = supplychain.populate(conn, seed=SUPPLYCHAIN_SEED)
                self._supplychain_source = (supplychain.read_dimension_ids(conn), supplychain.read_catalog(conn))
            finally:
                conn.close()
            progress(f"supplychain source populated: {', '.join(f'{t} {n:,}' for t, n in counts.items())}")
        return self._supplychain_source

    def reset_supplychain(self) -> None:
        """No trace of the supply chain outside its source: empty landing and lakehouse buckets (drops,
        markers, silver, gold, state), no ``supplychain`` warehouse schema, no supplychain audit rows."""
        from devstack.sample_data import supplychain

        s3 = self.stack().client("s3")
        for bucket in (supplychain.LANDING_BUCKET, supplychain.LAKEHOUSE_BUCKET):
            empty_prefix(s3, bucket, "")
        conn = self.stack().warehouse_connection()
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                cursor.execute("DROP SCHEMA IF EXISTS supplychain CASCADE")
                cursor.execute("SELECT to_regclass('audit.batches') IS NOT NULL")
                if cursor.fetchone()[0]:
                    cursor.execute("DELETE FROM audit.layer_counts WHERE pipeline = 'supplychain'")
                    cursor.execute("DELETE FROM audit.batches WHERE pipeline = 'supplychain'")
        finally:
            conn.close()

    def close(self) -> None:
        if self._stack is not None:
            progress("stopping the local stack")
            self._stack.stop()
            self._stack = None
        if os.environ.get("BENCH_KEEP_WORKDIR"):  # the children's logs, to see where the time went
            progress(f"work folder kept: {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
