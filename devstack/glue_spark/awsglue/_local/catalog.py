"""The Glue Data Catalog, through boto3 (the emulator's, with ``AWS_ENDPOINT_URL``).

Reading: a table's location, format (``classification``), columns and partitions, and the
partitions a ``push_down_predicate`` keeps. The predicate is Spark SQL evaluated on a small
DataFrame of the partition values (one row per partition, typed as the partition keys), so only
the matching partitions' objects are listed and read.

Writing (``enableUpdateCatalog``): create the table a sink writes, or update its columns, and
add the partitions it wrote, with Hive type names (``bigint``, ``string``, ``struct<...>``) as a
Glue crawler or Glue's own sink writes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from awsglue._local.aws import client
from pyspark.sql import types as T

_TEXT_INPUT = "org.apache.hadoop.mapred.TextInputFormat"
_TEXT_OUTPUT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
# classification -> (InputFormat, OutputFormat, SerDe)
FORMATS = {
    "parquet": (
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
    ),
    "orc": (
        "org.apache.hadoop.hive.ql.io.orc.OrcInputFormat",
        "org.apache.hadoop.hive.ql.io.orc.OrcOutputFormat",
        "org.apache.hadoop.hive.ql.io.orc.OrcSerde",
    ),
    "csv": (_TEXT_INPUT, _TEXT_OUTPUT, "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"),
    "json": (_TEXT_INPUT, _TEXT_OUTPUT, "org.openx.data.jsonserde.JsonSerDe"),
}


def glue():
    return client("glue")


def _catalog(catalog_id: str | None) -> dict[str, str]:
    return {"CatalogId": catalog_id} if catalog_id else {}


def get_table(database: str, table_name: str, catalog_id: str | None = None) -> dict[str, Any]:
    return glue().get_table(DatabaseName=database, Name=table_name, **_catalog(catalog_id))["Table"]


def get_partitions(database: str, table_name: str, catalog_id: str | None = None) -> list[dict[str, Any]]:
    partitions = []
    paginator = glue().get_paginator("get_partitions")
    for page in paginator.paginate(DatabaseName=database, TableName=table_name, **_catalog(catalog_id)):
        partitions.extend(page.get("Partitions", []))
    return partitions


def classification(table: dict[str, Any]) -> str:
    parameters = {**table.get("StorageDescriptor", {}).get("Parameters", {}), **table.get("Parameters", {})}
    found = (parameters.get("classification") or "").lower()
    if found:
        return found
    serde = table.get("StorageDescriptor", {}).get("SerdeInfo", {}).get("SerializationLibrary", "") or ""
    input_format = table.get("StorageDescriptor", {}).get("InputFormat", "") or ""
    for name, (input_, _output, library) in FORMATS.items():
        if serde == library or (input_format == input_ and name in ("parquet", "orc")):
            return name
    return ""


def table_parameters(table: dict[str, Any]) -> dict[str, str]:
    return {**table.get("StorageDescriptor", {}).get("Parameters", {}), **table.get("Parameters", {})}


def spark_type(hive_type: str) -> T.DataType:
    """The Spark type of a catalog column type (``bigint``, ``decimal(10,2)``, ``array<string>``)."""
    text = hive_type.strip()
    try:
        return T._parse_datatype_string(text)
    except Exception:  # an engine-specific name Spark does not know: keep the text
        return T.StringType()


def hive_type(data_type: T.DataType) -> str:
    """The catalog type name of a Spark type."""
    if isinstance(data_type, T.TimestampNTZType):
        return "timestamp"
    if isinstance(data_type, T.NullType):
        return "string"
    if isinstance(data_type, T.ArrayType):
        return f"array<{hive_type(data_type.elementType)}>"
    if isinstance(data_type, T.MapType):
        return f"map<{hive_type(data_type.keyType)},{hive_type(data_type.valueType)}>"
    if isinstance(data_type, T.StructType):
        return "struct<" + ",".join(f"{f.name}:{hive_type(f.dataType)}" for f in data_type.fields) + ">"
    return data_type.simpleString()


def schema_of(table: dict[str, Any]) -> T.StructType:
    """The table's columns then its partition keys, as a Spark schema."""
    columns = table.get("StorageDescriptor", {}).get("Columns", []) + table.get("PartitionKeys", [])
    return T.StructType([T.StructField(c["Name"], spark_type(c.get("Type", "string"))) for c in columns])


