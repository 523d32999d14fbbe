"""Supply chain, landing to silver: unzip one batch of fact archives, type and check every CSV row,
and merge the valid rows into the silver fact tables.

Reads   the batch's zip archives in s3://<landing_bucket>/: the keys of --objects (a JSON list;
        ``null`` or absent: every object under ``<--prefix><batch_id>/``, --prefix default
        ``incoming/`` and also accepted as ``incoming/<batch_id>/``; keys ending in ``/``
        skipped). Each member is a CSV file (header row, UTF-8, RFC 4180 quoting, no embedded
        newlines) whose base name is ``shipments*.csv`` or ``purchase_orders*.csv``; its columns
        are matched by header name, extra columns are ignored. Blank lines are skipped and not
        counted.
        s3://<lakehouse_bucket>/silver/dim_customer/, dim_product/, dim_warehouse/, dim_supplier/
        (the ids only) and silver/fact_shipments/, fact_purchase_orders/ (absent on a first run).
Writes  s3://<lakehouse_bucket>/silver/fact_shipments/ and silver/fact_purchase_orders/  parquet,
        the winning copy of every fact row: the CSV's columns typed (shipment_id, po_id bigint;
        the other ids and quantity int; unit_cost decimal(10,2); timestamps UTC; promised_date
        date; status string), plus batch_id, the batch that delivered the winning copy.
        s3://<lakehouse_bucket>/silver/rejected/batch_id=<batch_id>/rejects.json  JSON lines
        {"object", "member", "line" (1-based, the header is line 1), "reason"}, in (object, member,
        line) order, as the folder's only object; none when no row is rejected. No reason quotes
        a value but the unknown dimension id it names.
        s3://<lakehouse_bucket>/audit/batch_id=<batch_id>/silver_facts.json  the report, also
        printed as the last stdout line: {"batch_id", "objects", "landing_<table>" (rows read),
        "rejected_<table>", "superseded_<table>" (valid copies that lost, to a copy in the batch
        or to silver), "silver_<table>" (the batch's copies that won), "first_rejections" (up to
        10 rejects), "published": {"batch": {"units_shipped", "units_received",
        "late_deliveries"}}} for <table> shipments and purchase_orders; landing = silver +
        rejected + superseded. The published metrics are over the batch's winning rows.

A row is rejected, with the first rule it breaks as its reason, when it has more fields than its
header, when a field is empty (only delivered_at and received_at may be), when a field does not
parse (integers within their type, unit_cost within decimal(10,2) rounded half up, timestamps ISO
8601 with an offset, promised_date YYYY-MM-DD), when quantity is below 1 or status is not one of
its table's values, and when its customer, product, warehouse (shipments) or supplier, product,
warehouse (purchase orders) id is not in the silver dimension.

The merge keeps, per key, the copy with the latest updated_at: within the batch, ties go to the
later (object, member, line); against silver, the batch's copy wins when its updated_at is not
older, so running a batch again gives the same silver and the same counts.

The batch is refused (``BatchRefused``, before silver is touched) when a listed object does not
exist, an object is not a zip archive, a member's base name is neither ``shipments*.csv`` nor
``purchase_orders*.csv``, or a member's header lacks a column of its table.

How: the executors unzip, one task per archive, streaming each member verbatim to
``_work/supplychain_silver_facts/batch_id=<batch_id>/members/<table>/`` and returning its header;
Spark then reads those files as text, each as one partition (so a line's number is its place in
its partition), parses the lines with from_csv and types them in Spark SQL (no Python UDF), joins
the dimension ids (broadcast), and merges with silver in one aggregation per table while
observations gather the counts, the rejects and the metrics. A table whose batch has no member is
left as it is. Rewrites are crash-safe: the new tables, the rejects and the report go to the work
folder, then ``_READY.json`` (the report and the files to publish) is written, then each table's
folder gets the new files (server-side copies) and loses every other object. A run that finds
``_READY.json`` only finishes that swap and reports what it records; a run that does not
recomputes from silver as it is, which the swap has not touched.

Arguments: --JOB_NAME --batch_id --landing_bucket --lakehouse_bucket; optional --objects, --prefix.
Runs on AWS Glue 5.0 (Spark 3.5, Python 3.11) and on the local stack's Spark runtime.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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


JOB = "supplychain_silver_facts"
REQUIRED_ARGUMENTS = ["JOB_NAME", "batch_id", "landing_bucket", "lakehouse_bucket"]
OPTIONAL_ARGUMENTS = ["objects", "prefix"]
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")  # the marker contract's batch ids
SILVER_PREFIX = "silver"
REJECTED_PREFIX = "silver/rejected"
AUDIT_PREFIX = "audit"
REPORT_NAME = "silver_facts.json"
REJECTS_NAME = "rejects.json"
READY_NAME = "_READY.json"
FIRST_REJECTIONS = 10
# Ranged reads of an archive: small ones to list it and read each member's header, large ones to
# copy a member; archives are inspected this many at a time.
HEADER_READ_BYTES = 64 * 1024
COPY_READ_BYTES = 8 * 1024 * 1024
INSPECTING_THREADS = 16


@dataclass(frozen=True)
class Field:
    name: str
    spark_type: str
    kind: str  # integer, decimal, timestamp, date or status
    optional: bool = False


@dataclass(frozen=True)
class FactTable:
    name: str  # as in the member names and the report's counts
    key: str
    columns: tuple[Field, ...]
    statuses: tuple[str, ...]
    dimensions: tuple[tuple[str, str], ...]  # (id column, silver dimension table)

    @property
    def silver(self) -> str:
        return f"fact_{self.name}"

    @property
    def member_name(self) -> re.Pattern:
        return re.compile(re.escape(self.name) + r".*\.csv")


SHIPMENTS = FactTable(
    name="shipments",
    key="shipment_id",
    columns=(
        Field("shipment_id", "bigint", "integer"),
        Field("customer_id", "int", "integer"),
        Field("product_id", "int", "integer"),
        Field("warehouse_id", "int", "integer"),
        Field("quantity", "int", "integer"),
        Field("shipped_at", "timestamp", "timestamp"),
        Field("promised_date", "date", "date"),
        Field("delivered_at", "timestamp", "timestamp", optional=True),
        Field("status", "string", "status"),
        Field("updated_at", "timestamp", "timestamp"),
    ),
    statuses=("shipped", "delivered", "cancelled"),
    dimensions=(("customer_id", "dim_customer"), ("product_id", "dim_product"), ("warehouse_id", "dim_warehouse")),
)
PURCHASE_ORDERS = FactTable(
    name="purchase_orders",
    key="po_id",
    columns=(
        Field("po_id", "bigint", "integer"),
        Field("supplier_id", "int", "integer"),
        Field("product_id", "int", "integer"),
        Field("warehouse_id", "int", "integer"),
        Field("quantity", "int", "integer"),
        Field("unit_cost", "decimal(10,2)", "decimal"),
        Field("ordered_at", "timestamp", "timestamp"),
        Field("received_at", "timestamp", "timestamp", optional=True),
        Field("status", "string", "status"),
        Field("updated_at", "timestamp", "timestamp"),
    ),
    statuses=("open", "received", "cancelled"),
    dimensions=(("supplier_id", "dim_supplier"), ("product_id", "dim_product"), ("warehouse_id", "dim_warehouse")),
)
TABLES = (SHIPMENTS, PURCHASE_ORDERS)

# What a field must look like (after trimming) before Spark's cast, which is more lenient: it
# truncates "1.5" to an integer and reads a timestamp without an offset in the session's zone.
PATTERNS = {
    "integer": r"^[+-]?[0-9]+$",
    "decimal": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$",
    "timestamp": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$",
    "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
}
NOT_PARSED = {
    "integer": "is not an integer",
    "decimal": "is not a decimal(10,2)",
    "timestamp": "is not a timestamp with an offset",
    "date": "is not a date (YYYY-MM-DD)",
}
# RFC 4180: a quote inside a quoted field is doubled. An empty field and a missing one both read
# as null.
CSV_OPTIONS = {"mode": "PERMISSIVE", "escape": '"'}
# monotonically_increasing_id: the partition in the upper 31 bits, the row in it in the lower 33
ROW_IN_PARTITION = (1 << 33) - 1
# Reading settings that give every file a partition of its own, never split.
ONE_PARTITION_PER_FILE = {
    "spark.sql.files.maxPartitionBytes": str(1 << 50),
    "spark.sql.files.openCostInBytes": str(1 << 50),
}


# --- arguments ------------------------------------------------------------------------------------


def resolve_arguments(argv: list[str]) -> dict[str, str]:
    """getResolvedOptions makes every name it is given required: ask for an optional argument only
    when the run passes it."""
    present = [name for name in OPTIONAL_ARGUMENTS if any(a.split("=", 1)[0] == f"--{name}" for a in argv[1:])]
    return getResolvedOptions(argv, REQUIRED_ARGUMENTS + present)


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
    return list(dict.fromkeys(keys))


# --- S3 -------------------------------------------------------------------------------------------


def list_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def delete_keys(s3, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        objects = [{"Key": key} for key in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def delete_prefix(s3, bucket: str, prefix: str) -> None:
    delete_keys(s3, bucket, list_keys(s3, bucket, prefix))


def read_json(s3, bucket: str, key: str) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def put_json(s3, bucket: str, key: str, record: dict) -> None:
    body = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def s3_url(bucket: str, key: str) -> str:
    """An object as a Spark path: Hadoop would expand glob characters in a key."""
    return f"s3://{bucket}/" + re.sub(r"([\\*?\[\]{}])", r"\\\1", key)


def resolve_objects(s3, bucket: str, listed: list[str] | None, prefix: str, batch_id: str) -> list[str]:
    """The batch's keys, sorted: the listed ones, each checked to exist, or every object under the
    prefix."""
    if listed is None:
        return sorted(key for key in list_keys(s3, bucket, prefix) if not key.endswith("/"))
    missing = []
    for key in listed:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except s3.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
            missing.append(key)
    if missing:
        shown = ", ".join(f"s3://{bucket}/{key}" for key in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise BatchRefused(f"batch {batch_id}: {len(missing)} listed object(s) do not exist: {shown}{more}")
    return sorted(key for key in listed if not key.endswith("/"))


# --- unzipping ------------------------------------------------------------------------------------


class RangedObject(io.RawIOBase):
    """A seekable, read-only view of an S3 object, one ranged GET per read: a zip's directory is
    at its end, and neither listing an archive nor reading one member needs the whole of it."""

    def __init__(self, s3, bucket: str, key: str, size: int):
        super().__init__()
        self.s3, self.bucket, self.key, self.size, self.position = s3, bucket, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        if self.position >= self.size or not len(buffer):
            return 0
        last = min(self.size, self.position + len(buffer)) - 1
        body = self.s3.get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-{last}")["Body"]
        data = body.read()
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def open_archive(s3, bucket: str, key: str, size: int, buffer_size: int) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BufferedReader(RangedObject(s3, bucket, key, size), buffer_size))


def table_of_member(name: str) -> str | None:
    """The fact table a member feeds, by its base name (it may sit in a folder inside the zip)."""
    base = name.rsplit("/", 1)[-1]
    for table in TABLES:
        if table.member_name.fullmatch(base):
            return table.name
    return None


def header_of(first_line: bytes) -> list[str]:
    text = first_line.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    return [name.strip() for name in next(csv.reader([text]), [])]


def inspect_archive(s3, bucket: str, key: str) -> list[dict]:
    """The archive's members (object, member, position in the zip, table, header), from its
    directory and each member's first line; or a single record with ``problem`` set when it breaks
    the contract."""
    size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    columns = {table.name: [column.name for column in table.columns] for table in TABLES}
    try:
        archive = open_archive(s3, bucket, key, size, HEADER_READ_BYTES)
    except (zipfile.BadZipFile, OSError, ValueError):
        return [{"object": key, "problem": "is not a zip archive"}]
    found = []
    with archive:
        for position, info in enumerate(archive.infolist()):
            if info.is_dir():
                continue
            member = {"object": key, "size": size, "member": info.filename, "position": position}
            table = table_of_member(info.filename)
            if table is None:
                return [{**member, "problem": "is neither shipments*.csv nor purchase_orders*.csv"}]
            try:
                with archive.open(info) as stream:
                    header = header_of(stream.readline())
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError) as error:
                return [{**member, "problem": f"cannot be read ({type(error).__name__})"}]
            missing = [name for name in columns[table] if name not in header]
            if missing:
                return [{**member, "problem": f"lacks the column(s) {', '.join(missing)}"}]
            found.append({**member, "table": table, "header": header})
    return found


def inspect_batch(s3, bucket: str, keys: list[str], batch_id: str) -> list[dict]:
    """Every member of the batch, checked before Spark starts; refuses the batch on the first
    problem (in object, then zip order)."""
    with ThreadPoolExecutor(INSPECTING_THREADS) as pool:
        members = [m for found in pool.map(lambda key: inspect_archive(s3, bucket, key), keys) for m in found]
    problems = [m for m in members if "problem" in m]
    if problems:
        first = problems[0]
        where = f"object s3://{bucket}/{first['object']}"
        if "member" in first:
            where += f" member {first['member']}"
        more = f" ({len(problems) - 1} more archive(s) with a problem)" if len(problems) > 1 else ""
        raise BatchRefused(f"batch {batch_id}: {where} {first['problem']}{more}")
    return members


def copy_member(task: tuple) -> str:
    """Runs on an executor, one member per task: streams the member, verbatim, from the archive
    (ranged reads) to its work file (a multipart upload)."""
    bucket, key, size, position, work_bucket, work_key, region = task
    s3 = boto3.client("s3", region_name=region)
    with open_archive(s3, bucket, key, size, COPY_READ_BYTES) as archive:
        with archive.open(archive.infolist()[position]) as stream:
            s3.upload_fileobj(stream, work_bucket, work_key)
    return work_key


def unzip_members(sc, s3, bucket: str, members: list[dict], work_bucket: str, members_prefix: str) -> None:
    """Each member to ``<members_prefix><table>/o<object>m<position>.csv``, by the executors."""
    objects = {key: index for index, key in enumerate(sorted({m["object"] for m in members}))}
    region = s3.meta.region_name
    for member in members:
        name = f"o{objects[member['object']]:06d}m{member['position']:06d}.csv"
        member["work_key"] = f"{members_prefix}{member['table']}/{name}"
    tasks = [
        (bucket, m["object"], m["size"], m["position"], work_bucket, m["work_key"], region) for m in members
    ]
    if tasks:  # one task per member, on the executors: the driver only lists
        sc.parallelize(tasks, len(tasks)).map(copy_member).collect()


@dataclass
class Members:
    """One table's members in (object, member, position) order: a member's rank is its index, the
    order that breaks ties between copies of equal updated_at."""

    table: FactTable
    rows: list[dict]

    @property
    def width(self) -> int:
        return max(len(m["header"]) for m in self.rows)

    def rank_of_file(self) -> Column:
        """The work file's name -> its member's rank."""
        pairs = []
        for rank, member in enumerate(self.rows):
            pairs += [F.lit(member["work_key"].rsplit("/", 1)[-1]), F.lit(rank)]
        return F.create_map(*pairs)[F.col("_metadata.file_name")]

    def per_member(self, values: list) -> Column:
        """An array literal holding one value per member, indexed by rank."""
        return F.array(*[F.lit(value) for value in values])


def members_by_table(members: list[dict]) -> dict[str, Members]:
    ordered = sorted(members, key=lambda m: (m["object"], m["member"], m["position"]))
    return {table.name: Members(table, [m for m in ordered if m["table"] == table.name]) for table in TABLES}


# --- typing ---------------------------------------------------------------------------------------


def typed_value(column: Field, text: Column) -> Column:
    if column.kind == "status":
        return text
    if column.kind == "timestamp":
        return F.when(text.rlike(PATTERNS["timestamp"]), timestamp_value(text))
    return F.when(text.rlike(PATTERNS[column.kind]), text.cast(column.spark_type))


def timestamp_value(text: Column) -> Column:
    """A timestamp with its offset (``Z`` or ``+HH:MM``, as the pattern checks), as UTC. Spark's
    cast of a text with an offset costs three times that of one without, so the local part is cast
    (in the session's zone, UTC) and shifted by the offset."""
    utc = text.endswith("Z")
    length = F.length(text)
    local = F.when(utc, text.substr(F.lit(1), length - 1)).otherwise(text.substr(F.lit(1), length - 6))
    sign = F.when(F.substring(text, -6, 1) == "-", -1).otherwise(1)
    offset_seconds = F.when(utc, 0).otherwise(
        sign * (F.substring(text, -5, 2).cast("int") * 3600 + F.substring(text, -2, 2).cast("int") * 60)
    )
    return F.timestamp_micros(F.unix_micros(local.cast("timestamp")) - offset_seconds.cast("bigint") * 1_000_000)


def parse_lines(lines: DataFrame, members: Members) -> DataFrame:
    """Each line with its member's rank, its 1-based line number, whether it is skipped (the
    header, a blank line), whether it has more fields than its header, and each field's text
    (trimmed, null when empty) and typed value.

    A line without a quote is split at its commas, which is what RFC 4180 makes of it and several
    times cheaper than the CSV parser; only a line with a quote goes through from_csv. Separate
    projections, so that Spark computes each step once per line: an expensive expression
    referenced more than once is not inlined into the next projection, and the first one
    (monotonically_increasing_id) is not deterministic, so nothing is pushed below it. Each file
    is read as one partition, so a line's place in its partition, the low 33 bits of
    monotonically_increasing_id, is its place in its member."""
    table, width = members.table, members.width
    numbered = lines.select(
        members.rank_of_file().alias("rank"),
        F.col("_metadata.file_block_start").alias("split"),
        (F.monotonically_increasing_id().bitwiseAND(ROW_IN_PARTITION) + 1).alias("line"),
        "value",
    )
    # one field more than the widest header: a value there is a field more than the header has
    schema = ", ".join(f"f{i} string" for i in range(width + 1))
    skipped = (F.col("line") == 1) | (F.trim(F.col("value")) == "")
    quoted = numbered.select(
        "rank", "split", "line", "value", skipped.alias("skipped"),
        F.when(~skipped & (F.instr("value", '"') > 0), F.from_csv("value", schema, CSV_OPTIONS)).alias("q"),
    )  # fmt: skip
    fields = F.when(
        F.col("q").isNotNull(), F.array(*[F.col(f"q.f{i}") for i in range(width + 1)])
    ).otherwise(F.split("value", ",", -1))
    split = quoted.select("rank", "split", "line", "skipped", F.when(~F.col("skipped"), fields).alias("fields"))

    def field(places: list[int]) -> Column:
        """The field at the member's place (1-based; null past the line's end), trimmed."""
        return F.trim(F.element_at("fields", F.element_at(members.per_member(places), F.col("rank") + 1)))

    trimmed = split.select(
        "rank", "split", "line", "skipped",
        field([len(m["header"]) + 1 for m in members.rows]).alias("extra"),
        *[field([m["header"].index(c.name) + 1 for m in members.rows]).alias(c.name) for c in table.columns],
    )  # fmt: skip
    texts = trimmed.select(
        "rank", "split", "line", "skipped",
        F.coalesce(F.col("extra") != "", F.lit(False)).alias("extra"),
        *[F.when(F.col(c.name) != "", F.col(c.name)).alias(f"{c.name}_text") for c in table.columns],
    )  # fmt: skip
    return texts.select(
        "rank", "split", "line", "skipped", "extra",
        *[f"{c.name}_text" for c in table.columns],
        *[typed_value(c, F.col(f"{c.name}_text")).alias(c.name) for c in table.columns],
    )  # fmt: skip


def with_dimensions(rows: DataFrame, table: FactTable, dimensions: dict[str, DataFrame]) -> DataFrame:
    """Each row with ``known_<id column>``: true when the dimension has the id, else null. The ids
    are made distinct first, so a dimension read mid-swap (old and new files) adds no row."""
    for column, dimension in table.dimensions:
        known = dimensions[dimension].select(F.col(column).cast("int").alias(f"{column}_known_id")).distinct()
        known = known.withColumn(f"known_{column}", F.lit(True))
        rows = rows.join(F.broadcast(known), rows[column] == known[f"{column}_known_id"], "left").drop(
            f"{column}_known_id"
        )
    return rows


def reason(table: FactTable) -> Column:
    """The first rule a row breaks, as short fixed text (an unknown id is named), or null."""
    rules: list[tuple[Column, Column]] = [(F.col("extra"), F.lit("more fields than the header"))]
    for column in table.columns:
        text, value = F.col(f"{column.name}_text"), F.col(column.name)
        if not column.optional:
            rules.append((text.isNull(), F.lit(f"{column.name} is empty")))
        if column.kind == "status":
            allowed = ", ".join(table.statuses)
            rules.append((~text.isin(*table.statuses), F.lit(f"{column.name} is not one of {allowed}")))
        else:
            rules.append((text.isNotNull() & value.isNull(), F.lit(f"{column.name} {NOT_PARSED[column.kind]}")))
        if column.name == "quantity":
            rules.append((value < 1, F.lit("quantity is below 1")))
    for column, _ in table.dimensions:
        unknown = F.concat(F.lit(f"unknown {column} "), F.col(column).cast("string"))
        rules.append((F.col(f"known_{column}").isNull(), unknown))
    # one CASE of many branches, not nested ones: Spark splits its code into small methods, which
    # the JIT compiles (a method over 8,000 bytes of bytecode is left to the interpreter)
    chosen = F.when(F.col("skipped"), F.lit(None).cast("string"))
    for condition, text in rules:
        chosen = chosen.when(condition, text)
    return chosen


def judged_rows(lines: DataFrame, members: Members, dimensions: dict[str, DataFrame]) -> DataFrame:
    table = members.table
    parsed = with_dimensions(parse_lines(lines, members), table, dimensions)
    return parsed.select(
        "rank", "split", "line", "skipped", *[c.name for c in table.columns], reason(table).alias("reason")
    )


# --- the merge ------------------------------------------------------------------------------------


def silver_schema(table: FactTable) -> str:
    return ", ".join([f"{c.name} {c.spark_type}" for c in table.columns] + ["batch_id string"])


def merged(batch_rows: DataFrame, silver: DataFrame, table: FactTable, batch_id: str) -> DataFrame:
    """Per key, the winning copy: the latest updated_at; then the batch's copy over silver's; then
    the later member rank and line. Silver copies rank below every member."""
    names = [c.name for c in table.columns]
    from_batch = batch_rows.select(
        *names, F.lit(batch_id).alias("batch_id"), F.lit(1).alias("from_batch"), "rank", "line"
    )
    from_silver = silver.select(
        *[F.col(c.name).cast(c.spark_type) for c in table.columns], F.col("batch_id").cast("string"),
        F.lit(0).alias("from_batch"), F.lit(-1).alias("rank"), F.lit(0).cast("bigint").alias("line"),
    )  # fmt: skip
    ordering = ["updated_at", "from_batch", "rank", "line"]
    rest = [name for name in [*names, "batch_id"] if name not in ordering and name != table.key]
    winner = F.max(F.struct(*ordering, *rest)).alias("w")
    return from_batch.unionByName(from_silver).groupBy(table.key).agg(winner).select(table.key, "w.*")


METRICS = {"shipments": ("units_shipped", "late_deliveries"), "purchase_orders": ("units_received",)}


def published_metrics(table: FactTable) -> list[Column]:
    """The batch's metrics over its winning rows (the winners with from_batch 1)."""
    won = F.col("from_batch") == 1
    if table is SHIPMENTS:
        late = (F.col("status") == "delivered") & (F.to_date("delivered_at") > F.col("promised_date"))
        return [
            F.sum(F.when(won & (F.col("status") != "cancelled"), F.col("quantity"))).alias("units_shipped"),
            F.sum(F.when(won & late, 1)).alias("late_deliveries"),
        ]
    return [F.sum(F.when(won & (F.col("status") == "received"), F.col("quantity"))).alias("units_received")]


def overwrite_parquet(frame: DataFrame, path: str) -> None:
    """Replace the directory's objects with the frame's files; no _SUCCESS marker."""
    (
        frame.write.mode("overwrite")
        .option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .option("compression", "snappy")
        .parquet(path)
    )


def read_table(spark, s3, bucket: str, prefix: str, schema: str | None) -> DataFrame | None:
    """A parquet table folder as it is; None when it holds no file (an empty frame with the schema
    when one is given)."""
    keys = [key for key in list_keys(s3, bucket, prefix) if not key.rsplit("/", 1)[-1].startswith(("_", "."))]
    if keys:
        return spark.read.parquet(*[s3_url(bucket, key) for key in keys])
    return spark.createDataFrame([], schema) if schema else None


def rebuild_table(spark, s3, members: Members, dimensions, context: dict) -> dict:
    """One pass over the table's members: the merged table to the work folder, the counts, the
    rejects (rank, line, reason) and the metrics."""
    table, bucket, batch_id = members.table, context["lakehouse_bucket"], context["batch_id"]
    lines = spark.read.text([s3_url(bucket, m["work_key"]) for m in members.rows])
    landing = Observation(f"{table.name}_landing")
    judged = judged_rows(lines, members, dimensions).observe(
        landing,
        F.sum(F.when(~F.col("skipped"), 1).otherwise(0)).alias("landing"),
        F.sum(F.when(F.col("reason").isNotNull(), 1).otherwise(0)).alias("rejected"),
        F.max("split").alias("split"),
        # as JSON text: the Python side of an observation only converts plain values
        F.to_json(F.collect_list(F.when(F.col("reason").isNotNull(), F.struct("rank", "line", "reason")))).alias(
            "rejects"
        ),
    )
    valid = judged.where(~F.col("skipped") & F.col("reason").isNull())
    silver = read_table(spark, s3, bucket, f"{SILVER_PREFIX}/{table.silver}/", silver_schema(table))
    winners = Observation(f"{table.name}_winners")
    table_rows = merged(valid, silver, table, batch_id).observe(
        winners,
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.when(F.col("from_batch") == 1, 1).otherwise(0)).alias("silver"),
        *published_metrics(table),
    )
    work_url = f"s3://{bucket}/{context['work_prefix']}{table.silver}/"
    overwrite_parquet(table_rows.select(*[c.name for c in table.columns], "batch_id"), work_url)
    read, won = landing.get, winners.get
    if read.get("split"):
        raise RuntimeError("a member was read in several splits: its line numbers would be wrong")
    rejects = [
        {"object": members.rows[r["rank"]]["object"], "member": members.rows[r["rank"]]["member"],
         "line": int(r["line"]), "reason": r["reason"]}
        for r in json.loads(read.get("rejects") or "[]")
    ]  # fmt: skip
    counts = {name: int(read.get(name) or 0) for name in ("landing", "rejected")}
    counts["silver"] = int(won.get("silver") or 0)
    counts["superseded"] = counts["landing"] - counts["rejected"] - counts["silver"]
    metrics = {name: int(won.get(name) or 0) for name in METRICS[table.name]}
    log(f"{table.name}: {counts['landing']:,} rows read, {counts['rejected']:,} rejected, {counts['silver']:,} won, "
        f"{counts['superseded']:,} superseded; {int(won.get('rows') or 0):,} rows in {table.silver}")  # fmt: skip
    return {"counts": counts, "rejects": rejects, "metrics": metrics}


