"""AWS Glue crawlers that really crawl, for the local emulator.

moto's crawler (``moto.glue.models.FakeCrawler``) only walks a fake state machine: a crawl goes
from RUNNING to COMPLETED when it is listed, and the Data Catalog stays empty. The pipelines crawl
their S3 layers and then rely on the catalog (partition sensors, Athena-style queries), so locally a
crawler has to do what AWS Glue does: read the objects under its S3 targets, infer each dataset's
schema and write its tables and partitions; and read the tables of its JDBC targets from PostgreSQL.

``install()`` patches moto in the process that runs moto's server. ``StartCrawler`` then returns at
once and a thread crawls, reading the objects straight from moto's in-process S3 backend and
writing through its in-process Glue and CloudWatch Logs backends, as AWS Glue would:

- one table per dataset folder: the target itself when its objects sit directly under it or under
  ``key=value/`` folders, otherwise each first-level folder of the target; named after the folder,
  with the crawler's ``TablePrefix``, in the crawler's database (created if missing);
- columns and Hive types from parquet footers, CSV headers and JSON lines (pyarrow infers them);
  files of one table are merged (union of columns, first type wins);
- folders below the table folder become partition keys (``key=value`` gives ``key``, any other
  folder ``partition_<n>``) and every folder combination a partition; a recrawl updates what
  changed and adds new partitions, so it is idempotent;
- objects named ``_*`` or ``.*`` (``_SUCCESS``), zero-byte folder markers and ``Exclusions`` globs
  are skipped; a target without objects creates nothing and succeeds;
- ``JdbcTargets`` reach PostgreSQL through the Glue connection named ``ConnectionName`` (type JDBC,
  ``JDBC_CONNECTION_URL`` ``jdbc:postgresql://host:port/database``, ``USERNAME`` and ``PASSWORD``
  or a ``SECRET_ID`` whose RDS-style JSON holds ``username`` and ``password``, read from the
  in-process Secrets Manager backend). ``Path`` is ``database/schema/table``, any part ``%`` (a
  wildcard, as on AWS), and ``Exclusions`` globs apply below its wildcard. Each table or view found
  in PostgreSQL's catalog becomes one table named ``<TablePrefix><database>_<schema>_<table>``,
  located at ``database.schema.table``, classification ``postgresql``, its columns in order with
  Hive types; no partitions. A missing or non-JDBC connection, a failed connection or a path that
  matches nothing fails the crawl, naming the connection and the path (never the password);
- ``GetCrawler`` reports RUNNING, then STOPPING, then READY with ``LastCrawl`` SUCCEEDED, FAILED
  (with an ``ErrorMessage`` naming the object) or CANCELLED (``StopCrawler``); ``GetCrawlerMetrics``
  and ``UpdateConnection``, missing from moto, are added; the progress is logged to
  ``/aws-glue/crawlers``, stream = crawler.

Not emulated: custom classifiers, targets other than S3 and JDBC to PostgreSQL (DynamoDB, MongoDB,
Delta, Iceberg, catalog targets; JDBC to any other engine fails the crawl), compressed text files,
schema change and recrawl policies (tables are always updated in place and never deleted).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.glue.exceptions import CrawlerRunningException, PartitionNotFoundException
from moto.glue.models import FakeConnection, FakeCrawl, FakeCrawler, GlueBackend
from moto.glue.responses import GlueResponse
from moto.logs.models import logs_backends
from moto.s3.exceptions import MissingBucket
from moto.s3.models import FakeKey, s3_backends
from moto.secretsmanager.models import secretsmanager_backends
from moto.utilities.utils import get_partition

logger = logging.getLogger(__name__)

# One lock for every mutation of moto's backends made here and for crawl state changes, so two
# crawls never interleave their catalog writes and StopCrawler never races the end of a crawl.
_LOCK = threading.RLock()

# CSV and JSON schemas are inferred from the head of each object, as AWS samples it.
_SAMPLE_BYTES = 4 * 1024 * 1024

_CLASSIFICATION_BY_SUFFIX = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
}

_TEXT_INPUT_FORMAT = "org.apache.hadoop.mapred.TextInputFormat"
_TEXT_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
# classification -> (InputFormat, OutputFormat, SerDe), as a Glue crawler writes them
_FORMATS = {
    "parquet": (
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
    ),
    "csv": (_TEXT_INPUT_FORMAT, _TEXT_OUTPUT_FORMAT, "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"),
    "json": (_TEXT_INPUT_FORMAT, _TEXT_OUTPUT_FORMAT, "org.openx.data.jsonserde.JsonSerDe"),
}

_SCALAR_TYPES = {
    pa.bool_(): "boolean",
    pa.int8(): "tinyint",
    pa.int16(): "smallint",
    pa.int32(): "int",
    pa.int64(): "bigint",
    # unsigned integers take the next wider signed type (uint64 has none: bigint, as AWS does)
    pa.uint8(): "smallint",
    pa.uint16(): "int",
    pa.uint32(): "bigint",
    pa.uint64(): "bigint",
    pa.float16(): "float",
    pa.float32(): "float",
    pa.float64(): "double",
    pa.date32(): "date",
    pa.date64(): "date",
    pa.binary(): "binary",
    pa.large_binary(): "binary",
}

# PostgreSQL's information_schema data_type -> Hive type, as a Glue JDBC crawler maps them;
# numeric is mapped with its precision and scale, and every other type (text, varchar, char, json,
# jsonb, uuid, arrays, enums...) is a string.
_POSTGRES_TYPES = {
    "smallint": "smallint",
    "integer": "int",
    "bigint": "bigint",
    "real": "float",
    "double precision": "double",
    "boolean": "boolean",
    "date": "date",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamp",
    "bytea": "binary",
}

# Only PostgreSQL is crawled: the URL names the server and the database the crawler connects to.
_POSTGRES_URL = re.compile(r"jdbc:postgresql://(?P<host>[^/:?;]+)(?::(?P<port>\d+))?/(?P<database>[^/?;]+)")

# Every table and view of the database whose catalog, schema and name match the path, columns in
# order. PostgreSQL's own schemas hold no data, whatever a % in the path matches.
_POSTGRES_COLUMNS = """
SELECT c.table_catalog, c.table_schema, c.table_name, t.table_type,
       c.column_name, c.data_type, c.numeric_precision, c.numeric_scale
