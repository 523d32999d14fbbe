"""ecommerce_upsert: the e-commerce pipeline's load of a batch (the staging Glue job, settling
duplicates, the upsert) into an empty fact table, against a bare ``COPY`` and ``INSERT ... ON
CONFLICT`` of the same rows.

The Glue job ``ecommerce_stage_transactions.py`` streams a batch's CSV objects from S3, checks
every row (text cells, patterns, real dates, known customer and product), re-encodes the valid
rows as CSV and COPYs them into ``ecommerce.stg_transactions`` (rejects into
``ecommerce.rejected_transactions``, each object into ``ecommerce.batch_objects``); then
``settle_duplicates.sql`` settles the batch's duplicates in the warehouse, and the upsert
(``lock_fact.sql``, ``check_rejected_share.sql``, ``upsert_transactions.sql``, one transaction)
MERGEs the valid rows, with the customer's e-mail and the product's name, into
``ecommerce.fact_transactions``. A COPY and one ``INSERT ... SELECT ... ON CONFLICT`` is the
fastest way to upsert the same rows from CSV, so it is the ceiling: the question is how close the
whole load (process start, secret, S3 read, checks, CSV re-encoding, staging with its indexes,
duplicates, dimension joins, MERGE, batch_loads) gets.

- baseline  the batch's CSV objects, read once from S3 into memory (outside the timing), loaded
  with one ``copy_expert('COPY ... FROM STDIN WITH (FORMAT csv, HEADER true)')`` per object into a
  plain table ``bench.ecommerce_copied`` with the fact's columns (no key, no index), then one
  ``INSERT INTO bench.ecommerce_fact SELECT ... FROM bench.ecommerce_copied ON CONFLICT
  (transaction_id) DO UPDATE SET ...`` into a table made ``LIKE ecommerce.fact_transactions
  INCLUDING ALL`` (the same columns and primary key), all in one transaction from one psycopg2
  connection in this process, committed; both tables are truncated before each run, outside the
  timing;
- candidate the Glue job as the local Glue emulation runs it (wall time, spawn to exit), with the
  arguments the DAG gives it (``--objects`` the batch's keys, secret ``etl/warehouse``), then
  ``settle_duplicates.sql`` in one transaction and the upsert's three files in another, each file
  split and bound as the toolkit's SQL runner does it (``etl_toolkit.sql.execute``: sqlparse
  splits the statements, psycopg2 binds ``batch_id``, ``loaded_at``, ``completed_at`` and
  ``max_rejected_fraction`` 0.05), from one connection in this process; the wall time is the
  job's plus the two transactions'. The e-commerce tables a batch passes through (staging,
  rejects, batch objects, fact, batch loads) are dropped and made again with ``create_tables.sql``
  before each run, outside the timing, so every run is a first load into a new, empty fact table
  (not a TRUNCATEd one: see ``_fresh_tables``); after each run the fact table must hold exactly
  the batch's rows.

alternately (A B A B ...), on BENCH_ECOMMERCE_TRANSACTIONS (``--ecommerce-transactions``, default
1,000,000) clean transactions generated with ``devstack.sample_data.ecommerce`` and written once
to ``s3://ecommerce-raw/transactions/`` as one CSV object per day of 100,000 rows (the last day
holds the rest), in the stack's embedded PostgreSQL 16 and S3. Target: rows/s candidate / baseline
>= 0.5.

Memory: the job's own peak RSS (``wait4`` ``ru_maxrss``) on one day's object (100,000 rows, or the
whole batch when it is smaller), run once after the pairs, against its median over the
candidate's runs at the full size. Target: at most 1.10 times as much at the full size (the job
streams each object one block at a time, so its memory must not grow with the batch).
"""

from __future__ import annotations

import io
import json
import sys
import time
from datetime import UTC, date, datetime, timedelta

from bench.common import (
    REPO,
    Session,
    Verdict,
    fmt_samples,
    glue_command,
    glue_environment,
    interleave,
    median,
    progress,
    result_block,
    run_child,
)

