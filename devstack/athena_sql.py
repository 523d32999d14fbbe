"""The SQL side of the local Athena engine (``devstack.athena``): pure functions, no emulator.

- Athena's SQL (Trino's dialect) is parsed with sqlglot (dialect ``athena``) and generated for
  DuckDB, with the few rewrites sqlglot's own transpilation lacks (``to_duckdb``);
- Athena's errors: ``AthenaQueryError`` carries the error name Athena puts first in a failed
  query's ``StateChangeReason`` (``TABLE_NOT_FOUND``, ``COLUMN_NOT_FOUND``, ``SYNTAX_ERROR``...),
  its ``line L:C`` position in the statement as sent, and the ``AthenaError`` category and type;
- Athena's result types and values: ``column_info`` names a DuckDB result type as Athena's
  ``ColumnInfo`` does (varchar, bigint, decimal with Precision and Scale, array, row, map...), and
  ``format_value`` renders a value as Athena's ``VarCharValue`` and result CSV do (doubles as
  Java prints them, timestamps to the millisecond, arrays ``[a, b]``, rows ``{x=1, y=2}``);
- Glue's Hive column types as DuckDB types, and DuckDB result types as Hive types (CTAS tables).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

# AthenaError.ErrorCategory: 1 SYSTEM, 2 USER (Athena's error catalog)
SYSTEM, USER = 1, 2
# AthenaError.ErrorType of the errors raised here, as Athena reports them for the same failures
# (1301: a table or schema not found; 1006: a statement that does not analyse, such as a column
# that cannot be resolved; 1200: not supported; 1001: bad data; 200: internal engine error).
ERROR_TYPES = {
    "TABLE_NOT_FOUND": 1301,
    "SCHEMA_NOT_FOUND": 1301,
    "CATALOG_NOT_FOUND": 1301,
    "TABLE_ALREADY_EXISTS": 1301,
    "COLUMN_NOT_FOUND": 1006,
    "SYNTAX_ERROR": 1006,
    "FUNCTION_NOT_FOUND": 1006,
    "TYPE_MISMATCH": 1006,
    "INVALID_PARAMETER_USAGE": 1006,
    "NOT_SUPPORTED": 1200,
    "INVALID_CAST_ARGUMENT": 1001,
    "INVALID_FUNCTION_ARGUMENT": 1001,
    "NUMERIC_VALUE_OUT_OF_RANGE": 1001,
    "HIVE_PATH_ALREADY_EXISTS": 1001,
    "HIVE_BAD_DATA": 1001,
    "EXCEEDED_MEMORY_LIMIT": 2,
    "GENERIC_INTERNAL_ERROR": 200,
}


class AthenaQueryError(Exception):
    """A query that fails as Athena fails it: ``reason`` is its ``Status.StateChangeReason``."""

    def __init__(self, name: str, message: str, position: tuple[int, int] | None = None):
        self.name = name
        self.message = message
        self.position = position
        where = f"line {position[0]}:{position[1]}: " if position else ""
        self.reason = f"{name}: {where}{message}"
        super().__init__(self.reason)

    @property
    def category(self) -> int:
        return SYSTEM if self.name in ("GENERIC_INTERNAL_ERROR", "EXCEEDED_MEMORY_LIMIT") else USER

    @property
    def error_type(self) -> int:
        return ERROR_TYPES.get(self.name, 1000)

    def athena_error(self) -> dict[str, Any]:
        return {
            "ErrorCategory": self.category,
            "ErrorType": self.error_type,
            "Retryable": False,
            "ErrorMessage": self.reason,
        }


# --- positions ----------------------------------------------------------------------------------


def position(sql: str, offset: int) -> tuple[int, int]:
    """Trino's ``line:column`` (both 1-based) of a character offset in the statement."""
    offset = max(0, min(offset, len(sql)))
    line = sql.count("\n", 0, offset) + 1
    return line, offset - (sql.rfind("\n", 0, offset) + 1) + 1


def node_position(sql: str, node: exp.Expression) -> tuple[int, int] | None:
    """Where a table or column reference starts in the statement (its first identifier)."""
    starts = [ident.meta["start"] for ident in node.find_all(exp.Identifier) if "start" in ident.meta]
    return position(sql, min(starts)) if starts else None


# --- parsing ------------------------------------------------------------------------------------


