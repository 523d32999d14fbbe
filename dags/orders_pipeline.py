"""
### Orders: Firehose landing → S3 staging → warehouse, reconciled at every layer

Replaces the **orders-workflow** Glue workflow of the seed `orders-stream-audit.txt` (EventBridge
rule on `batch-completion/`, two crawlers, four Glue jobs, the DynamoDB audit table and the
`AuditTableScannerFn` Lambda) with one DAG.

**Steps**
1. `wait_for_marker` waits, deferred in the triggerer, for `batch-completion/<batch_id>.json` in
   `fo-to-dw-orders-landing-area`; `claim_batch` takes the oldest marker and claims the batch.
2. Landing: crawler → Great Expectations schema check → audit count of the batch's product lines
   after at-least-once duplicates are dropped (compared with the marker's `expected_counts`).
3. Glue `orders_landing_to_staging` explodes products into lines → staging crawler (`staging_`
   prefix) → schema check → audit count (must equal landing).
4. Glue `orders_staging_to_warehouse_staging` COPYs the batch into `orders.stg_order_lines` →
   audit count → `load_final_table` replaces the batch's orders in `orders.fact_order_lines` and
   checks the count in the same transaction → audit count.
5. `reconcile` compares every layer, `archive_marker` sets the marker aside as loaded,
   `notify_success` publishes the summary to SNS `etl-success`. Any failed task publishes to
   `etl-failure` and sets the marker aside under `batch-archive/failed/` with the reason.

**Trigger** Runs continuously: each run waits for the next marker. To run one batch now (again),
trigger with `batch_id`; tick `reprocess` to load a batch that already loaded.
The waiting run makes way for a triggered run within 10 s (it ends skipped); a day without a
marker also ends a run skipped, and the next run waits again.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, chain, dag

from etl_toolkit import audit, batches, config, glue, notify, quality, reconcile, warehouse

PIPELINE = "orders"
LANDING_BUCKET = "fo-to-dw-orders-landing-area"
STAGING_BUCKET = "fo-to-dw-orders-staging-area"
# Per batch, one row per order it delivers (order_id, processing_ts), lines or not: the load needs
# them to clear an order re-delivered with no products and to keep a newer version of an order.
VERSIONS_PREFIX = "order_versions/"

LANDING = Asset(name="orders_landing", uri=f"s3://{LANDING_BUCKET}/orders/")
STAGING = Asset(name="orders_staging", uri=f"s3://{STAGING_BUCKET}/orders/")
WAREHOUSE_STAGING = Asset(
    name="orders_warehouse_staging", uri="postgres://warehouse:5432/warehouse/orders/stg_order_lines"
)
FINAL = Asset(name="orders_final", uri="postgres://warehouse:5432/warehouse/orders/fact_order_lines")


@dag(
    dag_id="orders_pipeline",
    schedule="@continuous",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=config.default_args(PIPELINE, LANDING_BUCKET),
    params=config.batch_params(),
    tags=["orders", "glue", "event-driven"],
    doc_md=__doc__,
)
def orders_pipeline():
    # -- sense and claim --------------------------------------------------------------------------
    wait_for_marker = batches.wait_for_marker(LANDING_BUCKET)
    create_warehouse_tables = warehouse.create_tables(PIPELINE)
    claim_batch = batches.claim_batch(PIPELINE, LANDING_BUCKET)
    is_new_batch = batches.skip_if_already_loaded()

    # -- landing ------------------------------------------------------------------------------------
    crawl_landing = glue.CatalogCrawler(
        task_id="crawl_landing",
        config=glue.crawler_config("orders-landing-area-crawler", f"s3://{LANDING_BUCKET}/orders/"),
        inlets=[LANDING],
    )
    check_landing_schema = quality.check_landing_stream(PIPELINE, bucket=LANDING_BUCKET, prefix="orders/")
    count_landing = audit.count_landing_stream(
        PIPELINE,
        bucket=LANDING_BUCKET,
        prefix="orders/",
        key="order_id",
        latest_by="processing_ts",
        list_column="products",
        records_name="orders",
        items_name="order_lines",
    )

    # -- staging ------------------------------------------------------------------------------------
    landing_to_staging = glue.GlueJob(
        task_id="landing_to_staging",
        pipeline=PIPELINE,
        script="orders_landing_to_staging.py",
        script_args={
            "--batch_id": batches.BATCH_ID,
            "--started_at": batches.STARTED_AT,
            "--completed_at": batches.COMPLETED_AT,
            "--landing_bucket": LANDING_BUCKET,
            "--landing_prefix": "orders/",
            "--staging_bucket": STAGING_BUCKET,
            "--staging_prefix": "orders/",
            # The orders the batch delivers and their processing_ts, beside staging (not in it).
            "--versions_prefix": VERSIONS_PREFIX,
        },
        outlets=[STAGING],
    )
    crawl_staging = glue.CatalogCrawler(
        task_id="crawl_staging",
        config=glue.crawler_config(
            "orders-staging-area-crawler", f"s3://{STAGING_BUCKET}/orders/", table_prefix="staging_"
        ),
    )
    check_staging_schema = quality.check_parquet(
        PIPELINE, "staging", bucket=STAGING_BUCKET, prefix="orders/run_id={batch_id}/"
    )
    count_staging = audit.count_parquet(
        PIPELINE, "staging", bucket=STAGING_BUCKET, prefix="orders/run_id={batch_id}/", entity="order_lines"
    )

    # -- warehouse ----------------------------------------------------------------------------------
    staging_to_warehouse = glue.GlueJob(
        task_id="staging_to_warehouse_staging",
        pipeline=PIPELINE,
        script="orders_staging_to_warehouse_staging.py",
        script_args={
            "--batch_id": batches.BATCH_ID,
            "--staging_bucket": STAGING_BUCKET,
            "--staging_prefix": "orders/",
            "--versions_prefix": VERSIONS_PREFIX,
            "--warehouse_secret_id": config.WAREHOUSE_SECRET_ID,
        },
        default_arguments={"--additional-python-modules": "psycopg2-binary==2.9.12"},
        outlets=[WAREHOUSE_STAGING],
    )
    count_warehouse_staging = audit.count_table(
        PIPELINE, "warehouse_staging", sql="count_warehouse_staging.sql", entity="order_lines"
    )
    load_final_table = warehouse.load_batch(
        PIPELINE,
        task_id="load_final_table",
        files=[
            "lock_final_table.sql",
            "record_order_versions.sql",
            "delete_replaced_orders.sql",
            "insert_final_lines.sql",
        ],
        count_sql="count_final.sql",
        entity="order_lines",
        outlets=[FINAL],
    )
    count_final = audit.count_table(PIPELINE, "final", sql="count_final.sql", entity="order_lines")

    # -- close the batch ------------------------------------------------------------------------------
    reconcile_counts = reconcile.reconcile_batch(PIPELINE)
    archive_marker = batches.archive_marker(LANDING_BUCKET)
    notify_success = notify.publish_success(PIPELINE)

    chain(
        wait_for_marker,
        create_warehouse_tables,
        claim_batch,
        is_new_batch,
        crawl_landing,
        check_landing_schema,
        count_landing,
        landing_to_staging,
        crawl_staging,
        check_staging_schema,
        count_staging,
        staging_to_warehouse,
        count_warehouse_staging,
        load_final_table,
        count_final,
        reconcile_counts,
        archive_marker,
        notify_success,
    )
    # A batch that already loaded skips the load but is still archived and reported as a no-op.
    claim_batch >> archive_marker


orders_pipeline()
