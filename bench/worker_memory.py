"""worker_memory: the peak RSS of every Airflow task of ``orders_pipeline`` at BENCH_ORDERS / 10
and at BENCH_ORDERS orders, against a bare ``@task`` in the same kind of process.

Airflow workers are sized once, for every batch: the toolkit keeps the data in Glue and lets the
tasks read metadata only (the landing audit job's small JSON report, parquet footers,
``count(*)``), so no task's memory may grow with the batch. Each run is one ``dag.test()`` in a
fresh child process configured as ``bench/orders_dag.py`` configures it (the test suite's stack and
Airflow settings, the deferrable sensor finding the batch's marker); ``dag.test()`` runs every task
in that one process, while the Glue scripts run in the emulator's processes (they are Glue, not
Airflow workers). The small batch (``--orders`` / 10, default 100,000) and the big one
(``--orders``, default 1,000,000) are written with their markers as ``orders_dag`` writes its
batch, each just before its run.

Per task: a thread of the child samples the child's own RSS (psutil, every 10 ms) and charges each
sample to the task running at the time. Which task is running comes from Airflow listeners
(``on_task_instance_running`` / ``_success`` / ``_failed`` / ``_skipped``, registered with the task
SDK's listener manager, the one the task runner calls, also inside ``dag.test()``); a task that
defers stays the running task until it ends (the inline trigger of ``dag.test()`` is charged to
it). The kernel's high-water mark of the process is reset when a task starts and read when it ends
(``/proc/self/clear_refs``, ``VmHWM``), so a spike shorter than a sample still counts. Each task has
an absolute peak (the highest RSS while it ran) and a growth (that peak - the RSS when it started);
a process's RSS rarely shrinks, so a task's absolute peak also holds what earlier tasks left
behind, and its growth says what the task itself added. Both are printed; the criteria are on the
absolute peaks.

- baseline  a bare task: one ``@task`` returning a constant, in a DAG of its own in a temporary
  bundle (never in ``dags/``), run with ``dag.test()`` in the same kind of child, after the same
  imports (Airflow, the DAG files and so the toolkit, pyarrow); its absolute peak;
- candidate every task of ``orders_pipeline`` at both sizes, each run after an untimed warm-up run
  of the pipeline on 1,000 orders that fills the bytecode cache.

Targets: for every task, absolute peak at the big batch / at the small batch <= 1.10, and absolute
peak at the big batch - the bare task's peak <= 300 MB. One run of each per ``--repeat`` (default
1; medians per task).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from pathlib import Path

from bench.common import (
    REPO,
    WARMUP_ORDERS,
    Session,
    Verdict,
    airflow_setup,
    median,
    progress,
    result_block,
    run_dag_child,
    task_records,
)
from bench.orders_dag import DAG_ID

NAME = "worker_memory"
TARGET_RATIO = 1.10
TARGET_ABOVE_BARE_MB = 300.0
SAMPLE_SECONDS = 0.01
MB = 1024 * 1024
BARE_DAG_ID = "bench_bare_task"
BARE_TASK_ID = "bare_task"
BARE_BUNDLE = "bench-bare-task"
BARE_DAG_SOURCE = f'''\
"""A bare task, for the worker_memory benchmark: what a task costs before it does anything."""

from airflow.sdk import dag, task


@dag(dag_id="{BARE_DAG_ID}", schedule=None, catchup=False, tags=["bench"])
def {BARE_DAG_ID}():
    @task(task_id="{BARE_TASK_ID}")
    def {BARE_TASK_ID}():
        return 1

    {BARE_TASK_ID}()


{BARE_DAG_ID}()
'''


# -- in the parent ----------------------------------------------------------------------------------------


def _with_bare_bundle(env: dict[str, str], workdir: Path) -> dict[str, str]:
    """The environment plus a second DAG bundle: a temporary folder holding the bare DAG."""
    folder = workdir / "bare-bundle"
    folder.mkdir(exist_ok=True)
    (folder / f"{BARE_DAG_ID}.py").write_text(BARE_DAG_SOURCE)
    bundles = json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])
    bundles.append(
        {
            "name": BARE_BUNDLE,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(folder)},
        }
    )
    return {**env, "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles)}


def _run(env: dict[str, str], workdir: Path, name: str, argv: list[str], label: str) -> dict:
    """One child (``python -P bench/worker_memory.py ...``); its result file, checked."""
    result_file, log_file = workdir / f"{name}.json", workdir / f"{name}.log"
    run_dag_child(__name__, [*argv, str(result_file)], env, log_file, label)
    result = json.loads(result_file.read_text())
    states = {t["task_id"]: t["state"] for t in result["tasks"]}
    if result["state"] != "success" or not result.get("loaded", True):
        raise RuntimeError(f"{result['dag_id']} run {name} ended {result['state']}: {states}; log {log_file}")
    # Every task that ran must have been seen by the listener, or its memory is charged to no one.
    unseen = sorted(task for task, state in states.items() if state != "skipped" and task not in result["memory"])
    if unseen:
        raise RuntimeError(f"no listener event for task(s) {', '.join(unseen)} of run {name}; log {log_file}")
    return result


def _run_orders(session: Session, env: dict[str, str], workdir: Path, orders: int, label: str) -> dict:
    batch = session.new_batch(orders, write_marker=True)
    progress(f"{label}: {DAG_ID} on {orders:,} orders with dag.test() ...")
    result = _run(env, workdir, batch.batch_id, ["orders", batch.batch_id], label)
    progress(f"{label}: {result['wall_seconds']:.1f} s, process peak {result['process_peak_mb']:,.0f} MB")
    return result


def _run_bare(env: dict[str, str], workdir: Path, index: int, label: str) -> dict:
    progress(f"{label}: bare task with dag.test() ...")
    result = _run(env, workdir, f"bare-{index}", ["bare"], label)
    progress(f"{label}: bare task peak {result['memory'][BARE_TASK_ID]['peak_mb']:,.0f} MB")
    return result


def _per_task(results: list[dict], key: str) -> dict[str, float]:
    """Median over the runs of each task's ``key`` (peak_mb, growth_mb, ...)."""
    tasks = results[0]["memory"]
    return {task_id: median([r["memory"][task_id][key] for r in results]) for task_id in tasks}