def parse(sql: str) -> exp.Expression:
    """The one statement of ``sql``, or SYNTAX_ERROR at the first token sqlglot cannot parse."""
    try:
        statements = [statement for statement in sqlglot.parse(sql, read="athena") if statement is not None]
    except ParseError as exc:
        error = exc.errors[0] if exc.errors else {}
        line, col = error.get("line") or 1, error.get("col") or 1
        highlight = error.get("highlight") or ""
        # sqlglot's column is the last character of the offending token; Trino's is its first
        col = max(1, col - len(highlight) + 1)
        detail = f"mismatched input '{highlight}'. " if highlight else ""
        raise AthenaQueryError(
            "SYNTAX_ERROR", f"{detail}{error.get('description', 'cannot parse')}", (line, col)
        ) from exc
    except TokenError as exc:
        raise AthenaQueryError("SYNTAX_ERROR", str(exc), (1, 1)) from exc
    if not statements:
        raise AthenaQueryError("SYNTAX_ERROR", "mismatched input '<EOF>'. Expecting: a statement", (1, 1))
    if len(statements) > 1:
        raise AthenaQueryError("SYNTAX_ERROR", "only one SQL statement is allowed", (1, 1))
    return statements[0]


def statement_kind(statement: exp.Expression) -> str:
    """query, show, ctas, drop_table, or the statement's own kind (which is not supported)."""
    if isinstance(statement, exp.Query):
        return "query"
    if isinstance(statement, exp.Command) and str(statement.this).upper() == "SHOW":
        return "show"
    if isinstance(statement, exp.Create) and statement.args.get("kind") == "TABLE":
        return "ctas" if isinstance(statement.expression, exp.Query) else "CREATE TABLE"
    if isinstance(statement, exp.Drop) and statement.args.get("kind") == "TABLE":
        return "drop_table"
    if isinstance(statement, exp.Command):
        return str(statement.this).upper()
    kind = statement.args.get("kind")
    return f"{type(statement).__name__.upper()} {kind}" if isinstance(kind, str) else type(statement).__name__.upper()


def bind_parameters(statement: exp.Expression, parameters: Sequence[str] | None) -> exp.Expression:
    """``ExecutionParameters``: each ``?`` takes the next parameter, itself a SQL literal."""
    placeholders = [node for node in statement.find_all(exp.Placeholder) if node.this is None]
    parameters = list(parameters or [])
    if len(placeholders) != len(parameters):
        raise AthenaQueryError(
            "INVALID_PARAMETER_USAGE",
            f"Incorrect number of parameters: expected {len(placeholders)} but found {len(parameters)}",
        )
    for placeholder, parameter in zip(placeholders, parameters, strict=True):
        try:
            value = sqlglot.parse_one(parameter, read="athena")
        except ParseError as exc:
            raise AthenaQueryError("INVALID_PARAMETER_USAGE", f"parameter {parameter!r} is not a literal") from exc
        placeholder.replace(value)
    return statement


# --- what a query reads -------------------------------------------------------------------------


def cte_names(statement: exp.Expression) -> set[str]:
    return {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}


def referenced_names(statement: exp.Expression) -> set[str] | None:
    """Every name the statement mentions (lower case): a superset of the table columns it reads.
    None when it selects ``*`` (every column is read)."""
    for star in statement.find_all(exp.Star):
        if isinstance(star.parent, (exp.Select, exp.Column)):
            return None
    return {identifier.name.lower() for identifier in statement.find_all(exp.Identifier)}


def partition_conjuncts(table: exp.Table, partition_keys: Iterable[str]) -> list[exp.Expression]:
    """The conjuncts of the WHERE of the table's SELECT that reference only its partition keys
    (unqualified, or qualified with its alias or name), columns unqualified: what selects the
    partitions it reads. A conjunct naming anything else (another table's column, a subquery, an
    aggregate) is left to the query itself."""
    select = table.find_ancestor(exp.Select)
    where = select.args.get("where") if select else None
    if where is None:
        return []
    keys = {key.lower() for key in partition_keys}
    names = {table.name.lower(), table.alias_or_name.lower()}
    sources = [select.args.get("from_") or select.args.get("from")] + list(select.args.get("joins") or [])
    tables = [node for source in sources if source for node in source.find_all(exp.Table)]
    # columns an UNNEST in the same FROM produces would shadow an unqualified partition key
    shadowing = {
        column.name.lower()
        for source in sources
        if source
        for unnest in source.find_all(exp.Unnest)
        for column in (unnest.args.get("alias").columns if unnest.args.get("alias") else [])
    }
    condition = where.this
    conjuncts = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
    selected = []
    for conjunct in conjuncts:
        if conjunct.find(exp.Subquery, exp.AggFunc, exp.Placeholder, exp.Window):
            continue
        columns = list(conjunct.find_all(exp.Column))
        if not columns:
            continue
        usable = True
        for column in columns:
            qualifier = column.table.lower()
            if column.name.lower() not in keys:
                usable = False
            elif qualifier and qualifier not in names:
                usable = False
            elif not qualifier and (len(tables) > 1 or column.name.lower() in shadowing):
                usable = False
        if usable:
            pruned = conjunct.copy()
            for column in pruned.find_all(exp.Column):
                column.replace(exp.column(column.name.lower(), quoted=True))
            selected.append(pruned)
    return selected


