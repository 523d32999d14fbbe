"""etl_toolkit.schema_checks: schema suites run through Great Expectations for real (no mocks)."""

from __future__ import annotations

import dataclasses
import gc
import json
import pickle
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl_toolkit import schema_checks as quality
from etl_toolkit.schema_checks import Column, SchemaCheckFailed, SchemaSuite

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"

ORDER_LINES = SchemaSuite(
    name="orders_staging",
    columns=(
        Column("order_id", "string", nullable=False),
        Column("line_number", "int32", nullable=False),
        Column("customer_id", "string", nullable=False),
        Column("order_ts", "timestamp[ms, tz=UTC]", nullable=False),
        Column("product_code", "string", nullable=False),
        Column("quantity", "int32", nullable=False),
        Column("unit_price", "decimal128(10, 2)"),
        Column("tags", "list<element: string>"),
        Column("order_date", "date32[day]"),
        Column("is_gift", "bool"),
    ),
    key=("order_id", "line_number"),
)
# One column-set check, a type check per column, a null check per non-nullable column, the key.
ALL_EXPECTATIONS = 1 + 10 + 6 + 1


def order_lines(rows: int = 4, **columns: pa.Array | None) -> pa.Table:
    """A table that conforms to ORDER_LINES: two lines per order, nulls only where allowed.

    A keyword replaces that column's array; ``None`` drops the column.
    """
    arrays: dict[str, pa.Array | None] = {
        "order_id": pa.array([f"o-{i // 2}" for i in range(rows)], pa.string()),
        "line_number": pa.array([i % 2 + 1 for i in range(rows)], pa.int32()),
        "customer_id": pa.array([f"c-{i % 3}" for i in range(rows)], pa.string()),
        "order_ts": pa.array(
            [datetime(2024, 5, 1, 12, i % 60, tzinfo=UTC) for i in range(rows)], pa.timestamp("ms", tz="UTC")
        ),
        "product_code": pa.array([f"P{i % 7}" for i in range(rows)], pa.string()),
        "quantity": pa.array([i % 5 + 1 for i in range(rows)], pa.int32()),
        "unit_price": pa.array(
            [None if i % 4 == 3 else Decimal("9.99") for i in range(rows)], pa.decimal128(10, 2)
        ),
        "tags": pa.array([["gift"] if i % 2 else [] for i in range(rows)], pa.list_(pa.string())),
        "order_date": pa.array([date(2024, 5, 1)] * rows, pa.date32()),
        "is_gift": pa.array([None if i % 3 == 0 else bool(i % 2) for i in range(rows)], pa.bool_()),
    }
    arrays.update(columns)
    return pa.table({name: array for name, array in arrays.items() if array is not None})


def failures(result: dict) -> dict[tuple[str, str | None], dict]:
    """The failed expectations by (expectation, column); a compound key's columns joined by '+'."""
    by_name = {}
    for failure in result["failed"]:
        column = failure.get("column")
        by_name[failure["expectation"], "+".join(column) if isinstance(column, list) else column] = failure
    return by_name


def test_a_conforming_table_passes():
    result = quality.validate_table(order_lines(), ORDER_LINES, batch_id="2024-05-01T12")

    assert result == {
        "suite": "orders_staging",
        "batch_id": "2024-05-01T12",
        "success": True,
        "rows": 4,
        "evaluated": ALL_EXPECTATIONS,
        "failed": [],
    }


def test_an_empty_table_with_the_right_schema_passes():
    result = quality.validate_table(order_lines().slice(0, 0), ORDER_LINES, batch_id="b1")

    assert result["success"] is True
    assert result["rows"] == 0
    assert result["evaluated"] == ALL_EXPECTATIONS


def test_a_missing_column_fails_the_column_set_and_skips_its_other_checks():
    result = quality.validate_table(order_lines(quantity=None), ORDER_LINES, batch_id="b1")

    assert result["success"] is False
    assert [failure["expectation"] for failure in result["failed"]] == ["expect_table_columns_to_match_set"]
    assert result["failed"][0]["observed"] == {"missing": ["quantity"]}
    # quantity's type and null checks are not run at all rather than failing with an error.
    assert result["evaluated"] == ALL_EXPECTATIONS - 2


