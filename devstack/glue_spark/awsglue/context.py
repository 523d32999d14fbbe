"""``awsglue.context.GlueContext`` for local runs: plain PySpark plus boto3 (the emulator).

``GlueContext(sparkContext)`` is a ``SQLContext`` (as AWS's is) with ``spark_session`` (and
``sparkSession``), ``create_dynamic_frame`` / ``create_data_frame`` / ``write_dynamic_frame``
(readers and writers with AWS's signatures), ``getSource``, ``getSink``, ``get_logger`` (and
``getLogger``), ``extract_jdbc_conf``, ``get_catalog_schema_as_spark_schema``.

Sources (``create_dynamic_frame.from_options``, ``create_dynamic_frame_from_options``):

- ``connection_type="s3"``, ``connection_options={"paths": [...], "recurse": True,
  "exclusions": "[\\"**.txt\\"]"}``, ``format`` json, csv, parquet, glueparquet or orc,
  ``format_options`` json: ``multiline``; csv: ``withHeader``, ``separator``, ``quoteChar``
  (``-1``: no quoting), ``escaper``, ``multiLine``, ``skipFirst`` (headerless CSV columns are
  ``col0``, ``col1``...). ``key=value`` folders below the paths become string columns and
  ``push_down_predicate`` filters them before any object is read (see ``_local/readers.py``);
- ``connection_type="postgresql"`` with ``url``/``user``/``password``/``dbtable`` or a Glue
  connection (``connectionName``, ``useConnectionProperties``): psycopg2, not JDBC (there is
  no JDBC driver here; see ``_local/jdbc.py``).

Catalog (``from_catalog``, ``create_data_frame.from_catalog``): the table is read with boto3
(``StorageDescriptor.Location``, ``classification``, CSV ``delimiter`` and
``skip.header.line.count``); a partitioned table's partitions come from ``GetPartitions`` and
``push_down_predicate`` (and ``additional_options["catalogPartitionPredicate"]``) is evaluated
with Spark SQL on their values, so only the matching partitions are listed and read; partition
columns get the keys' catalog types. Tables of classification ``postgresql`` (JDBC crawls:
location ``database.schema.table``, ``connectionName``) are read through their connection.

Sinks: ``write_dynamic_frame.from_options`` (s3: ``path``, ``partitionKeys``, formats
parquet/glueparquet/json/csv/orc, ``format_options["compression"]``; postgresql),
``from_catalog`` (the table's location, format and partition keys; ``enableUpdateCatalog`` adds
the partitions written), ``from_jdbc_conf`` (a Glue connection; ``dbtable``, ``database``), and
``getSink(connection_type="s3", path=..., enableUpdateCatalog=True,
updateBehavior="UPDATE_IN_DATABASE", partitionKeys=[...])`` with ``setFormat``,
``setCatalogInfo`` and ``writeFrame`` (see ``_local/writers.py``). Writes append.

Job bookmarks: see ``awsglue.job`` and ``_local/bookmarks.py``. ``purge_s3_path`` and
``purge_table`` delete through boto3. Anything else raises ``LocalGlueUnsupported`` ("awsglue
GlueContext.<name> is not supported by local Glue runs yet").

Types of JSON and CSV columns (top-level; nulls never count; a choice column stays a Spark
string column holding each value's text, and its types are passed to the DynamicFrame):

=====================================  ==============================  ============================
values of a column                     JSON                            CSV (with or without header)
=====================================  ==============================  ============================
integers, all within 32 bits           int                             long
integers, some beyond 32 bits          long                            long
numbers with a fraction or exponent    double (ints mixed in: double)  double (longs mixed: double)
true / false                           boolean                         string
text                                   string                          string
only nulls / empty fields              string                          string
numbers and text                       choice (int|long|double,        choice (long and/or double,
                                       string)                         string)
booleans and text                      choice (boolean, string)        string
numbers and booleans                   choice (boolean, int|...)       n/a
objects / arrays                       struct / array (Spark's)        n/a
=====================================  ==============================  ============================

A JSON number written as ``12.0`` counts as an integer; a quoted ``"12"`` is text. Nested
fields keep Spark's inference (long, double, string on a conflict). Parquet and ORC columns
keep their files' types.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any

from awsglue._local import aws, catalog, jdbc, readers
from awsglue._local.readers import DataFrameReader
from awsglue._local.unsupported import unsupported
from awsglue._local.writers import DataSink, partition_keys_option, write_s3
from awsglue.dynamicframe import DynamicFrame, DynamicFrameReader, DynamicFrameWriter
from pyspark.sql import DataFrame, SparkSession, SQLContext
from pyspark.sql import types as T

S3_CATALOG_FORMATS = {"json", "csv", "parquet", "orc"}


def _frame(df: DataFrame, glue_ctx, name: str, choices: dict[str, tuple[str, ...]] | None):
    return DynamicFrame(df, glue_ctx, name, choices=choices or None)


class GlueLogger:
    """``glueContext.get_logger()``: log4j-style lines on stderr, as Glue's driver log has them.

    ``debug`` is dropped (Glue logs at INFO).
    """

    def __init__(self, name: str = "GlueLogger"):
        self.name = name

    def _log(self, level: str, message: Any) -> None:
        now = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        print(f"{now} {level} [main] glue.{self.name}: {message}", file=sys.stderr, flush=True)

    def info(self, message: Any) -> None:
        self._log("INFO", message)

    def warn(self, message: Any) -> None:
        self._log("WARN", message)

    def error(self, message: Any) -> None:
        self._log("ERROR", message)

    def debug(self, message: Any) -> None:
        return None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise unsupported("GlueLogger", name)


class DataSource:
    """What ``getSource`` returns: ``setFormat`` then ``getFrame``."""

    def __init__(self, glue_context, connection_type, transformation_ctx, push_down_predicate, options):
        self._glue_context = glue_context
        self._connection_type = connection_type
        self._transformation_ctx = transformation_ctx
        self._push_down_predicate = push_down_predicate
        self._options = options
        self._format = options.pop("format", None)
        self._format_options: dict[str, Any] = {}

    def setFormat(self, format, **options):
        self._format = format
        self._format_options = dict(options)

    def getFrame(self, **options):
        return self._glue_context.create_dynamic_frame_from_options(
            self._connection_type, self._options, self._format, self._format_options, self._transformation_ctx,
            self._push_down_predicate,
        )  # fmt: skip

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise unsupported("DataSource", name)


def _database_argument(database, kwargs) -> str:
    if database is not None and "name_space" in kwargs:
        raise Exception("Parameter name_space and database are both specified, choose one.")
    if database is None and "name_space" not in kwargs:
        raise Exception("Parameter name_space or database is missing.")
    return kwargs.pop("name_space", database)


def _and(*predicates: str | None) -> str:
    parts = [f"({p})" for p in predicates if p and p.strip()]
    return " AND ".join(parts)


def _jdbc_table_options(table: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Source/sink options of a JDBC catalog table (location ``database.schema.table``)."""
    parameters = catalog.table_parameters(table)
    location = table.get("StorageDescriptor", {}).get("Location", "") or ""
    parts = location.split(".")
    options: dict[str, Any] = {"connectionName": parameters.get("connectionName"), "useConnectionProperties": "true"}
    if len(parts) >= 3:
        options |= {"database": parts[0], "dbtable": ".".join(parts[1:])}
    elif location:
        options["dbtable"] = location
    return {**options, **extra}