def _storage_descriptor(
    columns: list[dict[str, str]], location: str, format_name: str, parameters: dict[str, str]
) -> dict[str, Any]:
    input_format, output_format, serde = FORMATS.get(format_name, FORMATS["parquet"])
    serde_parameters = {"serialization.format": "1"}
    if format_name == "csv":
        serde_parameters = {"field.delim": parameters.get("delimiter", ",")}
    return {
        "Columns": columns,
        "Location": location,
        "InputFormat": input_format,
        "OutputFormat": output_format,
        "Compressed": False,
        "NumberOfBuckets": -1,
        "SerdeInfo": {"SerializationLibrary": serde, "Parameters": serde_parameters},
        "BucketColumns": [],
        "SortColumns": [],
        "Parameters": parameters,
        "StoredAsSubDirectories": False,
    }


def table_columns(schema: T.StructType, partition_keys: Sequence[str]) -> list[dict[str, str]]:
    return [{"Name": f.name, "Type": hive_type(f.dataType)} for f in schema.fields if f.name not in partition_keys]


def update_table_for_write(
    database: str,
    table_name: str,
    schema: T.StructType,
    partition_keys: Sequence[str],
    location: str,
    format_name: str,
    update_behavior: str = "UPDATE_IN_DATABASE",
    extra_parameters: dict[str, str] | None = None,
    catalog_id: str | None = None,
) -> dict[str, Any]:
    """Create the table a sink wrote, or (UPDATE_IN_DATABASE) merge the new columns into it."""
    format_name = "parquet" if format_name == "glueparquet" else format_name
    parameters = {"classification": format_name, **(extra_parameters or {})}
    columns = table_columns(schema, partition_keys)
    by_name = {f.name: f for f in schema.fields}
    keys = [{"Name": k, "Type": hive_type(by_name[k].dataType) if k in by_name else "string"} for k in partition_keys]
    try:
        current = get_table(database, table_name, catalog_id)
    except glue().exceptions.EntityNotFoundException:
        table_input = {
            "Name": table_name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": parameters,
            "PartitionKeys": keys,
            "StorageDescriptor": _storage_descriptor(columns, location, format_name, parameters),
        }
        glue().create_table(DatabaseName=database, TableInput=table_input, **_catalog(catalog_id))
        return table_input
    if update_behavior != "UPDATE_IN_DATABASE":
        return current
    descriptor = dict(current.get("StorageDescriptor", {}))
    merged = list(descriptor.get("Columns", []))
    known = {c["Name"]: index for index, c in enumerate(merged)}
    for column in columns:
        if column["Name"] in known:
            merged[known[column["Name"]]] = {**merged[known[column["Name"]]], "Type": column["Type"]}
        else:
            merged.append(column)
    descriptor["Columns"] = merged
    descriptor.setdefault("Location", location)
    table_input = {
        key: current[key]
        for key in ("Name", "Description", "Owner", "Retention", "PartitionKeys", "TableType", "Parameters")
        if key in current
    }
    table_input["StorageDescriptor"] = descriptor
    if not table_input.get("PartitionKeys") and keys:
        table_input["PartitionKeys"] = keys
    glue().update_table(DatabaseName=database, TableInput=table_input, **_catalog(catalog_id))
    return table_input


_ESCAPED = set("\"#%'*/:=?\\\x7f{[]^") | {chr(c) for c in range(1, 32)}


def escape_path_name(value: str) -> str:
    """A partition value as Spark writes it in a folder name (Hive's escaping)."""
    return "".join(f"%{ord(c):02X}" if c in _ESCAPED else c for c in value)


def partition_location(location: str, keys: Sequence[str], values: Sequence[str]) -> str:
    base = location if location.endswith("/") else location + "/"
    return base + "".join(f"{escape_path_name(k)}={escape_path_name(v)}/" for k, v in zip(keys, values, strict=True))


def add_partitions(
    database: str,
    table_name: str,
    partition_values: Iterable[Sequence[str]],
    catalog_id: str | None = None,
) -> list[list[str]]:
    """Add the partitions that do not exist yet (located in the table's folder); the new ones."""
    table = get_table(database, table_name, catalog_id)
    keys = [k["Name"] for k in table.get("PartitionKeys", [])]
    if not keys:
        return []
    existing = {tuple(p["Values"]) for p in get_partitions(database, table_name, catalog_id)}
    wanted = sorted({tuple(v) for v in partition_values} - existing)
    descriptor = table.get("StorageDescriptor", {})
    format_name = classification(table) or "parquet"
    parameters = table_parameters(table)
    inputs = []
    for values in wanted:
        location = partition_location(descriptor.get("Location", ""), keys, values)
        partition_descriptor = _storage_descriptor(descriptor.get("Columns", []), location, format_name, parameters)
        inputs.append({"Values": list(values), "StorageDescriptor": partition_descriptor, "Parameters": parameters})
    for start in range(0, len(inputs), 100):
        glue().batch_create_partition(
            DatabaseName=database, TableName=table_name, PartitionInputList=inputs[start : start + 100],
            **_catalog(catalog_id),
        )  # fmt: skip
    return [list(v) for v in wanted]
