"""
### Shipping: JSON lines → typed parquet → personal data dropped → Athena metrics over SNS

Replaces the **shipping** Step Functions state machine (and the Lambda that started it on an S3
upload) step for step: the Glue jobs, the crawlers it polled in a Choice/Wait loop, the Athena
query and the SNS publish are tasks here, and the waits are the operators' own.

**Steps**
1. `wait_for_marker` waits, deferred in the triggerer, for `batch-completion/<batch_id>.json` in
   `shipping-landing`; `claim_batch` takes the oldest marker and claims the batch: the marker's
   `objects`, or every object under `incoming/<batch_id>/`.
2. Glue `shipping_json_to_parquet` (PySpark) reads every JSON line, types it and writes the
   accepted records as parquet to `shipping-staging/transformed_data/batch_id=<batch_id>/`;
   a line that cannot be typed goes, as its object, line number and reason, to
   `rejected/batch_id=<batch_id>/`. Over `shipping_max_rejected_fraction` (Variable, default
   0.01) of the lines rejected, or another number of lines than the marker's `shipments`,
   refuses the batch (no retries) before the raw layer is touched.
3. `count_landing` and `count_rejected` take the job's report; `crawl_raw` catalogues
   `transformed_data` in Glue database `shipping-db`; `check_raw_schema` holds the batch's raw
   files against the Great Expectations suite `raw`; `count_raw` counts them from their footers.
4. Glue `shipping_normalize` (PySpark) reads the batch from the catalogued raw table, drops
   `customer_name` and `street_address`, and writes `normalized/batch_id=<batch_id>/`;
   `crawl_normalized`; `count_normalized`. No later step sees personal data.
5. `query_metrics` runs `batch_metrics.sql` on Athena (deferred while it runs): shipments, total
   cost, distance and fuel quantity of the batch; `count_query` takes its answer.
6. `reconcile`: landing = raw + rejected = the marker's `shipments`, and normalized = raw =
   query. `notify_success` sets the marker aside as loaded, then publishes the counts, the
   `metrics` and the `query_execution_id` to SNS `etl-success`. Any failure sets the marker aside
   under `batch-archive/failed/` and publishes to `etl-failure`.

**Trigger** Each run takes the oldest pending marker (how runs start: *Start mode*, below).
To run one batch now (again),
trigger with `batch_id`; tick `reprocess` to load a batch that already loaded.
"""

from __future__ import annotations

from airflow.sdk import Asset, chain

from etl_toolkit import environment
from etl_toolkit.pipeline import Layer, Pipeline, marker_dag
from etl_toolkit.tasks import athena, audit, glue, quality

# Names resolved per run from the environment (etl_toolkit.environment): these are templates.
LANDING_BUCKET = environment.bucket("shipping_landing")
STAGING_BUCKET = environment.bucket("shipping_staging")
QUERY_RESULTS = f"s3://{environment.bucket('shipping_query_results')}/queries/"
DATABASE = environment.catalog_database("shipping")
PREFIX = "incoming/"
REPORT = "audit/batch_id={batch_id}/json_to_parquet.json"
MAX_REJECTED_FRACTION = "{{ var.value.get('shipping_max_rejected_fraction', '0.01') }}"

SHIPPING = Pipeline(
    name="shipping",
    landing_bucket=LANDING_BUCKET,
    layers=(
        Layer("landing", ("shipments",)),
        Layer("rejected", ("rejected",)),
        Layer("raw", ("shipments",), plus={"shipments": (("rejected", "rejected"),)}),
        Layer("normalized", ("shipments",), matches={"shipments": ("raw", "shipments")}),
        Layer("query", ("shipments",), matches={"shipments": ("normalized", "shipments")}),
    ),
)

RAW = Asset(name="shipping_transformed_data", uri=environment.asset_uri("shipping_staging", "transformed_data/"))
NORMALIZED = Asset(name="shipping_normalized", uri=environment.asset_uri("shipping_staging", "normalized/"))


@marker_dag(SHIPPING, dag_id="shipping_pipeline", tags=["shipping", "glue", "athena", "event-driven"], doc_md=__doc__)
def shipping_pipeline(batch):
    query = athena.query("query_metrics", file="batch_metrics.sql", database=DATABASE, output_location=QUERY_RESULTS)
    chain(
        glue.GlueJob(
            task_id="json_to_parquet",
            pipeline=SHIPPING.name,
            script="shipping_json_to_parquet.py",
            script_args={
                "--batch_id": batch.batch_id,
                "--landing_bucket": LANDING_BUCKET,
                "--staging_bucket": STAGING_BUCKET,
                "--objects": batch.objects,
                "--prefix": PREFIX,
                "--max_rejected_fraction": MAX_REJECTED_FRACTION,
                "--expected_shipments": batch.expected_count("shipments"),
            },
            outlets=[RAW],
        ),
        audit.count_report("landing", bucket=STAGING_BUCKET, key=REPORT, entities={"shipments": "landing"}),
        audit.count_report(
            "rejected",
            bucket=STAGING_BUCKET,
            key=REPORT,
            entities={"rejected": "rejected"},
            details=("first_rejections",),
        ),
        glue.CatalogCrawler(
            task_id="crawl_raw",
            config=glue.crawler_config(
                "shipping-raw-crawler", f"s3://{STAGING_BUCKET}/transformed_data/", database=DATABASE
            ),
        ),
        quality.check_parquet("raw", bucket=STAGING_BUCKET, prefix="transformed_data/batch_id={batch_id}/"),
        audit.count_parquet(
            "raw", bucket=STAGING_BUCKET, prefix="transformed_data/batch_id={batch_id}/", entity="shipments"
        ),
        glue.GlueJob(
            task_id="normalize",
            pipeline=SHIPPING.name,
            script="shipping_normalize.py",
            script_args={
                "--batch_id": batch.batch_id,
                "--database": DATABASE,
                "--raw_table": "transformed_data",
                "--staging_bucket": STAGING_BUCKET,
            },
            inlets=[RAW],
            outlets=[NORMALIZED],
        ),
        glue.CatalogCrawler(
            task_id="crawl_normalized",
            config=glue.crawler_config(
                "shipping-normalized-crawler", f"s3://{STAGING_BUCKET}/normalized/", database=DATABASE
            ),
        ),
        audit.count_parquet(
            "normalized", bucket=STAGING_BUCKET, prefix="normalized/batch_id={batch_id}/", entity="shipments"
        ),
        query,
        audit.count_athena("query", query=query, entity="shipments"),
    )


shipping_pipeline()
