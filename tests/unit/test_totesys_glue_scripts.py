"""The totesys Glue scripts' pure functions: the allow-list, the watermarks, the marker, the remodel."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from etl_toolkit.contract import parse_marker

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "include" / "glue_scripts" / "totesys"
QUALITY = ROOT / "include" / "quality" / "totesys"


def load_module(path: Path):
    """Glue scripts are files, not a package: import one by path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


extract = load_module(SCRIPTS / "totesys_extract.py")
remodel = load_module(SCRIPTS / "totesys_remodel.py")

T0 = datetime(2026, 11, 20, 9, 30, 0, 123456)
T1 = datetime(2026, 11, 21, 14, 5, 7, 1)


# -- the allow-list ---------------------------------------------------------------------------------


def test_no_configured_tables_means_all_eleven():
    assert extract.allowed_tables("") == list(extract.TABLES)
    assert extract.allowed_tables(None) == list(extract.TABLES)
    assert len(extract.TABLES) == 11


def test_configured_tables_are_kept_in_order_once():
    assert extract.allowed_tables("staff, payment,staff") == ["staff", "payment"]
    assert extract.allowed_tables(["currency"]) == ["currency"]


@pytest.mark.parametrize(
    "name", ["staff; DROP TABLE staff", "pg_shadow", "Staff", 'staff"--', "information_schema.tables"]
)
def test_a_table_name_off_the_allow_list_is_refused_with_the_names_that_are_allowed(name):
    with pytest.raises(extract.RefusedTableName, match="refused table name") as error:
        extract.allowed_tables(f"currency,{name}")
    assert name in str(error.value) and "sales_order" in str(error.value)


def test_the_extract_refuses_a_bad_table_before_reading_the_secret_or_connecting(monkeypatch):
    def must_not_run(*_):
        raise AssertionError("the secret was read for a refused table list")

    monkeypatch.setattr(extract, "read_secret", must_not_run)
    argv = ["job", "--batch_id", "b1", "--tables", "staff; DROP TABLE staff", "--source_secret_id", "etl/totesys",
            "--ingestion_bucket", "totesys-ingestion"]  # fmt: skip
    with pytest.raises(extract.RefusedTableName):
        extract.main(argv)


def test_the_select_names_only_allow_listed_identifiers_and_binds_the_watermark():
    statement, parameters = extract.select_statement("staff", "2026-11-20T09:30:00.123456")
    assert statement.startswith('SELECT "staff_id", "first_name", "last_name", "department_id", "email_address", ')
    assert 'FROM "staff" WHERE "last_updated" > %(watermark)s::timestamp' in statement
    assert parameters == {"watermark": "2026-11-20T09:30:00.123456"}
    assert "2026" not in statement


def test_the_first_extract_of_a_table_selects_every_row():
    statement, parameters = extract.select_statement("transaction", None)
    assert "WHERE" not in statement and parameters == {}
    assert 'FROM "transaction" ORDER BY "last_updated", "transaction_id"' in statement


def test_select_statement_refuses_an_unknown_table():
    with pytest.raises(extract.RefusedTableName):
        extract.select_statement("staff; DROP TABLE staff", None)


# -- watermarks and the marker ----------------------------------------------------------------------


def test_watermarks_move_to_the_newest_extracted_change_and_never_back():
    current = {"staff": "2026-11-20T09:30:00.000000", "payment": "2026-11-21T00:00:00.000000"}
    newest = {"staff": "2026-11-21T10:00:00.000000", "payment": "2026-11-20T00:00:00.000000", "design": None}
    assert extract.advance_watermarks(current, newest) == {
        "staff": "2026-11-21T10:00:00.000000",  # moved
        "payment": "2026-11-21T00:00:00.000000",  # never back
    }  # design: no rows yet, no watermark
    assert current["staff"] == "2026-11-20T09:30:00.000000"  # the input is not changed


def test_tables_not_in_the_batch_keep_their_watermarks():
    assert extract.advance_watermarks({"staff": "a"}, {}) == {"staff": "a"}


def test_watermarks_keep_every_microsecond_and_sort_as_text_as_they_do_as_time():
    assert extract.format_watermark(T0) == "2026-11-20T09:30:00.123456"
    assert extract.format_watermark(datetime(2026, 11, 20, 9, 30)) == "2026-11-20T09:30:00.000000"
    assert (extract.format_watermark(T0) < extract.format_watermark(T1)) == (T0 < T1)