def test_a_missing_key_column_skips_the_key_check():
    result = quality.validate_table(order_lines(line_number=None), ORDER_LINES, batch_id="b1")

    assert list(failures(result)) == [("expect_table_columns_to_match_set", None)]
    assert result["failed"][0]["observed"] == {"missing": ["line_number"]}


def test_an_extra_column_fails_unless_the_suite_allows_extra_columns():
    table = order_lines().append_column("note", pa.array(["x"] * 4))

    strict = quality.validate_table(table, ORDER_LINES, batch_id="b1")
    lenient = quality.validate_table(
        table, dataclasses.replace(ORDER_LINES, allow_extra_columns=True), batch_id="b1"
    )

    assert strict["failed"] == [
        {"expectation": "expect_table_columns_to_match_set", "observed": {"unexpected": ["note"]}}
    ]
    assert lenient["success"] is True


@pytest.mark.parametrize(
    ("column", "array", "observed"),
    [
        ("quantity", pa.array([1, 2, 3, 4], pa.int64()), "int64"),
        ("order_ts", pa.array(["2024-05-01T12:00:00Z"] * 4, pa.string()), "string"),
        ("order_ts", pa.array([datetime(2024, 5, 1)] * 4, pa.timestamp("ms")), "timestamp[ms]"),
        ("unit_price", pa.array([Decimal("9.999")] * 4, pa.decimal128(10, 3)), "decimal128(10, 3)"),
        ("tags", pa.array([[1], [], [2], []], pa.list_(pa.int64())), "list<item: int64>"),
    ],
)
def test_a_column_of_the_wrong_type_fails_and_reports_the_observed_type(column, array, observed):
    expected = next(declared.type for declared in ORDER_LINES.columns if declared.name == column)

    result = quality.validate_table(order_lines(**{column: array}), ORDER_LINES, batch_id="b1")

    assert result["success"] is False
    assert failures(result) == {
        ("expect_column_arrow_type_to_be", column): {
            "expectation": "expect_column_arrow_type_to_be",
            "column": column,
            "expected": expected,
            "observed": observed,
        }
    }


def test_string_layouts_and_list_field_names_count_as_the_declared_type(tmp_path):
    # large_string is another layout of string; parquet names a list's child "element", not "item".
    table = order_lines(customer_id=pa.array(["c-1"] * 4, pa.large_string()))
    pq.write_table(table, tmp_path / "part-0.parquet")
    read_back = pq.read_table(tmp_path / "part-0.parquet")
    assert str(read_back.schema.field("tags").type) == "list<element: string>"

    for candidate in (table, read_back):
        assert quality.validate_table(candidate, ORDER_LINES, batch_id="b1")["success"] is True


def test_nulls_in_a_non_nullable_column_fail_with_their_count():
    result = quality.validate_table(
        order_lines(customer_id=pa.array(["c-1", None, None, "c-2"], pa.string())), ORDER_LINES, batch_id="b1"
    )

    assert failures(result) == {
        ("expect_column_values_to_not_be_null", "customer_id"): {
            "expectation": "expect_column_values_to_not_be_null",
            "column": "customer_id",
            "observed": {"unexpected_count": 2, "unexpected_percent": 50.0},
        }
    }


def test_nulls_in_nullable_columns_pass():
    table = order_lines(unit_price=pa.nulls(4, pa.decimal128(10, 2)), tags=pa.nulls(4, pa.list_(pa.string())))

    assert quality.validate_table(table, ORDER_LINES, batch_id="b1")["success"] is True


def test_a_duplicate_compound_key_fails_and_shows_the_key():
    result = quality.validate_table(
        order_lines(line_number=pa.array([1, 1, 1, 2], pa.int32())), ORDER_LINES, batch_id="b1"
    )

    failure = failures(result)[("expect_compound_columns_to_be_unique", "order_id+line_number")]
    assert failure["column"] == ["order_id", "line_number"]
    assert failure["observed"] == {
        "unexpected_count": 2,
        "unexpected_percent": 50.0,
        "sample": [{"order_id": "o-0", "line_number": 1}],
    }
    assert len(result["failed"]) == 1


def test_a_duplicate_single_column_key_fails():
    suite = dataclasses.replace(ORDER_LINES, key=("order_id",))

    result = quality.validate_table(order_lines(), suite, batch_id="b1")

    failure = failures(result)[("expect_column_values_to_be_unique", "order_id")]
    assert failure["observed"]["unexpected_count"] == 4
    assert failure["observed"]["sample"] == ["o-0", "o-1"]


