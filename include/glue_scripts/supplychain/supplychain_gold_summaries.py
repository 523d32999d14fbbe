"""Supply chain, silver to gold: the three gold tables, recomputed whole from silver after every batch.

Reads   s3://<lakehouse_bucket>/silver/dim_supplier/, silver/fact_purchase_orders/ and
        silver/fact_shipments/ (parquet, no partitions): only the columns the definitions below
        use, cast to the silver contract's types (a timestamp written without a zone is taken as
        UTC). A folder that is missing or holds no data object is an empty table.
Writes  s3://<lakehouse_bucket>/gold/<table>/ for gold_supplier_performance,
        gold_inventory_position and gold_daily_shipments: each one parquet file sorted by the
        table's key (an empty table: one file without rows, with the schema), replaced whole
        and crash-safely (below); no ``_SUCCESS`` marker.
        s3://<lakehouse_bucket>/audit/batch_id=<batch_id>/gold.json, the report, also printed as
        the last stdout line: {"batch_id", "gold_supplier_performance", "gold_inventory_position",
        "gold_daily_shipments" (rows, read back from the footers of the files the tables now
        hold), "published": {"lowest_on_time_suppliers": [{"supplier_id", "supplier_name",
        "on_time_rate"}]}} (the three suppliers with the lowest non-null on_time_rate, ties by
        supplier_id, the rate as a JSON number).

The definitions, in Spark SQL, in decimal arithmetic; dates are UTC dates (the session's time zone
is UTC); "received" is status ``received``, "not cancelled" any status but ``cancelled``:

- gold_supplier_performance, one row per supplier of dim_supplier: supplier_id int,
  supplier_name string, purchase_orders bigint (orders not cancelled), units_received bigint
  (quantity of received orders, 0 when none), on_time_rate decimal(6,4) (received orders whose
  received_at date minus ordered_at date, in days, is at most the supplier's lead_time_days, over
  received orders; null when none; a received order without received_at counts as not on time),
  avg_lead_time_days decimal(10,2) (mean of received_at - ordered_at in fractional days over the
  received orders that have a received_at; null when none), total_cost decimal(18,2) (sum of
  quantity x unit_cost over orders not cancelled, 0 when none). Both ratios are rounded half up
  (away from zero) exactly: integer division of the scaled numerator, never a rounded quotient
  rounded again. Orders of a supplier that is not in dim_supplier are not counted.
- gold_inventory_position, one row per (warehouse_id, product_id) of a received purchase order or
  a shipment not cancelled: warehouse_id int, product_id int, units_received bigint,
  units_shipped bigint (0 when none), on_hand bigint (units_received - units_shipped).
- gold_daily_shipments, one row per (ship_date, warehouse_id) with any shipment, cancelled ones
  included: ship_date date (shipped_at's UTC date), warehouse_id int, shipments bigint and units
  bigint (shipments not cancelled), delivered bigint (status ``delivered``), late bigint
  (delivered, with delivered_at's UTC date after promised_date).

ANSI mode is on: an overflow (a total_cost beyond decimal(18,2), say) fails the run instead of
writing null.

Crash-safe rewrite: the new version of every table is written to
``_work/supplychain_gold_summaries/batch_id=<batch_id>/<table>/``, then ``_READY.json`` there records its
files, then each table is swapped: the files are copied (server-side) into ``gold/<table>/`` and
every other object there is deleted, so a table's folder is never empty and holds the old files,
or the old and new together, until its swap ends. Then the report is written and the work folder
removed (``_READY.json`` first). A retry that finds ``_READY.json`` only finishes the swap (no
Spark, no recomputation); one that does not recomputes from silver, which the job never changes.

Arguments: --JOB_NAME --batch_id --lakehouse_bucket. Runs on AWS Glue 5.0 (Spark 3.5, Python 3.11)
and on the local stack's Spark runtime.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

import boto3
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from awsglue.context import GlueContext
from awsglue.job import Job
from awsglue.utils import getResolvedOptions
from pyspark.context import SparkContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

REQUIRED_ARGUMENTS = ["JOB_NAME", "batch_id", "lakehouse_bucket"]
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # the marker contract's batch ids
JOB = "supplychain_gold_summaries"
SILVER_PREFIX = "silver"
GOLD_PREFIX = "gold"
WORK_PREFIX = f"_work/{JOB}"
READY_NAME = "_READY.json"
AUDIT_PREFIX = "audit"
REPORT_NAME = "gold.json"
LOWEST_ON_TIME = 3
MICROSECONDS_PER_DAY = 86_400_000_000

# The silver columns the definitions use, with the type each is read as.
SILVER_COLUMNS = {
    "dim_supplier": [("supplier_id", "int"), ("supplier_name", "string"), ("lead_time_days", "int")],
    "fact_purchase_orders": [
        ("supplier_id", "int"),
        ("product_id", "int"),
        ("warehouse_id", "int"),
        ("quantity", "int"),
        ("unit_cost", "decimal(10,2)"),
        ("ordered_at", "timestamp"),
        ("received_at", "timestamp"),
        ("status", "string"),
    ],
    "fact_shipments": [
        ("product_id", "int"),
        ("warehouse_id", "int"),
        ("quantity", "int"),
        ("shipped_at", "timestamp"),
        ("promised_date", "date"),
        ("delivered_at", "timestamp"),
        ("status", "string"),
    ],
}

# The gold tables: columns in order with their types, and the key each file is sorted by.
GOLD_COLUMNS = {
    "gold_supplier_performance": [
        ("supplier_id", "int"),
        ("supplier_name", "string"),
        ("purchase_orders", "bigint"),
        ("units_received", "bigint"),
        ("on_time_rate", "decimal(6,4)"),
        ("avg_lead_time_days", "decimal(10,2)"),
        ("total_cost", "decimal(18,2)"),
    ],
    "gold_inventory_position": [
        ("warehouse_id", "int"),
        ("product_id", "int"),
        ("units_received", "bigint"),
        ("units_shipped", "bigint"),
        ("on_hand", "bigint"),
    ],
    "gold_daily_shipments": [
        ("ship_date", "date"),
        ("warehouse_id", "int"),
        ("shipments", "bigint"),
        ("units", "bigint"),
        ("delivered", "bigint"),
        ("late", "bigint"),
    ],
}
GOLD_KEYS = {
    "gold_supplier_performance": ("supplier_id",),
    "gold_inventory_position": ("warehouse_id", "product_id"),
    "gold_daily_shipments": ("ship_date", "warehouse_id"),
}


# --- the definitions ------------------------------------------------------------------------------


def rounded_ratio(numerator: str, denominator: str, places: int) -> str:
    """SQL for ``numerator / denominator`` rounded half up (away from zero) to ``places`` decimals,
    exactly; null when the denominator is 0 or null. Spark's decimal division keeps a limited
    number of digits and rounds them, and rounding that quotient again can round twice (a value
    just under a half rounded up to it, then up again); the integer division of the scaled
    numerator by the denominator cannot."""
    n = f"CAST({numerator} AS DECIMAL(38, 0))"
    d = f"CAST(NULLIF({denominator}, 0) AS DECIMAL(38, 0))"
    scale = 10**places
    units = f"((abs({n}) * {2 * scale} + {d}) div (2 * {d}))"
    return f"(CAST(CASE WHEN {n} < 0 THEN -{units} ELSE {units} END AS DECIMAL(38, 0)) / {scale})"


SUPPLIER_PERFORMANCE_SQL = f"""
WITH orders AS (
    SELECT o.supplier_id, o.status, o.quantity, o.unit_cost,
           datediff(to_date(o.received_at), to_date(o.ordered_at)) <= s.lead_time_days AS on_time,
           unix_micros(o.received_at) - unix_micros(o.ordered_at) AS lead_time_micros
    FROM fact_purchase_orders AS o
    JOIN dim_supplier AS s ON s.supplier_id = o.supplier_id
),
by_supplier AS (
    SELECT supplier_id,
           count_if(status <> 'cancelled') AS purchase_orders,
           sum(CASE WHEN status = 'received' THEN quantity END) AS units_received,
           count_if(status = 'received') AS received_orders,
           count_if(status = 'received' AND on_time) AS on_time_orders,
           sum(CASE WHEN status = 'received' THEN CAST(lead_time_micros AS DECIMAL(38, 0)) END) AS lead_time_micros,
           count(CASE WHEN status = 'received' THEN lead_time_micros END) AS timed_orders,
           sum(CASE WHEN status <> 'cancelled' THEN quantity * unit_cost END) AS total_cost
    FROM orders
    GROUP BY supplier_id
)
SELECT s.supplier_id,
       s.supplier_name,
       coalesce(o.purchase_orders, 0) AS purchase_orders,
       coalesce(o.units_received, 0) AS units_received,
       {rounded_ratio("o.on_time_orders", "o.received_orders", 4)} AS on_time_rate,
       {rounded_ratio("o.lead_time_micros", f"o.timed_orders * {MICROSECONDS_PER_DAY}", 2)} AS avg_lead_time_days,
       coalesce(o.total_cost, 0) AS total_cost
