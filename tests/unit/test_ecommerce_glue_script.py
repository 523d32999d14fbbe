"""The e-commerce stage Glue script's pure parts: the row checks (vectorised mask and per-row reason),
the --objects argument and the CSV reader; and which objects a batch reads, against a real moto server.

Every S3 test uses a bucket of its own, so tests share one emulator without resetting it.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import sys
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from devstack.sample_data import ecommerce as sample

# Run again under AWS Glue 5.0's versions by `make test-glue5`: imports no Airflow.
pytestmark = pytest.mark.glue5

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / "include" / "glue_scripts" / "ecommerce" / "ecommerce_stage_transactions.py"
REGION = "eu-west-1"
DAY = date(2026, 11, 1)
KEY = "transactions/year=2026/month=11/day=01/transactions_2026-11-01.csv"


def load_module(path: Path):
    """Glue scripts are files, not a package: import one by path."""
    name = f"glue_script_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


stage = load_module(STAGE)

# The warehouse's dimensions as the setup preloads them.
CUSTOMER_KEYS = [customer.customer_id for customer in sample.CUSTOMERS]
PRODUCT_KEYS = [product.product_id for product in sample.PRODUCTS]
CUSTOMERS = pa.array(CUSTOMER_KEYS, pa.string())
PRODUCTS = pa.array(PRODUCT_KEYS, pa.string())


def csv_data(rows, columns=sample.COLUMNS) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue().encode()


def read_rows(data: bytes, key: str = KEY) -> pa.Table:
    """The object's rows as the job reads them: ``csv_batches``, all blocks together."""
    return pa.Table.from_batches(list(stage.csv_batches(io.BytesIO(data), key, "B1")))


def mask_of(table: pa.Table) -> list[bool]:
    return [ok for batch in table.to_batches() for ok in stage.valid_mask(batch, CUSTOMERS, PRODUCTS).to_pylist()]


def rejection(row: dict[str, str]) -> tuple[str, str]:
    return stage.rejection(row, set(CUSTOMER_KEYS), set(PRODUCT_KEYS))


def passes_every_check(row: dict[str, str]) -> bool:
    """What ``rejection`` says of a row: it raises only for a row that fails no check."""
    try:
        rejection(row)
    except AssertionError:
        return True
    return False


def valid_row(**cells: str) -> dict[str, str]:
    """A valid generated transaction, by column name, with some cells replaced."""
    row = dict(zip(sample.COLUMNS, sample.generate_day(DAY, 1, seed=7).rows[0], strict=True))
    assert set(cells) <= set(row)
    return {**row, **cells}


def mask_of_row(row: dict[str, str]) -> bool:
    batch = pa.RecordBatch.from_pylist([row], schema=pa.schema([(name, pa.string()) for name in stage.COLUMNS]))
    return stage.valid_mask(batch, CUSTOMERS, PRODUCTS).to_pylist()[0]


# -- the row checks ---------------------------------------------------------------------------------


def test_the_script_reads_the_contract_columns():
    assert stage.COLUMNS == list(sample.COLUMNS)
    assert stage.STATUSES == list(sample.STATUSES)


@pytest.mark.parametrize(
    ("day", "seed"),
    [(date(2026, 11, 1), 1), (date(2026, 11, 1), 7), (date(2024, 2, 28), 42), (date(2025, 12, 31), 2026)],
)
def test_the_mask_refuses_exactly_the_rows_the_generator_spoiled_and_the_reasons_agree(day, seed):
    generated = sample.generate_day(
        day, 300, invalid_share=0.1, seed=seed, identical_duplicates=6, conflicting_duplicates=6
    )
    table = read_rows(sample.csv_bytes(generated.rows))
    assert table.num_rows == len(generated.rows)

    mask = mask_of(table)
    rows = table.to_pylist()

    refused = {i for i, ok in enumerate(mask) if not ok}
    assert refused == set(generated.invalid)
    # Copies, identical or conflicting, are settled later in SQL: each one passes the row checks.
    copies = set(generated.duplicates) | set(generated.conflicts) | set(generated.conflicts.values())
    assert copies and not copies & refused
    # The per-row reason finds a failed check exactly where the mask does.
    assert [passes_every_check(row) for row in rows] == mask


def expected_rejection(kind: str, row: dict[str, str]) -> tuple[str, str]:
    """(rule, a fragment of the reason) for a row the generator spoiled with ``kind``."""
    return {
        "unknown_customer": ("reference", f"customer_id {sample.UNKNOWN_CUSTOMER!r} is not in dim_customers"),
        "unknown_product": ("reference", f"product_id {sample.UNKNOWN_PRODUCT!r} is not in dim_products"),
        "zero_quantity": ("format", "quantity 0 is below 1"),
        "bad_price": ("format", f"price {row['price']!r} is not a decimal >= 0 with at most two places"),
        "bad_date": ("format", f"transaction_date {row['transaction_date']!r} is not a YYYY-MM-DD date"),
        "unknown_status": ("format", f"status {sample.UNKNOWN_STATUS!r} is not one of"),
    }[kind]


