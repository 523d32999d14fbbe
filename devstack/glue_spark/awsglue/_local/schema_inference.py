"""Glue's per-value type inference for JSON and CSV sources, on top of Spark's readers.

Spark infers one type per column and turns a column whose values disagree (a number in one
record, a string in another) into a string column; AWS Glue types each value and makes such a
column a *choice*. These functions keep Spark's string column and find the choices with cheap
extra passes, returning them as the ``choices`` a DynamicFrame is built with
(``{"price": ("int", "string")}``). See the table in ``awsglue.context``.

JSON (``json_types``): one aggregation over the frame Spark read counts, for each top-level
string column, the values whose text looks like a JSON number or boolean (Spark keeps a
number's raw text in a string column) and finds the range of each integer column. Only the
columns with such values are probed: the same files are read again with those columns typed as
double (or boolean), which is null exactly where the JSON value was not a number (a quoted
"12" stays null), so the counts tell numbers, booleans and strings apart. Integer columns whose
values all fit in 32 bits become ``int`` (Glue's JSON reader types small integers as int).

CSV (``csv_types``): every column is read as text and one aggregation counts, per column, the
values that are integers (fitting a long) and numbers; a column of integers becomes ``long``, a
column of numbers ``double``, one mixing numbers and other text a choice kept as string.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
JSON_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
JSON_BOOLEAN = r"^(true|false)$"
CSV_INTEGER = r"^[+-]?[0-9]+$"
CSV_NUMBER = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"

# the order the types of a choice are listed in
_CHOICE_ORDER = ["boolean", "int", "long", "double", "string"]


def _ordered(names: set[str]) -> tuple[str, ...]:
    return tuple(sorted(names, key=lambda name: _CHOICE_ORDER.index(name) if name in _CHOICE_ORDER else 99))


def _count_if(condition: Column) -> Column:
    return F.count(F.when(condition, F.lit(1)))


def _alias(kind: str, index: int) -> str:
    return f"{kind}_{index}"


def json_types(
    df: DataFrame, read_with_schema: Callable[[T.StructType], DataFrame]
) -> tuple[DataFrame, dict[str, tuple[str, ...]]]:
    """Narrow small integer columns to int and find the choice columns of a JSON frame."""
    fields = df.schema.fields
    strings = [(i, f.name) for i, f in enumerate(fields) if isinstance(f.dataType, T.StringType)]
    longs = [(i, f.name) for i, f in enumerate(fields) if isinstance(f.dataType, T.LongType)]
    if not strings and not longs:
        return df, {}
    aggregates = []
    for i, name in strings:
        column = F.col(f"`{name}`")
        aggregates += [
            F.count(column).alias(_alias("n", i)),
            _count_if(column.rlike(JSON_NUMBER)).alias(_alias("num", i)),
            _count_if(column.rlike(JSON_BOOLEAN)).alias(_alias("bool", i)),
        ]
    for i, name in longs:
        column = F.col(f"`{name}`")
        aggregates += [F.min(column).alias(_alias("min", i)), F.max(column).alias(_alias("max", i))]
    counts = df.agg(*aggregates).first().asDict()

    narrowed = {
        name
        for i, name in longs
        if counts[_alias("min", i)] is not None
        and INT_MIN <= counts[_alias("min", i)]
        and counts[_alias("max", i)] <= INT_MAX
    }
    numeric_candidates = [(i, name) for i, name in strings if counts[_alias("num", i)]]
    boolean_candidates = [(i, name) for i, name in strings if counts[_alias("bool", i)]]

    numbers: dict[str, tuple[int, str]] = {}  # name -> (count, Glue type name)
    booleans: dict[str, int] = {}
    if numeric_candidates:
        probe = read_with_schema(T.StructType([T.StructField(n, T.DoubleType()) for _, n in numeric_candidates]))
        aggregates = []
        for i, name in numeric_candidates:
            value = F.col(f"`{name}`")
            finite = value.isNotNull() & ~F.isnan(value) & (F.abs(value) != F.lit(float("inf")))
            integral = finite & (value == F.floor(value))
            aggregates += [
                _count_if(finite).alias(_alias("n", i)),
                _count_if(finite & ~integral).alias(_alias("frac", i)),
                _count_if(integral & ((value < INT_MIN) | (value > INT_MAX))).alias(_alias("wide", i)),
            ]
        probed = probe.agg(*aggregates).first().asDict()
        for i, name in numeric_candidates:
            count = probed[_alias("n", i)]
            if probed[_alias("frac", i)]:
                numbers[name] = (count, "double")
            else:
                numbers[name] = (count, "long" if probed[_alias("wide", i)] else "int")
    if boolean_candidates:
        probe = read_with_schema(T.StructType([T.StructField(n, T.BooleanType()) for _, n in boolean_candidates]))
        probed = probe.agg(*[F.count(F.col(f"`{n}`")).alias(_alias("n", i)) for i, n in boolean_candidates])
        row = probed.first().asDict()
        booleans = {name: row[_alias("n", i)] for i, name in boolean_candidates}

    choices: dict[str, tuple[str, ...]] = {}
    for i, name in strings:
        number_count, number_type = numbers.get(name, (0, "int"))
        boolean_count = booleans.get(name, 0)
        seen = set()
        if number_count:
            seen.add(number_type)
        if boolean_count:
            seen.add("boolean")
        if counts[_alias("n", i)] - number_count - boolean_count > 0:
            seen.add("string")
        if len(seen) > 1:
            choices[name] = _ordered(seen)
    if narrowed:
        df = df.select(
            *[
                F.col(f"`{f.name}`").cast(T.IntegerType()).alias(f.name) if f.name in narrowed else F.col(f"`{f.name}`")
                for f in fields
            ]
        )
    return df, choices


def csv_types(df: DataFrame) -> tuple[DataFrame, dict[str, tuple[str, ...]]]:
    """Type the text columns of a CSV frame as Glue does: long, double, string or a choice."""
    fields = df.schema.fields
    if not fields:
        return df, {}
    aggregates = []
    for i, field in enumerate(fields):
        column = F.col(f"`{field.name}`")
        is_long = column.rlike(CSV_INTEGER) & F.expr(f"try_cast(`{field.name}` AS BIGINT)").isNotNull()
        aggregates += [
            F.count(column).alias(_alias("n", i)),
            _count_if(is_long).alias(_alias("long", i)),
            _count_if(column.rlike(CSV_NUMBER)).alias(_alias("num", i)),
        ]
    counts = df.agg(*aggregates).first().asDict()
    columns, choices = [], {}
    for i, field in enumerate(fields):
        total, longs, numbers = counts[_alias("n", i)], counts[_alias("long", i)], counts[_alias("num", i)]
        column = F.col(f"`{field.name}`")
        if total and numbers == total:
            target = "BIGINT" if longs == total else "DOUBLE"
            columns.append(F.expr(f"try_cast(`{field.name}` AS {target})").alias(field.name))
            continue
        if numbers:
            seen = {"string"}
            if longs:
                seen.add("long")
            if numbers > longs:
                seen.add("double")
            choices[field.name] = _ordered(seen)
        columns.append(column)
    return df.select(*columns), choices