FROM information_schema.columns AS c
JOIN information_schema.tables AS t USING (table_catalog, table_schema, table_name)
WHERE c.table_catalog LIKE %s AND c.table_schema LIKE %s AND c.table_name LIKE %s
  AND c.table_schema <> 'information_schema' AND left(c.table_schema, 3) <> 'pg_'
  AND t.table_type IN ('BASE TABLE', 'VIEW')
ORDER BY c.table_schema, c.table_name, c.ordinal_position
"""

# moto's crawl states (which ListCrawls reports) -> GetCrawler's LastCrawl.Status
_LAST_CRAWL_STATUS = {"COMPLETED": "SUCCEEDED", "STOPPED": "CANCELLED", "FAILED": "FAILED"}

# moto's own implementations, which the patches below build on
_moto_crawler_as_dict = FakeCrawler.as_dict
_moto_stop_crawler = FakeCrawler.stop_crawler


def install() -> None:
    """Patch moto so its Glue crawlers crawl. Idempotent: it only (re)assigns class attributes.

    Call it in the process that runs moto's server, before the server handles a crawler request.
    """
    FakeCrawler.start_crawler = _start_crawler
    FakeCrawler.stop_crawler = _stop_crawler
    FakeCrawler.as_dict = _crawler_as_dict
    # moto dispatches an action to the GlueResponse method of the same (snake_case) name
    GlueResponse.get_crawler_metrics = _get_crawler_metrics
    GlueResponse.update_connection = _update_connection


# --- moto patches -------------------------------------------------------------------------------


class _CrawlCancelled(Exception):
    """StopCrawler was called: the crawl ends CANCELLED."""


class _CrawlError(Exception):
    """Why the crawl fails, naming the S3 object or the target (and JDBC connection) at fault."""


class _Crawl(FakeCrawl):
    """A crawl whose state its worker thread sets, instead of moto's state manager advancing it."""

    def __init__(self, crawler_name: str) -> None:
        super().__init__(crawler_name)
        self.cancel_requested = threading.Event()
        self.error_message: str | None = None
        self.tables_created = 0
        self.tables_updated = 0

    @property
    def status(self) -> str | None:
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        self._status = value

    def check_cancelled(self) -> None:
        if self.cancel_requested.is_set():
            raise _CrawlCancelled

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        if self.error_message:
            data["ErrorMessage"] = self.error_message
        return data


def _start_crawler(self: FakeCrawler) -> None:
    """StartCrawler: record a RUNNING crawl and return at once; a thread does the crawl."""
    with _LOCK:
        # AWS refuses to start a crawler that is RUNNING or still STOPPING
        if self.status != "READY":
            raise CrawlerRunningException(f"Crawler with name {self.name} has already started")
        crawl = _Crawl(self.name)
        self.crawls.append(crawl)
    threading.Thread(target=_run_crawl, args=(self, crawl), name=f"glue-crawl-{self.name}", daemon=True).start()