def run(session: Session) -> list[Verdict]:
    repeat = session.repeats(1)
    big_orders = session.orders
    small_orders = max(1, big_orders // 10)
    workdir, env = airflow_setup(session, NAME)
    env = _with_bare_bundle(env, workdir)

    progress(f"warm-up run on {WARMUP_ORDERS:,} orders (untimed; fills the bytecode cache) ...")
    _run_orders(session, env, workdir, WARMUP_ORDERS, "warm-up")

    bare_runs, small_runs, big_runs = [], [], []
    for index in range(repeat):
        label = f"run {index + 1}/{repeat}"
        bare_runs.append(_run_bare(env, workdir, index, label))
        small_runs.append(_run_orders(session, env, workdir, small_orders, label))
        big_runs.append(_run_orders(session, env, workdir, big_orders, label))

    bare = median([r["memory"][BARE_TASK_ID]["peak_mb"] for r in bare_runs])
    bare_start = median([r["memory"][BARE_TASK_ID]["start_mb"] for r in bare_runs])
    order = [t["task_id"] for t in sorted(big_runs[0]["tasks"], key=lambda t: t["order"])]
    small, big = _per_task(small_runs, "peak_mb"), _per_task(big_runs, "peak_mb")
    small_growth, big_growth = _per_task(small_runs, "growth_mb"), _per_task(big_runs, "growth_mb")
    ratio = {task_id: big[task_id] / small[task_id] for task_id in order}
    above = {task_id: big[task_id] - bare for task_id in order}

    _print_table(order, small, big, ratio, above, small_growth, big_growth, small_orders, big_orders, bare)
    worst_ratio = max(order, key=lambda task_id: ratio[task_id])
    worst_above = max(order, key=lambda task_id: above[task_id])
    most_grown = max(order, key=lambda task_id: big_growth[task_id])
    changed = max(order, key=lambda task_id: abs(big[task_id] - small[task_id]))
    sides = {"bare": bare_runs, "small": small_runs, "big": big_runs}
    process = {side: median([r["process_peak_mb"] for r in runs]) for side, runs in sides.items()}
    wall = {side: median([r["wall_seconds"] for r in runs]) for side, runs in sides.items()}
    durations = {t["task_id"]: t["duration"] or 0.0 for t in big_runs[0]["tasks"]}
    slowest = sorted(durations.items(), key=lambda item: -item[1])[:4]
    events = big_runs[0]["listener_events"]
    sampling = (
        f"RSS sampled every {SAMPLE_SECONDS * 1000:.0f} ms by a thread of the dag.test() child "
        f"({big_runs[0]['samples']:,} samples in the big run)"
        + (", and the kernel's high-water mark per task" if big_runs[0]["high_water_mark"] else "")
    )
    return [
        result_block(
            NAME,
            f"per-task peak RSS, {big_orders:,} vs {small_orders:,} orders",
            measured=f"absolute peak RSS of each task of {DAG_ID} while it ran; {sampling}; {repeat} run(s) per size",
            baseline=(f"{small_orders:,} orders", f"highest task peak {max(small.values()):,.0f} MB"),
            candidate=(f"{big_orders:,} orders", f"highest task peak {max(big.values()):,.0f} MB"),
            difference=(
                f"largest change of a task's peak: {changed} {big[changed] - small[changed]:+,.0f} MB; "
                f"process peak {process['big'] - process['small']:+,.0f} MB"
            ),
            ratio=f"highest big / small over the tasks = {ratio[worst_ratio]:.3f} ({worst_ratio})",
            target=f"every task's big / small <= {TARGET_RATIO:.2f}",
            passed=ratio[worst_ratio] <= TARGET_RATIO,
            details=[
                f"growth (peak during a task - RSS when it started) is printed in the table too; the largest: "
                f"{most_grown} {big_growth[most_grown]:+,.0f} MB at {big_orders:,} orders "
                f"({small_growth[most_grown]:+,.0f} MB at {small_orders:,})",
                f"process peak of the dag.test() child: {process['small']:,.0f} MB at {small_orders:,} orders, "
                f"{process['big']:,.0f} MB at {big_orders:,}; bare-task child {process['bare']:,.0f} MB",
                f"listener events in the big run: {events['running']} running, {events['success']} success, "
                f"{events['failed']} failed, {events['skipped']} skipped, for {len(order)} tasks "
                f"(a task resumed after a deferral starts again)",
                f"dag.test() wall: {wall['small']:.1f} s at {small_orders:,} orders, {wall['big']:.1f} s at "
                f"{big_orders:,}; slowest tasks at {big_orders:,}: "
                + ", ".join(f"{task_id} {seconds:.1f} s" for task_id, seconds in slowest),
            ],
        ),
        result_block(
            NAME,
            f"per-task peak RSS above a bare task, {big_orders:,} orders",
            measured=f"absolute peak RSS of each task at {big_orders:,} orders and of a bare @task; {sampling}",
            baseline=("bare @task", f"{bare:,.0f} MB peak (RSS at its start {bare_start:,.0f} MB)"),
            candidate=("heaviest task", f"{big[worst_above]:,.0f} MB peak ({worst_above})"),
            difference=f"{above[worst_above]:+,.0f} MB above the bare task",
            ratio=f"heaviest task / bare task = {big[worst_above] / bare:.2f}",
            target=f"every task <= {TARGET_ABOVE_BARE_MB:.0f} MB above the bare task",
            passed=above[worst_above] <= TARGET_ABOVE_BARE_MB,
            details=[
                "dag.test() runs every task in one process, so a task's absolute peak also holds what the "
                "tasks before it imported (Great Expectations, pandas, AWS clients); in a deployment the "
                "supervisor starts each task in a process of its own, nearer the bare task plus its growth"
            ],
        ),
    ]


def _print_table(order, small, big, ratio, above, small_growth, big_growth, small_orders, big_orders, bare) -> None:
    rule = "-" * 96
    head = (
        f"  {'task':<29}{'peak small':>11}{'peak big':>10}{'big/small':>10}{'big-bare':>10}"
        f"{'growth small':>13}{'growth big':>11}"
    )
    lines = [
        rule,
        f"{NAME} | peak RSS per task (MB): small = {small_orders:,} orders, big = {big_orders:,} orders, "
        f"bare task {bare:,.0f} MB",
        "  peak: the highest RSS of the dag.test() process while the task ran (what the criteria use);",
        "  growth: that peak - the RSS when the task started (what the task itself added), printed too",
        head,
    ]
    for task_id in order:
        flag = " <" if ratio[task_id] > TARGET_RATIO or above[task_id] > TARGET_ABOVE_BARE_MB else ""
        lines.append(
            f"  {task_id:<29}{small[task_id]:>11,.0f}{big[task_id]:>10,.0f}{ratio[task_id]:>10.3f}"
            f"{above[task_id]:>+10,.0f}{small_growth[task_id]:>+13,.1f}{big_growth[task_id]:>+11,.1f}{flag}"
        )
    print("\n".join(lines), flush=True)


# -- inside the configured child: python -P bench/worker_memory.py (orders BATCH_ID | bare) RESULT_FILE --------


class TaskMemory:
    """The RSS of this process, sampled by a thread and charged to the task running at the time.

    The listener hooks (main thread) say which task runs; a sample between tasks counts only
    towards the process peak. When a task starts, the kernel's high-water mark (VmHWM) is reset to
    the current RSS; when it ends, VmHWM is the highest RSS since, spikes between samples included.
    Resetting it also lowers what ``wait4`` reports as the child's peak (``ChildRun.peak_rss_mb``),
    so the process peak here comes from these samples and marks instead.
    """

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._lock = threading.Lock()
        self._current: dict | None = None
        self._order = 0
        self.tasks: dict[str, dict] = {}
        self.process_peak_mb = 0.0
        self.samples = 0
        self.events = {"running": 0, "success": 0, "failed": 0, "skipped": 0}
        self.high_water_mark = _can_reset_high_water_mark()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def _rss_mb(self) -> float:
        return self._process.memory_info().rss / MB

    def _sample_loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            rss = self._rss_mb()
            with self._lock:
                self.samples += 1
                self.process_peak_mb = max(self.process_peak_mb, rss)
                if self._current is not None:
                    self._current["sampled_peak_mb"] = max(self._current["sampled_peak_mb"], rss)
                    self._current["samples"] += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.process_peak_mb = max(self.process_peak_mb, _high_water_mark_mb() or 0.0)

    def started(self, task_id: str) -> None:
        with self._lock:
            self.events["running"] += 1
            if self._current is not None and self._current["task_id"] == task_id:
                self._current["resumed"] += 1  # back from a deferral: the same run of the task
                return
            if self._current is not None:  # ended without a terminal event: close it as unknown
                self._close("unknown")
            if self.high_water_mark:  # keep the peak so far, then restart the mark from now
                self.process_peak_mb = max(self.process_peak_mb, _high_water_mark_mb() or 0.0)
                _reset_high_water_mark()
            rss = self._rss_mb()
            self.process_peak_mb = max(self.process_peak_mb, rss)
            self._order += 1
            self._current = {
                "task_id": task_id,
                "order": self._order,
                "start_mb": rss,
                "sampled_peak_mb": rss,
                "hwm_peak_mb": None,
                "samples": 0,
                "resumed": 0,
                "started": time.monotonic(),
            }

    def ended(self, task_id: str, state: str) -> None:
        with self._lock:
            self.events[state] += 1
            if self._current is None or self._current["task_id"] != task_id:
                return
            self._close(state)

    def _close(self, state: str) -> None:
        record, self._current = self._current, None
        rss = self._rss_mb()
        record["sampled_peak_mb"] = max(record["sampled_peak_mb"], rss)
        record["hwm_peak_mb"] = _high_water_mark_mb() if self.high_water_mark else None
        record["end_mb"] = rss
        record["peak_mb"] = max(record["sampled_peak_mb"], record["hwm_peak_mb"] or 0.0)
        record["growth_mb"] = record["peak_mb"] - record["start_mb"]
        record["seconds"] = time.monotonic() - record.pop("started")
        record["state"] = state
        self.process_peak_mb = max(self.process_peak_mb, record["peak_mb"])
        previous = self.tasks.get(record["task_id"])
        if previous is not None:  # a retry: keep the worse try, count the tries
            record["tries"] = previous["tries"] + 1
            if previous["peak_mb"] > record["peak_mb"]:
                record = {**previous, "tries": record["tries"], "state": state}
        else:
            record["tries"] = 1
        self.tasks[record["task_id"]] = record


def _high_water_mark_mb() -> float | None:
    try:
        with open("/proc/self/status") as status:
            match = re.search(r"^VmHWM:\s+(\d+) kB", status.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match[1]) / 1024 if match else None


def _reset_high_water_mark() -> None:
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS


def _can_reset_high_water_mark() -> bool:
    try:
        _reset_high_water_mark()
    except OSError:
        return False
    return _high_water_mark_mb() is not None


def _task_listener(memory: TaskMemory):
    """An Airflow listener that tells ``memory`` when each task instance starts and ends (made in
    the child only: the parent never imports Airflow)."""
    from airflow.listeners import hookimpl

    class TaskListener:
        @hookimpl
        def on_task_instance_running(self, previous_state, task_instance):
            memory.started(task_instance.task_id)

        @hookimpl
        def on_task_instance_success(self, previous_state, task_instance):
            memory.ended(task_instance.task_id, "success")

        @hookimpl
        def on_task_instance_failed(self, previous_state, task_instance, error):
            memory.ended(task_instance.task_id, "failed")

        @hookimpl
        def on_task_instance_skipped(self, previous_state, task_instance):
            memory.ended(task_instance.task_id, "skipped")

    return TaskListener()


def child_main(mode: str, batch_id: str | None, result_file: Path) -> None:
    memory = TaskMemory()

    # The same imports on both sides: Airflow, every DAG file (and so the toolkit), pyarrow.
    import pyarrow  # noqa: F401
    import pyarrow.fs  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.listener import get_listener_manager  # the manager the task runner calls

    dags = DagBag(dag_folder=str(REPO / "dags"))
    if mode == "orders":
        dag = dags.get_dag(DAG_ID)
        conf = {name: dag.params.get_param(name).value for name in dag.params}
        conf.update(batch_id=None, reprocess=False)  # wait for the marker, as a production run does
    else:
        dag, conf = DagBag(dag_folder=str(_bare_bundle_path())).get_dag(BARE_DAG_ID), None

    get_listener_manager().add_listener(_task_listener(memory))
    started = time.perf_counter()
    dag_run = dag.test(run_conf=conf)
    wall = time.perf_counter() - started
    memory.stop()

    tasks = task_records(dag_run)
    for record in tasks:
        record["order"] = memory.tasks.get(record["task_id"], {}).get("order", 10_000)
    result = {
        "dag_id": dag.dag_id,
        "state": str(dag_run.state),
        "wall_seconds": wall,
        "tasks": tasks,
        "memory": memory.tasks,
        "process_peak_mb": memory.process_peak_mb,
        "samples": memory.samples,
        "listener_events": memory.events,
        "high_water_mark": memory.high_water_mark,
    }
    if mode == "orders":
        import boto3

        archived = boto3.client("s3").list_objects_v2(
            Bucket="fo-to-dw-orders-landing-area", Prefix=f"batch-archive/loaded/{batch_id}.json"
        )
        result.update(batch_id=batch_id, loaded=archived.get("KeyCount", 0) > 0)
    result_file.write_text(json.dumps(result, default=str))


def _bare_bundle_path() -> Path:
    for bundle in json.loads(os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"]):
        if bundle["name"] == BARE_BUNDLE:
            return Path(bundle["kwargs"]["path"])
    raise RuntimeError(f"no {BARE_BUNDLE} bundle configured")


if __name__ == "__main__":
    if sys.argv[1] == "orders":
        child_main("orders", sys.argv[2], Path(sys.argv[3]))
    else:
        child_main("bare", None, Path(sys.argv[2]))
