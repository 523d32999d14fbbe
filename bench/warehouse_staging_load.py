"""warehouse_staging_load: the staging-to-warehouse Glue script's load rate into PostgreSQL, against
a bare ``COPY`` of the same rows.

The script streams a batch's staging parquet from S3 and loads the Arrow record batches with one
binary ``COPY`` (ADBC's PostgreSQL driver, through the shared ``arrow_postgres`` module) into
``orders.stg_order_lines`` in one transaction (after deleting the batch's earlier rows).
``COPY FROM STDIN`` is the fastest way into PostgreSQL, so a bare COPY is the ceiling: the question
is how close the whole job (process start, secret, S3 read, parquet decode, binary COPY) gets.

- baseline  the batch's rows, read once into memory as COPY csv text (``_to_copy_csv``: the
  staging columns then run_id, strings quoted, nulls bare), loaded with one
  ``copy_expert('COPY ... FROM STDIN')`` into a scratch table ``bench.stg_order_lines``
  (``LIKE orders.stg_order_lines INCLUDING ALL``, so the same columns and index), committed; the
  table is truncated before each run, outside the timing;
- candidate ``orders_staging_to_warehouse_staging.py`` as the local Glue emulation runs it (wall
  time, spawn to exit), reading its credentials from the Secrets Manager secret ``etl/warehouse``
  that the stack provisions (``devstack.resources.provision``); ``orders.stg_order_lines`` and
  ``orders.stg_order_versions`` are truncated before each run, outside the timing, so both sides
  load into an empty table and the script's DELETEs of the batch find nothing to delete. The
  script loads the batch's versions too (one row per order), which the baseline does not.

alternately (A B A B ...), on the staging partition of the BENCH_ORDERS batch (``--orders``),
against the stack's embedded PostgreSQL 16. Target: rows/s script / bare COPY >= 0.8 (0.35 when
the script encoded CSV text and COPYed it with psycopg2).
"""

from __future__ import annotations

import importlib.util
import io
import time