# --- Athena SQL -> DuckDB SQL -------------------------------------------------------------------


def to_duckdb(statement: exp.Expression, name_columns: bool = True) -> str:
    """DuckDB's SQL for an Athena query (already bound to DuckDB relations).

    sqlglot transpiles nearly everything; the rewrites below fix what it gets wrong for DuckDB:

    - ``cardinality(x)`` becomes ``ARRAY_LENGTH(x)``, which fails on a map: DuckDB's own
      ``cardinality`` counts both arrays and maps;
    - ``CROSS JOIN UNNEST(array_of_rows) AS t(a, b)``: Trino expands each row into the columns
      named, DuckDB's UNNEST yields the row itself; the rows are expanded with a lateral subquery;
    - unnamed result columns are named ``_col0``, ``_col1``... as Athena names them (DuckDB would
      name them after the expression).
    """
    statement = statement.copy()
    if name_columns:
        _name_result_columns(statement)
    statement = statement.transform(_duckdb_fixes)
    return statement.sql(dialect="duckdb")


def _duckdb_fixes(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.ArraySize):
        return exp.Anonymous(this="CARDINALITY", expressions=[node.this])
    if isinstance(node, exp.Unnest) and isinstance(node.parent, (exp.From, exp.Join)):
        alias = node.args.get("alias")
        columns = alias.columns if alias else []
        if len(node.expressions) == 1 and len(columns) > 1 and not node.args.get("offset"):
            # (SELECT __row.* FROM (SELECT UNNEST(x) AS __row)) AS t(a, b), joined laterally
            inner = exp.select(exp.alias_(exp.Unnest(expressions=[node.expressions[0].copy()]), "__row"))
            expanded = exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("__row"))).from_(inner.subquery())
            return exp.Lateral(this=expanded.subquery(), alias=alias.copy())
    return node


def _name_result_columns(statement: exp.Expression) -> None:
    select = statement
    while isinstance(select, exp.SetOperation):
        select = select.this
    if isinstance(select, exp.Subquery):
        select = select.unnest()
    if not isinstance(select, exp.Select):
        return
    named = []
    for index, projection in enumerate(select.expressions):
        if isinstance(projection, (exp.Alias, exp.Star)) or (
            isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
        ):
            named.append(projection)
        elif isinstance(projection, exp.Column):
            named.append(projection)  # DuckDB names it after the column, as Athena does
        else:
            named.append(exp.alias_(projection, f"_col{index}", quoted=True))
    select.set("expressions", named)


# --- types --------------------------------------------------------------------------------------


def hive_to_duckdb(hive_type: str) -> str:
    """A Glue (Hive) column type as DuckDB's: ``decimal(12,2)``, ``array<struct<a:int>>``..."""
    text = hive_type.strip().lower()
    if text in ("string", "varchar", "char") or re.fullmatch(r"(varchar|char)\(\d+\)", text):
        return "VARCHAR"
    return exp.DataType.build(text, dialect="hive").sql("duckdb").replace("TEXT", "VARCHAR")


# DuckDB type id -> (Athena type name, Precision) for the scalar types
_ATHENA_SCALARS = {
    "boolean": ("boolean", 0),
    "tinyint": ("tinyint", 3),
    "smallint": ("smallint", 5),
    "integer": ("integer", 10),
    "bigint": ("bigint", 19),
    # DuckDB sums integers into 128 bits where Trino keeps a bigint
    "hugeint": ("bigint", 19),
    "utinyint": ("smallint", 5),
    "usmallint": ("integer", 10),
    "uinteger": ("bigint", 19),
    "ubigint": ("bigint", 19),
    "uhugeint": ("bigint", 19),
    "float": ("float", 17),
    "double": ("double", 17),
    "varchar": ("varchar", 2147483647),
    "blob": ("varbinary", 2147483647),
    "date": ("date", 0),
    "time": ("time", 3),
    "timestamp": ("timestamp", 3),
    "timestamp_s": ("timestamp", 3),
    "timestamp_ms": ("timestamp", 3),
    "timestamp_ns": ("timestamp", 3),
    "timestamp with time zone": ("timestamp with time zone", 3),
    "interval": ("interval day to second", 0),
    "uuid": ("uuid", 0),
    "json": ("json", 0),
    '"null"': ("unknown", 0),
    "null": ("unknown", 0),
    "list": ("array", 0),
    "array": ("array", 0),
    "struct": ("row", 0),
    "map": ("map", 0),
}


