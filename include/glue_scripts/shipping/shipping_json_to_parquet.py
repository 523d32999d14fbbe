"""Shipping, landing to raw: type one batch of JSON-lines shipping records and write it as parquet.

Reads   every object of the batch in s3://<landing_bucket>/: the keys of --objects (a JSON list;
        ``null`` or absent: every object under ``<--prefix>/<batch_id>/``, --prefix default
        ``incoming/`` and also accepted as ``incoming/<batch_id>/``; keys ending in ``/``
        skipped). Each object is newline-delimited JSON in UTF-8, gzip-compressed when its name
        ends in ``.gz``. Blank lines are skipped and not counted.
Writes  s3://<staging_bucket>/transformed_data/batch_id=<batch_id>/  parquet, one row per accepted
        record: shipping_id bigint, shipping_date date, customer_name string, street_address
        string, destination_city string, shipping_cost decimal(12,2), shipping_distance double,
        quantity double, product_id bigint (null when absent). The batch's directory is
        overwritten as a whole, so a rerun (after a crash mid-write too) leaves the same rows and
        no stale part files; no ``_SUCCESS`` marker is written. An empty batch writes one parquet
        file without rows, with the schema.
        s3://<staging_bucket>/rejected/batch_id=<batch_id>/rejects.json  JSON lines
        {"object": key, "line": 1-based line number in its object, "reason": text}, in object and
        line order, as the folder's only object (what an earlier run left there is deleted); never
        the record itself, and no reason quotes a value (the records hold personal data). A batch
        without rejected lines leaves the folder empty: no file.
        s3://<staging_bucket>/audit/batch_id=<batch_id>/json_to_parquet.json  the report
        {"batch_id", "objects": [keys], "landing": non-blank lines read, "rejected", "raw":
        accepted rows, "max_rejected_fraction", "first_rejections": up to 10 {"object", "line",
        "reason"}}, also printed as the last stdout line.

A line is rejected, with the first rule it breaks as its reason, when it is not a JSON object, or
when a known field is missing or null (every field but product_id is required) or cannot be typed:
shipping_id and product_id must be JSON integers within 64 bits; shipping_date a real date written
YYYY/MM/DD; shipping_cost, shipping_distance and quantity finite JSON numbers (a quoted "12.5" is
text, not a number), shipping_cost within decimal(12,2) (rounded half up to cents).
customer_name, street_address and destination_city take the text of any JSON value (a number
given there is kept as its digits). Unknown fields are ignored; of a repeated key the last wins.

When more than --max_rejected_fraction (default 0.01) of the batch's lines are rejected, the
rejects and the report are written, nothing is written to transformed_data, and the run fails
with ``BatchRefused`` and a one-line message naming the batch, the share and the first reasons (an
object whose lines were all rejected is named as not JSON lines). A listed object that does not
exist refuses the batch before anything is written.

Everything is typed in Spark SQL (no Python UDF, no RDD map) in one pass over the batch, with no
shuffle or sort: the accepted rows are written to a work folder (under --TempDir, else
s3://<staging_bucket>/tmp/) while an observation gathers the counts and the rejected lines'
(object, line, reason); only when the batch passes are the work folder's parquet files copied
(server-side) into the raw directory, after its old objects are deleted. Each object is read as
one Spark partition, never split, so a line's number is its place in its partition: a large
object is read by one task (gzip objects always are). The rejects are held in the driver's
memory, about 100 bytes each. Only counts and object keys are logged, never a record's values.

Arguments: --JOB_NAME --batch_id --landing_bucket --staging_bucket; optional --objects,
--prefix, --max_rejected_fraction, --expected_shipments (the marker's count: a batch that reads
another number of lines is refused before the raw layer is touched, so a batch whose files went
missing never replaces what an earlier load of it wrote). Runs on AWS Glue 5.0 (Spark 3.5, Python 3.11) and on the
local stack's Spark runtime.
"""

from __future__ import annotations

import json
import re
import sys
import time

import boto3
from awsglue.context import GlueContext
from awsglue.job import Job
from awsglue.utils import getResolvedOptions
from pyspark.context import SparkContext
from pyspark.sql import Column, DataFrame, Observation
from pyspark.sql import functions as F


class BatchRefused(Exception):
    """The batch itself breaks the contract: running it again fails the same way. The run's error
    message starts with this name, which tells the orchestrator not to retry."""


