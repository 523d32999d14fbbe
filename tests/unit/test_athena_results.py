"""Reading an Athena answer into a layer count: the rows of a GetQueryResults page, typed."""

from __future__ import annotations

from etl_toolkit.tasks.audit import athena_rows


def page(columns: list[tuple[str, str]], *rows: list[str | None]) -> dict:
    """A GetQueryResults response as Athena shapes it: the header row first, NULL as an empty datum."""
    header = {"Data": [{"VarCharValue": name} for name, _ in columns]}
    data = [{"Data": [{} if value is None else {"VarCharValue": value} for value in row]} for row in rows]
    return {
        "ResultSet": {
            "Rows": [header, *data],
            "ResultSetMetadata": {"ColumnInfo": [{"Name": name, "Type": kind} for name, kind in columns]},
        }
    }


def test_values_are_typed_by_athenas_column_types():
    result = page(
        [("shipments", "bigint"), ("total_cost", "decimal"), ("total_distance", "double"), ("city", "varchar")],
        ["1990", "123456.78", "1.23456789E7", "Lisboa"],
    )

    assert athena_rows(result) == [
        {"shipments": 1990, "total_cost": 123456.78, "total_distance": 12345678.9, "city": "Lisboa"}
    ]


def test_the_header_row_is_not_a_value_and_null_is_none():
    result = page([("shipments", "bigint"), ("total_cost", "decimal")], ["0", None])

    assert athena_rows(result) == [{"shipments": 0, "total_cost": None}]


def test_an_empty_result_has_no_rows():
    assert athena_rows(page([("shipments", "bigint")])) == []