def athena_type(duckdb_type: Any) -> tuple[str, int, int]:
    """(Athena type name, Precision, Scale) of a DuckDB result type (a ``DuckDBPyType``)."""
    type_id = str(duckdb_type.id).lower()
    if type_id == "decimal":
        children = dict(duckdb_type.children)
        return "decimal", int(children["precision"]), int(children["scale"])
    name, precision = _ATHENA_SCALARS.get(type_id, ("varchar", 2147483647))
    return name, precision, 0


def column_info(name: str, duckdb_type: Any) -> dict[str, Any]:
    """One ``ResultSetMetadata.ColumnInfo`` entry, as Athena returns it."""
    type_name, precision, scale = athena_type(duckdb_type)
    return {
        "CatalogName": "hive",
        "SchemaName": "",
        "TableName": "",
        "Name": name,
        "Label": name,
        "Type": type_name,
        "Precision": precision,
        "Scale": scale,
        "Nullable": "UNKNOWN",
        "CaseSensitive": type_name == "varchar",
    }


def duckdb_to_hive(duckdb_type: Any) -> str:
    """The Glue (Hive) column type a CTAS table records for a DuckDB result type."""
    type_id = str(duckdb_type.id).lower()
    if type_id == "decimal":
        children = dict(duckdb_type.children)
        return f"decimal({children['precision']},{children['scale']})"
    if type_id in ("list", "array"):
        return f"array<{duckdb_to_hive(dict(duckdb_type.children)['child'])}>"
    if type_id == "map":
        children = dict(duckdb_type.children)
        return f"map<{duckdb_to_hive(children['key'])},{duckdb_to_hive(children['value'])}>"
    if type_id == "struct":
        return "struct<" + ",".join(f"{name}:{duckdb_to_hive(child)}" for name, child in duckdb_type.children) + ">"
    name = _ATHENA_SCALARS.get(type_id, ("varchar", 0))[0]
    return {
        "varchar": "string",
        "integer": "int",
        "varbinary": "binary",
        "timestamp with time zone": "timestamp",
        "unknown": "string",
    }.get(name, name)


# --- values -------------------------------------------------------------------------------------


def java_double(value: float, single: bool = False) -> str:
    """A double (or a real, ``single``) as Java's Double.toString writes it, as Athena does:
    ``1.5``, ``100.0``, ``1.2345678E7``, ``1.0E-4``, ``NaN``, ``Infinity``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1, value) < 0 else "0.0"
    if single:
        import numpy as np

        shortest = str(np.float32(value))  # the shortest digits that round-trip as a real
    else:
        shortest = repr(float(value))  # the shortest digits that round-trip as a double
    number = Decimal(shortest)
    if 1e-3 <= abs(value) < 1e7:
        text = format(number, "f")
        return text if "." in text else text + ".0"
    sign, digits, _ = number.as_tuple()
    figures = "".join(map(str, digits)).rstrip("0") or "0"
    return f"{'-' if sign else ''}{figures[0]}.{figures[1:] or '0'}E{number.adjusted()}"


def format_value(value: Any, duckdb_type: Any) -> str | None:
    """A value as Athena's VarCharValue (None for NULL: an empty Datum)."""
    if value is None:
        return None
    return _format(value, duckdb_type, nested=False)


def _format(value: Any, duckdb_type: Any, nested: bool) -> str:
    if value is None:
        return "null"
    type_id = str(duckdb_type.id).lower()
    if type_id == "boolean":
        return "true" if value else "false"
    if type_id == "double":
        return java_double(value)
    if type_id == "float":
        return java_double(value, single=True)
    if type_id == "decimal":
        return format(value, "f") if isinstance(value, Decimal) else str(value)
    if type_id.startswith("timestamp"):
        return _timestamp(value, with_zone=type_id == "timestamp with time zone")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, timedelta):
        return _interval(value)
    if type_id in ("list", "array"):
        child = dict(duckdb_type.children)["child"]
        return "[" + ", ".join(_format(item, child, True) for item in value) + "]"
    if type_id == "struct":
        children = dict(duckdb_type.children)
        return "{" + ", ".join(f"{k}={_format(v, children[k], True)}" for k, v in value.items()) + "}"
    if type_id == "map":
        children = dict(duckdb_type.children)
        items = value.items() if isinstance(value, dict) else zip(value["key"], value["value"], strict=True)
        return (
            "{"
            + ", ".join(f"{_format(k, children['key'], True)}={_format(v, children['value'], True)}" for k, v in items)
            + "}"
        )
    if isinstance(value, (bytes, bytearray, memoryview)):
        return " ".join(f"{byte:02x}" for byte in bytes(value))
    return str(value)


