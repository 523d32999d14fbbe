"""Reading S3 objects (json, csv, parquet, orc) for DynamicFrames, and ``create_data_frame``.

An S3 read lists the objects itself (boto3), then hands Spark the explicit object paths (as
``s3a://``, whatever ``fs.s3.impl`` says), so exclusions, partition predicates and job
bookmarks choose exactly which objects are read:

- ``paths``: each an object or a folder; a folder's objects directly in it, or all below it with
  ``recurse``. Folder markers, empty objects and names starting with ``_`` or ``.`` are skipped;
  ``exclusions`` (a JSON list of globs, ``**`` crossing folders) drops matching objects;
- ``key=value`` folders between a path and its objects become string columns (Hive
  partitions), filtered by a ``push_down_predicate`` before anything is read;
- with a job bookmark (see ``bookmarks``) and a ``transformation_ctx``, the objects recorded by
  the last committed run are skipped and the ones read are recorded;
- JSON and CSV columns get Glue's types and choices (``schema_inference``); parquet schemas are
  merged across objects; gzip/bzip2 objects are read by their suffix, as Spark does.

``groupFiles``, ``groupSize``, ``compressionType`` and other tuning options are accepted and
have no effect.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

from awsglue._local import bookmarks, schema_inference
from awsglue._local.aws import S3Object, glob_matcher, list_objects
from awsglue._local.unsupported import unsupported
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

S3_FORMATS = {"json", "csv", "parquet", "glueparquet", "orc"}
_SIMPLE_PATH = re.compile(r"^[A-Za-z0-9/._=+,~@-]*$")
_GLOB_CHARS = re.compile(r"([\\*?\[\]{}])")


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def quoted(name: str) -> str:
    """A column name for ``F.col`` and SQL, quoted."""
    return "`" + name.replace("`", "``") + "`"


def frame_name(paths: Sequence[str]) -> str:
    """The name AWS gives a frame read from ``paths``: their common prefix without ``:/.``."""
    prefix = os.path.commonprefix(list(paths)) if paths else ""
    return re.sub(r"[:/.]", "", prefix.split(":")[-1])


def spark_path(url: str) -> str:
    """An s3:// url as a Spark path: s3a://, with Hadoop's glob characters escaped."""
    url = re.sub(r"^s3[n]?://", "s3a://", url)
    return _GLOB_CHARS.sub(r"\\\1", url)


def _file_uri(spark: SparkSession, url: str) -> str:
    """What ``input_file_name()`` reports for an object read through ``spark_path(url)``."""
    s3a = re.sub(r"^s3[n]?://", "s3a://", url)
    if _SIMPLE_PATH.match(s3a[len("s3a://") :]):
        return s3a
    return spark.sparkContext._jvm.org.apache.hadoop.fs.Path(s3a).toUri().toString()


def _paths_option(connection_options: dict[str, Any]) -> list[str]:
    paths = connection_options.get("paths", connection_options.get("path"))
    if paths is None:
        raise ValueError("connection_options must name the S3 objects to read in 'paths' (a list of s3:// paths)")
    if isinstance(paths, str):
        paths = [p.strip() for p in paths.split(",")] if "," in paths else [paths]
    return list(paths)


def _exclusions(connection_options: dict[str, Any]):
    exclusions = connection_options.get("exclusions")
    if not exclusions:
        return None
    if isinstance(exclusions, str):
        exclusions = json.loads(exclusions)
    return glob_matcher(list(exclusions))


def list_s3_objects(connection_options: dict[str, Any], recurse: bool | None = None) -> list[S3Object]:
    """The objects a ``from_options`` read of S3 would read (before predicates and bookmarks)."""
    if recurse is None:
        recurse = truthy(connection_options.get("recurse", False))
    excluded = _exclusions(connection_options)
    objects, seen = [], set()
    for path in _paths_option(connection_options):
        for obj in list_objects(path, recurse=recurse):
            if obj.url in seen or (excluded and excluded(obj)):
                continue
            seen.add(obj.url)
            objects.append(obj)
    return objects