@pytest.mark.parametrize("seed", [3, 11])
def test_each_invalid_kind_is_rejected_with_its_rule_and_reason(seed):
    generated = sample.generate_day(DAY, 300, invalid_share=0.1, seed=seed)
    rows = read_rows(sample.csv_bytes(generated.rows)).to_pylist()

    seen = set()
    for index, kind in generated.invalid.items():
        rule, reason = rejection(rows[index])
        expected_rule, fragment = expected_rejection(kind, rows[index])
        assert rule == expected_rule, (kind, rows[index])
        assert fragment in reason, (kind, reason)
        seen.add(kind)
    assert seen == set(sample.INVALID_KINDS)


@pytest.mark.parametrize(
    "value", ["2026-02-30", "2026-13-01", "2026-00-10", "2026-04-31", "01/11/2026", "2026-1-01", ""]
)
def test_a_date_that_does_not_exist_or_is_not_yyyy_mm_dd_is_refused(value):
    row = valid_row(transaction_date=value)

    assert mask_of_row(row) is False
    assert rejection(row) == ("format", f"transaction_date {value!r} is not a YYYY-MM-DD date")


@pytest.mark.parametrize("value", ["2024-02-29", "2026-12-31", "2026-01-01"])
def test_a_real_date_passes(value):
    row = valid_row(transaction_date=value)

    assert mask_of_row(row) is True
    assert passes_every_check(row)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0", "quantity 0 is below 1"),
        ("-1", "quantity '-1' is not a whole number"),
        ("1.5", "quantity '1.5' is not a whole number"),
        ("", "quantity '' is not a whole number"),
        (" 2", "quantity ' 2' is not a whole number"),
    ],
)
def test_a_quantity_that_is_not_a_whole_number_of_at_least_one_is_refused(value, reason):
    row = valid_row(quantity=value)

    assert mask_of_row(row) is False
    assert rejection(row) == ("format", reason)


@pytest.mark.parametrize("value", ["12,50", "1.234", "-1", "abc", "", "1.", ".5"])
def test_a_price_that_is_not_a_decimal_with_two_places_at_most_is_refused(value):
    row = valid_row(price=value)

    assert mask_of_row(row) is False
    assert rejection(row) == ("format", f"price {value!r} is not a decimal >= 0 with at most two places")


@pytest.mark.parametrize("value", ["0", "0.5", "10.00", "1234567890.99"])
def test_a_price_that_is_a_decimal_of_two_places_at_most_passes(value):
    row = valid_row(price=value)

    assert mask_of_row(row) is True
    assert passes_every_check(row)


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ({"transaction_id": " "}, ("format", "transaction_id is empty")),
        ({"payment_type": ""}, ("format", "payment_type is empty")),
        (
            {"status": "completed"},
            ("format", "status 'completed' is not one of Pending, Completed, Cancelled, Refunded"),
        ),
        ({"customer_id": ""}, ("reference", "customer_id '' is not in dim_customers")),
        ({"product_id": "PROD00011"}, ("reference", "product_id 'PROD00011' is not in dim_products")),
    ],
)
def test_other_cells_are_refused_with_their_reason(cells, expected):
    row = valid_row(**cells)

    assert mask_of_row(row) is False
    assert rejection(row) == expected


def test_a_row_failing_several_checks_gets_the_first_reason():
    row = valid_row(quantity="x", price="y", status="Shipped", customer_id="CUST99999")

    assert rejection(row) == ("format", "quantity 'x' is not a whole number")


def test_a_quoted_cell_ending_in_a_line_break_is_rejected_rather_than_failing_the_job():
    # Valid CSV: a quoted value may hold a line break, and the job's reader keeps it in the cell.
    data = csv_data([valid_row(quantity="5\n").values()])
    rows = read_rows(data).to_pylist()
    assert rows[0]["quantity"] == "5\n"

    assert mask_of(read_rows(data)) == [False]
    rule, reason = rejection(rows[0])  # raises AssertionError: "row passes every check"
    assert rule == "format" and "quantity" in reason


def test_year_zero_is_refused_as_the_warehouse_refuses_it():
    # PostgreSQL has no year 0 ("date/time field value out of range"): a staged row would fail the COPY.
    row = valid_row(transaction_date="0000-01-01")

    assert rejection(row)[0] == "format"
    assert mask_of_row(row) is False


# -- --objects --------------------------------------------------------------------------------------


def test_objects_given_as_a_json_list_are_kept_in_order_once():
    assert stage.parse_objects(json.dumps(["b.csv", "a.csv", "b.csv"])) == ["b.csv", "a.csv"]
    assert stage.parse_objects("[]") == []


@pytest.mark.parametrize("text", ["null", "None", "", "  \n"])
def test_null_or_empty_objects_mean_every_csv_under_the_prefix(text):
    assert stage.parse_objects(text) is None


@pytest.mark.parametrize("text", ['{"key": "a.csv"}', '"a.csv"', '["a.csv", ""]', "[1]", '["a.csv", null]', "a.csv"])
def test_objects_that_are_not_a_json_list_of_keys_are_refused(text):
    with pytest.raises(ValueError):
        stage.parse_objects(text)


