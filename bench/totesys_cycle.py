"""totesys_cycle: a whole totesys cycle, ``totesys_ingest`` then ``totesys_warehouse`` with
``dag.test()``, from the source (100,000 sales orders) to the star schema, and how much of its wall
time is orchestration rather than the work itself.

The cycle runs as ``make demo PIPELINE=totesys`` (devstack/demo.py) and tests/e2e/test_totesys_pipeline.py
run its first full load: ``totesys_ingest`` with ``tables`` unset (all eleven), then
``totesys_warehouse`` on the batch that ``plan_batch`` named, with ``reprocess`` off; both in one
child process configured as ``tests/conftest.py`` configures Airflow (the approach and helpers of
bench/orders_dag.py). The source is the simulator's starting state (``devstack.sample_data.totesys
init``) with BENCH_TOTESYS_SALES_ORDERS (``--totesys-sales-orders``, default 100,000) sales orders;
before each run the totesys buckets are emptied (so no watermarks: a full first load) and the
``totesys`` warehouse schema and audit rows are dropped, outside the timing.

- baseline  the work: time inside the two Glue scripts (each job run's CompletedOn - StartedOn from
  ``glue.get_job_runs``: ``totesys_extract`` and ``totesys_remodel``) plus time inside warehouse SQL,
  bounded above by the durations of the SQL tasks (create_warehouse_tables, load_warehouse,
  count_warehouse; the last two also read the batch's processed parquet);
- candidate the wall time of the cycle: both ``dag.test()`` calls, back to back.

Orchestration share = wall - Glue scripts - warehouse SQL. It covers Airflow itself (scheduling,
task start-up, XCom, the sensor) and the in-Airflow tasks (Great Expectations checks of the eleven
ingested tables and the landing and processed counts, all from parquet footers; the crawler;
reconcile, archive, SNS); the block breaks it down. One run per ``--repeat`` (default 1), each in
a fresh process, after an untimed warm-up cycle on a source of 1,000 sales orders that fills the
bytecode cache. No target is set: the block reports.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import (
    REPO,
    WARMUP_TOTESYS_SALES_ORDERS,
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
from devstack.runs import task_return_value

NAME = "totesys_cycle"
INGEST_DAG, WAREHOUSE_DAG = "totesys_ingest", "totesys_warehouse"
INGESTION_BUCKET = "totesys-ingestion"
GLUE_JOBS = ("totesys_extract", "totesys_remodel")
GLUE_TASKS = ("extract", "remodel")
SQL_TASKS = ("create_warehouse_tables", "load_warehouse", "count_warehouse")


def _run_cycle(session: Session, env: dict[str, str], workdir: Path, name: str, label: str) -> dict:
    """One cycle in a fresh child, from no trace of totesys outside the source."""
    session.reset_totesys()
    result_file, log_file = workdir / f"{name}.json", workdir / f"{name}.log"
    run = run_dag_child(__name__, [str(result_file)], env, log_file, label)
    result = json.loads(result_file.read_text())
    result["child_peak_rss_mb"] = run.peak_rss_mb
    if result["states"] != {INGEST_DAG: "success", WAREHOUSE_DAG: "success"} or not result["loaded"]:
        failed = {t["task_id"]: t["state"] for t in result["tasks"] if t["state"] != "success"}
        raise RuntimeError(f"cycle {name} ended {result['states']}; tasks not successful: {failed}; log {log_file}")
    conn = session.stack().warehouse_connection()
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM totesys.fact_sales_order")
            loaded = cursor.fetchone()[0]
    finally:
        conn.close()
    if loaded != result["expected_counts"]["sales_order"]:
        raise RuntimeError(f"cycle {name}: {loaded} rows in totesys.fact_sales_order, expected "
                           f"{result['expected_counts']['sales_order']}; log {log_file}")  # fmt: skip
    return result


def _breakdown(result: dict) -> dict:
    return {**orchestration_breakdown(result, GLUE_TASKS, SQL_TASKS), "dag_walls": result["dag_walls"]}


def run(session: Session) -> list[Verdict]:
    repeat = session.repeats(1)
    sales_orders = session.totesys_sales_orders
    workdir, env = airflow_setup(session, NAME)
    # Each cycle changes the source and extracts at once: no commit lag to wait out.
    env = {**env, "AIRFLOW_VAR_TOTESYS_COMMIT_LAG_SECONDS": "0"}

    session.totesys_source(WARMUP_TOTESYS_SALES_ORDERS)
    progress(f"warm-up cycle on {WARMUP_TOTESYS_SALES_ORDERS:,} sales orders (untimed; fills the bytecode cache) ...")
    warmup = _breakdown(_run_cycle(session, env, workdir, "warmup", "warm-up"))

    source = session.totesys_source(sales_orders)
    rows = sum(source.values())
    runs, results = [], []
    try:
        for index in range(repeat):
            label = f"run {index + 1}/{repeat}"
            progress(f"{label}: {INGEST_DAG} then {WAREHOUSE_DAG} on {sales_orders:,} sales orders with dag.test() ...")
            result = _run_cycle(session, env, workdir, f"run-{index + 1}", label)
            runs.append(_breakdown(result))
            results.append(result)
            progress(f"{label}: {result['wall_seconds']:.1f} s")
    finally:
        session.reset_totesys()

    def med(key: str) -> float:
        return median([r[key] for r in runs])

    wall, glue, sql, orchestration = med("wall"), med("glue"), med("sql"), med("orchestration")
    work = glue + sql
    ingest_wall = median([r["dag_walls"][INGEST_DAG] for r in runs])
    warehouse_wall = median([r["dag_walls"][WAREHOUSE_DAG] for r in runs])
    slowest = sorted(runs[0]["durations"].items(), key=lambda item: -item[1])[:8]
    glue_runs = ", ".join(f"{r['job']} {r['seconds']:.1f} s" for r in results[0]["glue_runs"])
    return [
        result_block(
            NAME,
            f"{INGEST_DAG} + {WAREHOUSE_DAG}, {sales_orders:,} sales orders ({rows:,} source rows) through dag.test()",
            measured=f"{repeat} full-load cycle(s) from a fresh start, medians; stack on loopback",
            baseline=("work: Glue + SQL", f"{work:.1f} s (Glue scripts {glue:.1f} s + warehouse SQL <= {sql:.1f} s)"),
            candidate=(
                "dag.test() wall",
                f"{wall:.1f} s ({INGEST_DAG} {ingest_wall:.1f} s + {WAREHOUSE_DAG} {warehouse_wall:.1f} s; "
                f"{rows / wall:,.0f} source rows/s end to end)",
            ),
            difference=f"orchestration share {orchestration:.1f} s = {orchestration / wall:.0%} of the wall time",
            ratio=f"wall / work = {wall / work:.2f}",
            target="none set (report only)",
            passed=None,
            details=[
                "orchestration share, broken down: "
                f"Glue operators around their runs {med('glue_operator'):.1f} s (script upload, job update, "
                f"polling, log fetch); other tasks {med('other_tasks'):.1f} s (plan, sensor, claim, GX "
                f"footer checks, footer counts, crawler, reconcile, archive, SNS); between tasks "
                f"{med('between_tasks'):.1f} s",
                f"Glue job runs (StartedOn..CompletedOn): {glue_runs}",
                "slowest tasks: " + ", ".join(f"{task_id} {seconds:.1f} s" for task_id, seconds in slowest),
                f"peak RSS of the dag.test() process (tasks run in it): "
                f"{median([r['child_peak_rss_mb'] for r in results]):,.0f} MB",
                f"warm-up cycle at {WARMUP_TOTESYS_SALES_ORDERS:,} sales orders (fixed cost of a cycle): "
                f"{warmup['wall']:.1f} s wall, of which Glue {warmup['glue']:.1f} s, SQL <= {warmup['sql']:.1f} s",
            ],
        )
    ]


# -- inside the configured child: python -P bench/totesys_cycle.py RESULT_FILE --------------------------------


def child_main(result_file: Path) -> None:
    import boto3
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    ingest, load = bag.get_dag(INGEST_DAG), bag.get_dag(WAREHOUSE_DAG)
    started_on = datetime.now(UTC)
    started = time.perf_counter()
    ingest_run = ingest.test(run_conf={"tables": None})
    ingest_wall = time.perf_counter() - started
    batch_id = (task_return_value(ingest_run, "plan_batch") or {}).get("batch_id")
    dag_runs = [ingest_run]
    if str(ingest_run.state) == "success" and batch_id:
        dag_runs.append(load.test(run_conf={"batch_id": batch_id, "reprocess": False}))
    wall = time.perf_counter() - started

    s3 = boto3.client("s3")
    archived = f"batch-archive/loaded/{batch_id}.json"
    loaded = s3.list_objects_v2(Bucket=INGESTION_BUCKET, Prefix=archived).get("KeyCount", 0) > 0
    marker = json.loads(s3.get_object(Bucket=INGESTION_BUCKET, Key=archived)["Body"].read()) if loaded else {}
    result = {
        "batch_id": batch_id,
        "states": {dag_run.dag_id: str(dag_run.state) for dag_run in dag_runs},
        "wall_seconds": wall,
        "dag_walls": {INGEST_DAG: ingest_wall, WAREHOUSE_DAG: wall - ingest_wall},
        "glue_runs": glue_job_runs(GLUE_JOBS, started_on),
        "tasks": [task for dag_run in dag_runs for task in task_records(dag_run)],
        "loaded": loaded,  # the warehouse run took this batch and set its marker aside as loaded
        "expected_counts": marker.get("expected_counts", {}),
    }
    result_file.write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    child_main(Path(sys.argv[1]))