REQUIRED_ARGUMENTS = ["JOB_NAME", "batch_id", "landing_bucket", "staging_bucket"]
OPTIONAL_ARGUMENTS = ["objects", "prefix", "max_rejected_fraction", "expected_shipments"]
DEFAULT_MAX_REJECTED_FRACTION = 0.01
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # the marker contract's batch ids
RAW_PREFIX = "transformed_data"
REJECTED_PREFIX = "rejected"
AUDIT_PREFIX = "audit"
REPORT_NAME = "json_to_parquet.json"
FIRST_REJECTIONS = 10
REJECTS_NAME = "rejects.json"
REASONS_IN_ERROR = 3

# The raw layer's columns, in order: (name, Spark SQL type of the output, type the JSON parser reads).
RAW_COLUMNS = [
    ("shipping_id", "bigint", "bigint"),
    ("shipping_date", "date", "string"),
    ("customer_name", "string", "string"),
    ("street_address", "string", "string"),
    ("destination_city", "string", "string"),
    ("shipping_cost", "decimal(12,2)", "double"),
    ("shipping_distance", "double", "double"),
    ("quantity", "double", "double"),
    ("product_id", "bigint", "bigint"),
]
OPTIONAL_FIELDS = {"product_id"}
NUMBER_FIELDS = ("shipping_cost", "shipping_distance", "quantity")
INTEGER_FIELDS = ("shipping_id", "product_id")
DATE_FORMAT = "yyyy/MM/dd"
# Filled by the JSON parser when a line is not a JSON object or a field does not fit its type; a
# name no shipping record uses.
UNPARSED = "__unparsed_line"
JSON_OPTIONS = {
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": UNPARSED,
    # NaN and Infinity, bare or quoted, are not JSON numbers
    "allowNonNumericNumbers": "false",
}
# The typed parse, and the parse that takes every field as text (it fails only on a line that is
# not a JSON object): their difference tells a JSON number from a JSON string.
TYPED_SCHEMA = ", ".join([f"{name} {parsed}" for name, _, parsed in RAW_COLUMNS] + [f"{UNPARSED} string"])
TEXT_SCHEMA = ", ".join([f"{name} string" for name, _, _ in RAW_COLUMNS] + [f"{UNPARSED} string"])
INFINITY = float("inf")
# monotonically_increasing_id: the partition in the upper 31 bits, the row in it in the lower 33
ROW_IN_PARTITION = (1 << 33) - 1
# Reading settings that give every object a partition of its own, never split (see parse_lines).
ONE_PARTITION_PER_OBJECT = {
    "spark.sql.files.maxPartitionBytes": str(1 << 50),
    "spark.sql.files.openCostInBytes": str(1 << 50),
}


# --- arguments ------------------------------------------------------------------------------------


def resolve_arguments(argv: list[str]) -> dict[str, str]:
    """getResolvedOptions makes every name it is given required: ask for an optional argument only
    when the run passes it. It refuses Glue's reserved names, so the run id is read directly."""
    present = [name for name in OPTIONAL_ARGUMENTS if any(a.split("=", 1)[0] == f"--{name}" for a in argv[1:])]
    args = getResolvedOptions(argv, REQUIRED_ARGUMENTS + present)
    for position, text in enumerate(argv[1:], start=1):
        name, _, value = text.partition("=")
        if name == "--JOB_RUN_ID":
            args["JOB_RUN_ID"] = value or (argv[position + 1] if position + 1 < len(argv) else "")
    return args


def expected_shipments(args: dict[str, str]) -> int | None:
    """The marker's expected ``shipments``, when the run is given one (empty: none)."""
    text = (args.get("expected_shipments") or "").strip()
    if not text or text.lower() == "none":
        return None
    if not text.isdigit():
        raise ValueError(f"--expected_shipments must be a non-negative integer, not {text!r}")
    return int(text)


def batch_prefix(args: dict[str, str], batch_id: str) -> str:
    """The batch's folder: --prefix is either the landing root (``incoming/``), the batch id then
    appended, or the batch's own folder (``incoming/<batch_id>``, with or without the slash)."""
    prefix = (args.get("prefix") or "incoming/").strip("/")
    if prefix.rsplit("/", 1)[-1] != batch_id:
        prefix = f"{prefix}/{batch_id}" if prefix else batch_id
    return prefix + "/"