FROM dim_supplier AS s
LEFT JOIN by_supplier AS o ON o.supplier_id = s.supplier_id
"""

INVENTORY_POSITION_SQL = """
WITH movements AS (
    SELECT warehouse_id, product_id, CAST(quantity AS BIGINT) AS received, CAST(0 AS BIGINT) AS shipped
    FROM fact_purchase_orders
    WHERE status = 'received'
    UNION ALL
    SELECT warehouse_id, product_id, CAST(0 AS BIGINT), CAST(quantity AS BIGINT)
    FROM fact_shipments
    WHERE status <> 'cancelled'
)
SELECT warehouse_id,
       product_id,
       sum(received) AS units_received,
       sum(shipped) AS units_shipped,
       sum(received) - sum(shipped) AS on_hand
FROM movements
GROUP BY warehouse_id, product_id
"""

DAILY_SHIPMENTS_SQL = """
SELECT to_date(shipped_at) AS ship_date,
       warehouse_id,
       count_if(status <> 'cancelled') AS shipments,
       coalesce(sum(CASE WHEN status <> 'cancelled' THEN quantity END), 0) AS units,
       count_if(status = 'delivered') AS delivered,
       count_if(status = 'delivered' AND to_date(delivered_at) > promised_date) AS late
FROM fact_shipments
GROUP BY to_date(shipped_at), warehouse_id
"""

GOLD_SQL = {
    "gold_supplier_performance": SUPPLIER_PERFORMANCE_SQL,
    "gold_inventory_position": INVENTORY_POSITION_SQL,
    "gold_daily_shipments": DAILY_SHIPMENTS_SQL,
}


# --- S3 -------------------------------------------------------------------------------------------


def list_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def delete_keys(s3, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        objects = [{"Key": key} for key in keys[start : start + 1000]]
        failed = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True}).get("Errors")
        if failed:  # a file left behind would stay in its table beside the new version
            raise RuntimeError(f"could not delete {len(failed)} object(s) of s3://{bucket}/, first: {failed[0]}")


def silver_files(s3, bucket: str) -> list[str]:
    """The silver objects gold is computed from: a swap only ever adds and removes whole files, so
    the same list means the same silver."""
    return sorted(key for table in SILVER_COLUMNS for key in list_keys(s3, bucket, f"{SILVER_PREFIX}/{table}/"))


def read_json(s3, bucket: str, key: str) -> dict | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def put_json(s3, bucket: str, key: str, record: dict) -> None:
    body = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def is_data_object(key: str, prefix: str) -> bool:
    """An object Spark reads as part of the table: not a folder marker, not hidden (``_``, ``.``)."""
    name = key[len(prefix) :].rsplit("/", 1)[-1]
    return bool(name) and not name.startswith(("_", "."))


def s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow does not read AWS_ENDPOINT_URL itself; pass it on, and the region."""
    options = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_override"] = endpoint
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        options["region"] = region
    return pafs.S3FileSystem(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=5), **options)


