"""``make demo``: one pipeline end to end on the local stack, and a report a person wants to read.

1. Uses the stack that ``make stack`` is running (``.local/stack.env``), or starts one for the
   demo and stops it afterwards.
2. Writes a sample batch the way upstream would: data files first, the completion marker last.
3. Runs the DAG with ``dag.test()`` in a fresh process configured by ``stack.env``: the deferrable
   sensor sees the marker, the Glue jobs and crawlers run, the warehouse is loaded.
4. Prints each task's state and duration, the audit counts by layer, the SNS messages read back
   from their inbox queues and the warehouse row counts; exits non-zero if the run failed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from devstack.airflow_config import local_airflow_config
from devstack.resources import TOPICS, inbox_queue
from devstack.runs import task_return_value
from devstack.stack import DEFAULT_STATE_DIR, REPO_ROOT, read_env_file, stack_answers

PIPELINES = {
    "orders": "orders_pipeline",
    "totesys": "totesys_warehouse",
    "ecommerce": "ecommerce_pipeline",
    "shipping": "shipping_pipeline",
    "supplychain": "supply_chain_pipeline",
}


def main(pipeline: str, orders: int, seed: int) -> int:
    if pipeline not in PIPELINES:
        sys.exit(f"unknown pipeline {pipeline!r}; choose one of: {', '.join(PIPELINES)}")
    env_file = DEFAULT_STATE_DIR / "stack.env"
    stack_process = None
    if not stack_answers(env_file):
        print("starting the local stack for the demo (make stack keeps one running)...", flush=True)
        DEFAULT_STATE_DIR.mkdir(parents=True, exist_ok=True)  # a fresh clone has no .local/ yet
        stack_process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "up", "--exit-with-parent"],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=open(DEFAULT_STATE_DIR / "demo-stack.log", "w"),  # noqa: SIM115 - lives as long as the stack
        )
        _wait_for(env_file, stack_process)
    try:
        env = {**os.environ, **read_env_file(env_file), **local_airflow_config(),
               # The demo changes the totesys source and extracts at once: no commit lag to wait out.
               "AIRFLOW_VAR_TOTESYS_COMMIT_LAG_SECONDS": "0",
               "AIRFLOW_VAR_SUPPLYCHAIN_COMMIT_LAG_SECONDS": "0"}  # fmt: skip
        batch_id = f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        logs = DEFAULT_STATE_DIR / "demo" / f"{batch_id}.log"
        report_file = logs.with_suffix(".report")
        logs.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "devstack.demo", PIPELINES[pipeline], batch_id, str(orders), str(seed)]
        command.append(str(report_file))
        with logs.open("w") as log:
            run = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            _follow(logs, run)
        if report_file.exists():
            print(report_file.read_text())
        print(f"full Airflow log of the run: {logs}")
        return run.returncode
    finally:
        if stack_process:
            stack_process.terminate()
            stack_process.wait(timeout=60)


# Lines of the run's log that a person watching the demo wants to see, as they happen.
_PROGRESS = re.compile(
    r"writing sample batch|marker batch-completion|running \S+ with dag.test|\[DAG TEST\] end task task_id=(\S+)"
)


def _follow(logs: Path, run: subprocess.Popen) -> None:
    """Print a progress line per finished task while the run writes its (long) log to a file."""
    started, position = time.monotonic(), 0
    while True:
        finished = run.poll() is not None
        with logs.open() as log:
            log.seek(position)
            for line in log:
                if match := _PROGRESS.search(line):
                    text = f"task {match[1]} finished" if match[1] else line.strip()
                    print(f"[{time.monotonic() - started:6.1f} s] {text}", flush=True)
            position = log.tell()
        if finished:
            return
        time.sleep(0.5)


def _wait_for(env_file: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not env_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            log = DEFAULT_STATE_DIR / "demo-stack.log"
            reasons = [
                line for line in log.read_text(errors="replace").splitlines() if "FATAL" in line or "Error" in line
            ]
            sys.exit(
                f"the local stack did not start (is `make stack` or another stack using ports 5555/5433?); see {log}"
                + "".join(f"\n  {line}" for line in reasons[-3:])
            )
        time.sleep(0.2)


# -- inside the configured process ------------------------------------------------------------


def run_orders(dag_id: str, batch_id: str, orders: int, seed: int, report_file: Path) -> int:
    import boto3

    from devstack.sample_data.orders import write_orders_batch

    s3 = boto3.client("s3")
    bucket = "fo-to-dw-orders-landing-area"
    print(f"writing sample batch {batch_id}: {orders} orders (seed {seed}) to s3://{bucket}/orders/ ...", flush=True)
    marker = write_orders_batch(s3, bucket, batch_id, orders=orders, seed=seed)
    print(f"marker batch-completion/{batch_id}.json written: expected {marker['expected_counts']}", flush=True)
    return run_and_report(dag_id, "orders", batch_id, ["orders.fact_order_lines"], report_file)


def run_and_report(dag_id: str, pipeline: str, batch_id: str, final_tables: list[str], report_file: Path) -> int:
    from airflow.dag_processing.dagbag import DagBag

    for topic in TOPICS:
        _read_inbox(topic)  # start from empty inboxes: the report shows this run's messages only
    dag = DagBag(dag_folder=str(REPO_ROOT / "dags")).get_dag(dag_id)
    print(f"running {dag_id} with dag.test() ...", flush=True)
    started = time.monotonic()
    dag_run = dag.test()
    elapsed = time.monotonic() - started
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        report(dag_run, pipeline, batch_id, final_tables, elapsed)
    report_file.write_text(text.getvalue())
    return 0 if dag_run.state == "success" else 1


def report(dag_run, pipeline: str, batch_id: str, final_tables: list[str], elapsed: float) -> None:
    rule = "=" * 78
    print(f"\n{rule}\n{dag_run.dag_id}  run {dag_run.run_id}: {str(dag_run.state).upper()} in {elapsed:.1f} s\n{rule}")
    print(f"\n{'task':<34}{'state':<16}{'seconds':>8}")
    for ti in sorted(dag_run.get_task_instances(), key=lambda t: (t.start_date is None, t.start_date)):
        seconds = f"{ti.duration:.1f}" if ti.duration is not None else "-"
        print(f"{ti.task_id:<34}{str(ti.state):<16}{seconds:>8}")

    rows = _warehouse(
        "SELECT layer, row_count, details FROM audit.layer_counts WHERE pipeline = %s AND batch_id = %s "
        "ORDER BY counted_at",
        (pipeline, batch_id),
    )
    print(f"\naudit counts for batch {batch_id} (audit.layer_counts):")
    for layer, row_count, details in rows:
        print(f"  {layer:<20}{row_count:>10}   {json.dumps(details)}")
    status = _warehouse(
        "SELECT status, error FROM audit.batches WHERE pipeline = %s AND batch_id = %s", (pipeline, batch_id)
    )
    if status:
        print(f"  batch status: {status[0][0]}" + (f" ({status[0][1]})" if status[0][1] else ""))

    print("\nSNS messages read back from their inbox queues:")
    for topic in TOPICS:
        for envelope in _read_inbox(topic):
            body = json.loads(envelope["Message"])
            print(f"  [{inbox_queue(topic)}] subject: {envelope.get('Subject')}")
            for name in ("status", "dag_run_id", "task_id", "error", "note", "durations_seconds", "metrics",
                         "query_execution_id"):  # fmt: skip
                if body.get(name) is not None:
                    print(f"    {name}: {str(body[name])[:400]}")
            if body.get("counts_table"):
                print("    " + body["counts_table"].replace("\n", "\n    "))

    if final_tables:
        print("\nwarehouse:")
    for table in final_tables:
        total = _warehouse(f"SELECT count(*) FROM {table}", ())[0][0]  # fixed names from the caller
        mine = _warehouse(f"SELECT count(*) FROM {table} WHERE run_id = %s", (batch_id,))[0][0]
        print(f"  {table}: {total} rows, {mine} from batch {batch_id}")
    print(rule)


def _warehouse(query: str, parameters: tuple):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    try:  # a plain cursor: the hook's own helpers log every statement into the report
        with PostgresHook(postgres_conn_id="warehouse_db").get_conn() as conn, conn.cursor() as cursor:
            cursor.execute(query, parameters)
            return cursor.fetchall()
    except Exception as error:  # the report must not hide the run's own outcome
        print(f"  (warehouse query failed: {error})")
        return []


def _read_inbox(topic: str) -> list[dict]:
    import boto3

    from devstack.resources import read_inbox

    return read_inbox(boto3.client("sqs"), topic)


# -- totesys: two ingestions of a living source database, each taken to the warehouse ---------------

TOTESYS_BUCKETS = ("totesys-ingestion", "totesys-processed")
TOTESYS_TABLES = ("dim_date", "dim_staff", "dim_location", "dim_currency", "dim_design", "dim_counterparty",
                  "dim_payment_type", "dim_transaction", "fact_sales_order", "fact_purchase_orders",
                  "fact_payment")  # fmt: skip


def run_totesys(dag_id: str, batch_id: str, orders: int, seed: int, report_file: Path) -> int:
    """A first full load, a simulated business day, a second run, and the report.

    ``orders`` is the number of sales orders in the source's starting state; the business day
    adds a twentieth of that. The demo starts from a fresh source, empty totesys buckets and no
    totesys warehouse schema. (``batch_id`` names only the log: the ingestion names its batches.)
    """
    import boto3
    from airflow.dag_processing.dagbag import DagBag

    from devstack.sample_data import totesys as source

    s3 = boto3.client("s3")
    for bucket in TOTESYS_BUCKETS:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
    _warehouse_execute("DROP SCHEMA IF EXISTS totesys CASCADE")
    _warehouse_execute("DELETE FROM audit.layer_counts WHERE pipeline = 'totesys'", missing_ok=True)
    _warehouse_execute("DELETE FROM audit.batches WHERE pipeline = 'totesys'", missing_ok=True)
    for topic in TOPICS:
        _read_inbox(topic)

    bag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    ingest, load = bag.get_dag("totesys_ingest"), bag.get_dag(dag_id)
    conn = source.connect()
    print(f"writing sample batch: the totesys source's starting state, {orders} sales orders (seed {seed}) ...",
          flush=True)  # fmt: skip
    started = source.init(conn, sales_orders=orders, seed=seed)
    days, runs = [("starting state", started)], []
    ok = True
    for step in ("first full load", "after a business day"):
        if step != "first full load":
            day = source.business_day(conn, sales_orders=max(5, orders // 20), seed=seed + 1)
            days.append(("business day", day))
            print(f"writing sample batch: a business day in the source: {json.dumps(day)}", flush=True)
        print("running totesys_ingest with dag.test() ...", flush=True)
        ingest_run = ingest.test(run_conf={"tables": None})
        batch = task_return_value(ingest_run, "plan_batch") or {}
        print(f"marker batch-completion/{batch.get('batch_id')}.json written by the extract", flush=True)
        print(f"running {dag_id} with dag.test() ...", flush=True)
        load_run = load.test(run_conf={"batch_id": batch.get("batch_id"), "reprocess": False})
        runs.append((step, batch.get("batch_id"), ingest_run, load_run))
        ok = ok and ingest_run.state == "success" and load_run.state == "success"
        if not ok:
            break
    conn.close()
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        report_totesys(runs, days)
    report_file.write_text(text.getvalue())
    return 0 if ok else 1


def report_totesys(runs: list, days: list) -> None:
    rule = "=" * 78
    for step, batch_id, *dag_runs in runs:
        print(f"\n{rule}\n{step}: batch {batch_id}\n{rule}")
        for dag_run in dag_runs:
            print(f"\n{dag_run.dag_id}  run {dag_run.run_id}: {str(dag_run.state).upper()}")
            for ti in sorted(dag_run.get_task_instances(), key=lambda t: (t.start_date is None, t.start_date)):
                seconds = f"{ti.duration:.1f}" if ti.duration is not None else "-"
                print(f"  {ti.task_id:<32}{str(ti.state):<16}{seconds:>8}")
        rows = _warehouse(
            "SELECT layer, details FROM audit.layer_counts WHERE pipeline = 'totesys' AND batch_id = %s "
            "ORDER BY counted_at",
            (batch_id,),
        )
        layers = {layer: details.get("counts", {}) for layer, details in rows}
        print(f"\nrows per table by layer (audit.layer_counts, batch {batch_id}):")
        print("  " + f"{'table':<24}" + "".join(f"{layer:>12}" for layer in layers))
        for table in sorted({t for c in layers.values() for t in c}, key=lambda t: (t in TOTESYS_TABLES, t)):
            print("  " + f"{table:<24}" + "".join(f"{str(c.get(table, '-')):>12}" for c in layers.values()))

    print(f"\n{rule}\nwhat changed in the source\n{rule}")
    for name, change in days:
        print(f"  {name}: {json.dumps(change)}")

    print("\nSNS messages read back from their inbox queues:")
    for topic in TOPICS:
        for envelope in _read_inbox(topic):
            body = json.loads(envelope["Message"])
            print(f"  [{inbox_queue(topic)}] subject: {envelope.get('Subject')}")
            for name in ("status", "dag_run_id", "task_id", "error", "note"):
                if body.get(name) is not None:
                    print(f"    {name}: {str(body[name])[:400]}")
            if body.get("counts_table"):
                print("    " + body["counts_table"].replace("\n", "\n    "))

    print("\nwarehouse (schema totesys):")
    for table in TOTESYS_TABLES:  # fixed names
        total = _warehouse(f"SELECT count(*) FROM totesys.{table}", ())
        print(f"  {table:<24}{total[0][0] if total else '-':>8} rows")
    print(rule)


def _warehouse_execute(statement: str, missing_ok: bool = False) -> None:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    try:
        with PostgresHook(postgres_conn_id="warehouse_db").get_conn() as conn, conn.cursor() as cursor:
            cursor.execute(statement)
    except Exception:
        if not missing_ok:
            raise


# -- e-commerce: two days of transactions, then a batch of updates to them -------------------------------


def run_ecommerce(dag_id: str, batch_id: str, orders: int, seed: int, report_file: Path) -> int:
    """Three batches through the pipeline: each of two days' transactions (with a few bad rows and
    duplicates, as a real feed has), then updates to a fifth of them (refunds, corrected prices).

    ``orders`` is the transactions per day (at most 100,000). The demo starts from empty
    e-commerce buckets and no e-commerce warehouse schema.
    """
    from datetime import date, timedelta

    import boto3
    from airflow.dag_processing.dagbag import DagBag

    from devstack.sample_data import ecommerce as sample

    s3 = boto3.client("s3")
    for bucket in (sample.RAW_BUCKET, sample.ARCHIVE_BUCKET):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
    _warehouse_execute("DROP SCHEMA IF EXISTS ecommerce CASCADE")
    _warehouse_execute("DELETE FROM audit.layer_counts WHERE pipeline = 'ecommerce'", missing_ok=True)
    _warehouse_execute("DELETE FROM audit.batches WHERE pipeline = 'ecommerce'", missing_ok=True)
    for topic in TOPICS:
        _read_inbox(topic)

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags")).get_dag(dag_id)
    per_day = max(10, min(orders, 100_000))
    first = date(2026, 11, 1)
    days = [sample.generate_day(first + timedelta(days=n), per_day, seed=seed, invalid_share=0.01,
                                identical_duplicates=2, conflicting_duplicates=1) for n in range(2)]  # fmt: skip
    runs = []
    for n, day in enumerate(days, 1):
        keys = sample.write_day(s3, day)
        runs.append((f"{batch_id}-day{n}", keys, f"{len(day.rows)} rows of {day.day}"))
    updates = [row for day in days for row in sample.update_rows(day, 0.2, seed=seed)]
    changed = {row[0] for row in updates}
    # A few transactions sent again exactly as they were: upserted as unchanged, left alone.
    resent = [day.rows[i] for day in days for i in day.valid if day.rows[i][0] not in changed][:25]
    update_key = sample.write_updates(s3, first + timedelta(days=2), updates + resent)
    what = f"{len(updates)} updates to the two days' transactions and {len(resent)} sent again unchanged"
    runs.append((f"{batch_id}-updates", [update_key], what))
    ok, results = True, []
    for name, keys, what in runs:
        rows = sum(len(s3.get_object(Bucket=sample.RAW_BUCKET, Key=k)["Body"].read().splitlines()) - 1 for k in keys)
        print(f"writing sample batch {name}: {what} in {', '.join(keys)}", flush=True)
        sample.write_marker(s3, name, objects=keys, expected_counts={"transactions": rows})
        print(f"marker batch-completion/{name}.json written: expected {rows} transactions", flush=True)
        print(f"running {dag_id} with dag.test() ...", flush=True)
        started = time.monotonic()
        dag_run = dag.test(run_conf={"batch_id": None, "reprocess": False})
        results.append((name, dag_run, time.monotonic() - started))
        ok = ok and dag_run.state == "success"
        if not ok:
            break
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        report_ecommerce(results)
    report_file.write_text(text.getvalue())
    return 0 if ok else 1


def report_ecommerce(results: list) -> None:
    rule = "=" * 78
    print(f"\n{rule}\necommerce_pipeline: {len(results)} batches\n{rule}")
    print(f"\n{'batch':<34}{'state':<10}{'seconds':>8}{'read':>8}{'rejected':>9}{'dups':>6}"
          f"{'inserted':>9}{'updated':>8}{'unchanged':>10}")  # fmt: skip
    for name, dag_run, elapsed in results:
        rows = _warehouse(
            "SELECT layer, details FROM audit.layer_counts WHERE pipeline = 'ecommerce' AND batch_id = %s", (name,)
        )
        counts = {layer: details.get("counts", {}) for layer, details in rows}
        final = counts.get("final", {})
        cells = [counts.get("landing", {}).get("transactions"), counts.get("rejected", {}).get("rejected"),
                 counts.get("duplicates_dropped", {}).get("duplicates_dropped"), final.get("inserted"),
                 final.get("updated"), final.get("unchanged")]  # fmt: skip
        widths = (8, 9, 6, 9, 8, 10)
        print(f"{name:<34}{str(dag_run.state):<10}{elapsed:>8.1f}"
              + "".join(f"{'-' if c is None else c:>{w}}" for c, w in zip(cells, widths, strict=True)))  # fmt: skip

    print("\nrejected rows by reason (ecommerce.rejected_transactions, first 8):")
    for batch, line, reason in _warehouse(
        "SELECT batch_id, line_number, reason FROM ecommerce.rejected_transactions ORDER BY batch_id, line_number "
        "LIMIT 8",
        (),
    ):
        print(f"  {batch} line {line}: {reason}")

    print("\nSNS messages read back from their inbox queues:")
    for topic in TOPICS:
        for envelope in _read_inbox(topic):
            body = json.loads(envelope["Message"])
            print(f"  [{inbox_queue(topic)}] subject: {envelope.get('Subject')}")
            for name in ("status", "error", "note"):
                if body.get(name) is not None:
                    print(f"    {name}: {str(body[name])[:400]}")
            if body.get("counts"):
                print(f"    counts: {json.dumps(body['counts'])}")

    import boto3

    s3 = boto3.client("s3")
    archived = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket="ecommerce-archive")
                for o in p.get("Contents", [])]  # fmt: skip
    pending = s3.list_objects_v2(Bucket="ecommerce-raw", Prefix="transactions/").get("KeyCount", 0)
    print(f"\narchive: {len(archived)} object(s) in s3://ecommerce-archive/, {pending} left under "
          "s3://ecommerce-raw/transactions/")  # fmt: skip
    for key in archived:
        print(f"  {key}")
    total = _warehouse("SELECT count(*), count(*) FILTER (WHERE status = 'Refunded') FROM ecommerce.fact_transactions",
                       ())  # fmt: skip
    if total:
        print(f"\nwarehouse: ecommerce.fact_transactions {total[0][0]} rows, {total[0][1]} refunded")
    print(rule)


def run_shipping(dag_id: str, batch_id: str, orders: int, seed: int, report_file: Path) -> int:
    """One batch of ``orders`` shipping records in three files (one gzip-compressed), 0.5% of its
    lines bad (not JSON, a cost that is a string, an impossible date): they are set aside with their
    reasons and the batch loads. The report adds the rejected lines, the layers in S3 and the query."""
    import boto3

    from devstack.sample_data import shipping as sample

    s3 = boto3.client("s3")
    print(f"writing sample batch {batch_id}: {orders} shipping records (seed {seed}) to "
          f"s3://{sample.LANDING_BUCKET}/{sample.PREFIX}{batch_id}/ ...", flush=True)  # fmt: skip
    batch = sample.write_batch(s3, batch_id, shipments=orders, seed=seed, bad_share=0.005)
    print(f"marker batch-completion/{batch_id}.json written: expected {batch.marker['expected_counts']}", flush=True)
    status = run_and_report(dag_id, "shipping", batch_id, [], report_file)
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        report_shipping(s3, sample, batch_id)
    report_file.write_text(report_file.read_text() + text.getvalue())
    return status


def report_shipping(s3, sample, batch_id: str) -> None:
    print(f"\nrejected lines (s3://{sample.STAGING_BUCKET}/rejected/batch_id={batch_id}/, first 8):")
    shown = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=sample.STAGING_BUCKET, Prefix=f"rejected/batch_id={batch_id}/"
    ):
        for obj in page.get("Contents", []):
            for line in s3.get_object(Bucket=sample.STAGING_BUCKET, Key=obj["Key"])["Body"].iter_lines():
                if line and shown < 8:
                    rejected = json.loads(line)
                    print(f"  {rejected['object']} line {rejected['line']}: {rejected['reason']}")
                    shown += 1
    print("\nlayers in S3:")
    for prefix in ("transformed_data", "normalized"):
        listed = s3.list_objects_v2(Bucket=sample.STAGING_BUCKET, Prefix=f"{prefix}/batch_id={batch_id}/")
        size = sum(obj["Size"] for obj in listed.get("Contents", []))
        print(f"  s3://{sample.STAGING_BUCKET}/{prefix}/batch_id={batch_id}/: {listed.get('KeyCount', 0)} "
              f"object(s), {size:,} bytes")  # fmt: skip
    results = s3.list_objects_v2(Bucket=sample.RESULTS_BUCKET, Prefix="queries/").get("Contents", [])
    if results:
        newest = max((obj for obj in results if obj["Key"].endswith(".csv")), key=lambda obj: obj["LastModified"])
        body = s3.get_object(Bucket=sample.RESULTS_BUCKET, Key=newest["Key"])["Body"].read().decode()
        print(f"\nAthena's result file s3://{sample.RESULTS_BUCKET}/{newest['Key']}:")
        print("  " + body.strip().replace("\n", "\n  "))
    print("=" * 78)


# -- supply chain: a first load, a working day in the source, a second drop that re-sends rows ---------


def run_supplychain(dag_id: str, batch_id: str, orders: int, seed: int, report_file: Path) -> int:
    """Two batches through the lakehouse: the source's starting state with a first drop of
    ``orders`` shipments (and a fifth as many purchase orders), then a working day of dimension
    changes in the source (inserts, updates, a product deleted) and a second drop that re-sends
    some of the first drop's rows with new statuses (and refers to the deleted product).

    The demo starts from a fresh source, empty supply-chain buckets and no supplychain schema.
    """
    import boto3
    from airflow.dag_processing.dagbag import DagBag

    from devstack.sample_data import supplychain as sample

    s3 = boto3.client("s3")
    for bucket in (sample.LANDING_BUCKET, sample.LAKEHOUSE_BUCKET):
        _empty_bucket(s3, bucket)
    _warehouse_execute("DROP SCHEMA IF EXISTS supplychain CASCADE")
    _warehouse_execute("DELETE FROM audit.layer_counts WHERE pipeline = 'supplychain'", missing_ok=True)
    _warehouse_execute("DELETE FROM audit.batches WHERE pipeline = 'supplychain'", missing_ok=True)
    for topic in TOPICS:
        _read_inbox(topic)

    dag = DagBag(dag_folder=str(REPO_ROOT / "dags")).get_dag(dag_id)
    shipments, purchase_orders = max(10, orders), max(10, orders // 5)
    with contextlib.closing(sample.connect()) as conn:
        sample.create_source(conn)
        sizes = sample.populate(conn, seed=seed)
        print(f"writing sample batch: the supplychain source's starting state {sizes} (seed {seed})", flush=True)
        first = sample.write_batch(s3, f"{batch_id}-1", ids=sample.read_dimension_ids(conn), shipments=shipments,
                                   purchase_orders=purchase_orders, seed=seed, catalog=sample.read_catalog(conn),
                                   keep_rows=True)  # fmt: skip
    runs = [_run_supplychain_batch(dag, first)]
    if runs[-1][1].state == "success":
        with contextlib.closing(sample.connect()) as conn:
            day = sample.working_day(conn, seed=seed + 1)
            changes = {table: {kind: len(ids) for kind, ids in kinds.items()} for table, kinds in day.items()}
            print(f"writing sample batch: a working day in the source {changes}", flush=True)
            second = sample.write_batch(s3, f"{batch_id}-2", ids=sample.read_dimension_ids(conn),
                                        shipments=shipments // 2, purchase_orders=purchase_orders // 2,
                                        seed=seed + 2, start_id=first.next_id, catalog=sample.read_catalog(conn),
                                        resend=_resend(first, set(day["product"]["deleted"])), resend_older=0.1,
                                        keep_rows=True)  # fmt: skip
        runs.append(_run_supplychain_batch(dag, second))
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        report_supplychain(runs)
    report_file.write_text(text.getvalue())
    return 0 if all(dag_run.state == "success" for _, dag_run, _ in runs) else 1


def _resend(first, deleted_products: set[int]) -> list[dict]:
    """A fifth of the first drop's shipments still in transit and orders still open, sent again
    (the generator moves them on: delivered, received), and every one of them that refers to a
    product the working day deleted (the pipeline rejects those)."""
    moving = [row for row in first.final_rows("shipments") if row["status"] == "shipped"]
    moving += [row for row in first.final_rows("purchase_orders") if row["status"] == "open"]
    return [row for n, row in enumerate(moving) if n % 5 == 0 or row["product_id"] in deleted_products]


def _run_supplychain_batch(dag, batch) -> tuple:
    print(f"marker batch-completion/{batch.batch_id}.json written: expected {batch.expected_counts}", flush=True)
    print(f"running {dag.dag_id} with dag.test() ...", flush=True)
    started = time.monotonic()
    dag_run = dag.test(run_conf={"batch_id": None, "reprocess": False})
    return batch.batch_id, dag_run, time.monotonic() - started


def report_supplychain(runs: list) -> None:
    rule = "=" * 78
    print(f"\n{rule}\nsupply_chain_pipeline: {len(runs)} batches\n{rule}")
    for name, dag_run, elapsed in runs:
        print(f"\nbatch {name}: {str(dag_run.state).upper()} in {elapsed:.1f} s")
        counted = dict(_warehouse(
            "SELECT layer, details->'counts' FROM audit.layer_counts WHERE pipeline = 'supplychain' AND batch_id = %s",
            (name,),
        ))  # fmt: skip
        for layer in ("landing", "rejected", "superseded", "silver", "gold", "warehouse"):  # the pipeline's order
            print(f"  {layer:<12}{json.dumps(counted.get(layer))}")
    print("\ngold headline figures (warehouse schema supplychain):")
    for label, query in (
        ("units received, shipped, on hand",
         "SELECT sum(units_received), sum(units_shipped), sum(on_hand) FROM supplychain.gold_inventory_position"),
        ("shipments, delivered, late",
         "SELECT sum(shipments), sum(delivered), sum(late) FROM supplychain.gold_daily_shipments"),
        ("suppliers, mean on-time rate",
         "SELECT count(*), round(avg(on_time_rate), 4) FROM supplychain.gold_supplier_performance"),
    ):  # fmt: skip
        row = _warehouse(query, ())
        print(f"  {label:<34}{', '.join(str(v) for v in row[0]) if row else '-'}")
    print("\nSNS messages read back from their inbox queues:")
    for topic in TOPICS:
        for envelope in _read_inbox(topic):
            body = json.loads(envelope["Message"])
            print(f"  [{inbox_queue(topic)}] subject: {envelope.get('Subject')}")
            for field in ("status", "batch_id", "error", "note", "batch", "lowest_on_time_suppliers"):
                if body.get(field) is not None:
                    print(f"    {field}: {json.dumps(body[field])[:400]}")
            if body.get("counts_table"):
                print("    " + body["counts_table"].replace("\n", "\n    "))
    print(rule)


def _empty_bucket(s3, bucket: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])


RUNNERS = {
    "orders_pipeline": run_orders,
    "totesys_warehouse": run_totesys,
    "ecommerce_pipeline": run_ecommerce,
    "shipping_pipeline": run_shipping,
    "supply_chain_pipeline": run_supplychain,
}

if __name__ == "__main__":
    dag_id_arg, batch_id_arg, orders_arg, seed_arg, report_arg = sys.argv[1:6]
    sys.exit(RUNNERS[dag_id_arg](dag_id_arg, batch_id_arg, int(orders_arg), int(seed_arg), Path(report_arg)))