def has_files(s3, bucket: str, prefix: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount"))


def parquet_files(spark, s3, table: FactTable, bucket: str, prefix: str) -> list[str]:
    """The work table's parquet files; an empty table still gets one file, with the schema."""
    files = [key for key in list_keys(s3, bucket, prefix) if key.endswith(".parquet")]
    if not files:
        overwrite_parquet(spark.createDataFrame([], silver_schema(table)), f"s3://{bucket}/{prefix}")
        files = [key for key in list_keys(s3, bucket, prefix) if key.endswith(".parquet")]
    return sorted(files)


# --- the swap -------------------------------------------------------------------------------------


def replace_objects(s3, bucket: str, prefix: str, sources: list[str]) -> None:
    """The sources (in the same bucket) become the prefix's only objects: copied in first, then
    every other object deleted, so a reader sees the old version or the old and new together,
    never an empty folder. Copying again what is already there changes nothing."""
    new = set()
    for source in sources:
        target = prefix + source.rsplit("/", 1)[-1]
        s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": source})
        new.add(target)
    delete_keys(s3, bucket, sorted(set(list_keys(s3, bucket, prefix)) - new))


def silver_files(s3, bucket: str) -> dict[str, list[str]]:
    return {table.silver: list_keys(s3, bucket, f"{SILVER_PREFIX}/{table.silver}/") for table in TABLES}


def still_current(s3, bucket: str, ready: dict) -> bool:
    """Whether a ready record may still be swapped in: each fact table holds nothing but the files
    the merge read and the record's own (a swap of this batch that stopped half-way). A file of
    any other kind is a later batch's swap: this record's tables would roll silver back."""
    base = ready.get("base") or {}
    for table, files in ready["tables"].items():
        prefix = f"{SILVER_PREFIX}/{table}/"
        allowed = set(base.get(table, ())) | {prefix + source.rsplit("/", 1)[-1] for source in files}
        if not set(list_keys(s3, bucket, prefix)) <= allowed:
            return False
    return "base" in ready


def finish(s3, bucket: str, work_prefix: str, ready: dict) -> None:
    """Publishes what the ready record lists, then clears the work folder (the ready record
    first: a run stopped while clearing recomputes, and its reprocess gives the same result)."""
    for table_name, files in ready["tables"].items():
        replace_objects(s3, bucket, f"{SILVER_PREFIX}/{table_name}/", files)
        log(f"published {len(files)} file(s) to s3://{bucket}/{SILVER_PREFIX}/{table_name}/")
    report = ready["report"]
    rejected_prefix = f"{REJECTED_PREFIX}/batch_id={report['batch_id']}/"
    replace_objects(s3, bucket, rejected_prefix, [ready["rejects"]] if ready["rejects"] else [])
    put_json(s3, bucket, f"{AUDIT_PREFIX}/batch_id={report['batch_id']}/{REPORT_NAME}", report)
    s3.delete_object(Bucket=bucket, Key=work_prefix + READY_NAME)
    delete_prefix(s3, bucket, work_prefix)


# --- job ------------------------------------------------------------------------------------------

_STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{JOB}] {time.monotonic() - _STARTED:6.1f} s  {message}", flush=True)


