"""
### Supply chain: OLTP dimensions and zipped fact drops → silver → gold → warehouse, a summary e-mail

Replaces the **supply-chain lakehouse** Step Functions state machine (started by an EventBridge
rule when fact data arrives) step for step: the three Glue jobs, the schema-check Lambda, the
failure Lambda and the summary-e-mail Lambda are tasks here.

**Steps**
1. `wait_for_marker` waits, deferred in the triggerer, for `batch-completion/<batch_id>.json` in
   `supplychain-landing`; `claim_batch` takes the oldest marker and claims the batch: the marker's
   `objects`, or every zip archive under `incoming/<batch_id>/`.
2. Glue `supplychain_silver_dimensions` (PySpark) reads from the OLTP database `supplychain` only
   the rows of supplier, product, warehouse and customer changed since each table's watermark (up
   to the database's clock minus a commit lag, Variable `supplychain_commit_lag_seconds`, default
   300, so that a late commit is read by a later run, never skipped), finds the keys deleted in
   the source, and rewrites `silver/dim_*` to the source's current state. The window is recorded
   once per batch: a retry reads the same changes again.
3. `crawl_silver_dimensions` catalogues them in `supplychain_silver`; beside it the schema gate
   `check_silver_schema` holds each dimension against its Great Expectations suite. A dimension
   that breaks its suite (a column renamed in the source) fails the run here: nothing after it
   runs, and the failure e-mail names the expectation.
4. Glue `supplychain_silver_facts` (PySpark) unzips the batch's archives, parses every shipments
   and purchase-order CSV row, rejects (with the object, member, line and reason, to
   `silver/rejected/batch_id=<batch_id>/`) a row that does not parse or names a customer,
   product, warehouse or supplier missing from the silver dimensions, and merges the rest into
   `silver/fact_shipments` and `silver/fact_purchase_orders`: the copy with the latest
   `updated_at` wins. An archive that is not a zip, a member of another name or a CSV missing a
   column refuses the batch (no retries) before silver is touched.
5. Audit counts from the job's report: `landing` (rows read), `rejected`, `superseded` (copies that
   lost to a newer one) and `silver` (the batch's rows that won); landing = silver + rejected +
   superseded = the marker's counts. `crawl_silver_facts`.
6. Glue `supplychain_gold_summaries` (PySpark) recomputes `gold_supplier_performance`,
   `gold_inventory_position` and `gold_daily_shipments` from silver; `crawl_gold` catalogues them
   in `supplychain_gold`; `count_gold`.
7. Glue `supplychain_load_warehouse` replaces the three tables in the warehouse schema
   `supplychain` in one transaction (binary COPY); `count_warehouse` (must equal gold per table).
8. `reconcile`, then `notify_success` sets the marker aside as loaded and publishes the summary to
   SNS `etl-success`: the counts per layer, the batch's units shipped, units received and late deliveries, and the
   three suppliers with the lowest on-time rate. Any failure sets the marker aside under
   `batch-archive/failed/` and publishes to `etl-failure`.

**Trigger** Each run takes the oldest pending marker (how runs start: *Start mode*, below).
To run one batch now (again),
trigger with `batch_id`; tick `reprocess` to load a batch that already loaded (the same silver,
gold and warehouse result).
"""

from __future__ import annotations

from airflow.sdk import Asset, chain

from etl_toolkit import environment
from etl_toolkit.pipeline import Layer, Pipeline, marker_dag
from etl_toolkit.tasks import audit, glue, quality

# Names resolved per run from the environment (etl_toolkit.environment): these are templates.
LANDING_BUCKET = environment.bucket("supplychain_landing")
LAKEHOUSE_BUCKET = environment.bucket("supplychain_lakehouse")
SILVER_DATABASE = environment.catalog_database("supplychain_silver")
GOLD_DATABASE = environment.catalog_database("supplychain_gold")
PREFIX = "incoming/"
COMMIT_LAG = "{{ var.value.get('supplychain_commit_lag_seconds', '300') }}"

DIMENSIONS = ("dim_supplier", "dim_product", "dim_warehouse", "dim_customer")
FACTS = ("fact_shipments", "fact_purchase_orders")
GOLD = ("gold_supplier_performance", "gold_inventory_position", "gold_daily_shipments")
ENTITIES = ("shipments", "purchase_orders")
FACTS_REPORT = "audit/batch_id={batch_id}/silver_facts.json"
GOLD_REPORT = "audit/batch_id={batch_id}/gold.json"
# The Arrow to PostgreSQL fast path (binary COPY through ADBC) and the wheels it needs on Glue.
ARROW_POSTGRES = ("../common/arrow_postgres.py",)
ADBC_WHEELS = ("adbc-driver-manager", "adbc-driver-postgresql", "importlib-resources", "typing-extensions")

SUPPLY_CHAIN = Pipeline(
    name="supplychain",
    landing_bucket=LANDING_BUCKET,
    layers=(
        Layer("landing", ENTITIES),
        Layer("rejected", tuple(f"{entity}_rejected" for entity in ENTITIES)),
        Layer("superseded", tuple(f"{entity}_superseded" for entity in ENTITIES)),
        Layer(
            "silver",
            ENTITIES,
            plus={e: (("rejected", f"{e}_rejected"), ("superseded", f"{e}_superseded")) for e in ENTITIES},
        ),
        Layer("gold", GOLD),
        Layer("warehouse", GOLD, matches={table: ("gold", table) for table in GOLD}),
    ),
)