def test_a_check_that_gx_cannot_evaluate_fails_with_its_error_instead_of_raising():
    # Arrow cannot hash list values, so a key made of a list column cannot be checked.
    suite = dataclasses.replace(ORDER_LINES, key=("tags",))

    result = quality.validate_table(order_lines(), suite, batch_id="b1")

    failure = failures(result)[("expect_column_values_to_be_unique", "tags")]
    assert set(failure["observed"]) == {"error"}


def test_failures_are_listed_in_suite_order():
    table = order_lines(
        quantity=pa.array([1, 2, 3, 4], pa.int64()),
        customer_id=pa.nulls(4, pa.string()),
        line_number=pa.array([1, 1, 1, 1], pa.int32()),
        is_gift=None,
    )

    result = quality.validate_table(table, ORDER_LINES, batch_id="b1")

    assert list(failures(result)) == [
        ("expect_table_columns_to_match_set", None),
        ("expect_column_arrow_type_to_be", "quantity"),
        ("expect_column_values_to_not_be_null", "customer_id"),
        ("expect_compound_columns_to_be_unique", "order_id+line_number"),
    ]


def test_check_table_returns_the_result_of_a_conforming_table():
    result = quality.check_table(order_lines(), ORDER_LINES, batch_id="b1")

    assert result["success"] is True


def test_check_table_raises_naming_the_suite_the_batch_and_every_failure_one_per_line():
    table = order_lines(
        quantity=pa.array([1, 2, 3, 4], pa.int64()),
        customer_id=pa.nulls(4, pa.string()),
        is_gift=None,
    )

    with pytest.raises(SchemaCheckFailed) as raised:
        quality.check_table(table, ORDER_LINES, batch_id="2024-05-01T12")

    lines = str(raised.value).splitlines()
    assert "orders_staging" in lines[0]
    assert "2024-05-01T12" in lines[0]
    assert len(lines) == 1 + 3
    assert "expect_table_columns_to_match_set" in lines[1] and "is_gift" in lines[1]
    assert "expect_column_arrow_type_to_be" in lines[2] and "quantity" in lines[2] and "int64" in lines[2]
    assert "expect_column_values_to_not_be_null" in lines[3] and "customer_id" in lines[3]
    assert raised.value.result["batch_id"] == "2024-05-01T12"
    assert len(raised.value.result["failed"]) == 3


def test_schema_check_failed_keeps_its_result_when_pickled():
    result = quality.validate_table(order_lines(is_gift=None), ORDER_LINES, batch_id="b1")

    copy = pickle.loads(pickle.dumps(SchemaCheckFailed(result)))

    assert copy.result == result
    assert str(copy) == str(SchemaCheckFailed(result))


def test_the_result_is_json_serialisable_and_small_even_when_every_row_fails():
    rows = 20_000
    long_text = "x" * 500
    table = order_lines(
        rows,
        order_id=pa.array([long_text] * rows, pa.string()),
        line_number=pa.array([1] * rows, pa.int32()),
        customer_id=pa.nulls(rows, pa.string()),
        order_ts=pa.array([long_text] * rows, pa.string()),
        product_code=pa.nulls(rows, pa.string()),
        quantity=pa.array(range(rows), pa.int64()),
        is_gift=None,
    ).append_column("raw_payload", pa.array([long_text] * rows))

    result = quality.validate_table(table, ORDER_LINES, batch_id="b1")

    assert len(result["failed"]) == 6
    assert len(json.dumps(result)) < 4096
    assert json.loads(json.dumps(result)) == result


def test_a_check_keeps_no_reference_to_the_table_it_checked():
    # GX keeps its latest context alive process-wide; the batch must not stay alive with it.
    gc.collect()
    allocated_before = pa.total_allocated_bytes()
    table = order_lines(50_000)
    assert pa.total_allocated_bytes() > allocated_before + 1_000_000

    quality.validate_table(table, ORDER_LINES, batch_id="b1")
    del table
    gc.collect()

    assert pa.total_allocated_bytes() <= allocated_before + 100_000


def test_a_suite_rejects_key_columns_it_does_not_declare():
    with pytest.raises(ValueError, match="line_no"):
        SchemaSuite("orders_landing", (Column("order_id", "string"),), key=("order_id", "line_no"))