def sql_string(value: str | None) -> str:
    """A Spark SQL string literal (or NULL)."""
    if value is None:
        return "NULL"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def filter_by_predicate(
    spark: SparkSession,
    keys: Sequence[str],
    key_types: dict[str, T.DataType],
    value_rows: Sequence[Sequence[str | None]],
    predicate: str,
) -> list[bool]:
    """For each row of partition values, whether the Spark SQL ``predicate`` holds.

    The values are an inline table (``VALUES``), which Spark evaluates on the driver.
    """
    if not predicate or not predicate.strip() or not value_rows:
        return [True] * len(value_rows)
    values = ", ".join(
        "(" + ", ".join([str(i), *[sql_string(v) for v in (list(row) + [None] * len(keys))[: len(keys)]]]) + ")"
        for i, row in enumerate(value_rows)
    )
    names = ", ".join(["__index", *[quoted(k) for k in keys]])
    frame = spark.sql(f"SELECT * FROM VALUES {values} AS partitions({names})")
    typed = frame.select("__index", *[F.col(quoted(k)).cast(key_types.get(k, T.StringType())).alias(k) for k in keys])
    kept = {row["__index"] for row in typed.where(predicate).select("__index").collect()}
    return [i in kept for i in range(len(value_rows))]


def apply_bookmark(transformation_ctx: str, objects: list[S3Object]) -> tuple[list[S3Object], Any]:
    """The objects a bookmarked read must read, and a callback recording them."""
    session = bookmarks.current()
    if session is None or not session.active or not transformation_ctx:
        return objects, lambda: None
    fresh = session.unprocessed(transformation_ctx, {o.url: o.tag for o in objects})
    selected = [o for o in objects if o.url in fresh]

    def record() -> None:
        session.record(transformation_ctx, {o.url: o.tag for o in selected})

    return selected, record


def _csv_reader_options(format_options: dict[str, Any]) -> tuple[dict[str, str], bool, bool]:
    quote = format_options.get("quoteChar", '"')
    if quote in (-1, "-1", None, ""):
        quote = "\u0000"
    escape = format_options.get("escaper") or quote
    with_header = truthy(format_options.get("withHeader", False))
    skip_first = truthy(format_options.get("skipFirst", False))
    options = {
        "sep": str(format_options.get("separator", format_options.get("delimiter", ","))),
        "quote": str(quote),
        "escape": str(escape),
        "header": str(with_header or skip_first).lower(),
        "multiLine": str(truthy(format_options.get("multiLine", format_options.get("multiline", False)))).lower(),
        "inferSchema": "false",
        "mode": "PERMISSIVE",
    }
    return options, with_header, skip_first


def _json_reader_options(format_options: dict[str, Any]) -> dict[str, str]:
    if format_options.get("jsonPath"):
        raise unsupported("DynamicFrameReader", "from_options(format_options={'jsonPath': ...})")
    multiline = format_options.get("multiline", format_options.get("multiLine", False))
    return {"multiLine": str(truthy(multiline)).lower(), "mode": "PERMISSIVE"}


def read_files(
    spark: SparkSession,
    paths: list[str],
    format_name: str,
    format_options: dict[str, Any],
    column_names: Sequence[str] | None = None,
) -> tuple[DataFrame, dict[str, tuple[str, ...]]]:
    """The data of the given objects (spark paths) in a format, with Glue's types and choices.

    ``column_names`` names the columns of a headerless CSV (else ``col0``, ``col1``...).
    """
    format_name = (format_name or "").lower()
    if format_name == "json":
        options = _json_reader_options(format_options)
        df = spark.read.options(**options).json(paths)
        if "_corrupt_record" in df.columns:
            df = df.drop("_corrupt_record")

        def probe(schema: T.StructType) -> DataFrame:
            return spark.read.options(**options).schema(schema).json(paths)

        return schema_inference.json_types(df, probe)
    if format_name == "csv":
        options, with_header, skip_first = _csv_reader_options(format_options)
        df = spark.read.options(**options).csv(paths)
        if not with_header or skip_first:
            names = [f"col{i}" for i in range(len(df.columns))]
            for i, name in enumerate(list(column_names or [])[: len(names)]):
                names[i] = name
            df = df.toDF(*names)
        return schema_inference.csv_types(df)
    if format_name in ("parquet", "glueparquet"):
        return spark.read.option("mergeSchema", "true").parquet(*paths), {}
    if format_name == "orc":
        return spark.read.orc(paths), {}
    raise unsupported("DynamicFrameReader", f"from_options(format={format_name!r})")


