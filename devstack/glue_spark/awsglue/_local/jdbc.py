"""PostgreSQL reads and writes for local Glue runs, without a JDBC driver.

No PostgreSQL JDBC driver jar is available to the local Spark (and none is downloaded), so
``connection_type="postgresql"`` sources and sinks, JDBC catalog tables (classification
``postgresql``) and ``from_jdbc_conf`` go through psycopg2 on the driver instead:

- a read runs ``SELECT * FROM <dbtable>`` (or the ``query``/``sampleQuery`` option) with a
  server-side cursor and builds a Spark DataFrame from the rows, typed from PostgreSQL's column
  types (integer -> int, bigint -> bigint, numeric(p,s) -> decimal(p,s), numeric without a
  precision -> decimal(38,18), real/double -> float/double, boolean, date, timestamp[tz] ->
  timestamp, bytea -> binary; text, varchar, json, jsonb, uuid and everything else -> string);
- a write appends the DataFrame's rows (``toLocalIterator``) with ``COPY ... FROM STDIN`` in
  CSV, in one transaction, creating the table first when it does not exist (as Spark's JDBC
  writer does).

Connection details come from ``url``/``user``/``password`` options, or from a Glue connection
(``connectionName`` with ``useConnectionProperties``, or ``catalog_connection`` of
``from_jdbc_conf``): ``JDBC_CONNECTION_URL``, ``USERNAME``/``PASSWORD`` or ``SECRET_ID`` (a
Secrets Manager secret with ``username`` and ``password``), read through boto3. All the data
passes through the driver process, which suits local runs, not big tables. Other engines
(mysql, sqlserver, oracle, redshift...) are not supported.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import psycopg2
import psycopg2.extras
from awsglue._local.aws import client
from psycopg2 import sql
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import types as T

_URL = re.compile(
    r"^jdbc:postgresql://(?P<host>[^/:?;]+)(?::(?P<port>\d+))?(?:/(?P<database>[^?;]*))?(?:[?;](?P<params>.*))?$"
)
_BATCH_ROWS = 10_000

# PostgreSQL type oid -> Spark type
_TYPES = {
    16: T.BooleanType(),
    17: T.BinaryType(),
    20: T.LongType(),
    21: T.ShortType(),
    23: T.IntegerType(),
    26: T.LongType(),
    700: T.FloatType(),
    701: T.DoubleType(),
    1082: T.DateType(),
    1114: T.TimestampType(),
    1184: T.TimestampType(),
}
_NUMERIC = 1700


@dataclass(frozen=True)
class PostgresTarget:
    host: str
    port: int
    database: str
    user: str | None
    password: str | None
    params: dict[str, str]

    def connect(self):
        return psycopg2.connect(
            host=self.host, port=self.port, dbname=self.database, user=self.user, password=self.password,
            **{k: v for k, v in self.params.items() if k in ("sslmode", "connect_timeout", "application_name")},
        )  # fmt: skip

    def describe(self) -> str:
        return f"postgresql://{self.host}:{self.port}/{self.database}"


def parse_url(url: str, user: str | None, password: str | None, database: str | None = None) -> PostgresTarget:
    match = _URL.match(url or "")
    if not match:
        raise ValueError(f"not a PostgreSQL JDBC URL: {url!r} (expected jdbc:postgresql://host:port/database)")
    params = dict(parse_qsl(match.group("params") or "", keep_blank_values=True))
    user = user or params.pop("user", None)
    password = password or params.pop("password", None)
    return PostgresTarget(
        match.group("host"), int(match.group("port") or 5432), database or match.group("database") or "postgres",
        user, password, params,
    )  # fmt: skip


def connection_properties(name: str, catalog_id: str | None = None) -> dict[str, str]:
    """The JDBC properties of a Glue connection, with the secret's credentials resolved."""
    kwargs = {"CatalogId": catalog_id} if catalog_id else {}
    connection = client("glue").get_connection(Name=name, HidePassword=False, **kwargs)["Connection"]
    properties = dict(connection.get("ConnectionProperties", {}))
    secret_id = properties.get("SECRET_ID") or properties.get("secretId")
    if secret_id and not properties.get("PASSWORD"):
        secret = json.loads(client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])
        properties.setdefault("USERNAME", secret.get("username", ""))
        properties["PASSWORD"] = secret.get("password", "")
    return properties


def target_from_options(options: dict[str, Any], catalog_connection: str | None = None) -> PostgresTarget:
    """Where a postgresql source/sink points: explicit options, else its Glue connection."""
    connection_name = catalog_connection or options.get("connectionName")
    url, user, password = options.get("url"), options.get("user"), options.get("password")
    use_connection = str(options.get("useConnectionProperties")).lower() == "true"
    if connection_name and (catalog_connection or not url or use_connection):
        properties = connection_properties(connection_name, options.get("catalogId"))
        url = url or properties.get("JDBC_CONNECTION_URL")
        user = user or properties.get("USERNAME")
        password = password or properties.get("PASSWORD")
    if not url:
        raise ValueError("a postgresql connection needs 'url' (or a Glue connection through 'connectionName')")
    return parse_url(url, user, password, options.get("database"))