class GlueContext(SQLContext):
    Spark_SQL_Formats = {"parquet", "orc"}

    def __init__(self, sparkContext, **options):
        session = SparkSession.builder.getOrCreate()
        super().__init__(sparkContext, session)
        self.spark_session = session
        self.create_dynamic_frame = DynamicFrameReader(self)
        self.create_data_frame = DataFrameReader(self)
        self.write_dynamic_frame = DynamicFrameWriter(self)
        self._glue_logger = GlueLogger()
        self._options = options

    # -- sources ---------------------------------------------------------------------------

    def getSource(self, connection_type, format=None, transformation_ctx="", push_down_predicate="", **options):
        if format:
            options["format"] = format
        return DataSource(self, connection_type, transformation_ctx, push_down_predicate, options)

    def create_dynamic_frame_from_rdd(self, data, name, schema=None, sample_ratio=None, transformation_ctx=""):
        df = self.spark_session.createDataFrame(data, schema, sample_ratio)
        return DynamicFrame.fromDF(df, self, name)

    def _read_from_options(self, connection_type, connection_options, format, format_options, transformation_ctx,
                           push_down_predicate) -> tuple[DataFrame, dict, str]:  # fmt: skip
        kind = (connection_type or "").lower()
        connection_options = dict(connection_options or {})
        if kind == "s3":
            df, choices = readers.read_s3(
                self, connection_options, format, dict(format_options or {}), transformation_ctx, push_down_predicate
            )
            return df, choices, readers.frame_name(readers._paths_option(connection_options))
        if kind in ("postgresql",):
            target = jdbc.target_from_options(connection_options)
            return jdbc.read(self.spark_session, target, connection_options), {}, connection_options.get("dbtable", "")
        raise unsupported("GlueContext", f"create_dynamic_frame_from_options(connection_type={connection_type!r})")

    def create_dynamic_frame_from_options(self, connection_type, connection_options={}, format=None,  # noqa: B006
                                          format_options={}, transformation_ctx="", push_down_predicate="",  # noqa: B006
                                          **kwargs):  # fmt: skip
        df, choices, name = self._read_from_options(
            connection_type, connection_options, format, format_options, transformation_ctx, push_down_predicate
        )
        return _frame(df, self, name, choices)

    def create_data_frame_from_options(self, connection_type, connection_options={}, format=None,  # noqa: B006
                                       format_options={}, transformation_ctx="", push_down_predicate="",  # noqa: B006
                                       **kwargs):  # fmt: skip
        df, _choices, _name = self._read_from_options(
            connection_type, connection_options, format, format_options, transformation_ctx, push_down_predicate
        )
        return df

    def _read_from_catalog(self, database, table_name, transformation_ctx, push_down_predicate, additional_options,
                           catalog_id) -> tuple[DataFrame, dict]:  # fmt: skip
        spark = self.spark_session
        additional_options = dict(additional_options or {})
        table = catalog.get_table(database, table_name, catalog_id)
        kind = catalog.classification(table)
        parameters = catalog.table_parameters(table)
        if kind == "postgresql" or (parameters.get("connectionName") and kind not in S3_CATALOG_FORMATS):
            options = _jdbc_table_options(table, additional_options)
            return jdbc.read(spark, jdbc.target_from_options(options), options), {}
        if kind not in S3_CATALOG_FORMATS:
            raise unsupported("GlueContext", f"create_dynamic_frame_from_catalog(classification={kind!r})")
        descriptor = table.get("StorageDescriptor", {})
        format_options: dict[str, Any] = {}
        column_names = None
        if kind == "csv":
            serde = descriptor.get("SerdeInfo", {}).get("Parameters", {})
            format_options["separator"] = parameters.get("delimiter") or serde.get("field.delim") or ","
            if serde.get("quoteChar"):
                format_options["quoteChar"] = serde["quoteChar"]
            header = int(parameters.get("skip.header.line.count", "0") or 0) >= 1
            format_options["withHeader"] = header
            if not header:
                column_names = [c["Name"] for c in descriptor.get("Columns", [])]
        elif kind == "json":
            format_options["multiline"] = additional_options.get("multiline", False)
        keys = [k["Name"] for k in table.get("PartitionKeys", [])]
        key_types = {k["Name"]: catalog.spark_type(k.get("Type", "string")) for k in table.get("PartitionKeys", [])}
        excluded = readers._exclusions(additional_options)
        objects, values = [], {}
        if keys:
            partitions = catalog.get_partitions(database, table_name, catalog_id)
            predicate = _and(push_down_predicate, additional_options.get("catalogPartitionPredicate"))
            kept = readers.filter_by_predicate(
                spark, keys, key_types, [list(p["Values"])[: len(keys)] for p in partitions], predicate
            )
            for partition, keep in zip(partitions, kept, strict=True):
                if not keep:
                    continue
                location = partition.get("StorageDescriptor", {}).get("Location") or catalog.partition_location(
                    descriptor.get("Location", ""), keys, partition["Values"]
                )
                for obj in aws.list_objects(location, recurse=True):
                    if not (excluded and excluded(obj)):
                        objects.append(obj)
                        values[obj.url] = list(partition["Values"])[: len(keys)]
        else:
            listed = aws.list_objects(descriptor["Location"], recurse=True)
            objects = [o for o in listed if not (excluded and excluded(o))]
        objects, record = readers.apply_bookmark(transformation_ctx, objects)
        df, choices = readers.load_objects(
            spark, objects, kind, format_options, keys, values if keys else None, key_types,
            empty_schema=catalog.schema_of(table), column_names=column_names,
        )  # fmt: skip
        record()
        return df, choices

    def create_dynamic_frame_from_catalog(self, database=None, table_name=None, redshift_tmp_dir="",
                                          transformation_ctx="", push_down_predicate="", additional_options={},  # noqa: B006
                                          catalog_id=None, **kwargs):  # fmt: skip
        database = _database_argument(database, kwargs)
        if table_name is None:
            raise Exception("Parameter table_name is missing.")
        df, choices = self._read_from_catalog(
            database, table_name, transformation_ctx, push_down_predicate, additional_options, catalog_id
        )
        return _frame(df, self, table_name, choices)

    def create_data_frame_from_catalog(self, database=None, table_name=None, redshift_tmp_dir="",
                                       transformation_ctx="", push_down_predicate="", additional_options={},  # noqa: B006
                                       catalog_id=None, **kwargs):  # fmt: skip
        database = _database_argument(database, kwargs)
        if table_name is None:
            raise Exception("Parameter table_name is missing.")
        df, _choices = self._read_from_catalog(
            database, table_name, transformation_ctx, push_down_predicate, additional_options, catalog_id
        )
        return df

    def get_catalog_schema_as_spark_schema(self, database=None, table_name=None, catalog_id=None) -> T.StructType:
        return catalog.schema_of(catalog.get_table(database, table_name, catalog_id))

    # -- sinks -----------------------------------------------------------------------------

    def getSink(self, connection_type, format=None, transformation_ctx="", **options):
        return DataSink(self, connection_type, transformation_ctx, format=format, **options)

    def write_dynamic_frame_from_options(self, frame, connection_type, connection_options={}, format=None,  # noqa: B006
                                         format_options={}, transformation_ctx=""):  # noqa: B006  # fmt: skip
        return self.write_from_options(frame, connection_type, connection_options, format, format_options,
                                       transformation_ctx)  # fmt: skip

    def write_from_options(self, frame_or_dfc, connection_type, connection_options={}, format=None,  # noqa: B006
                           format_options={}, transformation_ctx="", **kwargs):  # noqa: B006  # fmt: skip
        sink = self.getSink(connection_type, format, transformation_ctx, **dict(connection_options or {}))
        if format:
            sink.setFormat(format, **dict(format_options or {}))
        return sink.write(frame_or_dfc)

    def write_dynamic_frame_from_catalog(self, frame, database=None, table_name=None, redshift_tmp_dir="",
                                         transformation_ctx="", additional_options={}, catalog_id=None,  # noqa: B006
                                         **kwargs):  # fmt: skip
        database = _database_argument(database, kwargs)
        if table_name is None:
            raise Exception("Parameter table_name is missing.")
        additional_options = dict(additional_options or {})
        table = catalog.get_table(database, table_name, catalog_id)
        kind = catalog.classification(table)
        parameters = catalog.table_parameters(table)
        df = frame.toDF()
        if kind == "postgresql" or (parameters.get("connectionName") and kind not in S3_CATALOG_FORMATS):
            options = _jdbc_table_options(table, additional_options)
            jdbc.write(df, jdbc.target_from_options(options), options)
            return frame
        if kind not in S3_CATALOG_FORMATS:
            raise unsupported("GlueContext", f"write_dynamic_frame_from_catalog(classification={kind!r})")
        location = table.get("StorageDescriptor", {}).get("Location")
        keys = [k["Name"] for k in table.get("PartitionKeys", [])] or partition_keys_option(additional_options)
        format_options: dict[str, Any] = {}
        if kind == "csv":
            format_options = {
                "separator": parameters.get("delimiter", ","),
                "writeHeader": int(parameters.get("skip.header.line.count", "0") or 0) >= 1,
            }
        update_catalog = readers.truthy(additional_options.get("enableUpdateCatalog", False))
        compression = additional_options.get("compression")
        written = write_s3(df, location, kind, format_options, keys, compression, update_catalog)
        if update_catalog:
            catalog.update_table_for_write(
                database, table_name, df.schema, keys, location, kind,
                additional_options.get("updateBehavior", "UPDATE_IN_DATABASE"), None, catalog_id,
            )  # fmt: skip
            if written:
                catalog.add_partitions(database, table_name, written, catalog_id)
        return frame

    def write_dynamic_frame_from_jdbc_conf(self, frame, catalog_connection, connection_options={},  # noqa: B006
                                           redshift_tmp_dir="", transformation_ctx="", catalog_id=None):  # fmt: skip
        return self.write_from_jdbc_conf(frame, catalog_connection, connection_options, redshift_tmp_dir,
                                         transformation_ctx, catalog_id)  # fmt: skip

    def write_from_jdbc_conf(self, frame_or_dfc, catalog_connection, connection_options={},  # noqa: B006
                             redshift_tmp_dir="", transformation_ctx="", catalog_id=None):  # fmt: skip
        options = {**dict(connection_options or {}), "connectionName": catalog_connection}
        if catalog_id:
            options["catalogId"] = catalog_id
        sink = DataSink(self, "postgresql", transformation_ctx, **options)
        url = jdbc.connection_properties(catalog_connection, catalog_id).get("JDBC_CONNECTION_URL", "")
        if not url.startswith("jdbc:postgresql:"):
            raise unsupported("GlueContext", f"write_dynamic_frame_from_jdbc_conf(url={url.split('//')[0]!r})")
        sink.options["useConnectionProperties"] = "true"
        return sink.write(frame_or_dfc)

    def extract_jdbc_conf(self, connection_name, catalog_id=None) -> dict[str, str]:
        properties = jdbc.connection_properties(connection_name, catalog_id)
        full_url = properties.get("JDBC_CONNECTION_URL", "")
        vendor = full_url.split(":")[1] if full_url.count(":") >= 2 else ""
        head, _, _rest = full_url.partition("//")
        url = head + "//" + _rest.split("/", 1)[0] if _rest else full_url
        return {
            "user": properties.get("USERNAME", ""),
            "password": properties.get("PASSWORD", ""),
            "vendor": vendor,
            "url": url,
            "fullUrl": full_url,
        }

    # -- S3 housekeeping -------------------------------------------------------------------

    def _purge(self, location: str, options: dict[str, Any], transformation_ctx: str) -> tuple[list[str], list[str]]:
        retention_hours = float(options.get("retentionPeriod", 168))
        excluded_classes = {str(c).upper() for c in options.get("excludeStorageClasses", []) or []}
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(hours=retention_hours)
        purged, failed, kept = [], [], []
        s3 = aws.client("s3")
        for item in aws.list_all(location if location.endswith("/") else location + "/"):
            if item.get("StorageClass", "STANDARD").upper() in excluded_classes or item["LastModified"] > cutoff:
                kept.append(item)
                continue
            url = f"s3://{item['Bucket']}/{item['Key']}"
            try:
                s3.delete_object(Bucket=item["Bucket"], Key=item["Key"])
                purged.append(url)
            except Exception:  # noqa: BLE001 - reported in the manifest, as AWS does
                failed.append(url)
        manifest = options.get("manifestFilePath")
        if manifest:
            bucket, prefix = aws.split_s3_url(manifest)
            prefix = prefix.rstrip("/") + "/" + (transformation_ctx + "/" if transformation_ctx else "")
            for name, urls in (("Success.csv", purged), ("Failed.csv", failed)):
                s3.put_object(Bucket=bucket, Key=prefix.lstrip("/") + name, Body="\n".join(urls).encode())
        return purged, [f"s3://{i['Bucket']}/{i['Key']}" for i in kept]

    def purge_s3_path(self, s3_path, options={}, transformation_ctx=""):  # noqa: B006
        """Delete the objects under ``s3_path`` older than ``retentionPeriod`` hours (168 by default),
        except those of an ``excludeStorageClasses`` class; ``manifestFilePath`` gets Success.csv and
        Failed.csv."""
        self._purge(s3_path, dict(options or {}), transformation_ctx)

    def purge_table(self, database, table_name, options={}, transformation_ctx="", catalog_id=None):  # noqa: B006
        """``purge_s3_path`` on a table's location, or on the partitions ``partitionPredicate`` keeps;
        a partition left without objects is deleted from the catalog."""
        options = dict(options or {})
        table = catalog.get_table(database, table_name, catalog_id)
        descriptor = table.get("StorageDescriptor", {})
        keys = table.get("PartitionKeys", [])
        if not keys:
            self._purge(descriptor["Location"], options, transformation_ctx)
            return
        key_names = [k["Name"] for k in keys]
        key_types = {k["Name"]: catalog.spark_type(k.get("Type", "string")) for k in keys}
        partitions = catalog.get_partitions(database, table_name, catalog_id)
        kept = readers.filter_by_predicate(
            self.spark_session, key_names, key_types, [list(p["Values"]) for p in partitions],
            options.get("partitionPredicate", ""),
        )  # fmt: skip
        emptied = []
        for partition, keep in zip(partitions, kept, strict=True):
            if not keep:
                continue
            location = partition.get("StorageDescriptor", {}).get("Location") or catalog.partition_location(
                descriptor.get("Location", ""), key_names, partition["Values"]
            )
            _purged, remaining = self._purge(location, options, transformation_ctx)
            if not remaining:
                emptied.append({"Values": partition["Values"]})
        glue = catalog.glue()
        for start in range(0, len(emptied), 25):
            kwargs = {"CatalogId": catalog_id} if catalog_id else {}
            glue.batch_delete_partition(
                DatabaseName=database, TableName=table_name, PartitionsToDelete=emptied[start : start + 25], **kwargs
            )

    # -- misc --------------------------------------------------------------------------------

    def get_logger(self) -> GlueLogger:
        return self._glue_logger

    getLogger = get_logger  # the camel-case spelling some scripts use

    def currentTimeMillis(self) -> int:
        return int(round(time.time() * 1000))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise unsupported("GlueContext", name)
