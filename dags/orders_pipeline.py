"""
### Orders: Firehose landing → S3 staging → warehouse, reconciled at every layer

Replaces the **orders-workflow** Glue workflow (EventBridge
rule on `batch-completion/`, two crawlers, four Glue jobs, the DynamoDB audit table and the
`AuditTableScannerFn` Lambda) with one DAG.

**Steps**
1. `wait_for_marker` waits, deferred in the triggerer, for `batch-completion/<batch_id>.json` in
   `fo-to-dw-orders-landing-area`; `claim_batch` takes the oldest marker and claims the batch.
2. Side by side, both reading the batch's landing files (which files, and the latest-copy rule,
   come from `orders_batch.py`, shared by the two jobs):
   - the landing audit: Glue `orders_audit_landing` counts the batch's orders and product lines
     after at-least-once duplicates are dropped and lists its files → `count_landing` records the
     count (compared with the marker's `expected_counts`) and, beside it, Great Expectations checks
     those files' schema from their parquet footers;
   - Glue `orders_landing_to_staging` explodes products into lines, into the batch's own partition
     of staging → side by side: the staging crawler (`staging_` prefix), the schema check, the
     audit count (once landing's is in: it must equal it), and the next job;
   - the landing crawler catalogs the files, then `create_warehouse_tables` makes sure the
     warehouse's tables exist before the load.
3. Glue `orders_staging_to_warehouse_staging` COPYs the batch into `orders.stg_order_lines` →
   `load_final_table` (once staging's audits passed too) takes the staging table's audit count,
   replaces the batch's orders in `orders.fact_order_lines`, and takes the final table's audit
   count in the same transaction, which must equal landing's. Write, audit, publish: every audit is
   upstream of the final load, so a batch that fails one never reaches the final table (the jobs
   beside a failed audit only rewrite the batch's own staging, which its next run rewrites again).
4. `reconcile` compares every declared layer; `notify_success` sets the marker aside as loaded
   (or keeps it pending when it was written again meanwhile), then publishes the summary to SNS
   `etl-success`. The first task to fail sets the marker aside under `batch-archive/failed/`
   with the reason, then publishes to `etl-failure` (one FAILURE per run).

**Trigger** Each run takes the oldest pending marker (how runs start: *Start mode*, below).
To run one batch now (again),
trigger with `batch_id`; tick `reprocess` to load a batch that already loaded.
"""

from __future__ import annotations

from airflow.sdk import Asset, chain

from etl_toolkit import environment
from etl_toolkit.pipeline import Layer, Pipeline, marker_dag
from etl_toolkit.tasks import audit, glue, quality, warehouse

# Names resolved per run from the environment (etl_toolkit.environment): these are templates.
LANDING_BUCKET = environment.bucket("orders_landing")
STAGING_BUCKET = environment.bucket("orders_staging")
# Per batch, one row per order it delivers (order_id, processing_ts), lines or not: the load needs
# them to clear an order re-delivered with no products and to keep a newer version of an order.
VERSIONS_PREFIX = "order_versions/"
# What the landing audit job found: the batch's counts and its files.
LANDING_REPORT = "audit/landing/run_id={batch_id}/counts.json"

ORDERS = Pipeline(
    name="orders",
    landing_bucket=LANDING_BUCKET,
    layers=(
        Layer("landing", ("orders", "order_lines")),
        Layer("staging", ("order_lines",)),
        Layer("warehouse_staging", ("order_lines",)),
        Layer("final", ("order_lines",)),
    ),
)

LANDING = Asset(name="orders_landing", uri=environment.asset_uri("orders_landing", "orders/"))
STAGING = Asset(name="orders_staging", uri=environment.asset_uri("orders_staging", "orders/"))
WAREHOUSE_STAGING = Asset(
    name="orders_warehouse_staging", uri="postgres://warehouse:5432/warehouse/orders/stg_order_lines"
)
FINAL = Asset(name="orders_final", uri="postgres://warehouse:5432/warehouse/orders/fact_order_lines")


