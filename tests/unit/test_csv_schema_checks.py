"""etl_toolkit.schema_checks on CSV objects: samples of their first bytes checked through Great
Expectations (for real) against the e-commerce raw suite, ``include/quality/ecommerce/raw.json``."""

from __future__ import annotations

import csv
import io
import math
from datetime import date

import pytest

from devstack.sample_data.ecommerce import COLUMNS, generate_day
from etl_toolkit.schema_checks import SchemaCheckFailed, check_csv_samples, csv_sample, load_suite, validate_csv_samples

SUITE = load_suite("ecommerce", "raw")
DAY = date(2026, 11, 1)
KEY = "transactions/year=2026/month=11/day=01/transactions_2026-11-01.csv"
OTHER_KEY = "transactions/year=2026/month=11/day=02/transactions_2026-11-02.csv"


def rows(count: int = 20, *, seed: int = 7) -> list[dict[str, str]]:
    """Valid transactions as the upstream generator writes them, by column name."""
    return [dict(zip(COLUMNS, row, strict=True)) for row in generate_day(DAY, count, seed=seed).rows]


def csv_data(records: list[dict[str, str]], columns=COLUMNS) -> bytes:
    """A CSV object with a header of ``columns`` and those cells of each record (others left out)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue().encode()


def sample(records: list[dict[str, str]], columns=COLUMNS):
    return csv_sample(csv_data(records, columns), complete=True)


def failed_expectations(result: dict) -> list[tuple[str, str | None]]:
    return [(failure["expectation"], failure.get("column")) for failure in result["failed"]]


def test_the_raw_suite_declares_the_contract_columns():
    assert [column.name for column in SUITE.columns] == list(COLUMNS)
    assert 0 < SUITE.mostly < 1


def test_a_sample_reads_every_column_as_text():
    table = sample(rows(3))

    assert table.column_names == list(COLUMNS)
    assert {str(field.type) for field in table.schema} == {"string"}
    assert table.num_rows == 3
    assert table.column("quantity").to_pylist() == [record["quantity"] for record in rows(3)]


def test_a_good_sample_passes():
    result = check_csv_samples({KEY: sample(rows())}, SUITE, batch_id="B1")

    assert result["success"] is True
    assert (result["rows"], result["files"], result["headers"], result["objects"]) == (20, 1, 1, [KEY])


def test_no_objects_pass_with_nothing_checked():
    result = validate_csv_samples({}, SUITE, batch_id="B1")

    assert (result["success"], result["files"], result["evaluated"]) == (True, 0, 0)


def test_a_header_without_payment_type_fails_naming_the_column_and_the_object():
    columns = [name for name in COLUMNS if name != "payment_type"]

    with pytest.raises(SchemaCheckFailed) as raised:
        check_csv_samples({KEY: sample(rows(), columns)}, SUITE, batch_id="B1")

    result = raised.value.result
    assert result["failed"][0] == {
        "expectation": "expect_table_columns_to_match_set",
        "observed": {"missing": ["payment_type"]},
    }
    assert result["objects"] == [KEY]
    assert "payment_type" in str(raised.value) and KEY in str(raised.value)


def test_an_extra_column_fails_naming_it():
    records = [{**record, "discount": "0.00"} for record in rows()]

    with pytest.raises(SchemaCheckFailed) as raised:
        check_csv_samples({KEY: sample(records, [*COLUMNS, "discount"])}, SUITE, batch_id="B1")

    assert raised.value.result["failed"] == [
        {"expectation": "expect_table_columns_to_match_set", "observed": {"unexpected": ["discount"]}}
    ]
    assert "discount" in str(raised.value) and KEY in str(raised.value)


def test_a_cut_sample_drops_its_last_partial_line_and_passes():
    data = csv_data(rows())
    last_line_start = data.rstrip(b"\n").rfind(b"\n") + 1
    cut = data[: last_line_start + 30]  # the last line stops within its price or date

    table = csv_sample(cut, complete=False)

    assert table.num_rows == 19
    assert table.slice(18).to_pylist() == rows()[18:19]
    assert check_csv_samples({KEY: table}, SUITE, batch_id="B1")["success"] is True


def test_a_sample_cut_right_after_a_line_end_keeps_every_whole_line():
    data = csv_data(rows())

    assert csv_sample(data, complete=False).num_rows == 20
    assert csv_sample(data, complete=True).num_rows == 20


def test_a_column_whose_values_mostly_do_not_match_its_pattern_fails():
    records = [{**record, "quantity": "abc"} for record in rows()]

    with pytest.raises(SchemaCheckFailed) as raised:
        check_csv_samples({KEY: sample(records)}, SUITE, batch_id="B1")

    result = raised.value.result
    assert failed_expectations(result) == [("expect_column_values_to_match_regex", "quantity")]
    assert result["failed"][0]["observed"]["unexpected_count"] == 20
    assert result["failed"][0]["observed"]["sample"] == ["abc"]


def bad_quantities(count: int) -> list[dict[str, str]]:
    """20 rows, the first ``count`` with a quantity that does not parse."""
    return [{**record, "quantity": "abc"} if i < count else record for i, record in enumerate(rows())]


def allowed_bad_rows(total: int) -> int:
    """The most rows out of ``total`` that may miss a pattern under the suite's ``mostly``."""
    return math.floor(round((1 - SUITE.mostly) * total, 9))


def test_a_few_bad_values_within_the_suites_share_pass():
    allowed = allowed_bad_rows(20)
    assert allowed >= 1

    for count in range(1, allowed + 1):
        result = validate_csv_samples({KEY: sample(bad_quantities(count))}, SUITE, batch_id="B1")
        assert result["success"] is True, (count, result)


def test_one_bad_value_more_than_the_suites_share_fails():
    result = validate_csv_samples({KEY: sample(bad_quantities(allowed_bad_rows(20) + 1))}, SUITE, batch_id="B1")

    assert failed_expectations(result) == [("expect_column_values_to_match_regex", "quantity")]


def test_of_two_objects_with_different_headers_the_failing_one_is_named():
    samples = {
        KEY: sample(rows()),
        OTHER_KEY: sample(rows(seed=8), [name for name in COLUMNS if name != "payment_type"]),
    }

    with pytest.raises(SchemaCheckFailed) as raised:
        check_csv_samples(samples, SUITE, batch_id="B1")

    result = raised.value.result
    assert result["objects"] == [OTHER_KEY]
    assert (result["files"], result["headers"]) == (2, 2)
    assert OTHER_KEY in str(raised.value) and KEY not in str(raised.value)


def test_objects_whose_columns_come_in_another_order_pass_and_count_all_their_rows():
    samples = {KEY: sample(rows(20)), OTHER_KEY: sample(rows(5, seed=8), list(reversed(COLUMNS)))}

    result = check_csv_samples(samples, SUITE, batch_id="B1")

    assert result["success"] is True
    assert (result["files"], result["headers"]) == (2, 2)
    assert result["objects"] == sorted(samples)
    assert result["rows"] == 25