def _stop_crawler(self: FakeCrawler) -> None:
    """StopCrawler: moto checks the crawler runs and marks it STOPPING; the thread ends it CANCELLED."""
    with _LOCK:
        _moto_stop_crawler(self)
        self.crawls[-1].cancel_requested.set()


def _crawler_as_dict(self: FakeCrawler) -> dict[str, Any]:
    """moto's GetCrawler output with LastCrawl as AWS reports it: the last *finished* crawl."""
    data = _moto_crawler_as_dict(self)
    data.pop("LastCrawl", None)
    finished = [crawl for crawl in self.crawls if crawl.status in _LAST_CRAWL_STATUS]
    if finished:
        crawl = finished[-1]
        data["LastCrawl"] = {
            "Status": _LAST_CRAWL_STATUS[crawl.status],
            "LogGroup": crawl.log_group,
            "LogStream": crawl.log_stream,
            "MessagePrefix": crawl.message_prefix,
            "StartTime": crawl.start_time,
        }
        if crawl.error_message:
            data["LastCrawl"]["ErrorMessage"] = crawl.error_message
    return data


def _get_crawler_metrics(self: GlueResponse) -> ActionResult:
    """GetCrawlerMetrics, missing from moto. Unknown crawler names are left out, as AWS does."""
    crawlers = self.glue_backend.crawlers
    names = self.parameters.get("CrawlerNameList") or list(crawlers)
    return ActionResult({"CrawlerMetricsList": [_metrics(crawlers[name]) for name in names if name in crawlers]})


def _update_connection(self: GlueResponse) -> EmptyResult:
    """UpdateConnection, missing from moto (as is DeleteConnection): without it a connection could
    never be re-pointed, so provisioning twice with another database URL would keep the old one."""
    backend = self.glue_backend
    name = self._get_param("Name")
    with _LOCK:
        current = backend.get_connection(self._get_param("CatalogId"), name, "")  # not found: as AWS
        updated = FakeConnection(backend, current.catalog_id, self._get_param("ConnectionInput"), tags={})
        updated.created_time = current.created_time
        del backend.connections[name]
        backend.connections[updated.name] = updated
    return EmptyResult()


def _metrics(crawler: FakeCrawler) -> dict[str, Any]:
    finished = [crawl for crawl in crawler.crawls if crawl.end_time]
    runtimes = [(crawl.end_time - crawl.start_time).total_seconds() for crawl in finished]
    last = finished[-1] if finished else None
    return {
        "CrawlerName": crawler.name,
        # AWS estimates how long a running crawl has left; there is nothing to estimate from here
        "TimeLeftSeconds": 0.0,
        "StillEstimating": crawler.status == "RUNNING",
        "LastRuntimeSeconds": runtimes[-1] if runtimes else 0.0,
        "MedianRuntimeSeconds": statistics.median(runtimes) if runtimes else 0.0,
        "TablesCreated": last.tables_created if last else 0,
        "TablesUpdated": last.tables_updated if last else 0,
        "TablesDeleted": 0,  # tables are never deleted (no schema change policy)
    }


# --- the crawl ----------------------------------------------------------------------------------


class _CrawlLog:
    """The crawl's progress where AWS Glue writes it: group /aws-glue/crawlers, stream = crawler,
    every line prefixed with the crawl id (the crawl's MessagePrefix)."""

    def __init__(self, crawler: FakeCrawler, crawl: _Crawl) -> None:
        self._logs = logs_backends[crawler.backend.account_id][crawler.backend.region_name]
        self._crawl = crawl

    def write(self, level: str, message: str) -> None:
        group, stream = self._crawl.log_group, self._crawl.log_stream
        event = {
            "timestamp": int(time.time() * 1000),
            "message": f"[{self._crawl.message_prefix}] {level} : {message}",
        }
        try:
            with _LOCK:
                if group not in self._logs.groups:
                    self._logs.create_log_group(group, tags={})
                self._logs.ensure_log_stream(group, stream)
                self._logs.put_log_events(group, stream, [event])
        except Exception:  # the log is a courtesy: failing to write it must not fail the crawl
            logger.warning("cannot write the crawl log of %s", stream, exc_info=True)