NAME = "ecommerce_upsert"
DEFAULT_REPEAT = 3
TARGET_RATIO = 0.5
TARGET_RSS_RATIO = 1.10
SCRIPT = REPO / "include" / "glue_scripts" / "ecommerce" / "ecommerce_stage_transactions.py"
RAW_BUCKET = "ecommerce-raw"
PREFIX = "transactions/"
ROWS_PER_DAY = 100_000
FIRST_DAY = date(2024, 3, 1)
SEED = 7
BATCH_ID = "bench-ecommerce"
SETTLE_FILES = ["settle_duplicates.sql"]
UPSERT_FILES = ["lock_fact.sql", "check_rejected_share.sql", "upsert_transactions.sql"]
MAX_REJECTED_FRACTION = "0.05"  # the DAG's default (Variable ecommerce_max_rejected_fraction)
# What a batch passes through on its way to the fact table (the dimensions stay as they are).
PIPELINE_TABLES = ("stg_transactions", "rejected_transactions", "batch_objects", "fact_transactions", "batch_loads")
COPIED_TABLE = "bench.ecommerce_copied"
TARGET_TABLE = "bench.ecommerce_fact"
CSV_COLUMNS = ["transaction_id", "customer_id", "product_id", "quantity", "price", "transaction_date",
               "payment_type", "status"]  # fmt: skip
FACT_COLUMNS = ["transaction_id", "customer_id", "product_id", "quantity", "total_price", "transaction_date",
                "payment_type", "status", "batch_id", "loaded_at", "source_completed_at"]  # fmt: skip
BARE_UPSERT = (
    f"INSERT INTO {TARGET_TABLE} ({', '.join(FACT_COLUMNS)}) "
    f"SELECT {', '.join(CSV_COLUMNS)}, %(batch_id)s, %(loaded_at)s, %(completed_at)s FROM {COPIED_TABLE} "
    "ON CONFLICT (transaction_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in FACT_COLUMNS[1:])
)


def _toolkit_sql():
    """The toolkit's SQL runner (``plugins/etl_toolkit/sql.py``): renders a file, splits it into
    statements with sqlparse and executes each with the parameters bound by the driver."""
    plugins = str(REPO / "plugins")
    if plugins not in sys.path:
        sys.path.append(plugins)
    from etl_toolkit import sql

    return sql


def _write_transactions(s3, transactions: int) -> list[tuple[str, int]]:
    """The batch's days as CSV objects in the raw bucket, 100,000 clean rows a day; (key, rows)."""
    from devstack.sample_data.ecommerce import generate_day, write_day

    written, day = [], FIRST_DAY
    progress(f"writing {transactions:,} transactions to s3://{RAW_BUCKET}/{PREFIX} ...")
    started = time.perf_counter()
    while sum(rows for _, rows in written) < transactions:
        rows = min(ROWS_PER_DAY, transactions - sum(rows for _, rows in written))
        (key,) = write_day(s3, generate_day(day, rows, seed=SEED))
        written.append((key, rows))
        day += timedelta(days=1)
    progress(f"{len(written)} object(s) written in {time.perf_counter() - started:.1f} s")
    return written


def _run_files(conn, sql, files: list[str], parameters: dict) -> None:
    """``files`` in one transaction, as the toolkit's batch SQL tasks run them."""
    try:
        with conn.cursor() as cursor:
            for name in files:
                sql.execute(cursor, "ecommerce", name, parameters)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _truncate(conn, tables) -> None:
    with conn.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)}")
    conn.commit()


def _fresh_tables(conn, sql, tables) -> None:
    """The tables a batch passes through dropped and made again by ``create_tables.sql``: new and
    empty, with no planner statistics, as before a pipeline's first batch. (A TRUNCATEd table keeps
    its column statistics, and autovacuum may ANALYZE it while it is empty; the upsert's MERGE is
    then planned as a nested loop that scans the fact table once per row, while it grows.)"""
    with conn.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {', '.join(tables)}")
        sql.execute(cursor, "ecommerce", "create_tables.sql")
    conn.commit()