def test_a_suite_rejects_a_column_declared_twice():
    with pytest.raises(ValueError, match="order_id"):
        SchemaSuite("orders_landing", (Column("order_id", "string"), Column("order_id", "int64")))


def run_python(code: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_importing_quality_does_not_import_great_expectations_pandas_or_pyarrow():
    loaded = run_python(
        f"import sys; sys.path.insert(0, {str(PLUGINS)!r}); import etl_toolkit.schema_checks; "
        "print(sorted(m for m in ('great_expectations', 'pandas', 'pyarrow') if m in sys.modules))"
    )

    assert loaded.strip() == "[]"


def test_a_check_opens_no_network_connection():
    # Sockets are refused from before GX is imported, so an import-time call would count too.
    attempts = run_python(
        f"""
import socket, sys
sys.path.insert(0, {str(PLUGINS)!r})
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args))
    raise OSError("network disabled by the test")
socket.socket.connect = socket.socket.connect_ex = socket.getaddrinfo = refuse
import pyarrow as pa
from etl_toolkit import schema_checks as quality
suite = quality.SchemaSuite("s", (quality.Column("id", "int64", nullable=False),), key=("id",))
result = quality.validate_table(pa.table({{"id": [1, 2, 2]}}), suite, batch_id="b1")
assert result["success"] is False, result
print(attempts)
"""
    )

    assert attempts.strip() == "[]"


# -- checks from parquet footers (what the Airflow tasks run) -------------------------------------


def footer_of(tmp_path, name: str, table, **write_options):
    from pyarrow import fs

    from etl_toolkit.s3 import read_footer

    pq.write_table(table, tmp_path / name, **write_options)
    return read_footer(fs.LocalFileSystem(), str(tmp_path), name, "b1")


FOOTER_SUITE = SchemaSuite(
    "footers", (Column("id", "int64", nullable=False), Column("name", "string")), key=("id",)
)


def test_files_that_conform_pass_from_their_footers_alone(tmp_path):
    footers = [
        footer_of(tmp_path, "a.parquet", pa.table({"id": [1, 2], "name": ["x", None]})),
        footer_of(tmp_path, "b.parquet", pa.table({"id": [3], "name": ["y"]})),
    ]
    result = quality.check_footers(footers, FOOTER_SUITE, batch_id="b1")
    assert (result["success"], result["rows"], result["files"], result["schemas"]) == (True, 3, 2, 1)


def test_an_empty_file_has_no_nulls(tmp_path):
    empty = pa.table({"id": pa.array([], pa.int64()), "name": pa.array([], pa.string())})
    result = quality.validate_footers([footer_of(tmp_path, "e.parquet", empty)], FOOTER_SUITE, batch_id="b1")
    assert result["success"], result


def test_nulls_in_a_non_nullable_column_are_found_in_the_footer_statistics(tmp_path):
    footers = [footer_of(tmp_path, "n.parquet", pa.table({"id": [1, None, None], "name": ["x", "y", "z"]}))]
    result = quality.validate_footers(footers, FOOTER_SUITE, batch_id="b1")
    assert not result["success"]
    assert result["failed"] == [{"expectation": "expect_column_values_to_not_be_null", "column": "id",
                                 "observed": {"unexpected_count": 2}}]  # fmt: skip


def test_a_file_written_without_statistics_cannot_pass_a_not_null_check(tmp_path):
    footers = [footer_of(tmp_path, "s.parquet", pa.table({"id": [1], "name": ["x"]}), write_statistics=False)]
    result = quality.validate_footers(footers, FOOTER_SUITE, batch_id="b1")
    assert [failure["column"] for failure in result["failed"]] == ["id"]
    assert "no null counts" in result["failed"][0]["observed"]["error"]


def test_a_drifted_file_among_conforming_ones_fails_naming_the_column_and_the_file(tmp_path):
    footers = [
        footer_of(tmp_path, "good.parquet", pa.table({"id": [1], "name": ["x"]})),
        footer_of(tmp_path, "drifted.parquet", pa.table({"id": ["1"], "name": ["x"]})),
    ]
    with pytest.raises(SchemaCheckFailed) as failure:
        quality.check_footers(footers, FOOTER_SUITE, batch_id="b1")
    assert failure.value.result["files"] == 2 and failure.value.result["schemas"] == 2
    assert "expect_column_arrow_type_to_be [id]: expected int64, observed string" in str(failure.value)
    assert "in: drifted.parquet" in str(failure.value)
