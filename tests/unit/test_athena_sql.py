"""devstack.athena_sql: Athena's SQL to DuckDB's, Athena's errors, types and values; no stack.

Each transpiled query runs on an in-memory DuckDB to prove DuckDB takes it and answers as Athena
would.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import duckdb
import pytest
from sqlglot import exp

from devstack import athena_sql
from devstack.athena_sql import AthenaQueryError


@pytest.fixture
def duck():
    connection = duckdb.connect()
    connection.execute("SET lambda_syntax = 'ENABLE_SINGLE_ARROW'")
    connection.execute(
        "CREATE TABLE t AS SELECT [1, 2, 3] AS arr, MAP(['k'], [5]) AS m, "
        "[{'sku': 'A', 'qty': 2}, {'sku': 'B', 'qty': 1}] AS items, '2024-01-02T03:04:05Z' AS ts"
    )
    yield connection
    connection.close()


def run(duck, sql: str) -> list[tuple]:
    return duck.sql(athena_sql.to_duckdb(athena_sql.parse(sql))).fetchall()


# -- transpilation ------------------------------------------------------------------------------


def test_element_at_and_cardinality_on_arrays_and_maps(duck):
    sql = "SELECT element_at(arr, 2), element_at(arr, 9), element_at(m, 'k'), cardinality(arr), cardinality(m) FROM t"
    assert run(duck, sql) == [(2, None, 5, 3, 1)]


def test_unnest_of_an_array_of_rows_expands_the_rows_into_the_named_columns(duck):
    sql = "SELECT sku, qty FROM t CROSS JOIN UNNEST(items) AS i(sku, qty) ORDER BY sku"
    assert run(duck, sql) == [("A", 2), ("B", 1)]
    # one alias column keeps the row itself
    assert run(duck, "SELECT i.item.sku FROM t CROSS JOIN UNNEST(items) AS i(item) ORDER BY 1") == [("A",), ("B",)]


def test_date_functions_casts_and_lambdas(duck):
    sql = (
        "SELECT date_parse('2024-01-02 03:04:05', '%Y-%m-%d %H:%i:%s'), from_iso8601_timestamp(ts), "
        "try_cast('x' AS integer), CAST('12' AS bigint), transform(arr, x -> x * 2), approx_distinct(1) OVER () FROM t"
    )
    [(parsed, iso, bad, twelve, doubled, distinct)] = run(duck, sql)
    assert parsed == datetime(2024, 1, 2, 3, 4, 5)
    assert iso.replace(tzinfo=None) == datetime(2024, 1, 2, 3, 4, 5) and iso.utcoffset().total_seconds() == 0
    assert (bad, twelve, doubled, distinct) == (None, 12, [2, 4, 6], 1)


def test_unnamed_result_columns_are_named_as_athena_names_them(duck):
    relation = duck.sql(
        athena_sql.to_duckdb(athena_sql.parse('SELECT arr, count(*), 1 AS "One_$", 2 FROM t GROUP BY arr'))
    )
    assert relation.columns == ["arr", "_col1", "One_$", "_col3"]


def test_hyphenated_quoted_names_survive_transpilation():
    sql = 'SELECT SUM(shipping_cost) AS "Total_Cost_in_$" FROM "shipping-db"."transformed_data"'
    assert athena_sql.to_duckdb(athena_sql.parse(sql)) == sql


@pytest.mark.parametrize(
    ("hive", "duckdb_type"),
    [
        ("string", "VARCHAR"),
        ("varchar(10)", "VARCHAR"),
        ("int", "INT"),
        ("bigint", "BIGINT"),
        ("decimal(12,2)", "DECIMAL(12, 2)"),
        ("array<struct<a:int,b:string>>", "STRUCT(a INT, b VARCHAR)[]"),
        ("map<string,bigint>", "MAP(VARCHAR, BIGINT)"),
        ("timestamp", "TIMESTAMP"),
        ("date", "DATE"),
    ],
)
def test_hive_types_as_duckdb_types(hive, duckdb_type):
    assert athena_sql.hive_to_duckdb(hive) == duckdb_type


# -- what a query reads -------------------------------------------------------------------------


def test_referenced_names_are_none_for_select_star_but_not_for_count_star():
    assert athena_sql.referenced_names(athena_sql.parse("SELECT * FROM t")) is None
    assert athena_sql.referenced_names(athena_sql.parse("SELECT t.* FROM t")) is None
    names = athena_sql.referenced_names(athena_sql.parse("SELECT count(*), SUM(a) FROM t WHERE s.p = 1"))
    assert {"a", "s", "p", "t"} <= names


def _conjuncts(sql: str, keys=("batch_id", "day")) -> list[str]:
    table = next(athena_sql.parse(sql).find_all(exp.Table))
    return [c.sql("duckdb") for c in athena_sql.partition_conjuncts(table, keys)]


def test_partition_conjuncts_are_the_where_terms_on_partition_keys_only():
    assert _conjuncts("SELECT * FROM t WHERE batch_id = 'b1' AND qty > 0 AND day IN ('1', '2')") == [
        "\"batch_id\" = 'b1'",
        "\"day\" IN ('1', '2')",
    ]
    assert _conjuncts("SELECT * FROM t AS x WHERE x.batch_id = 'b1'") == ["\"batch_id\" = 'b1'"]
    # an OR with another column, another table's column, a subquery: not usable for pruning
    assert _conjuncts("SELECT * FROM t WHERE batch_id = 'b1' OR qty > 0") == []
    assert _conjuncts("SELECT * FROM t AS x WHERE y.batch_id = 'b1'") == []
    assert _conjuncts("SELECT * FROM t WHERE batch_id = (SELECT max(batch_id) FROM u)") == []
    assert _conjuncts("SELECT * FROM t JOIN u ON t.a = u.a WHERE batch_id = 'b1'") == []


# -- errors -------------------------------------------------------------------------------------


def test_a_syntax_error_names_its_line_and_column():
    with pytest.raises(AthenaQueryError) as raised:
        athena_sql.parse("SELECT *\nFORM t")
    assert raised.value.name == "SYNTAX_ERROR"
    assert raised.value.reason.startswith("SYNTAX_ERROR: line 2:")
    assert raised.value.athena_error()["ErrorType"] == 1006


def test_a_missing_column_is_column_not_found_at_its_position(duck):
    statement = athena_sql.parse("SELECT arr,\n  nope FROM t")
    with pytest.raises(duckdb.Error) as raised:
        duck.sql(athena_sql.to_duckdb(statement))
    error = athena_sql.from_duckdb_error(raised.value, "SELECT arr,\n  nope FROM t", statement)
    assert error.reason == (
        "COLUMN_NOT_FOUND: line 2:3: Column 'nope' cannot be resolved or requester is not authorized to access "
        "requested resources"
    )


def test_statement_kinds():
    kinds = {
        "SELECT 1": "query",
        "WITH a AS (SELECT 1) SELECT * FROM a": "query",
        "SELECT 1 UNION ALL SELECT 2": "query",
        "CREATE TABLE x WITH (format = 'PARQUET') AS SELECT 1 AS a": "ctas",
        "DROP TABLE x": "drop_table",
    }
    for sql, kind in kinds.items():
        assert athena_sql.statement_kind(athena_sql.parse(sql)) == kind
    assert athena_sql.statement_kind(athena_sql.parse("INSERT INTO x VALUES (1)")) == "INSERT"


def test_execution_parameters_replace_the_placeholders_in_order():
    statement = athena_sql.bind_parameters(athena_sql.parse("SELECT * FROM t WHERE a = ? AND b > ?"), ["'x'", "2"])
    assert statement.sql("duckdb") == "SELECT * FROM t WHERE a = 'x' AND b > 2"
    with pytest.raises(AthenaQueryError, match="expected 2 but found 1"):
        athena_sql.bind_parameters(athena_sql.parse("SELECT ? + ?"), ["1"])


# -- types and values ---------------------------------------------------------------------------


def test_column_info_and_values_as_athena_returns_them():
    connection = duckdb.connect()
    relation = connection.sql(
        "SELECT 'x' AS v, 1::BIGINT AS b, SUM(1) AS s, 1.5::DECIMAL(10,3) AS d, 12345678.9::DOUBLE AS f, "
        "DATE '2024-02-29' AS dt, TIMESTAMP '2024-02-29 01:02:03.456789' AS ts, true AS flag, [1, NULL] AS arr, "
        "{'n': 1, 's': 'a'} AS r, MAP(['k'], [1]) AS m"
    )
    types = [athena_sql.athena_type(t) for t in relation.types]
    assert types == [
        ("varchar", 2147483647, 0), ("bigint", 19, 0), ("bigint", 19, 0), ("decimal", 10, 3), ("double", 17, 0),
        ("date", 0, 0), ("timestamp", 3, 0), ("boolean", 0, 0), ("array", 0, 0), ("row", 0, 0), ("map", 0, 0),
    ]  # fmt: skip
    [row] = relation.fetchall()
    values = [athena_sql.format_value(v, t) for v, t in zip(row, relation.types, strict=True)]
    assert values == [
        "x", "1", "1", "1.500", "1.23456789E7", "2024-02-29", "2024-02-29 01:02:03.456", "true",
        "[1, null]", "{n=1, s=a}", "{k=1}",
    ]  # fmt: skip
    info = athena_sql.column_info("d", relation.types[3])
    assert (info["Name"], info["Label"], info["Type"], info["Precision"], info["Scale"]) == ("d", "d", "decimal", 10, 3)
    assert athena_sql.format_value(None, relation.types[0]) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.5, "1.5"), (100.0, "100.0"), (12345678.9, "1.23456789E7"), (1e-4, "1.0E-4"), (0.001, "0.001"),
     (1e7, "1.0E7"), (9999999.0, "9999999.0"), (-2.5e-10, "-2.5E-10"), (0.0, "0.0"), (float("nan"), "NaN"),
     (float("-inf"), "-Infinity")],
)  # fmt: skip
def test_doubles_are_written_as_java_writes_them(value, text):
    assert athena_sql.java_double(value) == text


def test_hive_types_of_ctas_columns():
    connection = duckdb.connect()
    relation = connection.sql(
        "SELECT 1::BIGINT a, 1::INT b, 'x' c, 1.5::DECIMAL(12,2) d, [1] e, {'x': 1} f, DATE '2024-01-01' g"
    )
    assert [athena_sql.duckdb_to_hive(t) for t in relation.types] == [
        "bigint", "int", "string", "decimal(12,2)", "array<int>", "struct<x:int>", "date",
    ]  # fmt: skip


def test_result_csv_lines_quote_every_value_and_leave_null_empty():
    assert athena_sql.csv_line(["a", None, "", 'say "hi"']) == '"a",,"","say ""hi"""\n'


def test_positions_are_one_based_lines_and_columns():
    assert athena_sql.position("SELECT *\nFROM  t", 15) == (2, 7)
    assert athena_sql.position("SELECT 1", 0) == (1, 1)


def test_values_of_other_types():
    connection = duckdb.connect()
    relation = connection.sql("SELECT DATE '2024-01-01' AS d, 2.5::FLOAT AS f, NULL::VARCHAR[] AS n")
    [(day, real, nothing)] = relation.fetchall()
    assert day == date(2024, 1, 1)
    assert athena_sql.format_value(real, relation.types[1]) == "2.5"
    assert athena_sql.format_value(nothing, relation.types[2]) is None
    assert athena_sql.format_value(Decimal("0.10"), connection.sql("SELECT 1::DECIMAL(3,2)").types[0]) == "0.10"
