"""Orders, landing audit: count one batch in the S3 landing layer from the data itself.

Reads   s3://<landing_bucket>/<landing_prefix>year=YYYY/month=MM/day=DD/hour=HH/<any name>
        for every hour from the hour of --started_at to the hour of --completed_at plus
        --late_minutes (both timestamps empty: the whole landing prefix), the rows whose
        ``run_id`` is --batch_id. Of each object only the footer is read to find the row groups
        that can hold the batch, and of those only order_id, processing_ts, run_id and the
        length of ``products`` (one leaf column, not the products' values).
Writes  s3://<audit_bucket>/<audit_key>, one JSON object, also printed as the last stdout line:
        {"batch_id", "orders": distinct orders after the latest copy of each is kept,
        "order_lines": the sum of those copies' products lengths (null or empty = 0),
        "duplicates_dropped", "rows_read": rows of the batch before dedupe, "objects": sorted
        landing keys (no bucket) of the objects holding at least one row of the batch,
        "objects_listed", "partitions": hour partitions listed (1 for the whole prefix)}.

Which rows make up the batch and which copy of an order wins is ``orders_batch.py``, the module
``orders_landing_to_staging.py`` uses too, so these counts are what that job writes: ``orders``
its order versions and ``order_lines`` its staging lines. A Glue job run gets the module with
``--extra-py-files`` (on AWS and in the local stack).

Fails, with the last stderr line naming the object and the batch, on an object that can hold
the batch but cannot be read, and on a row of the batch with a null order_id. Memory grows with
the batch's distinct orders only (its keys), as the transform's first pass does. Runs on AWS
Glue 5.0 and locally as a plain Python process (no Spark, no awsglue).

Arguments: --batch_id --landing_bucket --landing_prefix --started_at --completed_at (ISO-8601;
naive means UTC) --audit_bucket --audit_key; optional --late_minutes; others are ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence

import pyarrow.fs as pafs
from orders_batch import KEY_COLUMNS, BatchKeys, batch_prefixes, list_objects, scan_batch_keys

ARGUMENTS = [
    "batch_id",
    "landing_bucket",
    "landing_prefix",
    "started_at",
    "completed_at",
    "audit_bucket",
    "audit_key",
]
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
LINES_COLUMN = "products"


# --- arguments -----------------------------------------------------------------------------


def resolve_options(argv: Sequence[str], names: Iterable[str]) -> dict[str, str]:
    """``awsglue.utils.getResolvedOptions``: every name is a required ``--name value``;
    anything else Glue passes (``--JOB_NAME``, ``--TempDir``, ``--enable-metrics`` ...) is
    ignored. ``argv`` includes the program name, as ``sys.argv`` does."""
    names = list(names)
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    for name in names:
        parser.add_argument(f"--{name}", required=True)
    parsed, _ = parser.parse_known_args(list(argv[1:]))
    return {name: getattr(parsed, name) for name in names}


def optional_option(argv: Sequence[str], name: str) -> str | None:
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    parser.add_argument(f"--{name}")
    return getattr(parser.parse_known_args(list(argv[1:]))[0], name)


# --- pure ----------------------------------------------------------------------------------


def audit_record(batch_id: str, keys: BatchKeys, partitions: int) -> dict:
    """The audit's JSON object from pass 1's keys."""
    return {
        "batch_id": batch_id,
        "orders": keys.orders,
        "order_lines": keys.lines or 0,
        "duplicates_dropped": keys.duplicates,
        "rows_read": keys.rows_read,
        "objects": sorted(keys.objects[i].split("/", 1)[1] for i in keys.holding),
        "objects_listed": len(keys.objects),
        "partitions": partitions,
    }


# --- I/O -----------------------------------------------------------------------------------


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


def write_record(bucket: str, key: str, record: dict) -> None:
    import boto3  # reaches AWS_ENDPOINT_URL by itself

    body = (json.dumps(record) + "\n").encode()
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def log(message: str) -> None:
    print(f"[orders_audit_landing] {message}", flush=True)


# --- job -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict:
    argv = sys.argv if argv is None else argv
    args = resolve_options(argv, ARGUMENTS)
    batch_id = args["batch_id"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    if not args["audit_key"].strip("/"):
        raise ValueError("--audit_key is empty")
    late_minutes = float(optional_option(argv, "late_minutes") or 0)
    prefixes = batch_prefixes(args["landing_prefix"], args["started_at"], args["completed_at"], late_minutes)
    fs = s3_filesystem()

    log(f"batch {batch_id}: {len(prefixes)} hour partitions from s3://{args['landing_bucket']}/{prefixes[0]}")
    objects = list_objects(fs, args["landing_bucket"], prefixes, log)
    keys = scan_batch_keys(fs, objects, batch_id, required_columns=KEY_COLUMNS, lines_of=LINES_COLUMN)
    log(f"counted: {keys.rows_read} rows of the batch in {len(keys.holding)} of {len(objects)} objects, "
        f"{keys.orders} orders, {keys.lines} order lines, {keys.duplicates} duplicates dropped")
    record = audit_record(batch_id, keys, len(prefixes))
    write_record(args["audit_bucket"], args["audit_key"], record)
    log(f"wrote s3://{args['audit_bucket']}/{args['audit_key']}")
    print(json.dumps(record), flush=True)
    return record


if __name__ == "__main__":
    main()
