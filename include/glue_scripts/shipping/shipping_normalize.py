"""Shipping, raw to normalized: one batch of the raw layer without its personal data.

Reads   the batch's partition of the catalogued raw table (--database, default ``shipping-db``;
        --raw_table, default ``transformed_data``) with
        ``create_dynamic_frame.from_catalog(..., push_down_predicate="batch_id = '<batch_id>'")``,
        so only that partition's objects are listed and read.
Writes  s3://<staging_bucket>/normalized/batch_id=<batch_id>/  parquet: the raw rows without
        customer_name and street_address and without the batch_id partition column, columns in
        this order: shipping_id bigint, shipping_date date, destination_city string,
        shipping_cost decimal(12,2), shipping_distance double, quantity double, product_id bigint.
        The batch's directory is overwritten as a whole (a rerun leaves the same rows, no stale
        part files) and no ``_SUCCESS`` marker is written. An empty batch writes one parquet file
        without rows, with the schema.

Fails, naming the table, when the table has no partition for the batch (the crawler has not seen
it yet): an empty result would otherwise pass for an empty batch. Logs counts only.

Arguments: --JOB_NAME --batch_id --staging_bucket; optional --database, --raw_table. Runs on
AWS Glue 5.0 (Spark 3.5, Python 3.11) and on the local stack's Spark runtime.
"""

from __future__ import annotations

import json
import re
import sys

import boto3
from awsglue.context import GlueContext
from awsglue.job import Job
from awsglue.transforms import DropFields
from awsglue.utils import getResolvedOptions
from pyspark.context import SparkContext
from pyspark.sql import functions as F

REQUIRED_ARGUMENTS = ["JOB_NAME", "batch_id", "staging_bucket"]
OPTIONAL_ARGUMENTS = {"database": "shipping-db", "raw_table": "transformed_data"}
OPTIONAL_COLUMNS = ("product_id",)
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # the marker contract's batch ids
NORMALIZED_PREFIX = "normalized"
PERSONAL_FIELDS = ["customer_name", "street_address"]
PARTITION_KEY = "batch_id"
NORMALIZED_COLUMNS = [
    ("shipping_id", "bigint"),
    ("shipping_date", "date"),
    ("destination_city", "string"),
    ("shipping_cost", "decimal(12,2)"),
    ("shipping_distance", "double"),
    ("quantity", "double"),
    ("product_id", "bigint"),
]


def resolve_arguments(argv: list[str]) -> dict[str, str]:
    """getResolvedOptions makes every name it is given required: ask for an optional argument only
    when the run passes it."""
    given = argv[1:]
    present = [name for name in OPTIONAL_ARGUMENTS if any(a.split("=", 1)[0] == f"--{name}" for a in given)]
    args = getResolvedOptions(argv, REQUIRED_ARGUMENTS + present)
    return {**OPTIONAL_ARGUMENTS, **{k: v for k, v in args.items() if v is not None}}


def require_partition(database: str, table: str, batch_id: str) -> None:
    glue = boto3.client("glue")
    try:
        glue.get_partition(DatabaseName=database, TableName=table, PartitionValues=[batch_id])
    except glue.exceptions.EntityNotFoundException:
        raise LookupError(
            f"table {database}.{table} has no partition {PARTITION_KEY}={batch_id}: crawl the raw layer first"
        ) from None


def log(message: str) -> None:
    print(f"[shipping_normalize] {message}", flush=True)


def main() -> dict:
    args = resolve_arguments(sys.argv)
    batch_id, database, table = args["batch_id"], args["database"], args["raw_table"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    target = f"s3://{args['staging_bucket']}/{NORMALIZED_PREFIX}/{PARTITION_KEY}={batch_id}/"

    require_partition(database, table, batch_id)  # before Spark starts: fails in seconds

    sc = SparkContext.getOrCreate()
    glue_context = GlueContext(sc)
    job = Job(glue_context)
    job.init(args["JOB_NAME"], args)
    sc._jsc.hadoopConfiguration().set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    raw = glue_context.create_dynamic_frame.from_catalog(
        database=database,
        table_name=table,
        push_down_predicate=f"{PARTITION_KEY} = '{batch_id}'",
        transformation_ctx="raw",
    )
    without_personal = DropFields.apply(frame=raw, paths=PERSONAL_FIELDS, transformation_ctx="drop_personal")
    frame = without_personal.toDF().drop(PARTITION_KEY)
    left = [name for name in PERSONAL_FIELDS if name in frame.columns]
    if left:  # the output must never carry them, whatever the catalog says
        raise RuntimeError(f"columns {left} are still in the frame after DropFields")
    # A DynamicFrame leaves out a field that is null in every record: product_id, which upstream
    # never writes, may be absent here; it is null then. Any other column missing is an error.
    missing = [name for name, _ in NORMALIZED_COLUMNS if name not in frame.columns and name not in OPTIONAL_COLUMNS]
    if missing and frame.columns:
        raise LookupError(f"table {database}.{table} has no column(s) {', '.join(missing)}")
    # the explicit casts give an empty batch (a frame without columns) the schema too
    normalized = frame.select(
        *[
            (F.col(name) if name in frame.columns else F.lit(None)).cast(kind).alias(name)
            for name, kind in NORMALIZED_COLUMNS
        ]
    )
    (
        normalized.write.mode("overwrite")
        .option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .option("compression", "snappy")
        .parquet(target)
    )
    rows = glue_context.spark_session.read.parquet(target).count()
    summary = {"batch_id": batch_id, "source": f"{database}.{table}", "target": target, "rows": rows}
    log(f"batch {batch_id}: {rows:,} rows from {database}.{table} written to {target}")
    job.commit()
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
