"""
### Totesys: ingested batch → star schema in S3 → warehouse, reconciled table by table

Replaces the **transform** and **load** Lambdas of the totesys pipeline (and
the Step Functions state machine that chained them) with one DAG, driven by the completion
marker that `totesys_ingest` writes.

**Steps**
1. `wait_for_marker` waits, deferred in the triggerer, for `batch-completion/<batch_id>.json` in
   `totesys-ingestion`; `claim_batch` takes the earliest batch (by batch id: batches load in the
   order they were extracted, and one that has not loaded holds the ones after it) and claims it.
2. Landing (the ingested batch, `batches/<batch_id>/<table>.parquet`): Great Expectations checks
   every table against its suite (`include/quality/totesys/landing_<table>.json`) → audit count
   per source table from the parquet footers, compared with the marker's `expected_counts`.
3. Glue `totesys_remodel` writes the eleven star-schema tables of the batch to
   `totesys-processed/<table>/batch_id=<batch_id>/` (facts: one row per source-row version;
   `dim_date`: every date the facts refer to) → crawler over the processed bucket → audit count
   per warehouse table (each fact and dimension against its source table's landing count).
4. `load_warehouse` loads the batch into schema `totesys` in one transaction: dimensions upserted
   (type 1; a row is replaced only by a newer source version, `source_last_updated`, so loading
   an older batch again changes nothing), new fact versions appended (a version seen before adds
   nothing) → audit count of the batch's rows found in each warehouse table (must equal the
   processed count).
5. `reconcile` checks every table of every layer against the marker; `notify_success` sets the
   marker aside as loaded, then publishes the counts per table to SNS `etl-success`. Any failed
   task publishes to `etl-failure` and sets the marker aside under `batch-archive/failed/` with
   the reason.

**Trigger** Each run takes the oldest pending marker (how runs start: *Start mode*, below).
To run one batch now (again),
trigger with `batch_id`; tick `reprocess` to load a batch that already loaded (nothing changes).
"""

from __future__ import annotations

from airflow.sdk import Asset, chain

from etl_toolkit import environment
from etl_toolkit.pipeline import Layer, Pipeline, marker_dag
from etl_toolkit.tasks import audit, glue, quality, warehouse

# Names resolved per run from the environment (etl_toolkit.environment): these are templates.
INGESTION_BUCKET = environment.bucket("totesys_ingestion")
PROCESSED_BUCKET = environment.bucket("totesys_processed")
SCHEMA = "totesys"

SOURCE_TABLES = ("address", "counterparty", "currency", "department", "design", "staff", "sales_order",
                 "purchase_order", "payment", "payment_type", "transaction")  # fmt: skip
# Warehouse tables in load order (dimensions before the facts that refer to them) and their keys:
# a fact row is one version of a source row.
WAREHOUSE_KEYS = {
    "dim_date": ("date_id",),
    "dim_staff": ("staff_id",),
    "dim_location": ("location_id",),
    "dim_currency": ("currency_id",),
    "dim_design": ("design_id",),
    "dim_counterparty": ("counterparty_id",),
    "dim_payment_type": ("payment_type_id",),
    "dim_transaction": ("transaction_id",),
    "fact_sales_order": ("sales_order_id", "last_updated_date", "last_updated_time"),
    "fact_purchase_orders": ("purchase_order_id", "last_updated_date", "last_updated_time"),
    "fact_payment": ("payment_id", "last_updated_date", "last_updated_time"),
}
# Each warehouse table that holds one row per changed source row, against its source table.
# (dim_staff and dim_counterparty may hold more: a changed department or address re-emits them.)
FROM_SOURCE = {
    "fact_sales_order": "sales_order",
    "fact_purchase_orders": "purchase_order",
    "fact_payment": "payment",
    "dim_transaction": "transaction",
    "dim_payment_type": "payment_type",
    "dim_design": "design",
    "dim_currency": "currency",
    "dim_location": "address",
}
INGESTED = {table: f"batches/{{batch_id}}/{table}.parquet" for table in SOURCE_TABLES}
PROCESSED = {table: f"{table}/batch_id={{batch_id}}/" for table in WAREHOUSE_KEYS}

TOTESYS = Pipeline(
    name="totesys",
    landing_bucket=INGESTION_BUCKET,
    in_order=True,  # change data capture: a batch builds on the one before it
    layers=(
        Layer("landing", SOURCE_TABLES),
        Layer("processed", tuple(WAREHOUSE_KEYS),
              matches={table: ("landing", source) for table, source in FROM_SOURCE.items()}),
        Layer("warehouse", tuple(WAREHOUSE_KEYS), matches={table: ("processed", table) for table in WAREHOUSE_KEYS}),
    ),
)

LANDING = Asset(name="totesys_ingested", uri=environment.asset_uri("totesys_ingestion", "batches/"))
PROCESSED_ASSET = Asset(name="totesys_processed", uri=environment.asset_uri("totesys_processed"))
WAREHOUSE_ASSETS = [
    Asset(name=f"totesys_{table}", uri=f"postgres://warehouse:5432/warehouse/{SCHEMA}/{table}")
    for table in WAREHOUSE_KEYS
]




@marker_dag(
    TOTESYS, dag_id="totesys_warehouse", tags=["totesys", "glue", "event-driven", "star-schema"], doc_md=__doc__
)
def totesys_warehouse(batch):
    chain(
        warehouse.create_tables(),
        # -- landing: the ingested batch --------------------------------------------------------------
        quality.check_parquet_datasets("landing", bucket=INGESTION_BUCKET, datasets=INGESTED, inlets=[LANDING]),
        audit.count_parquet_datasets("landing", bucket=INGESTION_BUCKET, datasets=INGESTED),
        # -- processed: the star schema in S3 ---------------------------------------------------------
        glue.GlueJob(
            task_id="remodel",
            pipeline=TOTESYS.name,
            script="totesys_remodel.py",
            script_args={"--batch_id": batch.batch_id, "--ingestion_bucket": INGESTION_BUCKET,
                         "--processed_bucket": PROCESSED_BUCKET},  # fmt: skip
            outlets=[PROCESSED_ASSET],
        ),
        glue.CatalogCrawler(
            task_id="crawl_processed",
            config={
                **glue.crawler_config("totesys-processed-crawler", f"s3://{PROCESSED_BUCKET}/",
                                      table_prefix="totesys_"),  # fmt: skip
                # The tables only: state/ is the remodel job's own bookkeeping.
                "Targets": {"S3Targets": [{"Path": f"s3://{PROCESSED_BUCKET}/{table}/"} for table in WAREHOUSE_KEYS]},
            },
        ),
        audit.count_parquet_datasets("processed", bucket=PROCESSED_BUCKET, datasets=PROCESSED),
        # -- warehouse --------------------------------------------------------------------------------
        warehouse.load_parquet_tables(
            task_id="load_warehouse",
            bucket=PROCESSED_BUCKET,
            datasets=PROCESSED,
            keys=WAREHOUSE_KEYS,
            schema=SCHEMA,
            files={t: "load_fact.sql" if t.startswith("fact_") else "load_dimension.sql" for t in WAREHOUSE_KEYS},
            outlets=WAREHOUSE_ASSETS,
        ),
        audit.count_tables_matching_parquet(
            "warehouse", bucket=PROCESSED_BUCKET, datasets=PROCESSED, keys=WAREHOUSE_KEYS, schema=SCHEMA
        ),
    )


totesys_warehouse()