def listed_objects(args: dict[str, str], landing_bucket: str) -> list[str] | None:
    """The keys of --objects, or None when every object under the prefix makes the batch."""
    text = args.get("objects")
    if text is None or not text.strip():
        return None
    value = json.loads(text)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(key, str) and key for key in value):
        raise ValueError("--objects must be a JSON list of object keys in the landing bucket, or null")
    url_prefix = f"s3://{landing_bucket}/"
    keys = [key[len(url_prefix) :] if key.startswith(url_prefix) else key for key in value]
    return list(dict.fromkeys(keys))  # in the given order, each once


def max_rejected_fraction(args: dict[str, str]) -> float:
    text = args.get("max_rejected_fraction")
    value = DEFAULT_MAX_REJECTED_FRACTION if text in (None, "") else float(text)
    if not 0 <= value <= 1:
        raise ValueError(f"--max_rejected_fraction must be within [0, 1], not {value}")
    return value


# --- the batch's objects --------------------------------------------------------------------------


def resolve_objects(s3, bucket: str, listed: list[str] | None, prefix: str) -> list[str]:
    """The batch's keys: the listed ones, each checked to exist, or every object under the prefix."""
    if listed is not None:
        missing = []
        for key in listed:
            try:
                s3.head_object(Bucket=bucket, Key=key)
            except s3.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    missing.append(key)
                else:
                    raise
        if missing:
            shown = ", ".join(f"s3://{bucket}/{key}" for key in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise BatchRefused(f"{len(missing)} listed object(s) of the batch do not exist: {shown}{more}")
        return listed
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", []) if not item["Key"].endswith("/")]
    return sorted(keys)


def spark_path(bucket: str, key: str) -> str:
    """An object as a Spark path: Hadoop would expand glob characters in a key."""
    return f"s3://{bucket}/" + re.sub(r"([\\*?\[\]{}])", r"\\\1", key)


def file_keys(spark, bucket: str, keys: list[str]) -> Column:
    """input_file_name() (a Hadoop path URI) -> the object's key, for every object of the batch."""
    jvm_path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path
    pairs: list[Column] = []
    seen = set()
    for key in keys:
        path = jvm_path(spark_path(bucket, key))
        for uri in (str(path.toUri().toString()), str(path.toString()), f"s3://{bucket}/{key}"):
            if uri not in seen:
                seen.add(uri)
                pairs += [F.lit(uri), F.lit(key)]
    return F.create_map(*pairs)


# --- parsing --------------------------------------------------------------------------------------


def finite(column: Column) -> Column:
    # NaN compares above every number in Spark SQL, so this is false for NaN and both infinities
    return F.abs(column) < F.lit(INFINITY)


def parse_lines(lines: DataFrame, key_of_file: Column) -> DataFrame:
    """Each line with its object, its 1-based line number, whether it is blank or accepted, its
    typed values, and (rejected lines only) the reason.

    Separate projections, so that Spark computes the JSON parse and each typed value once per
    line: an expensive expression referenced more than once is not inlined into the next
    projection, and the first one (input_file_name, monotonically_increasing_id) is not
    deterministic, so nothing is pushed below it. Each object is read as one partition (see
    main), so a line's place in its partition, the low 33 bits of monotonically_increasing_id,
    is its place in its object."""
    typed = F.from_json("value", TYPED_SCHEMA, JSON_OPTIONS)
    blank = F.trim(F.col("value")) == ""
    parsed = lines.select(
        F.coalesce(key_of_file[F.input_file_name()], F.input_file_name()).alias("object"),
        F.col("_metadata.file_block_start").alias("split"),
        (F.monotonically_increasing_id().bitwiseAND(ROW_IN_PARTITION) + 1).alias("line"),
        blank.alias("blank"),
        F.when(blank, None).otherwise(typed).alias("p"),
        "value",
    )
    p = {name: F.col(f"p.{name}") for name, _, _ in RAW_COLUMNS}
    values = {
        **p,
        "shipping_date": F.to_date(p["shipping_date"], DATE_FORMAT),
        "shipping_cost": p["shipping_cost"].cast("decimal(12,2)"),
    }
    kept = ["object", "split", "line", "blank"]
    checked = parsed.select(
        *kept,
        "value",
        "p",
        (F.col(f"p.{UNPARSED}").isNull() & F.col("p").isNotNull()).alias("parsed"),
        *[values[name].cast(output).alias(name) for name, output, _ in RAW_COLUMNS],
        *[finite(p[name]).alias(f"{name}_finite") for name in NUMBER_FIELDS],
    )
    accepted = F.col("parsed")
    for name, _, _ in RAW_COLUMNS:
        if name not in OPTIONAL_FIELDS:
            accepted = accepted & F.col(name).isNotNull()
    for name in NUMBER_FIELDS:
        accepted = accepted & F.col(f"{name}_finite")
    raw_names = [name for name, _, _ in RAW_COLUMNS]
    judged = checked.select(
        *kept, "value", "p", *raw_names, F.coalesce(accepted, F.lit(False)).alias("accepted")
    ).withColumn("rejected", ~F.col("accepted") & ~F.col("blank"))
    # only a rejected line is parsed a second time, every field as text: the reason's rules
    as_text = judged.select(
        *kept, "p", *raw_names, "accepted", "rejected",
        F.when(F.col("rejected"), F.from_json("value", TEXT_SCHEMA, JSON_OPTIONS)).alias("t"),
    )  # fmt: skip
    return as_text.select(
        *kept, *raw_names, "accepted", F.when(F.col("rejected"), reason(F.col("t"), F.col("p"))).alias("reason")
    )


def reason(as_text: Column, typed: Column) -> Column:
    """The first rule a rejected line breaks, as fixed text (never one of its values); from the
    line parsed with every field as text, and as typed."""
    rules: list[tuple[Column, str]] = [
        (as_text.isNull() | as_text[UNPARSED].isNotNull(), "not a JSON object"),
    ]
    for name, output, _ in RAW_COLUMNS:
        present = as_text[name].isNotNull()
        if name not in OPTIONAL_FIELDS:
            rules.append((~present, f"{name} is missing"))
        if name in INTEGER_FIELDS:
            rules.append((present & typed[name].isNull(), f"{name} is not an integer"))
        elif name == "shipping_date":
            rules.append((F.to_date(as_text[name], DATE_FORMAT).isNull(), f"{name} is not a date in YYYY/MM/DD"))
        elif name in NUMBER_FIELDS:
            rules.append((typed[name].isNull() | ~finite(typed[name]), f"{name} is not a number"))
            if output.startswith("decimal"):
                rules.append((typed[name].cast(output).isNull(), f"{name} does not fit {output}"))
    chosen = F.lit("not a shipping record")
    for condition, text_of_rule in reversed(rules):
        chosen = F.when(condition, F.lit(text_of_rule)).otherwise(chosen)
    return chosen


def accepted_rows(parsed: DataFrame) -> DataFrame:
    """The accepted lines' typed values. A generator rather than a filter: a filter would be
    pushed down through the projections, and the parse and typing done twice."""
    values = F.struct(*[name for name, _, _ in RAW_COLUMNS])
    return parsed.select(F.inline(F.when(F.col("accepted"), F.array(values)).otherwise(F.array())))


# --- writing --------------------------------------------------------------------------------------


def put_json(s3, bucket: str, key: str, record: dict) -> None:
    body = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def replace_rejects(s3, bucket: str, prefix: str, rejects: list[dict]) -> None:
    """The batch's rejects as the only object under the prefix (none when there are none): what an
    earlier run left there goes first."""
    delete_prefix(s3, bucket, prefix)
    if rejects:
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects).encode("utf-8")
        s3.put_object(Bucket=bucket, Key=prefix + REJECTS_NAME, Body=body, ContentType="application/x-ndjson")