# --- computing the new version --------------------------------------------------------------------


def silver_table(spark: SparkSession, s3, bucket: str, table: str) -> DataFrame:
    """The silver table's columns that gold uses, typed; empty (with the schema) when its folder
    is missing or holds no data object."""
    columns = SILVER_COLUMNS[table]
    prefix = f"{SILVER_PREFIX}/{table}/"
    if not any(is_data_object(key, prefix) for key in list_keys(s3, bucket, prefix)):
        log(f"s3://{bucket}/{prefix} holds no data: {table} is empty")
        return spark.createDataFrame([], ", ".join(f"{name} {kind}" for name, kind in columns))
    frame = spark.read.parquet(f"s3://{bucket}/{prefix}")
    missing = [name for name, _ in columns if name not in frame.columns]
    if missing:
        raise LookupError(f"silver table s3://{bucket}/{prefix} has no column(s) {', '.join(missing)}")
    return frame.select(*[F.col(name).cast(kind).alias(name) for name, kind in columns])


def gold_table(spark: SparkSession, table: str) -> DataFrame:
    """The table's definition over the silver views, in its declared column order and types."""
    frame = spark.sql(GOLD_SQL[table])
    return frame.select(*[F.col(name).cast(kind).alias(name) for name, kind in GOLD_COLUMNS[table]])