# -- reading an object ------------------------------------------------------------------------------


def test_a_header_without_a_column_is_refused_naming_the_column_and_the_key():
    columns = [name for name in sample.COLUMNS if name != "payment_type"]
    data = csv_data([["x"] * len(columns)], columns)

    with pytest.raises(stage.BatchObjectsError, match="lacks column.*payment_type") as raised:
        read_rows(data)

    assert KEY in str(raised.value) and "B1" in str(raised.value)


def test_a_header_with_an_extra_column_is_refused_naming_the_column_and_the_key():
    columns = [*sample.COLUMNS, "discount"]
    data = csv_data([["x"] * len(columns)], columns)

    with pytest.raises(stage.BatchObjectsError, match="unexpected column.*discount") as raised:
        read_rows(data)

    assert KEY in str(raised.value)


def test_an_empty_object_is_refused_naming_it():
    with pytest.raises(stage.BatchObjectsError, match="empty") as raised:
        read_rows(b"")

    assert KEY in str(raised.value)


def test_columns_in_another_order_are_read_in_the_contract_order():
    generated = sample.generate_day(DAY, 5, seed=7).rows
    columns = list(reversed(sample.COLUMNS))
    data = csv_data([tuple(reversed(row)) for row in generated], columns)

    batches = list(stage.csv_batches(io.BytesIO(data), KEY, "B1"))

    assert batches and all(batch.schema.names == stage.COLUMNS for batch in batches)
    assert [tuple(row.values()) for row in pa.Table.from_batches(batches).to_pylist()] == generated


def test_every_cell_is_read_as_text_and_an_empty_cell_is_not_null():
    row = valid_row(quantity="007", payment_type="")
    table = read_rows(csv_data([row.values()]))

    assert {str(field.type) for field in table.schema} == {"string"}
    assert table.to_pylist() == [row]


def test_a_large_object_is_read_in_several_blocks_with_every_row(monkeypatch):
    monkeypatch.setattr(stage, "CSV_BLOCK_BYTES", 4096)
    generated = sample.generate_day(DAY, 2000, seed=7).rows

    batches = list(stage.csv_batches(io.BytesIO(sample.csv_bytes(generated)), KEY, "B1"))

    assert len(batches) > 1
    assert [tuple(row.values()) for row in pa.Table.from_batches(batches).to_pylist()] == generated


# -- which objects a batch reads --------------------------------------------------------------------


def put(s3, bucket: str, key: str, body: bytes = b"transaction_id\n") -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def test_listing_returns_only_csv_objects_under_the_prefix_sorted_with_size_and_etag(s3, bucket):
    day2 = "transactions/year=2026/month=11/day=02/transactions_2026-11-02.csv"
    day1 = "transactions/year=2026/month=11/day=01/transactions_2026-11-01.csv"
    part = "transactions/year=2026/month=11/day=01/transactions_2026-11-01_part2.csv"
    for key in (day2, part, day1):
        put(s3, bucket, key, csv_data(sample.generate_day(DAY, 3).rows))
    for skipped in (
        "transactions/year=2026/month=11/day=01/_SUCCESS",
        "transactions/year=2026/month=11/day=01/_temporary.csv",
        "transactions/year=2026/month=11/day=01/.transactions_2026-11-01.csv",
        "transactions/year=2026/month=11/day=01/notes.txt",
        "transactions/year=2026/month=11/day=01/transactions_2026-11-01.csv.gz",
        "batch-completion/B1.json",
        "elsewhere/transactions_2026-11-01.csv",
    ):
        put(s3, bucket, skipped)

    objects = stage.batch_objects(s3, bucket, "transactions/", None, "B1")

    assert [item.key for item in objects] == sorted([day1, day2, part])
    for item in objects:
        head = s3.head_object(Bucket=bucket, Key=item.key)
        assert (item.size, item.etag) == (head["ContentLength"], head["ETag"].strip('"'))


def test_listing_an_empty_prefix_gives_no_objects(s3, bucket):
    assert stage.batch_objects(s3, bucket, "transactions/", None, "B1") == []


def test_named_objects_are_returned_in_the_order_given(s3, bucket):
    first, second = "transactions/b.csv", "transactions/a.csv"
    put(s3, bucket, first, b"12345")
    put(s3, bucket, second, b"1")

    objects = stage.batch_objects(s3, bucket, "ignored/", [first, second], "B1")

    assert [(item.key, item.size) for item in objects] == [(first, 5), (second, 1)]


def test_named_objects_that_do_not_exist_are_an_error_naming_each_of_them(s3, bucket):
    present = "transactions/a.csv"
    missing = ["transactions/gone.csv", "transactions/never.csv"]
    put(s3, bucket, present)

    with pytest.raises(stage.BatchObjectsError, match="2 object") as raised:
        stage.batch_objects(s3, bucket, "transactions/", [present, *missing], "B1")

    message = str(raised.value)
    assert all(key in message for key in missing)
    assert present not in message and bucket in message