def test_the_marker_follows_the_contract():
    body = extract.marker_body("totesys-1", T0.astimezone(), T1.astimezone(), {"staff": 2, "payment": 0})
    marker = parse_marker("batch-completion/totesys-1.json", json.dumps(body))
    assert marker.expected_counts == {"staff": 2, "payment": 0}


def test_connection_options_from_the_secret_never_echo_it():
    options = extract.connection_options(
        json.dumps({"host": "h", "port": 5433, "dbname": "totesys", "username": "totesys_app", "password": "s3cr3t"})
    )
    assert options["user"] == "totesys_app" and options["password"] == "s3cr3t" and options["port"] == 5433
    with pytest.raises(ValueError) as error:
        extract.connection_options('{"host": "h", "dbname": "d", "password": "s3cr3t"}')
    assert "username" in str(error.value) and "s3cr3t" not in str(error.value)
    with pytest.raises(ValueError) as error:
        extract.connection_options("password=s3cr3t")
    assert "s3cr3t" not in str(error.value)


def test_the_landing_suites_declare_exactly_the_extracts_schema():
    for table in extract.TABLES:
        suite = json.loads((QUALITY / f"landing_{table}.json").read_text())
        declared = [(c["name"], c["type"]) for c in suite["columns"]]
        assert declared == [(f.name, str(f.type)) for f in extract.schema(table)], table
        assert remodel.source_schema(table) == extract.schema(table)


# -- the remodel ------------------------------------------------------------------------------------


def rows(table: str, *records: dict) -> pa.Table:
    schema = remodel.source_schema(table)
    full = [{"created_at": T0, "last_updated": T0, **record} for record in records]
    return pa.Table.from_pylist(full, schema=schema)


def empty_batch() -> dict[str, pa.Table]:
    return {table: remodel.source_schema(table).empty_table() for table in remodel.SOURCE}


def sales_order(sales_order_id: int, last_updated: datetime, units: int) -> dict:
    return {
        "sales_order_id": sales_order_id, "design_id": 1, "staff_id": 1, "counterparty_id": 1, "units_sold": units,
        "unit_price": Decimal("2.50"), "currency_id": 1, "agreed_delivery_date": date(2026, 12, 1),
        "agreed_payment_date": date(2026, 12, 15), "agreed_delivery_location_id": 1, "last_updated": last_updated,
    }  # fmt: skip


def first_batch() -> dict[str, pa.Table]:
    batch = empty_batch()
    batch["department"] = rows("department", {"department_id": 1, "department_name": "Sales", "location": "Leeds"})
    batch["staff"] = rows("staff", {"staff_id": 1, "first_name": "Zoë", "last_name": "Ó Súilleabháin",
                                    "department_id": 1, "email_address": "zoe@terrifictotes.com"})  # fmt: skip
    batch["address"] = rows("address", {"address_id": 1, "address_line_1": "1 Road", "city": "Leeds",
                                        "postal_code": "LS1", "country": "UK", "phone": "0113"})  # fmt: skip
    batch["counterparty"] = rows("counterparty", {"counterparty_id": 1, "counterparty_legal_name": "Fahey and Sons",
                                                  "legal_address_id": 1})  # fmt: skip
    batch["currency"] = rows(
        "currency", {"currency_id": 1, "currency_code": "GBP"}, {"currency_id": 2, "currency_code": "XXX"}
    )
    batch["sales_order"] = rows("sales_order", sales_order(1, T0, 10))
    return batch


