"""supplychain_dag: a whole drop through ``supply_chain_pipeline`` with ``dag.test()``, and how much
of its wall time is orchestration rather than the work itself.

The approach of bench/orders_dag.py: the test suite's stack (``python -m devstack up`` on free
ports), Airflow configured as ``tests/conftest.py`` configures it (SQLite metadata database in a
temporary AIRFLOW_HOME, Glue polled every 0.1 s as under make airflow) in a child process, and the
drop found by the deferrable sensor from its marker, as in production. The supply-chain buckets are emptied
and the ``supplychain`` warehouse schema and audit rows dropped first; the source is a default
``populate``'s state (``devstack.sample_data.supplychain``). The measured drop holds
``--supplychain-shipments`` shipments (default 1,000,000) and a fifth as many purchase orders,
written by ``write_batch`` with its defaults (two zip archives; 1 % of the rows sent twice, 1 %
naming an unknown id).

- baseline  the work: time inside the four Glue scripts (``supplychain_silver_dimensions``,
  ``supplychain_silver_facts``, ``supplychain_gold_summaries``, ``supplychain_load_warehouse``,
  every one on the critical path; each job run's CompletedOn - StartedOn from
  ``glue.get_job_runs``, which the emulator stamps when the script's process starts and ends)
  plus time inside warehouse SQL, bounded above by the duration of the SQL task
  (count_warehouse);
- candidate the wall time of ``dag.test()``.

Orchestration share = wall - Glue scripts - warehouse SQL. It covers Airflow itself (scheduling,
task start-up, XCom, the sensor) and the in-Airflow tasks, which read metadata only: the counts
from the jobs' reports, the Great Expectations checks of the dimensions from parquet footers, the
crawlers, reconcile, the marker's archive and SNS; the block breaks it down. One run per
``--repeat`` (default 1), each on a fresh drop, in one process after an untimed warm-up run on a
drop of 2,000 shipments, which also makes the first (whole) load of the dimensions: each measured
run's dimensions job then finds nothing changed in the source, as when the source is quiet between
drops. Target: an orchestration share of at most 25 % of the wall time (as ``orders_dag``).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    REPO,
    Session,
    Verdict,
    airflow_setup,
    fmt_samples,
    glue_job_runs,
    median,
    orchestration_breakdown,
    progress,
    result_block,
    run_dag_child,
    task_records,
)

NAME = "supplychain_dag"
DAG_ID = "supply_chain_pipeline"
# Every Glue job of the DAG and the task that runs it, in DAG order: their scripts are work.
GLUE_JOBS = (
    "supplychain_silver_dimensions", "supplychain_silver_facts", "supplychain_gold_summaries",
    "supplychain_load_warehouse",
)  # fmt: skip
GLUE_TASKS = ("silver_dimensions", "silver_facts", "gold", "load_warehouse")
SQL_TASKS = ("count_warehouse",)
WARMUP_SHIPMENTS = 2_000
TARGET_SHARE = 0.25


def _write_drops(session: Session, sizes: list[int]) -> list:
    """One drop (archives and marker) per size, in order, so the sensor claims them in that order;
    each drop's keys follow the previous one's."""
    from devstack.sample_data import supplychain

    ids, catalog = session.supplychain_source()
    s3 = session.stack().client("s3")
    drops, next_id = [], None
    for index, shipments in enumerate(sizes):
        batch_id = f"bench-sc-{index}-{shipments}"
        progress(f"writing drop {batch_id}: {shipments:,} shipments, {max(1, shipments // 5):,} purchase orders ...")
        started = time.perf_counter()
        drop = supplychain.write_batch(
            s3, batch_id, ids=ids, catalog=catalog, shipments=shipments, purchase_orders=max(1, shipments // 5),
            seed=index, start_id=next_id, keep_rows=False,
        )  # fmt: skip
        next_id = drop.next_id
        progress(f"drop {batch_id} written in {time.perf_counter() - started:.1f} s: rows {drop.expected_counts}")
        drops.append(drop)
    return drops


def _run_dags(env: dict[str, str], workdir: Path, batch_ids: list[str]) -> list[dict]:
    """One ``dag.test()`` per drop, one after another in one fresh child (a worker that has run a
    drop before), with a progress line per finished task."""
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
    shipments, purchase_orders = session.supplychain_shipments, session.supplychain_purchase_orders
    workdir, env = airflow_setup(session, NAME)
    session.reset_supplychain()
    try:
        drops = _write_drops(session, [WARMUP_SHIPMENTS] + [shipments] * repeat)
        progress(f"{DAG_ID} with dag.test(): a warm-up drop of {WARMUP_SHIPMENTS:,} shipments (untimed), then "
                 f"{repeat} of {shipments:,}, in one process ...")  # fmt: skip
        results = _run_dags(env, workdir, [drop.batch_id for drop in drops])
    finally:
        session.reset_supplychain()  # the drops, silver and gold leave the emulator's memory
    warmup = _breakdown(results[0])
    results = results[1:]
    runs = [_breakdown(result) for result in results]
    for index, result in enumerate(results):
        progress(f"run {index + 1}/{repeat}: {result['wall_seconds']:.1f} s")

    def med(key: str) -> float:
        return median([r[key] for r in runs])

    wall, glue, sql, orchestration = med("wall"), med("glue"), med("sql"), med("orchestration")
    work = glue + sql
    rows = sum(drops[1].expected_counts.values())
    slowest = sorted(runs[0]["durations"].items(), key=lambda item: -item[1])[:8]
    glue_runs = ", ".join(f"{r['job']} {r['seconds']:.1f} s" for r in results[0]["glue_runs"])
    return [
        result_block(
            NAME,
            f"{DAG_ID}, a drop of {shipments:,} shipments and {purchase_orders:,} purchase orders through dag.test()",
            measured=(
                f"{repeat} run(s) on fresh drops of {rows:,} rows ({drops[1].expected_counts}), medians; "
                "stack on loopback"
            ),
            baseline=(
                "work: Glue + SQL",
                f"{work:.1f} s (Glue scripts {glue:.1f} s + warehouse SQL <= {sql:.1f} s; "
                f"samples {fmt_samples([r['glue'] + r['sql'] for r in runs], digits=1)})",
            ),
            candidate=(
                "dag.test() wall",
                f"{wall:.1f} s ({rows / wall:,.0f} rows/s end to end; samples "
                f"{fmt_samples([r['wall'] for r in runs], digits=1)})",
            ),
            difference=f"orchestration share {orchestration:.1f} s = {orchestration / wall:.0%} of the wall time",
            ratio=f"wall / work = {wall / work:.2f}",
            target=f"orchestration share <= {TARGET_SHARE:.0%}",
            passed=orchestration / wall <= TARGET_SHARE,
            details=[
                "orchestration share, broken down: "
                f"Glue operators around their runs {med('glue_operator'):.1f} s (script upload, job update, "
                f"polling, log fetch); other tasks {med('other_tasks'):.1f} s (sensor, claim, crawlers, "
                f"counts from the jobs' reports, GX footer checks, reconcile, SNS); "
                f"between tasks {med('between_tasks'):.1f} s",
                f"Glue job runs (StartedOn..CompletedOn): {glue_runs}",
                "slowest tasks: " + ", ".join(f"{task_id} {seconds:.1f} s" for task_id, seconds in slowest),
                f"peak RSS of the dag.test() process (tasks run in it): "
                f"{median([r['child_peak_rss_mb'] for r in results]):,.0f} MB",
                f"warm-up run at {WARMUP_SHIPMENTS:,} shipments (with the process's one-time costs and the "
                f"dimensions' first load): {warmup['wall']:.1f} s wall, of which Glue {warmup['glue']:.1f} s, "
                f"SQL <= {warmup['sql']:.1f} s",
            ],
        )
    ]


# -- inside the configured child: python -P bench/supplychain_dag.py RESULT_FILE BATCH_ID... ------------------


def child_main(result_file: Path, batch_ids: list[str]) -> None:
    import boto3
    from airflow.dag_processing.dagbag import DagBag

    from devstack.runs import task_return_value
    from devstack.sample_data.supplychain import LANDING_BUCKET
    from etl_toolkit.tasks.frame import CLAIM_KEY

    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag(DAG_ID)
    conf = {name: dag.params.get_param(name).value for name in dag.params}
    conf.update(batch_id=None, reprocess=False)  # wait for the marker, as a production run does
    results = []
    for batch_id in batch_ids:
        started_on = datetime.now(UTC)
        started = time.perf_counter()
        dag_run = dag.test(run_conf=conf)
        wall = time.perf_counter() - started
        archived = boto3.client("s3").list_objects_v2(
            Bucket=LANDING_BUCKET, Prefix=f"batch-archive/loaded/{batch_id}.json"
        )
        results.append({
            "batch_id": batch_id,
            "claimed": (task_return_value(dag_run, "claim_batch", key=CLAIM_KEY) or {}).get("batch_id"),
            "state": str(dag_run.state),
            "wall_seconds": wall,
            "glue_runs": glue_job_runs(GLUE_JOBS, started_on),
            "tasks": task_records(dag_run),
            "loaded": archived.get("KeyCount", 0) > 0,  # the run took this drop and set its marker aside
        })  # fmt: skip
    result_file.write_text(json.dumps(results, default=str))


if __name__ == "__main__":
    child_main(Path(sys.argv[1]), sys.argv[2:])