def run(session: Session) -> list[Verdict]:
    repeat = session.repeats(DEFAULT_REPEAT)
    stack = session.stack()
    transactions = session.ecommerce_transactions
    env = glue_environment(stack.endpoint_url)
    s3 = stack.client("s3")
    sql = _toolkit_sql()
    objects = _write_transactions(s3, transactions)
    keys = [key for key, _ in objects]
    first_key, first_rows = objects[0]
    now = datetime.now(UTC).replace(microsecond=0)
    parameters = {"batch_id": BATCH_ID, "loaded_at": now.isoformat(), "completed_at": now.isoformat(),
                  "max_rejected_fraction": MAX_REJECTED_FRACTION}  # fmt: skip

    def arguments(batch_id: str, batch_keys: list[str]) -> dict[str, str]:
        return {  # what the DAG's stage_transactions task passes (dags/ecommerce_pipeline.py)
            "--batch_id": batch_id,
            "--raw_bucket": RAW_BUCKET,
            "--prefix": PREFIX,
            "--objects": json.dumps(batch_keys),
            "--warehouse_secret_id": "etl/warehouse",
        }

    progress("reading the batch's CSV objects into memory for the bare COPY ...")
    csv_objects = [s3.get_object(Bucket=RAW_BUCKET, Key=key)["Body"].read() for key in keys]
    csv_bytes = sum(len(body) for body in csv_objects)
    progress(f"{transactions:,} rows, {csv_bytes / 2**20:.0f} MB of CSV in {len(keys)} object(s)")

    pipeline_tables = [f"ecommerce.{table}" for table in PIPELINE_TABLES]
    conn = stack.warehouse_connection()
    try:
        with conn.cursor() as cursor:
            sql.execute(cursor, "ecommerce", "create_tables.sql")  # the DAG's own DDL and reference dimensions
            cursor.execute("CREATE SCHEMA IF NOT EXISTS bench")
            cursor.execute(f"DROP TABLE IF EXISTS {COPIED_TABLE}, {TARGET_TABLE}")
            cursor.execute(
                f"CREATE TABLE {COPIED_TABLE} (transaction_id text, customer_id text, product_id text, "
                "quantity int, price numeric(12,2), transaction_date date, payment_type text, status text)"
            )
            cursor.execute(f"CREATE TABLE {TARGET_TABLE} (LIKE ecommerce.fact_transactions INCLUDING ALL)")
        conn.commit()

        def bare(_index: int) -> dict:
            _truncate(conn, [COPIED_TABLE, TARGET_TABLE])
            copied = 0
            started = time.perf_counter()
            with conn.cursor() as cursor:
                for body in csv_objects:
                    cursor.copy_expert(
                        f"COPY {COPIED_TABLE} ({', '.join(CSV_COLUMNS)}) FROM STDIN WITH (FORMAT csv, HEADER true)",
                        io.BytesIO(body),
                    )
                    copied += cursor.rowcount
                copy_seconds = time.perf_counter() - started
                cursor.execute(BARE_UPSERT, parameters)
                upserted = cursor.rowcount
            conn.commit()
            seconds = time.perf_counter() - started
            if copied != transactions or upserted != transactions:
                raise RuntimeError(f"the bare COPY took {copied} rows and upserted {upserted}, expected {transactions}")
            return {"seconds": seconds, "copy_seconds": copy_seconds, "insert_seconds": seconds - copy_seconds}

        def pipeline(index: int, batch_keys: list[str] = keys, rows: int = transactions) -> dict:
            _fresh_tables(conn, sql, pipeline_tables)  # a first load: nothing staged, a new empty fact table
            job = run_child(glue_command(SCRIPT, f"bench-ecommerce-{index}", arguments(BATCH_ID, batch_keys)), env=env)
            summary = job.last_json()
            if (summary["rows_read"], summary["staged"], summary["rejected"]) != (rows, rows, 0):
                raise RuntimeError(f"the job read/staged/rejected {summary}, expected {rows} rows, all staged")
            started = time.perf_counter()
            _run_files(conn, sql, SETTLE_FILES, parameters)
            settled = time.perf_counter()
            _run_files(conn, sql, UPSERT_FILES, parameters)
            upserted = time.perf_counter()
            with conn.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM ecommerce.fact_transactions")
                (in_fact,) = cursor.fetchone()
                cursor.execute("SELECT inserted FROM ecommerce.batch_loads WHERE batch_id = %s", (BATCH_ID,))
                (inserted,) = cursor.fetchone()
            conn.commit()
            if in_fact != rows or inserted != rows:
                raise RuntimeError(f"the fact table holds {in_fact} rows ({inserted} inserted), expected {rows}")
            settle_seconds, upsert_seconds = settled - started, upserted - settled
            return {"seconds": job.seconds + settle_seconds + upsert_seconds, "job_seconds": job.seconds,
                    "settle_seconds": settle_seconds, "upsert_seconds": upsert_seconds,
                    "rss_mb": job.peak_rss_mb}  # fmt: skip

        progress(f"warm-up: the pipeline once on {first_rows:,} rows, one bare COPY + INSERT (untimed)")
        pipeline(-1, [first_key], first_rows)
        bare(-1)
        a, b = interleave(
            bare,
            pipeline,
            repeat,
            label=f"{transactions:,} rows, pair",
            describe=lambda x, y: (
                f"bare COPY + INSERT {x['seconds']:.1f} s, pipeline {y['seconds']:.1f} s (job "
                f"{y['job_seconds']:.1f} s / {y['rss_mb']:.0f} MB, settle {y['settle_seconds']:.1f} s, "
                f"upsert {y['upsert_seconds']:.1f} s)"
            ),
        )
        progress(f"the job alone on one day's object ({first_rows:,} rows), for its peak memory (untimed)")
        _fresh_tables(conn, sql, pipeline_tables)
        small = run_child(glue_command(SCRIPT, "bench-ecommerce-day", arguments(BATCH_ID, [first_key])), env=env)
        if small.last_json()["staged"] != first_rows:
            raise RuntimeError(f"the job staged {small.last_json()}, expected {first_rows} rows")
    finally:
        s3.delete_objects(Bucket=RAW_BUCKET, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True})
        if not conn.closed:  # leave the warehouse as the pipeline expects it
            conn.rollback()
            with conn.cursor() as cursor:
                cursor.execute("DROP SCHEMA IF EXISTS bench CASCADE")
                cursor.execute("SELECT to_regclass('ecommerce.batch_loads') IS NOT NULL")
                if cursor.fetchone()[0]:
                    cursor.execute(f"TRUNCATE {', '.join(pipeline_tables)}")
            conn.commit()
        conn.close()

    return [_throughput_block(a, b, repeat, transactions, len(keys), csv_bytes),
            _memory_block(b, small.peak_rss_mb, first_rows, transactions)]  # fmt: skip


