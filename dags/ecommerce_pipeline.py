"""
### E-commerce: hive-partitioned CSV transactions → validated → upserted → archived

Replaces the **e-commerce** pipeline's Lambdas (the S3-upload trigger of the Glue job, the
archive Lambda) and its EventBridge rule on the Glue job's state with one DAG.

**Steps**
1. `wait_for_marker` waits, deferred in the triggerer, for `batch-completion/<batch_id>.json` in
   `ecommerce-raw`; `claim_batch` takes the oldest marker and claims the batch. The batch is the
   marker's `objects`, or every CSV under `transactions/`.
2. `crawl_raw` catalogues `transactions/` (CSV, partitions year/month/day);
   `check_raw_schema` checks each object's header and column patterns with Great Expectations,
   from its first 64 KiB.
3. Glue `ecommerce_stage_transactions` reads the batch's objects, checks every row (values,
   customer and product in the dimensions) and COPYs the rows that pass into
   `ecommerce.stg_transactions`, the others with their reason into
   `ecommerce.rejected_transactions`; `settle_duplicates` (SQL) rejects every copy of a
   transaction that appears with different values and drops identical extra copies.
4. Audit counts: `landing` (rows read), `rejected`, `duplicates_dropped`, `valid`; valid plus
   rejected plus duplicates dropped must equal landing.
5. `upsert_transactions`: one transaction that refuses a batch whose rejected share is over
   `ecommerce_max_rejected_fraction` (Variable, default 0.05), then MERGEs the valid rows into
   `ecommerce.fact_transactions` (inserted, updated, unchanged; an older batch never overwrites a
   newer one) and checks that the fact table accounts for every valid row.
6. `crawl_warehouse` catalogues `fact_transactions` through the Glue connection `warehouse-jdbc`;
   `count_final`; `reconcile`.
7. `archive_objects` moves the batch's objects to `ecommerce-archive` under the same keys (copied,
   checked, deleted); `notify_success` sets the marker aside as loaded, then publishes inserted,
   updated, unchanged, rejected and duplicates dropped to SNS `etl-success`. Any failure sets the marker aside under
   `batch-archive/failed/` and publishes to `etl-failure`; the batch's objects stay where they are.

**Trigger** Each run takes the oldest pending marker (how runs start: *Start mode*, below).
To run one batch now (again),
trigger with `batch_id`; tick `reprocess` to load a batch that already loaded.
"""

from __future__ import annotations

from airflow.sdk import Asset, chain

from etl_toolkit import environment
from etl_toolkit.pipeline import Layer, Pipeline, marker_dag
from etl_toolkit.tasks import archive, audit, glue, quality, warehouse

# Names resolved per run from the environment (etl_toolkit.environment): these are templates.
RAW_BUCKET = environment.bucket("ecommerce_raw")
ARCHIVE_BUCKET = environment.bucket("ecommerce_archive")
PREFIX = "transactions/"
WAREHOUSE_CONNECTION = environment.glue_connection("warehouse_jdbc")
MAX_REJECTED_FRACTION = "{{ var.value.get('ecommerce_max_rejected_fraction', '0.05') }}"

ECOMMERCE = Pipeline(
    name="ecommerce",
    landing_bucket=RAW_BUCKET,
    layers=(
        Layer("landing", ("transactions",)),
        Layer("rejected", ("rejected",)),
        Layer("duplicates_dropped", ("duplicates_dropped",)),
        Layer("valid", ("transactions",),
              plus={"transactions": (("rejected", "rejected"), ("duplicates_dropped", "duplicates_dropped"))}),
        Layer("final", ("transactions",), matches={"transactions": ("valid", "transactions")}),
    ),
)  # fmt: skip

RAW = Asset(name="ecommerce_raw", uri=environment.asset_uri("ecommerce_raw", PREFIX))
FACT = Asset(name="ecommerce_fact_transactions", uri="postgres://warehouse:5432/warehouse/ecommerce/fact_transactions")


@marker_dag(ECOMMERCE, dag_id="ecommerce_pipeline", tags=["ecommerce", "glue", "event-driven"], doc_md=__doc__)
def ecommerce_pipeline(batch):
    chain(
        warehouse.create_tables(),
        glue.CatalogCrawler(
            task_id="crawl_raw",
            config=glue.crawler_config("ecommerce-raw-crawler", f"s3://{RAW_BUCKET}/{PREFIX}"),
            inlets=[RAW],
        ),
        quality.check_csv_objects("raw", bucket=RAW_BUCKET, prefix=PREFIX),
        glue.GlueJob(
            task_id="stage_transactions",
            pipeline=ECOMMERCE.name,
            script="ecommerce_stage_transactions.py",
            script_args={"--batch_id": batch.batch_id, "--raw_bucket": RAW_BUCKET, "--prefix": PREFIX,
                         "--objects": batch.objects,
                         "--warehouse_secret_id": environment.secret("warehouse")},  # fmt: skip
            python_modules=("psycopg2-binary",),
            network=True,
        ),
        warehouse.run_batch_sql(task_id="settle_duplicates", files=["settle_duplicates.sql"]),
        audit.count_sql("landing", file="count_landing.sql", entity="transactions"),
        audit.count_sql("rejected", file="count_rejected.sql", entity="rejected"),
        audit.count_sql("duplicates_dropped", file="count_duplicates.sql", entity="duplicates_dropped"),
        audit.count_sql("valid", file="count_valid.sql", entity="transactions"),
        warehouse.load_batch(
            task_id="upsert_transactions",
            files=["lock_fact.sql", "check_rejected_share.sql", "upsert_transactions.sql"],
            count_sql="count_final.sql",
            must_equal=("valid", "transactions"),
            parameters={"max_rejected_fraction": MAX_REJECTED_FRACTION},
            outlets=[FACT],
        ),
        glue.CatalogCrawler(
            task_id="crawl_warehouse",
            config=glue.jdbc_crawler_config(
                "ecommerce-warehouse-crawler",
                WAREHOUSE_CONNECTION,
                f"{environment.WAREHOUSE_DATABASE}/ecommerce/fact_transactions",
            ),
        ),
        audit.count_sql("final", file="count_final.sql", entity="transactions"),
    )
    with batch.after_reconcile():
        archive.archive_objects(
            source_bucket=RAW_BUCKET, archive_bucket=ARCHIVE_BUCKET, objects_sql="batch_objects.sql"
        )


ecommerce_pipeline()
