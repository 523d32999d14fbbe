"""orders_dag: a whole batch through ``orders_pipeline`` with ``dag.test()``, and how much of its wall
time is orchestration rather than the work itself.

Replacing Step Functions with Airflow is only worth it if the orchestrator's share of a batch stays
small next to the work. The stack is the test suite's (``python -m devstack up`` on free ports);
Airflow is configured as ``tests/conftest.py`` configures it (SQLite metadata database in a
temporary AIRFLOW_HOME, Glue polled every 0.1 s as under make airflow), in a child process so
that the configuration is set before Airflow is imported, except that its DAG bundle holds the
orders DAG file alone: ``dag.test()`` parses and writes every DAG of its bundle again on each
call, about 0.25 s for the project's six, which no scheduler pays for a run. The batch
(BENCH_DAG_ORDERS / ``--dag-orders``, default 100,000, with its completion marker) is found by
the deferrable sensor, as in production.

- baseline  the work: time inside the three Glue scripts (``orders_audit_landing``, which counts
  the landing layer from the data, ``orders_landing_to_staging`` and
  ``orders_staging_to_warehouse_staging``; each job run's CompletedOn - StartedOn from
  ``glue.get_job_runs``, which the emulator stamps when the script's process starts and ends) plus
  time inside warehouse SQL, bounded above by the durations of the SQL tasks
  (create_warehouse_tables; load_final_table, which takes the warehouse layers' counts too);
- candidate the wall time of ``dag.test()``.

Orchestration share = wall - Glue scripts - warehouse SQL. It covers Airflow itself (scheduling,
task start-up, XCom, the sensor) and the in-Airflow tasks, which read metadata only: the landing
count from the audit job's JSON report, the Great Expectations schema checks and the staging count
from parquet footers, the crawlers, reconcile and SNS; the block breaks it down. One run per
``--repeat`` (default 1), each on a fresh batch, in one process after an untimed warm-up run on
1,000 orders: like a worker that has run tasks before, the process has paid its one-time costs
(the in-process execution API's start, the Great Expectations import, the bytecode cache). Target: an
orchestration share of at most 25 % of the wall time.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    WARMUP_ORDERS,
    Session,
    Verdict,
    airflow_setup,
    glue_job_runs,
    median,
    orchestration_breakdown,
    progress,
    result_block,
    run_dag_child,
    task_records,
)

NAME = "orders_dag"
DAG_ID = "orders_pipeline"
DAG_FILE = "orders_pipeline.py"  # the bundle of dag.test(): this file alone (see airflow_setup)
# Every Glue job of the DAG and the task that runs it, in DAG order: their scripts are work.
GLUE_JOBS = ("orders_audit_landing", "orders_landing_to_staging", "orders_staging_to_warehouse_staging")
GLUE_TASKS = ("audit_landing", "landing_to_staging", "staging_to_warehouse_staging")
SQL_TASKS = ("create_warehouse_tables", "load_final_table")
TARGET_SHARE = 0.25


def _run_dags(env: dict[str, str], workdir: Path, batch_ids: list[str]) -> list[dict]:
    """One ``dag.test()`` per batch, one after another in one fresh child (a worker that has run
    a batch before), with a progress line per finished task."""
    result_file, log_file = workdir / "runs.json", workdir / "runs.log"
    run = run_dag_child(__name__, [str(result_file), *batch_ids], env, log_file, "dag.test()")
    results = json.loads(result_file.read_text())
    for batch_id, result in zip(batch_ids, results, strict=True):
        result["child_peak_rss_mb"] = run.peak_rss_mb
        if result["state"] != "success" or result["claimed"] != batch_id or not result["loaded"]:
            states = {t["task_id"]: t["state"] for t in result["tasks"]}
            raise RuntimeError(
                f"{DAG_ID} run for {batch_id} ended {result['state']} having claimed {result['claimed']}: "
                f"{states}; log {log_file}"
            )
    return results


def _breakdown(result: dict) -> dict:
    return orchestration_breakdown(result, GLUE_TASKS, SQL_TASKS)


def run(session: Session) -> list[Verdict]:
    repeat = session.repeats(1)
    workdir, env = airflow_setup(session, NAME, dag_files=(DAG_FILE,))

    # Oldest marker first: the warm-up batch is claimed first, then the measured ones in order.
    batches = [session.new_batch(WARMUP_ORDERS, write_marker=True)]
    batches += [session.new_batch(session.dag_orders, write_marker=True) for _ in range(repeat)]
    progress(f"{DAG_ID} with dag.test(): a warm-up batch of {WARMUP_ORDERS:,} orders (untimed), then "
             f"{repeat} of {session.dag_orders:,}, in one process ...")  # fmt: skip
    results = _run_dags(env, workdir, [batch.batch_id for batch in batches])
    warmup = _breakdown(results[0])
    results = results[1:]
    runs = [_breakdown(result) for result in results]
    for index, result in enumerate(results):
        progress(f"run {index + 1}/{repeat}: {result['wall_seconds']:.1f} s")

    def med(key: str) -> float:
        return median([r[key] for r in runs])

    wall, glue, sql, orchestration = med("wall"), med("glue"), med("sql"), med("orchestration")
    work = glue + sql
    slowest = sorted(runs[0]["durations"].items(), key=lambda item: -item[1])[:8]
    glue_runs = ", ".join(f"{r['job']} {r['seconds']:.1f} s" for r in results[0]["glue_runs"])
    return [
        result_block(
            NAME,
            f"{DAG_ID}, {session.dag_orders:,} orders through dag.test()",
            measured=f"{repeat} run(s) on fresh batches of {session.dag_orders:,} orders, medians; stack on loopback",
            baseline=("work: Glue + SQL", f"{work:.1f} s (Glue scripts {glue:.1f} s + warehouse SQL <= {sql:.1f} s)"),
            candidate=("dag.test() wall", f"{wall:.1f} s ({session.dag_orders / wall:,.0f} orders/s end to end)"),
            difference=f"orchestration share {orchestration:.1f} s = {orchestration / wall:.0%} of the wall time",
            ratio=f"wall / work = {wall / work:.2f}",
            target=f"orchestration share <= {TARGET_SHARE:.0%}",
            passed=orchestration / wall <= TARGET_SHARE,
            details=[
                "orchestration share, broken down: "
                f"Glue operators around their runs {med('glue_operator'):.1f} s (script upload, job update, "
                f"polling, log fetch); other tasks {med('other_tasks'):.1f} s (sensor, claim, crawlers, "
                f"counts from the audit report and parquet footers, GX footer checks, reconcile, SNS); "
                f"between tasks {med('between_tasks'):.1f} s",
                f"Glue job runs (StartedOn..CompletedOn): {glue_runs}",
                "slowest tasks: " + ", ".join(f"{task_id} {seconds:.1f} s" for task_id, seconds in slowest),
                f"peak RSS of the dag.test() process (tasks run in it): "
                f"{median([r['child_peak_rss_mb'] for r in results]):,.0f} MB",
                f"warm-up run at {WARMUP_ORDERS:,} orders (with the process's one-time costs): "
                f"{warmup['wall']:.1f} s wall, of which Glue {warmup['glue']:.1f} s, SQL <= {warmup['sql']:.1f} s",
            ],
        )
    ]


# -- inside the configured child: python -P bench/orders_dag.py RESULT_FILE BATCH_ID... --------------------------


def child_main(result_file: Path, batch_ids: list[str]) -> None:
    import boto3
    from airflow.configuration import conf as airflow_conf
    from airflow.dag_processing.dagbag import DagBag

    from devstack.runs import task_return_value
    from etl_toolkit.tasks.frame import CLAIM_KEY

    dag = DagBag(dag_folder=airflow_conf.get("core", "dags_folder")).get_dag(DAG_ID)
    conf = {name: dag.params.get_param(name).value for name in dag.params}
    conf.update(batch_id=None, reprocess=False)  # wait for the marker, as a production run does
    results = []
    for batch_id in batch_ids:
        started_on = datetime.now(UTC)
        started = time.perf_counter()
        dag_run = dag.test(run_conf=conf)
        wall = time.perf_counter() - started
        landing = boto3.client("s3").list_objects_v2(
            Bucket="fo-to-dw-orders-landing-area", Prefix=f"batch-archive/loaded/{batch_id}.json"
        )
        results.append({
            "batch_id": batch_id,
            "claimed": (task_return_value(dag_run, "claim_batch", key=CLAIM_KEY) or {}).get("batch_id"),
            "state": str(dag_run.state),
            "wall_seconds": wall,
            "glue_runs": glue_job_runs(GLUE_JOBS, started_on),
            "tasks": task_records(dag_run),
            "loaded": landing.get("KeyCount", 0) > 0,  # the run took this batch and set its marker aside
        })  # fmt: skip
    result_file.write_text(json.dumps(results, default=str))


if __name__ == "__main__":
    child_main(Path(sys.argv[1]), sys.argv[2:])