def _throughput_block(a: list[dict], b: list[dict], repeat: int, rows: int, n_objects: int, csv_bytes: int) -> Verdict:
    def seconds(samples: list[dict], key: str = "seconds") -> list[float]:
        return [s[key] for s in samples]

    a_rate, b_rate = rows / median(seconds(a)), rows / median(seconds(b))
    return result_block(
        NAME,
        f"{rows:,} transactions ({n_objects} CSV object(s)) upserted into an empty fact table",
        measured=(
            f"rows per second (wall), {repeat} interleaved pairs, medians; embedded PostgreSQL 16 and S3 on loopback"
        ),
        baseline=("bare COPY + INSERT ON CONFLICT", f"{a_rate:,.0f} rows/s ({_runs(seconds(a))})"),
        candidate=("Glue job + settle + upsert", f"{b_rate:,.0f} rows/s ({_runs(seconds(b))})"),
        difference=(
            f"the pipeline takes {median(seconds(b)) - median(seconds(a)):+.1f} s more (process start, secret, "
            f"row checks, CSV re-encoding, staging indexes, duplicates, dimension joins, MERGE, batch_loads)"
        ),
        ratio=f"rows/s pipeline / bare COPY + INSERT = {b_rate / a_rate:.2f}",
        target=f"ratio >= {TARGET_RATIO}",
        passed=b_rate / a_rate >= TARGET_RATIO,
        details=[
            f"pipeline phases, medians: Glue job {_runs(seconds(b, 'job_seconds'), 2)}, "
            f"settle_duplicates.sql {_runs(seconds(b, 'settle_seconds'), 2)}, "
            f"upsert (3 files) {_runs(seconds(b, 'upsert_seconds'), 2)}",
            f"bare phases, medians: COPY {_runs(seconds(a, 'copy_seconds'), 2)}, "
            f"INSERT ON CONFLICT {_runs(seconds(a, 'insert_seconds'), 2)}",
            f"{rows:,} rows, {csv_bytes:,} bytes of CSV ({csv_bytes / 2**20:,.0f} MB); "
            f"the job's peak RSS {median(seconds(b, 'rss_mb')):,.0f} MB",
        ],
    )


def _memory_block(b: list[dict], small_rss: float, small_rows: int, rows: int) -> Verdict:
    full_rss = median([s["rss_mb"] for s in b])
    full_runs = fmt_samples([s["rss_mb"] for s in b], unit="MB", digits=0)
    return result_block(
        NAME,
        f"the Glue job's peak memory at {small_rows:,} and {rows:,} rows",
        measured="the job's own peak RSS (wait4 ru_maxrss); full size: median over the candidate's runs",
        baseline=(f"job, {small_rows:,} rows", f"{small_rss:,.0f} MB (one run)"),
        candidate=(f"job, {rows:,} rows", f"{full_rss:,.0f} MB (runs {full_runs})"),
        difference=f"{full_rss - small_rss:+,.0f} MB for {rows - small_rows:,} more rows",
        ratio=f"peak RSS at {rows:,} / {small_rows:,} rows = {full_rss / small_rss:.2f} (1.0: flat)",
        target=f"ratio <= {TARGET_RSS_RATIO:.2f}",
        passed=full_rss <= TARGET_RSS_RATIO * small_rss,
    )


def _runs(seconds: list[float], digits: int = 1) -> str:
    return f"{median(seconds):.{digits}f} s; runs {fmt_samples(seconds, digits=digits)}"
