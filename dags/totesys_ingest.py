"""
### Totesys: OLTP source → S3 ingestion, one batch of changed rows per run

Replaces the **ingestion** Lambda of the totesys pipeline and the EventBridge
schedule that ran it.

**Steps**
1. The DAG runs every 30 minutes (the cron in the Airflow configuration option
   `[etl] totesys_ingest_schedule` overrides it) and whenever it is triggered from the UI.
2. `plan_batch` names the batch (`totesys-<run time>`) and the tables it covers: the run's
   `tables` param, else the Variable `totesys_tables` (comma-separated), else all eleven. A name
   that is not one of the eleven source tables (say `staff; DROP TABLE staff`) fails the run
   here, before any SQL exists.
3. Glue `totesys_extract` first fixes the batch's window per table, `(from, to]` on
   `last_updated`: from the table's watermark (`s3://totesys-ingestion/watermarks.json`; the
   beginning the first time) to the source database's own clock minus a commit lag (Variable
   `totesys_commit_lag_seconds`, default 300), so that a row stamped when its transaction began
   but committed later is left to a later batch instead of being skipped. The window is recorded
   once, in `batches/<batch_id>/_window.json`, before anything is extracted. Then, in one
   snapshot of the source, it writes each table's rows in that window to
   `batches/<batch_id>/<table>.parquet`, then the completion marker
   `batch-completion/<batch_id>.json` with `expected_counts` and `windows` per table, then
   moves each watermark to its window's end. A batch without changes still gets a marker, with
   zero counts. If any table fails, no marker is written and no watermark moves.
4. A retry or a Clear of `extract` runs the same batch id: it extracts the recorded window again,
   never the current watermarks, and a batch whose marker is already written is left exactly as
   it is. Rows deleted in the source are not seen (there is no row left to extract).

The database password is never in the DAG, its arguments or its logs: the job reads the source's
credentials from the Secrets Manager secret `etl/totesys` (the environment's `secrets.totesys`). The
marker wakes `totesys_warehouse`. Any failed task publishes to SNS `etl-failure`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, Param, chain, dag
from airflow.sdk.configuration import conf

from etl_toolkit import environment
from etl_toolkit.pipeline import default_args
from etl_toolkit.settings import CONFIG_SECTION
from etl_toolkit.tasks import glue, producing

PIPELINE = "totesys_ingest"
INGESTION_BUCKET = environment.bucket("totesys_ingestion")  # a template, resolved per run
SOURCE_TABLES = ("address", "counterparty", "currency", "department", "design", "staff", "sales_order",
                 "purchase_order", "payment", "payment_type", "transaction")  # fmt: skip
# Airflow's own configuration, not a Variable: the schedule is read when the DAG is parsed, and
# every component of an environment (MWAA: its configuration options) sees the same.
SCHEDULE = conf.get(CONFIG_SECTION, "totesys_ingest_schedule", fallback="*/30 * * * *")

INGESTED = Asset(name="totesys_ingested", uri=environment.asset_uri("totesys_ingestion", "batches/"))


@dag(
    dag_id="totesys_ingest",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(PIPELINE),
    user_defined_macros=environment.DAG_MACROS,
    params={
        "tables": Param(
            None,
            type=["null", "array"],
            items={"type": "string"},
            title="Tables",
            description="Source tables to extract (default: the Variable totesys_tables, else all eleven).",
        ),
    },
    tags=["totesys", "glue", "ingestion", "scheduled"],
    doc_md=__doc__,
)
def totesys_ingest():
    plan_batch = producing.plan_batch("totesys", allowed=SOURCE_TABLES, names_variable="totesys_tables")
    extract = glue.GlueJob(
        task_id="extract",
        pipeline="totesys",
        script="totesys_extract.py",
        script_args={
            "--batch_id": "{{ ti.xcom_pull(task_ids='plan_batch')['batch_id'] }}",
            "--tables": "{{ ti.xcom_pull(task_ids='plan_batch')['tables'] | join(',') }}",
            "--source_secret_id": environment.secret("totesys"),
            "--ingestion_bucket": INGESTION_BUCKET,
            "--commit_lag_seconds": "{{ var.value.get('totesys_commit_lag_seconds', '300') }}",
        },
        # Glue 5.0's boto3 predates S3 conditional writes (put_object IfNoneMatch): newer wheels.
        python_modules=("psycopg2-binary", "boto3", "botocore", "s3transfer"),
        network=True,
        outlets=[INGESTED],
    )

    chain(plan_batch, extract)


totesys_ingest()
