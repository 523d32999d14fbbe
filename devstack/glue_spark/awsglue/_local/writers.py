"""Writing DynamicFrames: S3 (parquet, glueparquet, json, csv, orc), PostgreSQL, the catalog.

An S3 write appends new objects under ``path`` (Spark's ``append`` mode: nothing there is
replaced, as with Glue), ``partitionKeys`` making ``key=value`` folders; no ``_SUCCESS``
marker is written. Compression comes from ``format_options["compression"]`` (or the
``compression`` connection option): snappy by default for parquet, none for json and csv.
CSV options: ``separator``, ``quoteChar``, ``escaper`` (quotes are doubled without one),
``writeHeader`` (default true).

A sink with ``enableUpdateCatalog`` (``getSink(...)`` + ``setCatalogInfo`` or
``write_dynamic_frame.from_catalog(..., additional_options={"enableUpdateCatalog": True})``)
then creates the catalog table (columns with Hive type names, the partition keys, the format's
SerDe) or, with ``updateBehavior="UPDATE_IN_DATABASE"`` (the default), merges the frame's
columns into it (``"LOG"`` leaves the schema alone), and adds the partitions it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from awsglue._local import catalog, jdbc
from awsglue._local.readers import quoted, truthy
from awsglue._local.unsupported import unsupported
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

S3_WRITE_FORMATS = {"parquet", "glueparquet", "json", "csv", "orc"}
JDBC_TYPES = {"postgresql"}


def _s3a(path: str) -> str:
    if path.startswith("s3://") or path.startswith("s3n://"):
        return "s3a://" + path.split("://", 1)[1]
    return path


def partition_keys_option(options: dict[str, Any]) -> list[str]:
    keys = options.get("partitionKeys") or []
    if isinstance(keys, str):
        keys = [k.strip() for k in keys.split(",") if k.strip()]
    return list(keys)


def write_s3(
    df: DataFrame,
    path: str,
    format_name: str,
    format_options: dict[str, Any] | None = None,
    partition_keys: Sequence[str] = (),
    compression: str | None = None,
    written_partitions: bool = False,
) -> list[list[str]]:
    """Append ``df`` under ``path``; with ``written_partitions``, the partition values written."""
    format_name = (format_name or "").lower()
    format_options = dict(format_options or {})
    if format_name not in S3_WRITE_FORMATS:
        raise unsupported("DynamicFrameWriter", f"from_options(format={format_name!r})")
    if not path:
        raise ValueError("an S3 write needs connection_options={'path': 's3://bucket/prefix/'}")
    missing = [k for k in partition_keys if k not in df.columns]
    if missing:
        raise ValueError(f"partitionKeys {missing} are not columns of the frame ({', '.join(df.columns)})")
    if not df.columns:
        return []
    writer = (
        df.write.mode("append")
        .option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .option("mapreduce.fileoutputcommitter.algorithm.version", "2")
    )
    if partition_keys:
        writer = writer.partitionBy(*partition_keys)
    compression = format_options.get("compression") or compression
    if compression:
        writer = writer.option("compression", str(compression).lower())
    if format_name in ("parquet", "glueparquet"):
        writer.parquet(_s3a(path))
    elif format_name == "orc":
        writer.orc(_s3a(path))
    elif format_name == "json":
        writer.json(_s3a(path))
    else:
        quote = format_options.get("quoteChar", '"')
        quote = "\u0000" if quote in (-1, "-1") else str(quote)
        options = {
            "sep": str(format_options.get("separator", ",")),
            "quote": quote,
            # RFC 4180: a quote inside a quoted value is doubled, unless an escaper is given
            "escape": str(format_options.get("escaper") or quote),
            "header": str(truthy(format_options.get("writeHeader", True))).lower(),
        }
        writer.options(**options).csv(_s3a(path))
    if not partition_keys or not written_partitions:
        return []
    written = df.select(*[F.col(quoted(k)).cast("string").alias(k) for k in partition_keys]).distinct().collect()
    return [[row[k] if row[k] is not None else "__HIVE_DEFAULT_PARTITION__" for k in partition_keys] for row in written]


class DataSink:
    """What ``getSink`` returns: ``setFormat``, ``setCatalogInfo``, ``writeFrame``/``write``."""

    def __init__(self, glue_context, connection_type: str, transformation_ctx: str = "", **options):
        self._glue_context = glue_context
        self.connection_type = (connection_type or "").lower()
        self.transformation_ctx = transformation_ctx
        self.options = dict(options)
        self.format = options.get("format")
        self.format_options: dict[str, Any] = {}
        self.catalog_database = options.get("catalogDatabase")
        self.catalog_table = options.get("catalogTableName")
        self.catalog_id = options.get("catalogId") or None
        if self.connection_type not in {"s3", *JDBC_TYPES}:
            raise unsupported("GlueContext", f"getSink(connection_type={connection_type!r})")

    def setFormat(self, format, **options):
        self.format = format
        self.format_options = dict(options)

    def setCatalogInfo(self, catalogDatabase, catalogTableName, catalogId=""):
        self.catalog_database = catalogDatabase
        self.catalog_table = catalogTableName
        self.catalog_id = catalogId or None

    def setAccumulableSize(self, size):
        """Accepted; local runs keep no error accumulators."""

    def writeFrame(self, dynamic_frame, info=""):
        self.writeDataFrame(dynamic_frame.toDF(), self._glue_context, info)
        return dynamic_frame

    def writeDataFrame(self, data_frame, glue_context=None, info="", path=None):
        if self.connection_type in JDBC_TYPES:
            jdbc.write(data_frame, jdbc.target_from_options(self.options), self.options)
            return data_frame
        keys = partition_keys_option(self.options)
        format_name = (self.format or "json").lower()
        path = path or self.options.get("path")
        update_catalog = truthy(self.options.get("enableUpdateCatalog", False))
        written = write_s3(
            data_frame, path, format_name, self.format_options, keys, self.options.get("compression"), update_catalog
        )
        if update_catalog:
            if not (self.catalog_database and self.catalog_table):
                raise ValueError("enableUpdateCatalog needs setCatalogInfo(catalogDatabase=..., catalogTableName=...)")
            extra = {}
            if format_name == "csv":
                extra = {"delimiter": str(self.format_options.get("separator", ","))}
                if truthy(self.format_options.get("writeHeader", True)):
                    extra["skip.header.line.count"] = "1"
            catalog.update_table_for_write(
                self.catalog_database, self.catalog_table, data_frame.schema, keys, path, format_name,
                self.options.get("updateBehavior", "UPDATE_IN_DATABASE"), extra, self.catalog_id,
            )  # fmt: skip
            if written:
                catalog.add_partitions(self.catalog_database, self.catalog_table, written, self.catalog_id)
        return data_frame

    def write(self, dynamic_frame_or_dfc, info=""):
        from awsglue.dynamicframe import DynamicFrameCollection

        if not isinstance(dynamic_frame_or_dfc, DynamicFrameCollection):
            return self.writeFrame(dynamic_frame_or_dfc, info)
        # each frame of a collection goes to a folder (a table, for JDBC) named after it
        for key in dynamic_frame_or_dfc.keys():
            frame = dynamic_frame_or_dfc.select(key)
            if self.connection_type in JDBC_TYPES:
                options = {**self.options, "dbtable": key}
                jdbc.write(frame.toDF(), jdbc.target_from_options(options), options)
            else:
                base = self.options.get("path") or ""
                self.writeDataFrame(frame.toDF(), path=base.rstrip("/") + "/" + key + "/")
        return dynamic_frame_or_dfc

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise unsupported("DataSink", name)