def _table_identifier(dbtable: str) -> sql.Composable:
    if "(" in dbtable or '"' in dbtable or " " in dbtable.strip():
        return sql.SQL(dbtable)  # a subquery or an already quoted name
    return sql.Identifier(*dbtable.split("."))


def _spark_type(description) -> T.DataType:
    if description.type_code == _NUMERIC:
        precision, scale = description.precision, description.scale
        if precision and 0 < precision <= 38:
            return T.DecimalType(precision, max(scale or 0, 0))
        return T.DecimalType(38, 18)
    return _TYPES.get(description.type_code, T.StringType())


def _python_value(value: Any, data_type: T.DataType) -> Any:
    if value is None:
        return None
    if isinstance(data_type, T.StringType) and not isinstance(value, str):
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        return str(value)
    if isinstance(data_type, T.BinaryType):
        return bytearray(value)
    return value


def read(spark: SparkSession, target: PostgresTarget, options: dict[str, Any]) -> DataFrame:
    query = options.get("query") or options.get("sampleQuery")
    dbtable = options.get("dbtable")
    if not query and not dbtable:
        raise ValueError("a postgresql read needs 'dbtable' (schema.table) or 'query'")
    statement = sql.SQL(query) if query else sql.SQL("SELECT * FROM {}").format(_table_identifier(dbtable))
    connection = target.connect()
    try:
        psycopg2.extras.register_default_json(connection, loads=lambda text: text)
        psycopg2.extras.register_default_jsonb(connection, loads=lambda text: text)
        with connection.cursor(name="awsglue_local_read") as cursor:
            cursor.itersize = _BATCH_ROWS
            cursor.execute(statement)
            rows = cursor.fetchmany(_BATCH_ROWS)
            schema = T.StructType([T.StructField(d.name, _spark_type(d)) for d in cursor.description])
            types = [f.dataType for f in schema.fields]
            data = []
            while rows:
                data.extend(tuple(_python_value(v, t) for v, t in zip(row, types, strict=True)) for row in rows)
                rows = cursor.fetchmany(_BATCH_ROWS)
    finally:
        connection.close()
    return spark.createDataFrame(data, schema)


_POSTGRES_TYPES = {
    T.StringType: "text",
    T.IntegerType: "integer",
    T.LongType: "bigint",
    T.ShortType: "smallint",
    T.ByteType: "smallint",
    T.DoubleType: "double precision",
    T.FloatType: "real",
    T.BooleanType: "boolean",
    T.DateType: "date",
    T.TimestampType: "timestamp",
    T.TimestampNTZType: "timestamp",
    T.BinaryType: "bytea",
}


def _postgres_type(data_type: T.DataType) -> str:
    if isinstance(data_type, T.DecimalType):
        return f"numeric({data_type.precision},{data_type.scale})"
    for cls, name in _POSTGRES_TYPES.items():
        if isinstance(data_type, cls):
            return name
    return "text"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Row):
        return {k: _jsonable(v) for k, v in value.asDict().items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime, decimal.Decimal)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return value


def _csv_value(value: Any) -> Any:
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (Row, dict, list, tuple)):
        return json.dumps(_jsonable(value))
    return str(value)


def write(df: DataFrame, target: PostgresTarget, options: dict[str, Any]) -> int:
    """Append the rows of ``df`` to ``dbtable``; the number of rows written."""
    dbtable = options.get("dbtable")
    if not dbtable:
        raise ValueError("a postgresql write needs 'dbtable' (schema.table)")
    table = _table_identifier(dbtable)
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in df.columns)
    connection = target.connect()
    written = 0
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s)", (dbtable,))
            if cursor.fetchone()[0] is None:
                definitions = sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(_postgres_type(f.dataType)))
                    for f in df.schema.fields
                )
                cursor.execute(sql.SQL("CREATE TABLE {} ({})").format(table, definitions))
            copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(table, columns).as_string(cursor)
            buffer, writer = io.StringIO(), None
            writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
            for row in df.toLocalIterator():
                writer.writerow([_csv_value(v) for v in row])
                written += 1
                if written % _BATCH_ROWS == 0:
                    buffer.seek(0)
                    cursor.copy_expert(copy, buffer)
                    buffer.seek(0)
                    buffer.truncate()
            if buffer.tell():
                buffer.seek(0)
                cursor.copy_expert(copy, buffer)
    finally:
        connection.close()
    return written