from bench.common import (
    DUMMY_CREDENTIALS,
    ORDERS_SCRIPTS,
    REPO,
    STAGING_BUCKET,
    WARMUP_ORDERS,
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

NAME = "warehouse_staging_load"
DEFAULT_REPEAT = 3
TARGET_RATIO = 0.8
SCRIPT = ORDERS_SCRIPTS / "orders_staging_to_warehouse_staging.py"
CREATE_TABLES_SQL = REPO / "include" / "sql" / "orders" / "create_tables.sql"
SCRATCH_TABLE = "bench.stg_order_lines"
# What the script replaces the batch in: both emptied before each of its runs, or a run after the
# first would delete the batch's rows left by the one before (a million versions at 1,000,000 orders).
SCRIPT_TABLES = ("orders.stg_order_lines", "orders.stg_order_versions")


def _script_module():
    """The job script as a module, for its column list (it has no side effects)."""
    spec = importlib.util.spec_from_file_location("orders_staging_to_warehouse_staging", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _to_copy_csv(table, batch_id: str, columns) -> bytes:
    """COPY csv input: ``columns`` then run_id; strings always quoted and nulls bare empty fields,
    so PostgreSQL tells '' from NULL."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = table.select(list(columns)).append_column("run_id", pa.array([batch_id] * table.num_rows, pa.string()))
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False))
    return buffer.getvalue()


def _batch_as_csv(endpoint: str, batch_id: str, script) -> tuple[bytes, int]:
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    # The stack's credentials, given: pyarrow's own chain would find none here, and sign nothing.
    fs = pafs.S3FileSystem(
        access_key=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        endpoint_override=endpoint,
        region="eu-west-1",
    )
    location = f"{STAGING_BUCKET}/orders/run_id={batch_id}/"
    table = ds.dataset(location, filesystem=fs, format="parquet").to_table(columns=script.STAGING_COLUMNS)
    return _to_copy_csv(table, batch_id, script.STAGING_COLUMNS), table.num_rows


def run(session: Session) -> list[Verdict]:
    repeat = session.repeats(DEFAULT_REPEAT)
    stack = session.stack()
    batch = session.staged_batch(session.orders)
    script = _script_module()
    columns = ", ".join([*script.STAGING_COLUMNS, "run_id"])
    env = glue_environment(stack.endpoint_url)
    arguments = {
        "--batch_id": batch.batch_id,
        "--staging_bucket": STAGING_BUCKET,
        "--staging_prefix": "orders/",
        "--warehouse_secret_id": "etl/warehouse",
    }

    progress(f"reading the staging partition of {batch.batch_id} into memory as CSV ...")
    csv, rows = _batch_as_csv(stack.endpoint_url, batch.batch_id, script)
    progress(f"{rows:,} rows, {len(csv) / 2**20:.0f} MB of CSV")
    conn = stack.warehouse_connection()
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(CREATE_TABLES_SQL.read_text())  # the DAG's own DDL: orders.stg_order_lines
            cursor.execute("CREATE SCHEMA IF NOT EXISTS bench")
            cursor.execute(f"DROP TABLE IF EXISTS {SCRATCH_TABLE}")
            cursor.execute(f"CREATE TABLE {SCRATCH_TABLE} (LIKE orders.stg_order_lines INCLUDING ALL)")

        def bare_copy(_index: int) -> dict:
            with conn.cursor() as cursor:
                cursor.execute(f"TRUNCATE {SCRATCH_TABLE}")
                conn.autocommit = False
                started = time.perf_counter()
                cursor.copy_expert(f"COPY {SCRATCH_TABLE} ({columns}) FROM STDIN WITH (FORMAT csv)", io.BytesIO(csv))
                loaded = cursor.rowcount
                conn.commit()
                seconds = time.perf_counter() - started
                conn.autocommit = True
            if loaded != rows:
                raise RuntimeError(f"COPY loaded {loaded} rows, expected {rows}")
            return {"seconds": seconds, "rows": loaded}

        def glue_script(index: int) -> dict:
            with conn.cursor() as cursor:
                cursor.execute(f"TRUNCATE {', '.join(SCRIPT_TABLES)}")
            run = run_child(glue_command(SCRIPT, f"bench-load-{index}", arguments), env=env)
            summary = run.last_json()
            if summary["rows_loaded"] != rows:
                raise RuntimeError(f"the script loaded {summary['rows_loaded']} rows, expected {rows}")
            return {"seconds": run.seconds, "rows": summary["rows_loaded"], "rss_mb": run.peak_rss_mb}

        warmup = session.staged_batch(WARMUP_ORDERS)
        progress(f"warm-up: the script once on {warmup.orders:,} orders, one bare COPY (untimed)")
        run_child(glue_command(SCRIPT, "bench-load-warmup", {**arguments, "--batch_id": warmup.batch_id}), env=env)
        bare_copy(-1)
        a, b = interleave(
            bare_copy,
            glue_script,
            repeat,
            label=f"{rows:,} rows, pair",
            describe=lambda x, y: f"bare COPY {x['seconds']:.1f} s, script {y['seconds']:.1f} s",
        )
    finally:
        with conn.cursor() as cursor:  # leave the warehouse as the pipeline expects it
            conn.autocommit = True
            cursor.execute("DROP SCHEMA IF EXISTS bench CASCADE")
            cursor.execute(f"TRUNCATE {', '.join(SCRIPT_TABLES)}")
        conn.close()

    a_seconds, b_seconds = [s["seconds"] for s in a], [s["seconds"] for s in b]
    a_rate, b_rate = rows / median(a_seconds), rows / median(b_seconds)
    return [
        result_block(
            NAME,
            f"{rows:,} staging rows ({batch.orders:,} orders) into PostgreSQL",
            measured=f"rows per second, {repeat} interleaved pairs, medians; embedded PostgreSQL 16 on loopback",
            baseline=("bare COPY FROM STDIN", f"{a_rate:,.0f} rows/s ({_runs(a_seconds)})"),
            candidate=("Glue script", f"{b_rate:,.0f} rows/s ({_runs(b_seconds)})"),
            difference=(
                f"the script takes {median(b_seconds) - median(a_seconds):+.1f} s more "
                f"(process start, secret, S3 read, parquet decode, binary COPY encode); "
                f"its peak RSS {median([s['rss_mb'] for s in b]):,.0f} MB"
            ),
            ratio=f"rows/s script / bare COPY = {b_rate / a_rate:.2f}",
            target=f"ratio >= {TARGET_RATIO}",
            passed=b_rate / a_rate >= TARGET_RATIO,
        )
    ]


def _runs(seconds: list[float]) -> str:
    return f"{median(seconds):.1f} s; runs {fmt_samples(seconds, digits=1)}"