def _run_crawl(crawler: FakeCrawler, crawl: _Crawl) -> None:
    """The crawl thread. Whatever happens, the crawl ends COMPLETED, STOPPED or FAILED."""
    log = _CrawlLog(crawler, crawl)
    try:
        _crawl(crawler, crawl, log)
    except _CrawlCancelled:
        log.write("INFO", "Crawl cancelled by StopCrawler")
    except Exception as exc:  # a crawl never dies silently: it ends FAILED with the reason
        expected = isinstance(exc, _CrawlError)
        crawl.error_message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        # a bad object is the data's fault; anything else is a bug here, worth its traceback
        logger.warning("crawl %s of %s failed: %s", crawl.crawl_id, crawler.name, exc, exc_info=not expected)
        log.write("ERROR", crawl.error_message)
    with _LOCK:
        crawl.status = "STOPPING"  # GetCrawler shows STOPPING while the crawl wraps up, as on AWS
    log.write("BENCHMARK", "Crawler has finished running and is in state READY")
    with _LOCK:
        crawl.end_time = utcnow()
        if crawl.error_message:
            crawl.status = "FAILED"
        elif crawl.cancel_requested.is_set():
            crawl.status = "STOPPED"
        else:
            crawl.status = "COMPLETED"


def _crawl(crawler: FakeCrawler, crawl: _Crawl, log: _CrawlLog) -> None:
    log.write("BENCHMARK", f"Running Start Crawl for Crawler {crawler.name}")
    targets = crawler.targets or {}
    # Read every object and every database first, without the lock: only the catalog writes need it.
    tables = [
        table for target in targets.get("S3Targets", []) for table in _scan_target(crawler.backend, target, crawl, log)
    ]
    jdbc_tables = [
        table
        for target in targets.get("JdbcTargets", [])
        for table in _scan_jdbc_target(crawler.backend, target, crawl, log)
    ]
    database = crawler.database_name
    crawl.check_cancelled()  # the last chance: a crawl stopped before this point writes nothing
    log.write("BENCHMARK", f"Classification complete, writing results to database {database}")
    with _LOCK:
        if database not in crawler.backend.databases:
            crawler.backend.create_database(database, {"Name": database})
            log.write("INFO", f"Created database {database}")
        for table in tables:
            _write_table(crawler, table, crawl, log)
        for jdbc_table in jdbc_tables:
            _write_jdbc_table(crawler, jdbc_table, crawl, log)
    log.write("BENCHMARK", "Finished writing to Catalog")


# --- reading the S3 targets ---------------------------------------------------------------------


@dataclass
class _FileSchema:
    """What one object says about its table."""

    classification: str  # parquet, csv or json
    columns: dict[str, str]  # column name -> Hive type, in file order
    record_count: int
    delimiter: str = ","  # CSV only


@dataclass
class _Folder:
    """A table's or a partition's folder: where it is and what it holds."""

    location: str
    record_count: int = 0
    object_count: int = 0
    size: int = 0


@dataclass
class _Table:
    name: str
    location: str
    partition_keys: list[str]
    classification: str
    delimiter: str
    columns: dict[str, str] = field(default_factory=dict)
    # partition values -> partition; an unpartitioned table has one, under ()
    partitions: dict[tuple[str, ...], _Folder] = field(default_factory=dict)

    @property
    def data_columns(self) -> dict[str, str]:
        # Hive refuses a column that is also a partition key: the key wins
        return {name: type_ for name, type_ in self.columns.items() if name not in self.partition_keys}

    def totals(self) -> _Folder:
        parts = self.partitions.values()
        return _Folder(
            self.location,
            sum(p.record_count for p in parts),
            sum(p.object_count for p in parts),
            sum(p.size for p in parts),
        )


def _scan_target(backend: GlueBackend, target: dict[str, Any], crawl: _Crawl, log: _CrawlLog) -> list[_Table]:
    bucket_name, _, prefix = target["Path"].removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    prefix = f"{prefix}/" if prefix else ""
    root = f"s3://{bucket_name}/{prefix}"
    excluded = [_glob_regex(pattern) for pattern in target.get("Exclusions") or []]
    s3 = s3_backends[backend.account_id][get_partition(backend.region_name)]
    try:
        keys = s3.list_objects(s3.get_bucket(bucket_name), prefix, None, None, None)[0]
    except MissingBucket as exc:
        raise _CrawlError(f"{root}: {exc}") from exc
    objects = {}
    for key in keys:
        relative = key.name[len(prefix) :]
        if _is_data_object(key, relative) and not any(regex.match(relative) for regex in excluded):
            objects[relative] = key
    tables = []
    for name, (location, table_objects) in _group_into_datasets(root, objects, log).items():
        if table := _read_table(name, location, table_objects, crawl, log):
            tables.append(table)
    return tables