@marker_dag(ORDERS, dag_id="orders_pipeline", tags=["orders", "glue", "event-driven"], doc_md=__doc__)
def orders_pipeline(batch):
    window = {"--batch_id": batch.batch_id, "--started_at": batch.started_at, "--completed_at": batch.completed_at,
              "--landing_bucket": LANDING_BUCKET, "--landing_prefix": "orders/"}  # fmt: skip
    # -- landing --------------------------------------------------------------------------------------
    audit_landing = glue.GlueJob(
        task_id="audit_landing",
        pipeline=ORDERS.name,
        script="orders_audit_landing.py",
        py_modules=("orders_batch.py",),
        script_args={**window, "--audit_bucket": STAGING_BUCKET,
                     "--audit_key": LANDING_REPORT.format(batch_id=batch.batch_id)},  # fmt: skip
    )
    # The count (from the audit job's report) and the schema check (of the footers of the files the
    # report lists) need only the audit job.
    count_landing = audit.count_report(
        "landing",
        bucket=STAGING_BUCKET,
        key=LANDING_REPORT,
        entities={"orders": "orders", "order_lines": "order_lines"},
        rows="orders",
        details=("duplicates_dropped", "rows_read", "objects_listed", "partitions"),
    )
    check_landing = quality.check_objects_in_report(
        "landing", bucket=LANDING_BUCKET, report_bucket=STAGING_BUCKET, report_key=LANDING_REPORT
    )
    # The crawler only catalogs the files for Athena's users (the jobs read the batch's files directly).
    crawl_landing = glue.CatalogCrawler(
        task_id="crawl_landing",
        config=glue.crawler_config("orders-landing-area-crawler", f"s3://{LANDING_BUCKET}/orders/"),
        inlets=[LANDING],
    )
    # -- staging --------------------------------------------------------------------------------------
    landing_to_staging = glue.GlueJob(
        task_id="landing_to_staging",
        pipeline=ORDERS.name,
        script="orders_landing_to_staging.py",
        py_modules=("orders_batch.py",),
        script_args={**window, "--staging_bucket": STAGING_BUCKET, "--staging_prefix": "orders/",
                     "--versions_prefix": VERSIONS_PREFIX},  # fmt: skip
        outlets=[STAGING],
    )
    # The check and the count read the batch's parquet footers themselves.
    check_staging = quality.check_parquet("staging", bucket=STAGING_BUCKET, prefix="orders/run_id={batch_id}/")
    count_staging = audit.count_parquet(
        "staging", bucket=STAGING_BUCKET, prefix="orders/run_id={batch_id}/", entity="order_lines"
    )
    crawl_staging = glue.CatalogCrawler(
        task_id="crawl_staging",
        config=glue.crawler_config(
            "orders-staging-area-crawler", f"s3://{STAGING_BUCKET}/orders/", table_prefix="staging_"
        ),
    )
    # -- warehouse ------------------------------------------------------------------------------------
    create_tables = warehouse.create_tables()
    to_warehouse_staging = glue.GlueJob(
        task_id="staging_to_warehouse_staging",
        pipeline=ORDERS.name,
        script="orders_staging_to_warehouse_staging.py",
        script_args={"--batch_id": batch.batch_id, "--staging_bucket": STAGING_BUCKET,
                     "--staging_prefix": "orders/", "--versions_prefix": VERSIONS_PREFIX,
                     "--warehouse_secret_id": environment.secret("warehouse")},  # fmt: skip
        py_modules=("../common/arrow_postgres.py",),  # binary COPY from Arrow (ADBC)
        python_modules=(
            "adbc-driver-manager",
            "adbc-driver-postgresql",
            "importlib-resources",
            "typing-extensions",
        ),
        network=True,
        outlets=[WAREHOUSE_STAGING],
    )
    # The audit counts of the warehouse's two layers are taken by the load itself: the staging
    # table's before the load starts, the final table's in the load's transaction.
    load_final_table = warehouse.load_batch(
        task_id="load_final_table",
        files=["lock_final_table.sql", "record_order_versions.sql", "analyze_batch.sql",
               "delete_replaced_orders.sql", "insert_final_lines.sql"],  # fmt: skip
        count_sql="count_final.sql",
        must_equal=("landing", "order_lines"),
        counts_before={"warehouse_staging": "count_warehouse_staging.sql"},
        counted_as="final",
        outlets=[FINAL],
    )

    # Write, audit, publish: the jobs write the batch's own partition of staging and of the
    # warehouse's staging table, each layer's audits run beside the next job, and only the final
    # load waits for every audit, so a batch that fails one never reaches the final table. The
    # landing audit job starts with the first job, both reading landing. The crawlers and the
    # warehouse's tables are off the way (nothing but the load needs the tables).
    audit_landing >> [count_landing, check_landing]
    chain(landing_to_staging, to_warehouse_staging, load_final_table)
    landing_to_staging >> [check_staging, count_staging, crawl_staging]
    count_landing >> count_staging  # staging's count is checked against landing's at once
    [count_landing, check_landing, check_staging, count_staging] >> load_final_table
    crawl_landing >> create_tables >> to_warehouse_staging


orders_pipeline()