def write_single_file(frame: DataFrame, url: str, key: tuple[str, ...]) -> None:
    """One parquet file sorted by the key (one partition: an empty table still gets its file)."""
    (
        frame.repartition(1)
        .sortWithinPartitions(*key)
        .write.mode("overwrite")
        .option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .option("compression", "snappy")
        .parquet(url)
    )


def compute_new_version(args: dict, s3, bucket: str, work: str) -> dict:
    """Recompute every gold table from silver into the work folder; returns what _READY.json records."""
    delete_keys(s3, bucket, list_keys(s3, bucket, work))  # what an attempt that stopped before _READY left
    read_from = silver_files(s3, bucket)
    sc = SparkContext.getOrCreate()
    glue_context = GlueContext(sc)
    spark = glue_context.spark_session
    job = Job(glue_context)
    job.init(args["JOB_NAME"], args)
    spark.conf.set("spark.sql.session.timeZone", "UTC")  # every date of the definitions is a UTC date
    spark.conf.set("spark.sql.ansi.enabled", "true")
    sc._jsc.hadoopConfiguration().set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")

    for table in SILVER_COLUMNS:
        silver_table(spark, s3, bucket, table).createOrReplaceTempView(table)
    tables = {}
    for table in GOLD_COLUMNS:
        prefix = f"{work}{table}/"
        write_single_file(gold_table(spark, table), f"s3://{bucket}/{prefix}", GOLD_KEYS[table])
        names = sorted(
            key[len(prefix) :]
            for key in list_keys(s3, bucket, prefix)
            if key.endswith(".parquet") and "/" not in key[len(prefix) :]
        )
        if not names:  # never swap a table to an empty folder
            raise RuntimeError(f"the new version of {table} in s3://{bucket}/{prefix} has no parquet file")
        tables[table] = names
        log(f"{table}: new version written to s3://{bucket}/{prefix} ({len(names)} file(s))")
    job.commit()
    return {"batch_id": args["batch_id"], "tables": tables, "silver_files": read_from}


# --- swapping it in -------------------------------------------------------------------------------


def swap_table(s3, bucket: str, work: str, table: str, names: list[str]) -> None:
    """Copy the new files in (server-side), then delete every other object of the table's folder:
    it holds the old files, or the old and the new, until the last delete. Repeatable."""
    target = f"{GOLD_PREFIX}/{table}/"
    new = {target + name for name in names}
    for name in names:
        s3.copy_object(Bucket=bucket, Key=target + name, CopySource={"Bucket": bucket, "Key": f"{work}{table}/{name}"})
    stale = sorted(set(list_keys(s3, bucket, target)) - new)
    delete_keys(s3, bucket, stale)
    log(f"{table}: s3://{bucket}/{target} now holds {len(new)} new file(s), {len(stale)} old object(s) deleted")