def _is_data_object(key: FakeKey, relative: str) -> bool:
    # Folder markers are empty; Spark/Hadoop markers (_SUCCESS), temporary folders (_temporary/)
    # and hidden files start with _ or . -- none of them is data, so AWS skips them all.
    return key.size > 0 and not any(part.startswith(("_", ".")) for part in relative.split("/"))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A Glue exclusion glob as a regex: ** crosses folders, * and ? do not, {a,b} and [...] as usual."""
    regex = ""
    for token in re.findall(r"\*\*|\*|\?|\{[^}]*\}|\[[^\]]*\]|.", pattern):
        if token == "**":
            regex += ".*"
        elif token == "*":
            regex += "[^/]*"
        elif token == "?":
            regex += "[^/]"
        elif token.startswith("{") and token.endswith("}"):
            regex += "(?:" + "|".join(re.escape(choice) for choice in token[1:-1].split(",")) + ")"
        elif token.startswith("[") and token.endswith("]"):
            regex += "[^" + token[2:-1] + "]" if token.startswith("[!") else token
        else:
            regex += re.escape(token)
    return re.compile(regex + r"\Z")


def _group_into_datasets(
    root: str, objects: dict[str, FakeKey], log: _CrawlLog
) -> dict[str, tuple[str, dict[str, FakeKey]]]:
    """Split a target's objects into datasets: table name -> (table folder, objects relative to it).

    The target is one table when its objects sit directly under it or under key=value folders;
    otherwise each first-level folder is a table of its own.
    """
    if all("=" in folder for relative in objects for folder in relative.split("/")[:-1]):
        return {_table_name(root): (root, objects)} if objects else {}
    datasets: dict[str, tuple[str, dict[str, FakeKey]]] = {}
    for relative, key in objects.items():
        folder, slash, rest = relative.partition("/")
        if slash:
            datasets.setdefault(_table_name(folder), (f"{root}{folder}/", {}))[1][rest] = key
        else:
            log.write("WARN", f"Skipping {root}{relative}: it is beside dataset folders, not in one")
    return datasets


def _table_name(path: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", path.rstrip("/").rsplit("/", 1)[-1].lower())


def _partition_folder(folder: str, depth: int) -> tuple[str, str]:
    """(key, value) of a partition folder: ``key=value``, or ``partition_<depth>`` as AWS names it."""
    key, equals, value = folder.partition("=")
    return (key.lower(), value) if equals else (f"partition_{depth}", folder)


def _read_table(name: str, location: str, objects: dict[str, FakeKey], crawl: _Crawl, log: _CrawlLog) -> _Table | None:
    table = None
    for relative, key in objects.items():
        crawl.check_cancelled()
        uri = location + relative
        folders = relative.split("/")[:-1]
        pairs = [_partition_folder(folder, depth) for depth, folder in enumerate(folders)]
        keys, values = [k for k, _ in pairs], tuple(v for _, v in pairs)
        try:
            schema = _infer_schema(uri, key)
        except _CrawlError as exc:
            # As on AWS, one unreadable object is logged and skipped, not fatal to the crawl:
            # a corrupt file in landing must not stop every later batch from being catalogued.
            log.write("ERROR", f"Skipping {exc}")
            continue
        if schema is None:
            log.write("WARN", f"Skipping {uri}: not parquet, CSV or JSON")
            continue
        if table is None:
            table = _Table(name, location, keys, schema.classification, schema.delimiter)
        elif keys != table.partition_keys or schema.classification != table.classification:
            log.write("WARN", f"Skipping {uri}: its format or folder layout differs from table {name}'s")
            continue
        for column, type_ in schema.columns.items():
            table.columns.setdefault(column, type_)
        partition_location = location + "".join(f"{folder}/" for folder in folders)
        partition = table.partitions.setdefault(values, _Folder(partition_location))
        partition.record_count += schema.record_count
        partition.object_count += 1
        partition.size += key.size
    return table


def _read(key: FakeKey, start: int, length: int) -> bytes:
    # FakeKey.value copies the whole object; a crawl needs only a head or a footer.
    with key.lock:
        key._value_buffer.seek(start)
        return key._value_buffer.read(length)


def _infer_schema(uri: str, key: FakeKey) -> _FileSchema | None:
    """The object's schema, or None when it is not a format this crawler knows."""
    classification = _CLASSIFICATION_BY_SUFFIX.get(PurePosixPath(key.name).suffix.lower())
    if classification is None:
        # Firehose writes objects without an extension: sniff them, as AWS's classifiers do.
        head = _read(key, 0, 64).lstrip()
        classification = "parquet" if head.startswith(b"PAR1") else "json" if head.startswith(b"{") else None
    try:
        if classification == "parquet":
            return _parquet_schema(key)
        if classification:
            return _text_schema(key, classification)
    except Exception as exc:
        raise _CrawlError(f"{uri}: {exc}") from exc
    return None