def test_a_first_batch_becomes_every_warehouse_table_with_its_schema():
    tables, state = remodel.remodel(first_batch(), {})
    assert list(tables) == list(remodel.WAREHOUSE)
    for name, table in tables.items():
        assert table.schema == remodel.warehouse_schema(name), name
    [staff] = tables["dim_staff"].to_pylist()
    assert staff == {"staff_id": 1, "first_name": "Zoë", "last_name": "Ó Súilleabháin", "department_name": "Sales",
                     "location": "Leeds", "email_address": "zoe@terrifictotes.com"}  # fmt: skip
    [counterparty] = tables["dim_counterparty"].to_pylist()
    assert counterparty["counterparty_legal_city"] == "Leeds"
    assert counterparty["counterparty_legal_phone_number"] == "0113"
    assert tables["dim_currency"].to_pylist() == [
        {"currency_id": 1, "currency_code": "GBP", "currency_name": "British Pound"},
        {"currency_id": 2, "currency_code": "XXX", "currency_name": None},
    ]
    [fact] = tables["fact_sales_order"].to_pylist()
    assert fact["sales_staff_id"] == 1 and fact["units_sold"] == 10
    assert (fact["created_date"], fact["created_time"]) == (date(2026, 11, 20), time(9, 30, 0, 123456))
    assert (fact["last_updated_date"], fact["last_updated_time"]) == (date(2026, 11, 20), time(9, 30, 0, 123456))
    assert state["staff"].num_rows == 1 and state["department"].num_rows == 1


def test_dim_date_covers_every_date_a_fact_refers_to_once():
    tables, _ = remodel.remodel(first_batch(), {})
    dates = {row["date_id"]: row for row in tables["dim_date"].to_pylist()}
    assert set(dates) == {date(2026, 11, 20), date(2026, 12, 1), date(2026, 12, 15)}
    assert dates[date(2026, 12, 1)] == {"date_id": date(2026, 12, 1), "year": 2026, "month": 12, "day": 1,
                                        "day_of_week": 2, "day_name": "Tuesday", "month_name": "December",
                                        "quarter": 4}  # fmt: skip


def test_facts_keep_one_row_per_version_and_a_version_seen_twice_is_one_row():
    batch = empty_batch()
    batch["sales_order"] = rows("sales_order", sales_order(1, T0, 10), sales_order(1, T1, 12), sales_order(1, T1, 12))
    tables, _ = remodel.remodel(batch, {})
    versions = sorted((r["last_updated_date"], r["units_sold"]) for r in tables["fact_sales_order"].to_pylist())
    assert versions == [(date(2026, 11, 20), 10), (date(2026, 11, 21), 12)]


def test_a_changed_department_re_emits_its_staff_from_the_state():
    _, state = remodel.remodel(first_batch(), {})
    batch = empty_batch()
    batch["department"] = rows("department", {"department_id": 1, "department_name": "Sales & Marketing",
                                              "location": "York", "last_updated": T1})  # fmt: skip

    tables, new_state = remodel.remodel(batch, state)

    assert tables["dim_staff"].to_pylist()[0]["department_name"] == "Sales & Marketing"
    assert tables["dim_staff"].to_pylist()[0]["location"] == "York"
    assert tables["fact_sales_order"].num_rows == 0 and tables["dim_date"].num_rows == 0
    assert new_state["department"].to_pylist()[0]["location"] == "York"


def test_a_changed_address_re_emits_its_counterparties_and_the_location():
    _, state = remodel.remodel(first_batch(), {})
    batch = empty_batch()
    batch["address"] = rows("address", {"address_id": 1, "address_line_1": "2 Street", "city": "York",
                                        "postal_code": "YO1", "country": "UK", "phone": "01904",
                                        "last_updated": T1})  # fmt: skip
    tables, _ = remodel.remodel(batch, state)
    assert tables["dim_counterparty"].to_pylist()[0]["counterparty_legal_city"] == "York"
    assert tables["dim_location"].to_pylist()[0]["location_id"] == 1


def test_the_state_keeps_the_latest_version_whatever_order_batches_come_in():
    newer = rows("staff", {"staff_id": 1, "first_name": "A", "last_name": "B", "department_id": 1,
                           "email_address": "new@x", "last_updated": T1})  # fmt: skip
    older = rows("staff", {"staff_id": 1, "first_name": "A", "last_name": "B", "department_id": 1,
                           "email_address": "old@x", "last_updated": T0})  # fmt: skip
    assert remodel.merge_state(newer, older, "staff_id").to_pylist()[0]["email_address"] == "new@x"
    assert remodel.merge_state(older, newer, "staff_id").to_pylist()[0]["email_address"] == "new@x"


def test_an_empty_batch_remodels_into_empty_tables():
    tables, state = remodel.remodel(empty_batch(), {})
    assert {name: t.num_rows for name, t in tables.items()} == dict.fromkeys(remodel.WAREHOUSE, 0)
    assert all(t.num_rows == 0 for t in state.values())