def _timestamp(value: datetime, with_zone: bool) -> str:
    if not isinstance(value, datetime):
        return str(value)
    text = value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if with_zone:
        zone = value.tzinfo
        name = getattr(zone, "key", None) or (value.tzname() or "UTC")
        text += " " + ("UTC" if name in ("Etc/UTC", "UTC", "Etc/GMT") else name)
    return text


def _interval(value: timedelta) -> str:
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{sign}{value.days} {hours:02d}:{minutes:02d}:{seconds:02d}.{value.microseconds // 1000:03d}"


def csv_line(values: Sequence[str | None]) -> str:
    """One line of Athena's result CSV: every value double-quoted (quotes doubled), NULL empty."""
    return ",".join("" if value is None else '"' + value.replace('"', '""') + '"' for value in values) + "\n"


# --- DuckDB's errors as Athena's ----------------------------------------------------------------


@dataclass
class _Pattern:
    regex: re.Pattern[str]
    name: str


_MISSING_COLUMN = re.compile(
    r'Referenced column "(?P<column>[^"]+)" not found|does not have a column named "(?P<qualified>[^"]+)"'
    r'|Column "(?P<aliased>[^"]+)" referenced that exists in the SELECT clause'
    r'|Referenced table "(?P<table>[^"]+)" not found'
)
_MISSING_FUNCTION = re.compile(r'(?:Scalar|Aggregate|Table) Function with name "?(?P<function>[\w.]+)"? does not exist')


def from_duckdb_error(exc: Exception, sql: str, statement: exp.Expression) -> AthenaQueryError:
    """DuckDB's error for the transpiled statement as the error Athena gives for the original."""
    import duckdb

    text = str(exc).split("\n", 1)[0]
    message = re.sub(r"^[A-Za-z ]+ Error: ", "", text)
    if isinstance(exc, duckdb.ParserException):
        return AthenaQueryError("SYNTAX_ERROR", message, (1, 1))
    if isinstance(exc, duckdb.BinderException):
        if match := _MISSING_COLUMN.search(text):
            name = match["column"] or match["qualified"] or match["aliased"] or match["table"]
            column = _find_column(statement, name.split(".")[-1])
            shown = name.split(".")[-1] if match["table"] is None else name
            return AthenaQueryError(
                "COLUMN_NOT_FOUND",
                f"Column '{shown}' cannot be resolved or requester is not authorized to access requested resources",
                node_position(sql, column) if column is not None else (1, 1),
            )
        if match := _MISSING_FUNCTION.search(text):
            function = match["function"]
            node = next((f for f in statement.find_all(exp.Func) if f.sql_name().lower() == function.lower()), None)
            return AthenaQueryError(
                "FUNCTION_NOT_FOUND",
                f"Function '{function.lower()}' not registered",
                node_position(sql, node) if node is not None else None,
            )
        if "No function matches" in text or "Cannot compare" in text or "type" in text.lower():
            return AthenaQueryError("TYPE_MISMATCH", message)
        return AthenaQueryError("SYNTAX_ERROR", message)
    if isinstance(exc, duckdb.ConversionException):
        return AthenaQueryError("INVALID_CAST_ARGUMENT", message)
    if isinstance(exc, duckdb.OutOfRangeException):
        return AthenaQueryError("NUMERIC_VALUE_OUT_OF_RANGE", message)
    if isinstance(exc, duckdb.OutOfMemoryException):
        return AthenaQueryError("EXCEEDED_MEMORY_LIMIT", "Query exhausted resources at this scale factor")
    if isinstance(exc, duckdb.InvalidInputException):
        return AthenaQueryError("INVALID_FUNCTION_ARGUMENT", message)
    if isinstance(exc, duckdb.CatalogException):
        if match := _MISSING_FUNCTION.search(text):
            return AthenaQueryError("FUNCTION_NOT_FOUND", f"Function '{match['function'].lower()}' not registered")
        return AthenaQueryError("SYNTAX_ERROR", message)
    return AthenaQueryError("GENERIC_INTERNAL_ERROR", message)


def _find_column(statement: exp.Expression, name: str) -> exp.Column | None:
    for column in statement.find_all(exp.Column):
        if column.name.lower() == name.lower():
            return column
    return None