def ready_record(record: dict, batch_id: str, where: str) -> dict[str, list[str]]:
    """The tables and files of a _READY.json, checked before anything is copied."""
    if not isinstance(record, dict) or record.get("batch_id") != batch_id:
        raise ValueError(f"{where} is not the ready record of batch {batch_id}")
    tables = record.get("tables")
    if not isinstance(tables, dict) or set(tables) != set(GOLD_COLUMNS):
        raise ValueError(f"{where} does not name the gold tables {', '.join(GOLD_COLUMNS)}")
    for names in tables.values():
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            raise ValueError(f"{where} names a gold table without files")
    return tables


# --- the report -----------------------------------------------------------------------------------


def lowest_on_time_suppliers(fs: pafs.FileSystem, paths: list[str]) -> list[dict]:
    table = pq.read_table(paths, columns=["supplier_id", "supplier_name", "on_time_rate"], filesystem=fs)
    rated = [row for row in table.to_pylist() if row["on_time_rate"] is not None]
    rated.sort(key=lambda row: (row["on_time_rate"], row["supplier_id"]))
    return [
        {
            "supplier_id": row["supplier_id"],
            "supplier_name": row["supplier_name"],
            "on_time_rate": float(row["on_time_rate"]),
        }
        for row in rated[:LOWEST_ON_TIME]
    ]


def gold_report(bucket: str, batch_id: str, tables: dict[str, list[str]]) -> dict:
    """Rows per table from the footers of the files the gold folders now hold, and the suppliers
    with the lowest on-time rates from the supplier table's file."""
    fs = s3_filesystem()
    paths = {table: [f"{bucket}/{GOLD_PREFIX}/{table}/{name}" for name in names] for table, names in tables.items()}
    report: dict = {"batch_id": batch_id}
    for table in GOLD_COLUMNS:
        report[table] = sum(pq.ParquetFile(fs.open_input_file(path)).metadata.num_rows for path in paths[table])
    report["published"] = {"lowest_on_time_suppliers": lowest_on_time_suppliers(fs, paths["gold_supplier_performance"])}
    return report


_STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{JOB}] {time.monotonic() - _STARTED:6.1f} s  {message}", flush=True)


# --- job ------------------------------------------------------------------------------------------


def main() -> dict:
    args = getResolvedOptions(sys.argv, REQUIRED_ARGUMENTS)
    batch_id, bucket = args["batch_id"], args["lakehouse_bucket"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    work = f"{WORK_PREFIX}/batch_id={batch_id}/"
    ready_key = work + READY_NAME
    s3 = boto3.client("s3")

    record = read_json(s3, bucket, ready_key)
    if record is not None and record.get("silver_files") != silver_files(s3, bucket):
        # Silver changed since that attempt (a later batch loaded): its gold is stale. Recompute.
        log(f"batch {batch_id}: s3://{bucket}/{ready_key} was computed from another silver; recomputing")
        delete_keys(s3, bucket, [ready_key])
        record = None
    if record is None:
        record = compute_new_version(args, s3, bucket, work)
        tables = ready_record(record, batch_id, "the new version")
        put_json(s3, bucket, ready_key, record)
        log(f"batch {batch_id}: the new version is ready (s3://{bucket}/{ready_key})")
    else:  # an earlier attempt got this far from the same silver: finish its swap, recompute nothing
        tables = ready_record(record, batch_id, f"s3://{bucket}/{ready_key}")
        log(f"batch {batch_id}: found s3://{bucket}/{ready_key}, finishing the swap of an earlier attempt")
    for table, names in tables.items():
        swap_table(s3, bucket, work, table, names)

    report = gold_report(bucket, batch_id, tables)
    report_key = f"{AUDIT_PREFIX}/batch_id={batch_id}/{REPORT_NAME}"
    put_json(s3, bucket, report_key, report)
    log(f"wrote the report s3://{bucket}/{report_key}")
    # _READY.json first: an attempt that stops now recomputes rather than copying files that are gone
    delete_keys(s3, bucket, [ready_key])
    delete_keys(s3, bucket, list_keys(s3, bucket, work))
    print(json.dumps(report, ensure_ascii=False), flush=True)
    return report


if __name__ == "__main__":
    main()