def _parquet_schema(key: FakeKey) -> _FileSchema:
    # A parquet object ends with <footer><4-byte footer length>PAR1 and the footer holds the schema
    # and row count: read only that, however big the object.
    footer_length = int.from_bytes(_read(key, max(key.size - 8, 0), 4), "little")
    footer = _read(key, max(key.size - 8 - footer_length, 0), footer_length + 8)
    # The leading magic plus the footer is a whole parquet file as far as its metadata goes.
    metadata = pq.read_metadata(pa.BufferReader(b"PAR1" + footer))
    return _FileSchema("parquet", _columns(metadata.schema.to_arrow_schema()), metadata.num_rows)


def _text_schema(key: FakeKey, classification: str) -> _FileSchema:
    sample = _read(key, 0, _SAMPLE_BYTES)
    complete = len(sample) == key.size
    if not complete:
        sample = sample[: sample.rfind(b"\n") + 1]  # whole records only
    delimiter = ","
    if classification == "csv":
        header = sample.split(b"\n", 1)[0].decode(errors="replace")
        delimiter = max(",\t|;", key=header.count)
        parse_options = pa_csv.ParseOptions(delimiter=delimiter)
        data = pa_csv.read_csv(pa.BufferReader(sample), parse_options=parse_options)
    else:
        data = pa_json.read_json(pa.BufferReader(sample))
    # Beyond the sample the record count is extrapolated from its size, like AWS's estimate.
    records = data.num_rows if complete else round(data.num_rows * key.size / max(len(sample), 1))
    return _FileSchema(classification, _columns(data.schema), records, delimiter)


def _columns(schema: pa.Schema) -> dict[str, str]:
    # Glue and Hive column names are lower case
    return {column.name.lower(): _hive_type(column.type) for column in schema}


def _hive_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_struct(arrow_type):
        return "struct<" + ",".join(f"{f.name}:{_hive_type(f.type)}" for f in arrow_type) + ">"
    if pa.types.is_map(arrow_type):
        return f"map<{_hive_type(arrow_type.key_type)},{_hive_type(arrow_type.item_type)}>"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return f"array<{_hive_type(arrow_type.value_type)}>"
    if pa.types.is_dictionary(arrow_type):
        return _hive_type(arrow_type.value_type)
    if pa.types.is_decimal(arrow_type):
        return f"decimal({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_fixed_size_binary(arrow_type):
        return "binary"
    # strings, all-null columns (an empty CSV column) and types Hive lacks (time, duration)
    return _SCALAR_TYPES.get(arrow_type, "string")


# --- reading the JDBC targets -------------------------------------------------------------------


@dataclass(frozen=True)
class _JdbcSource:
    """Where and as whom a Glue JDBC connection reaches PostgreSQL."""

    connection_name: str
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)

    def scrub(self, message: str) -> str:
        """The message without the password, should a driver ever echo it."""
        return message.replace(self.password, "****") if self.password else message


@dataclass
class _JdbcTable:
    database: str
    schema: str
    name: str
    type_of_data: str  # table or view, as AWS records it
    connection_name: str
    columns: dict[str, str] = field(default_factory=dict)  # column name -> Hive type, in order


def _scan_jdbc_target(backend: GlueBackend, target: dict[str, Any], crawl: _Crawl, log: _CrawlLog) -> list[_JdbcTable]:
    connection_name, path = target.get("ConnectionName", ""), target.get("Path", "")
    where = f"JDBC target {path} (connection {connection_name})"
    source = _jdbc_source(backend, connection_name, where)
    parts = _jdbc_path(path, where)
    excluded = [_glob_regex(pattern) for pattern in target.get("Exclusions") or []]
    # Exclusions are relative to the path's literal head, as on AWS: with warehouse/ecommerce/%
    # they match table names, with warehouse/% schema/table.
    first_wildcard = next((i for i, part in enumerate(parts) if "%" in part), 2)
    crawl.check_cancelled()
    log.write("INFO", f"Reading {where} from PostgreSQL {source.host}:{source.port}/{source.database}")
    tables: dict[tuple[str, str], _JdbcTable] = {}
    for row in _postgres_columns(source, parts, where):
        database, schema, name, table_type, column, data_type, precision, scale = row
        relative = "/".join([database, schema, name][first_wildcard:])
        if any(regex.match(relative) for regex in excluded):
            continue
        type_of_data = "view" if table_type == "VIEW" else "table"
        table = tables.setdefault((schema, name), _JdbcTable(database, schema, name, type_of_data, connection_name))
        table.columns[column.lower()] = _postgres_hive_type(data_type, precision, scale)
    return list(tables.values())