def load_objects(
    spark: SparkSession,
    objects: list[S3Object],
    format_name: str,
    format_options: dict[str, Any],
    partition_keys: Sequence[str] = (),
    partition_values: dict[str, Sequence[str | None]] | None = None,
    partition_types: dict[str, T.DataType] | None = None,
    empty_schema: T.StructType | None = None,
    column_names: Sequence[str] | None = None,
) -> tuple[DataFrame, dict[str, tuple[str, ...]]]:
    """Read the objects; ``partition_values`` (object url -> values) adds the partition columns."""
    partition_types = partition_types or {}
    if not objects:
        return spark.createDataFrame([], empty_schema or T.StructType([])), {}
    df, choices = read_files(spark, [spark_path(o.url) for o in objects], format_name, format_options, column_names)
    if partition_keys and partition_values is not None:
        # each object's partition values, looked up by the file Spark reports for each row
        file_column = F.input_file_name()
        df = df.drop(*[k for k in partition_keys if k in df.columns])
        choices = {name: types for name, types in choices.items() if name not in partition_keys}
        uris = [_file_uri(spark, o.url) for o in objects]
        columns = [F.col(quoted(c)) for c in df.columns]
        for index, key in enumerate(partition_keys):
            pairs = []
            for obj, uri in zip(objects, uris, strict=True):
                value = list(partition_values.get(obj.url, []) or [])
                pairs += [F.lit(uri), F.lit(value[index] if index < len(value) else None).cast(T.StringType())]
            column = F.create_map(*pairs)[file_column]
            if key in partition_types:
                column = column.cast(partition_types[key])
            columns.append(column.alias(key))
        df = df.select(*columns)
    return df, choices


def read_s3(
    glue_ctx,
    connection_options: dict[str, Any],
    format_name: str,
    format_options: dict[str, Any],
    transformation_ctx: str = "",
    push_down_predicate: str = "",
) -> tuple[DataFrame, dict[str, tuple[str, ...]]]:
    """``create_dynamic_frame.from_options(connection_type="s3", ...)``: a DataFrame and its choices."""
    if (format_name or "").lower() not in S3_FORMATS:
        raise unsupported("DynamicFrameReader", f"from_options(format={format_name!r})")
    spark = glue_ctx.spark_session
    objects = list_s3_objects(connection_options)
    values_by_object = [o.partition_values() for o in objects]
    keys: list[str] = []
    for values in values_by_object:
        keys.extend(k for k in values if k not in keys)
    rows = [tuple(values.get(k) for k in keys) for values in values_by_object]
    if keys and push_down_predicate:
        kept = filter_by_predicate(spark, keys, {}, rows, push_down_predicate)
        objects = [o for o, keep in zip(objects, kept, strict=True) if keep]
        rows = [r for r, keep in zip(rows, kept, strict=True) if keep]
    partition_values = {o.url: row for o, row in zip(objects, rows, strict=True)}
    objects, record = apply_bookmark(transformation_ctx, objects)
    df, choices = load_objects(spark, objects, format_name, format_options, keys, partition_values)
    record()
    return df, choices


class DataFrameReader:
    """``glueContext.create_data_frame``: ``from_catalog`` and ``from_options``, as DataFrames."""

    def __init__(self, glue_context):
        self._glue_context = glue_context

    def from_catalog(self, database=None, table_name=None, redshift_tmp_dir="", transformation_ctx="",
                     push_down_predicate="", additional_options=None, catalog_id=None, **kwargs):  # fmt: skip
        if database is not None and "name_space" in kwargs:
            raise Exception("Parameter name_space and database are both specified, choose one.")
        if database is None and "name_space" not in kwargs:
            raise Exception("Parameter name_space or database is missing.")
        database = kwargs.pop("name_space", database)
        if table_name is None:
            raise Exception("Parameter table_name is missing.")
        return self._glue_context.create_data_frame_from_catalog(
            database, table_name, redshift_tmp_dir, transformation_ctx, push_down_predicate,
            additional_options or {}, catalog_id, **kwargs,
        )  # fmt: skip

    def from_options(self, connection_type, connection_options=None, format=None, format_options=None,
                     transformation_ctx="", push_down_predicate="", **kwargs):  # fmt: skip
        return self._glue_context.create_data_frame_from_options(
            connection_type, connection_options or {}, format, format_options or {}, transformation_ctx,
            push_down_predicate, **kwargs,
        )  # fmt: skip

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise unsupported("DataFrameReader", name)