def start_spark(args: dict[str, str]):
    sc = SparkContext.getOrCreate()
    glue_context = GlueContext(sc)
    spark = glue_context.spark_session
    job = Job(glue_context)
    job.init(args["JOB_NAME"], args)
    settings = {
        # the typing relies on these: a failed cast is null, and an impossible date is null
        "spark.sql.ansi.enabled": "false",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        "spark.sql.session.timeZone": "UTC",
        # timestamps as parquet's UTC-adjusted microseconds (not INT96), any date as written
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
        "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
        "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
        "spark.sql.parquet.int96RebaseModeInRead": "CORRECTED",
        **ONE_PARTITION_PER_FILE,
    }
    for name, value in settings.items():
        spark.conf.set(name, value)
    sc._jsc.hadoopConfiguration().set("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
    return sc, spark, job


def read_dimensions(spark, s3, bucket: str) -> dict[str, DataFrame]:
    dimensions = {}
    for dimension in sorted({name for table in TABLES for _, name in table.dimensions}):
        frame = read_table(spark, s3, bucket, f"{SILVER_PREFIX}/{dimension}/", None)
        if frame is None:
            raise RuntimeError(
                f"s3://{bucket}/{SILVER_PREFIX}/{dimension}/ holds no file: the silver dimensions load before the facts"
            )
        dimensions[dimension] = frame
    return dimensions


def rebuild(args: dict[str, str], s3, keys: list[str], context: dict) -> dict:
    """Everything but the swap: unzips, checks, merges into the work folder, then writes the ready
    record, which it returns."""
    batch_id, bucket, work_prefix = context["batch_id"], context["lakehouse_bucket"], context["work_prefix"]
    base = silver_files(s3, bucket)  # what the merge reads: the ready record is current only while it stays
    members = inspect_batch(s3, args["landing_bucket"], keys, batch_id)
    log(f"{len(members)} member(s): " + ", ".join(f"{t.name} {sum(m['table'] == t.name for m in members)}"
                                                  for t in TABLES))  # fmt: skip
    sc, spark, job = start_spark(args)
    unzip_members(sc, s3, args["landing_bucket"], members, bucket, work_prefix + "members/")
    log(f"unzipped them into s3://{bucket}/{work_prefix}members/")

    dimensions = read_dimensions(spark, s3, bucket)
    counts, rejects, tables = {}, [], {}
    metrics = {"units_shipped": 0, "units_received": 0, "late_deliveries": 0}
    for table_members in members_by_table(members).values():
        table = table_members.table
        work_table = f"{work_prefix}{table.silver}/"
        result = {"counts": dict.fromkeys(("landing", "rejected", "silver", "superseded"), 0), "rejects": []}
        if table_members.rows:
            result = rebuild_table(spark, s3, table_members, dimensions, context)
            tables[table.silver] = parquet_files(spark, s3, table, bucket, work_table)
        elif has_files(s3, bucket, f"{SILVER_PREFIX}/{table.silver}/"):
            log(f"{table.name}: no member in the batch; {table.silver} left as it is")
        else:
            log(f"{table.name}: no member in the batch and no {table.silver} yet: an empty table")
            tables[table.silver] = parquet_files(spark, s3, table, bucket, work_table)
        counts.update({f"{count}_{table.name}": value for count, value in result["counts"].items()})
        rejects += result["rejects"]
        metrics.update(result.get("metrics", {}))

    rejects.sort(key=lambda r: (r["object"], r["member"], r["line"]))
    rejects_key = None
    if rejects:
        rejects_key = work_prefix + REJECTS_NAME
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects).encode("utf-8")
        s3.put_object(Bucket=bucket, Key=rejects_key, Body=body, ContentType="application/x-ndjson")
    report = {
        "batch_id": batch_id,
        "objects": keys,
        **{f"{count}_{t.name}": counts[f"{count}_{t.name}"] for count in ("landing", "rejected", "superseded", "silver")
           for t in TABLES},
        "first_rejections": rejects[:FIRST_REJECTIONS],
        "published": {"batch": metrics},
    }  # fmt: skip
    ready = {"report": report, "tables": tables, "rejects": rejects_key, "base": base}
    put_json(s3, bucket, work_prefix + READY_NAME, ready)
    job.commit()
    return ready