DIMENSIONS_ASSET = Asset(
    name="supplychain_silver_dimensions", uri=environment.asset_uri("supplychain_lakehouse", "silver/dim/")
)
FACTS_ASSET = Asset(name="supplychain_silver_facts", uri=environment.asset_uri("supplychain_lakehouse", "silver/fact/"))
GOLD_ASSET = Asset(name="supplychain_gold", uri=environment.asset_uri("supplychain_lakehouse", "gold/"))


def _lakehouse_paths(tables: tuple[str, ...], folder: str) -> tuple[str, ...]:
    return tuple(f"s3://{LAKEHOUSE_BUCKET}/{folder}/{table}/" for table in tables)


DIMENSIONS_CRAWLER = glue.crawler_config(
    "supplychain-silver-dimensions-crawler", _lakehouse_paths(DIMENSIONS, "silver"), database=SILVER_DATABASE
)
FACTS_CRAWLER = glue.crawler_config(
    "supplychain-silver-facts-crawler", _lakehouse_paths(FACTS, "silver"), database=SILVER_DATABASE
)
GOLD_CRAWLER = glue.crawler_config("supplychain-gold-crawler", _lakehouse_paths(GOLD, "gold"), database=GOLD_DATABASE)


def _report_count(layer: str, field: str, *, entity_suffix: str = "", details: tuple[str, ...] = ()):
    """A fact layer's counts from silver_facts' report: entity -> ``<field>_<entity>``."""
    return audit.count_report(
        layer,
        bucket=LAKEHOUSE_BUCKET,
        key=FACTS_REPORT,
        entities={f"{entity}{entity_suffix}": f"{field}_{entity}" for entity in ENTITIES},
        details=details,
    )


@marker_dag(
    SUPPLY_CHAIN,
    dag_id="supply_chain_pipeline",
    tags=["supplychain", "glue", "lakehouse", "event-driven"],
    doc_md=__doc__,
)
def supply_chain_pipeline(batch):
    silver_dimensions = glue.GlueJob(
        task_id="silver_dimensions",
        pipeline=SUPPLY_CHAIN.name,
        script="supplychain_silver_dimensions.py",
        script_args={
            "--batch_id": batch.batch_id,
            "--lakehouse_bucket": LAKEHOUSE_BUCKET,
            "--source_secret_id": environment.secret("supplychain"),
            "--commit_lag_seconds": COMMIT_LAG,
        },
        # Glue 5.0's boto3 predates S3 conditional writes (the window is recorded once): newer wheels.
        python_modules=("psycopg2-binary", "boto3", "botocore", "s3transfer"),
        network=True,
        outlets=[DIMENSIONS_ASSET],
    )
    # The gate: a dimension that breaks its suite stops the run before anything is catalogued or
    # validated against it.
    schema_gate = quality.check_parquet_datasets(
        "silver", bucket=LAKEHOUSE_BUCKET, datasets={table: f"silver/{table}/" for table in DIMENSIONS}
    )
    silver_facts = glue.GlueJob(
        task_id="silver_facts",
        pipeline=SUPPLY_CHAIN.name,
        script="supplychain_silver_facts.py",
        script_args={
            "--batch_id": batch.batch_id,
            "--landing_bucket": LANDING_BUCKET,
            "--lakehouse_bucket": LAKEHOUSE_BUCKET,
            "--objects": batch.objects,
            "--prefix": PREFIX,
        },
        inlets=[DIMENSIONS_ASSET],
        outlets=[FACTS_ASSET],
    )
    gold = glue.GlueJob(
        task_id="gold",
        pipeline=SUPPLY_CHAIN.name,
        script="supplychain_gold_summaries.py",
        script_args={"--batch_id": batch.batch_id, "--lakehouse_bucket": LAKEHOUSE_BUCKET},
        inlets=[FACTS_ASSET],
        outlets=[GOLD_ASSET],
    )
    load_warehouse = glue.GlueJob(
        task_id="load_warehouse",
        pipeline=SUPPLY_CHAIN.name,
        script="supplychain_load_warehouse.py",
        script_args={
            "--batch_id": batch.batch_id,
            "--lakehouse_bucket": LAKEHOUSE_BUCKET,
            "--warehouse_secret_id": environment.secret("warehouse"),
        },
        py_modules=ARROW_POSTGRES,
        python_modules=ADBC_WHEELS,
        network=True,
        inlets=[GOLD_ASSET],
    )

    # -- silver dimensions, the gate, silver facts and their counts -------------------------------
    chain(
        silver_dimensions,
        schema_gate,
        [glue.CatalogCrawler(task_id="crawl_silver_dimensions", config=DIMENSIONS_CRAWLER), silver_facts],
    )
    chain(
        silver_facts,
        [
            _report_count("landing", "landing"),
            _report_count("rejected", "rejected", entity_suffix="_rejected", details=("first_rejections",)),
            _report_count("superseded", "superseded", entity_suffix="_superseded"),
        ],
        _report_count("silver", "silver", details=("published",)),
        [glue.CatalogCrawler(task_id="crawl_silver_facts", config=FACTS_CRAWLER), gold],
    )
    # -- gold, then the warehouse -------------------------------------------------------------------
    gold_count = audit.count_report(
        "gold", bucket=LAKEHOUSE_BUCKET, key=GOLD_REPORT, entities={t: t for t in GOLD}, details=("published",)
    )
    chain(gold, [glue.CatalogCrawler(task_id="crawl_gold", config=GOLD_CRAWLER), gold_count])
    chain(gold_count, load_warehouse, audit.count_sql("warehouse", file="count_warehouse.sql", entity=GOLD[0]))


supply_chain_pipeline()