def _jdbc_source(backend: GlueBackend, connection_name: str, where: str) -> _JdbcSource:
    """The PostgreSQL server, database and credentials of the Glue connection."""
    connection = backend.connections.get(connection_name)
    if connection is None:
        raise _CrawlError(f"{where}: Glue connection {connection_name} not found")
    connection_type = connection.connection_input.get("ConnectionType")
    if connection_type != "JDBC":
        raise _CrawlError(f"{where}: Glue connection {connection_name} is of type {connection_type}, not JDBC")
    properties = connection.connection_properties or {}
    url = properties.get("JDBC_CONNECTION_URL", "")
    match = _POSTGRES_URL.match(url)
    if not match:
        # only the part before any parameters, which may carry credentials
        shown = re.split(r"[?;]", url, maxsplit=1)[0]
        raise _CrawlError(
            f"{where}: JDBC_CONNECTION_URL {shown!r} is not jdbc:postgresql://host:port/database "
            "(only PostgreSQL is crawled locally)"
        )
    user, password = _jdbc_credentials(backend, connection_name, properties, where)
    port = int(match["port"] or 5432)
    return _JdbcSource(connection_name, match["host"], port, match["database"], user, password)


def _jdbc_credentials(
    backend: GlueBackend, connection_name: str, properties: dict[str, str], where: str
) -> tuple[str, str]:
    """USERNAME and PASSWORD, or the username and password of the SECRET_ID's RDS-style secret."""
    secret_id = properties.get("SECRET_ID")
    if not secret_id:
        return properties.get("USERNAME", ""), properties.get("PASSWORD", "")
    secrets = secretsmanager_backends[backend.account_id][backend.region_name]
    try:
        secret = secrets.get_secret_value(secret_id, None, None)
    except Exception as exc:  # moto's not found, deleted or no value: each says why in its message
        raise _CrawlError(f"{where}: cannot read secret {secret_id}: {getattr(exc, 'message', exc)}") from exc
    try:
        value = json.loads(secret.get("SecretString") or "")
        return str(value["username"]), str(value["password"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _CrawlError(f"{where}: secret {secret_id} is not a JSON object with username and password") from exc


def _jdbc_path(path: str, where: str) -> list[str]:
    """database/schema/table, any part %; database/% stands for database/%/%."""
    parts = path.strip("/").split("/")
    if len(parts) < 3 and parts[-1] == "%":
        parts += ["%"] * (3 - len(parts))
    if len(parts) != 3 or not all(parts):
        raise _CrawlError(f"{where}: the path is not database/schema/table (any part may be %)")
    return parts


def _like(part: str) -> str:
    # % is the path's wildcard; _ and \ are literal in a Glue path but special to LIKE
    return part.replace("\\", "\\\\").replace("_", "\\_")


def _postgres_columns(source: _JdbcSource, parts: list[str], where: str) -> list[tuple]:
    """The columns of every table the path matches, in order; fails when it matches no table."""
    try:
        connection = psycopg2.connect(
            host=source.host,
            port=source.port,
            dbname=source.database,
            user=source.user,
            password=source.password,
            connect_timeout=10,
            application_name="glue-crawler",
        )
        with contextlib.closing(connection):
            connection.set_session(readonly=True)  # a crawler only reads
            with connection.cursor() as cursor:
                cursor.execute(_POSTGRES_COLUMNS, [_like(part) for part in parts])
                rows = cursor.fetchall()
    except psycopg2.Error as exc:
        message = source.scrub(str(exc).strip())
        raise _CrawlError(
            f"{where}: cannot read PostgreSQL {source.host}:{source.port}/{source.database} as {source.user}: {message}"
        ) from exc
    if not rows:
        raise _CrawlError(f"{where}: the path matches no table in PostgreSQL database {source.database}")
    return rows


def _postgres_hive_type(data_type: str, precision: int | None, scale: int | None) -> str:
    if data_type == "numeric":
        # an unconstrained numeric gets Hive's widest decimal (Spark's default) rather than
        # Hive's bare decimal, which is decimal(10,0) and would drop every fraction
        return f"decimal({precision},{scale or 0})" if precision else "decimal(38,18)"
    return _POSTGRES_TYPES.get(data_type, "string")


# --- writing the Data Catalog -------------------------------------------------------------------


def _write_table(crawler: FakeCrawler, table: _Table, crawl: _Crawl, log: _CrawlLog) -> None:
    """Create or update the table, then create or update its partitions. Call with _LOCK held."""
    name = f"{crawler.table_prefix or ''}{table.name}".lower()
    totals = table.totals()
    table_input = {
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": _parameters(table, totals, crawler.name),
        "PartitionKeys": [{"Name": key, "Type": "string"} for key in table.partition_keys],
        "StorageDescriptor": _storage_descriptor(table, totals, crawler.name),
    }
    _put_table(crawler, table_input, crawl, log)
    if table.partition_keys:
        _write_partitions(crawler, name, table, log)


def _write_jdbc_table(crawler: FakeCrawler, table: _JdbcTable, crawl: _Crawl, log: _CrawlLog) -> None:
    """Create or update the table as a Glue JDBC crawl writes it. Call with _LOCK held."""
    name = f"{crawler.table_prefix or ''}{table.database}_{table.schema}_{table.name}".lower()
    parameters = {
        "classification": "postgresql",
        "connectionName": table.connection_name,
        "typeOfData": table.type_of_data,
        "compressionType": "none",
        "UPDATED_BY_CRAWLER": crawler.name,
    }
    table_input = {
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": parameters,
        "PartitionKeys": [],
        "StorageDescriptor": {
            "Columns": [{"Name": column, "Type": type_} for column, type_ in table.columns.items()],
            # where the data is, for a JDBC table: what the connection's database calls it
            "Location": f"{table.database}.{table.schema}.{table.name}",
            "Compressed": False,
            "NumberOfBuckets": -1,
            "SerdeInfo": {"Parameters": {}},
            "BucketColumns": [],
            "SortColumns": [],
            "Parameters": parameters,
            "StoredAsSubDirectories": False,
        },
    }
    _put_table(crawler, table_input, crawl, log)


def _put_table(crawler: FakeCrawler, table_input: dict[str, Any], crawl: _Crawl, log: _CrawlLog) -> None:
    backend, database, name = crawler.backend, crawler.database_name, table_input["Name"]
    current = backend.get_database(database).tables.get(name)
    if current is None:
        backend.create_table(database, name, table_input)
        crawl.tables_created += 1
        log.write("INFO", f"Created table {name} in database {database}")
    elif any(current.as_dict().get(k) != v for k, v in table_input.items()):
        # only a real change makes a new table version, so an unchanged recrawl is a no-op
        backend.update_table(database, name, table_input)
        crawl.tables_updated += 1
        log.write("INFO", f"Updated table {name} in database {database}")


def _write_partitions(crawler: FakeCrawler, name: str, table: _Table, log: _CrawlLog) -> None:
    backend, database = crawler.backend, crawler.database_name
    added, updated = [], []
    for values, partition in table.partitions.items():
        partition_input = {
            "Values": list(values),
            "StorageDescriptor": _storage_descriptor(table, partition, crawler.name),
            "Parameters": _parameters(table, partition, crawler.name),
        }
        try:
            current = backend.get_partition(database, name, list(values))
        except PartitionNotFoundException:
            backend.create_partition(database, name, partition_input)
            added.append(list(values))
            continue
        if current.partition_input != partition_input:
            backend.update_partition(database, name, partition_input, list(values))
            updated.append(list(values))
    if added:
        log.write("INFO", f"Created partitions with values {added} for table {name} in database {database}")
    if updated:
        log.write("INFO", f"Updated partitions with values {updated} for table {name} in database {database}")


def _parameters(table: _Table, folder: _Folder, crawler_name: str) -> dict[str, str]:
    parameters = {
        "classification": table.classification,
        "typeOfData": "file",
        "recordCount": str(folder.record_count),
        "objectCount": str(folder.object_count),
        "sizeKey": str(folder.size),
        "UPDATED_BY_CRAWLER": crawler_name,
    }
    if table.classification == "csv":
        # without skip.header.line.count, Athena and Spark would read the header as a row
        parameters |= {"delimiter": table.delimiter, "skip.header.line.count": "1"}
    return parameters


def _storage_descriptor(table: _Table, folder: _Folder, crawler_name: str) -> dict[str, Any]:
    """The StorageDescriptor of the table (folder = its totals) or of one of its partitions."""
    input_format, output_format, serde = _FORMATS[table.classification]
    serde_parameters = {
        "parquet": {"serialization.format": "1"},
        "csv": {"field.delim": table.delimiter},
        "json": {"paths": ",".join(sorted(table.data_columns))},
    }[table.classification]
    return {
        "Columns": [{"Name": name, "Type": type_} for name, type_ in table.data_columns.items()],
        "Location": folder.location,
        "InputFormat": input_format,
        "OutputFormat": output_format,
        "Compressed": False,
        "NumberOfBuckets": -1,
        "SerdeInfo": {"SerializationLibrary": serde, "Parameters": serde_parameters},
        "BucketColumns": [],
        "SortColumns": [],
        "Parameters": _parameters(table, folder, crawler_name),
        "StoredAsSubDirectories": False,
    }