def main() -> dict:
    args = resolve_arguments(sys.argv)
    batch_id = args["batch_id"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    landing_bucket, bucket = args["landing_bucket"], args["lakehouse_bucket"]
    work_prefix = f"_work/{JOB}/batch_id={batch_id}/"
    context = {"batch_id": batch_id, "lakehouse_bucket": bucket, "work_prefix": work_prefix}
    s3 = boto3.client("s3")

    ready = read_json(s3, bucket, work_prefix + READY_NAME)
    if ready is not None and not still_current(s3, bucket, ready):
        # A later batch swapped silver since this record was made: merge again, from silver as it is.
        log(f"batch {batch_id}: s3://{bucket}/{work_prefix}{READY_NAME} was made from another silver; recomputing")
        ready = None
    if ready is not None:
        log(f"batch {batch_id}: an earlier run left s3://{bucket}/{work_prefix}{READY_NAME}: finishing its swap")
    else:
        # before Spark starts: a missing object fails the run in seconds
        listed = listed_objects(args, landing_bucket)
        prefix = batch_prefix(args, batch_id)
        keys = resolve_objects(s3, landing_bucket, listed, prefix, batch_id)
        where = "listed by the marker" if listed is not None else f"under s3://{landing_bucket}/{prefix}"
        log(f"batch {batch_id}: {len(keys)} object(s) {where}")
        for key in keys:
            log(f"  s3://{landing_bucket}/{key}")
        delete_prefix(s3, bucket, work_prefix)  # what a run stopped before its ready record left
        ready = rebuild(args, s3, keys, context)
    finish(s3, bucket, work_prefix, ready)
    report = ready["report"]
    print(json.dumps(report, ensure_ascii=False), flush=True)
    return report


if __name__ == "__main__":
    main()