def work_location(args: dict[str, str], staging_bucket: str, batch_id: str) -> tuple[str, str]:
    """(bucket, prefix) of the run's work folder: under the job's --TempDir, else the staging
    bucket's tmp/ (never under a layer a crawler reads). Each run has its own, so a run that an
    orchestrator retry overlaps (its worker died, the run did not) never mixes files with it."""
    temp = args.get("TempDir") or f"s3://{staging_bucket}/tmp/"
    bucket, _, prefix = re.sub(r"^s3[an]?://", "", temp).partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    run = args.get("JOB_RUN_ID") or f"{time.time_ns()}"
    return bucket, f"{prefix}shipping_json_to_parquet/batch_id={batch_id}/run={run}/"


def list_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def delete_prefix(s3, bucket: str, prefix: str) -> None:
    keys = list_keys(s3, bucket, prefix)
    for start in range(0, len(keys), 1000):
        objects = [{"Key": key} for key in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def replace_prefix(s3, source_bucket: str, source_prefix: str, bucket: str, prefix: str) -> None:
    """The parquet files of the work folder become the prefix's only objects: copied in first
    (server-side; Spark's part names are unique to the write), then the old ones deleted, so a
    reader sees the old files or the old and new together, never an empty batch. A run that stops
    half-way leaves a mix, which the next run replaces whole."""
    old = set(list_keys(s3, bucket, prefix))
    new = set()
    for key in list_keys(s3, source_bucket, source_prefix):
        name = key[len(source_prefix) :]
        if name.endswith(".parquet") and "/" not in name:
            s3.copy_object(Bucket=bucket, Key=prefix + name, CopySource={"Bucket": source_bucket, "Key": key})
            new.add(prefix + name)
    stale = sorted(old - new)
    for start in range(0, len(stale), 1000):
        objects = [{"Key": key} for key in stale[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    delete_prefix(s3, source_bucket, source_prefix)


def overwrite_parquet(frame: DataFrame, path: str) -> None:
    """Replace the directory's objects with the frame's files; no _SUCCESS marker."""
    (
        frame.write.mode("overwrite")
        .option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .option("compression", "snappy")
        .parquet(path)
    )


def percent(share: float) -> str:
    text = f"{share * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text if '.' in text else text + '.0'}%"


def failure_message(batch_id: str, report: dict, all_rejected: list[str], rejected_path: str) -> str:
    """One line: the run's ErrorMessage is the last line of the traceback."""
    landing, rejected = report["landing"], report["rejected"]
    parts = [
        f"batch {batch_id}: {rejected:,} of {landing:,} lines rejected ({percent(rejected / landing)}), "
        f"over the {percent(report['max_rejected_fraction'])} allowed"
    ]
    if all_rejected:
        shown = ", ".join(all_rejected[:REASONS_IN_ERROR])
        more = f" and {len(all_rejected) - REASONS_IN_ERROR} more" if len(all_rejected) > REASONS_IN_ERROR else ""
        parts.append(f"not JSON lines (every line rejected): {shown}{more}")
    first = [f"{r['object']} line {r['line']}: {r['reason']}" for r in report["first_rejections"][:REASONS_IN_ERROR]]
    if first:
        parts.append("first rejections: " + "; ".join(first))
    parts.append(f"all rejects in {rejected_path}")
    return "; ".join(parts)


_STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[shipping_json_to_parquet] {time.monotonic() - _STARTED:6.1f} s  {message}", flush=True)


# --- job ------------------------------------------------------------------------------------------


def main() -> dict:
    args = resolve_arguments(sys.argv)
    batch_id = args["batch_id"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    landing_bucket, staging_bucket = args["landing_bucket"], args["staging_bucket"]
    allowed = max_rejected_fraction(args)
    listed = listed_objects(args, landing_bucket)
    prefix = batch_prefix(args, batch_id)

    # before Spark starts: a missing object fails the run in seconds
    s3 = boto3.client("s3")
    keys = resolve_objects(s3, landing_bucket, listed, prefix)
    where = "listed by the marker" if listed is not None else f"under s3://{landing_bucket}/{prefix}"
    log(f"batch {batch_id}: {len(keys)} objects {where}")
    for key in keys:
        log(f"  s3://{landing_bucket}/{key}")

    sc = SparkContext.getOrCreate()
    glue_context = GlueContext(sc)
    spark = glue_context.spark_session
    job = Job(glue_context)
    job.init(args["JOB_NAME"], args)
    # The rules above rely on these: a field that fails its type is null while the others parse,
    # an impossible date is null (not an error), and a failed cast is null.
    spark.conf.set("spark.sql.json.enablePartialResults", "true")
    spark.conf.set("spark.sql.legacy.timeParserPolicy", "CORRECTED")
    spark.conf.set("spark.sql.ansi.enabled", "false")
    sc._jsc.hadoopConfiguration().set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")

    raw_prefix = f"{RAW_PREFIX}/batch_id={batch_id}/"
    raw_path = f"s3://{staging_bucket}/{raw_prefix}"
    work_bucket, work_prefix = work_location(args, staging_bucket, batch_id)
    work_url = f"s3://{work_bucket}/{work_prefix}"
    rejected_prefix = f"{REJECTED_PREFIX}/batch_id={batch_id}/"
    rejected_path = f"s3://{staging_bucket}/{rejected_prefix}"
    report_key = f"{AUDIT_PREFIX}/batch_id={batch_id}/{REPORT_NAME}"
    raw_schema = ", ".join(f"{name} {output}" for name, output, _ in RAW_COLUMNS)

    metrics = {"landing": 0, "raw": 0, "objects_with_rows": [], "rejects": []}
    if keys:
        for name, value in ONE_PARTITION_PER_OBJECT.items():
            spark.conf.set(name, value)
        lines = spark.read.text([spark_path(landing_bucket, key) for key in keys])
        observation = Observation("shipping_batch")
        parsed = parse_lines(lines, file_keys(spark, landing_bucket, keys)).observe(
            observation,
            F.sum(F.when(~F.col("blank"), 1).otherwise(0)).alias("landing"),
            F.sum(F.when(F.col("accepted"), 1).otherwise(0)).alias("raw"),
            F.max("split").alias("split"),
            # as JSON text: the Python side of an observation only converts plain values
            F.to_json(F.collect_set(F.when(F.col("accepted"), F.col("object")))).alias("objects_with_rows"),
            F.to_json(F.collect_list(F.when(F.col("reason").isNotNull(), F.struct("object", "line", "reason")))).alias(
                "rejects"
            ),
        )
        # One pass over the batch: the accepted rows go to a work folder while the counts and the
        # rejects are gathered; they reach the raw layer only if the batch passes.
        overwrite_parquet(accepted_rows(parsed), work_url)
        observed = observation.get
        metrics = {name: default if observed.get(name) is None else observed[name] for name, default in metrics.items()}
        metrics["objects_with_rows"] = json.loads(metrics["objects_with_rows"] or "[]")
        metrics["rejects"] = json.loads(metrics["rejects"] or "[]")
        metrics["split"] = observed.get("split") or 0
        if metrics["split"]:
            raise RuntimeError("an object was read in several splits: its line numbers would be wrong")
    landing, raw = int(metrics["landing"]), int(metrics["raw"])
    rejected = landing - raw
    over = bool(landing) and rejected / landing > allowed
    expected = expected_shipments(args)
    # Checked before the raw layer is touched: a batch whose files are missing (or not all there)
    # must not replace what an earlier load of it wrote.
    short = expected is not None and landing != expected
    log(f"batch {batch_id}: {landing:,} lines, {raw:,} accepted, {rejected:,} rejected")

    if short or over:
        if keys:
            delete_prefix(s3, work_bucket, work_prefix)  # nothing reaches the raw layer
    elif keys:
        replace_prefix(s3, work_bucket, work_prefix, staging_bucket, raw_prefix)
        log(f"wrote {raw:,} rows to {raw_path}")
    else:
        overwrite_parquet(spark.createDataFrame([], raw_schema), raw_path)
    rejects = sorted(
        ({"object": r["object"], "line": int(r["line"]), "reason": r["reason"]} for r in metrics["rejects"]),
        key=lambda r: (r["object"], r["line"]),
    )
    replace_rejects(s3, staging_bucket, rejected_prefix, rejects)
    log(f"wrote {len(rejects):,} rejects to s3://{staging_bucket}/{rejected_prefix}")

    report = {
        "batch_id": batch_id,
        "objects": keys,
        "landing": landing,
        "rejected": rejected,
        "raw": raw,
        "max_rejected_fraction": allowed,
        "first_rejections": rejects[:FIRST_REJECTIONS],
    }
    put_json(s3, staging_bucket, report_key, report)
    log(f"wrote the report s3://{staging_bucket}/{report_key}")
    if short:
        raise BatchRefused(
            f"batch {batch_id}: {landing:,} lines read from {len(keys)} object(s), but the marker expects "
            f"{expected:,} shipments; nothing was written to {raw_path}"
        )
    if over:
        with_rows, with_rejects = set(metrics["objects_with_rows"]), {r["object"] for r in rejects}
        every_line_rejected = [key for key in keys if key in with_rejects and key not in with_rows]
        raise BatchRefused(failure_message(batch_id, report, every_line_rejected, rejected_path))
    job.commit()
    print(json.dumps(report, ensure_ascii=False), flush=True)
    return report


if __name__ == "__main__":
    main()
