"""The totesys remodel's versions and source types, and the dimension load that keeps versions.

The pure parts run in process; the load SQL runs on a throwaway PostgreSQL (pgserver) exactly as
the toolkit renders and stages it, so "an older batch changes nothing, in any order" is checked
on the real statements.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

try:  # the toolkit's SQL runner: its settings come from Airflow's configuration
    from etl_toolkit import sql
except ModuleNotFoundError as error:  # the Glue 5.0 venv (make test-glue5) has no Airflow
    if not (error.name or "").startswith("airflow"):
        raise
    sql = None

# Run again under AWS Glue 5.0's versions by `make test-glue5`: imports no Airflow.
pytestmark = pytest.mark.glue5

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "include" / "glue_scripts" / "totesys" / "totesys_remodel.py"


def load_module(path: Path):
    """Glue scripts are files, not a package: import one by path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


remodel = load_module(SCRIPT)

T0 = datetime(2024, 11, 3, 14, 20, 49, 962000)
T1, T2, T3 = T0 + timedelta(days=1), T0 + timedelta(days=2), T0 + timedelta(days=3)


# -- the source's types, as the real database and its exports have them ---------------------------------


def pandas_export(table: str, records: list[dict], types: dict[str, pa.DataType]) -> pa.Table:
    """Rows of ``table`` typed the way a pandas export types them: int64, float64, string, ns."""
    fields = []
    for name, arrow_type in remodel.SOURCE[table]:
        exported = types.get(name)
        if exported is None:
            exported = {pa.int32(): pa.int64(), pa.timestamp("us"): pa.timestamp("ns")}.get(arrow_type, arrow_type)
        fields.append(pa.field(name, exported))
    stamps = {"created_at": T0, "last_updated": T0}
    return pa.Table.from_pylist([{**stamps, **record} for record in records], schema=pa.schema(fields))


def test_real_data_quirks_become_the_source_types_the_remodel_works_with():
    rows = pandas_export(
        "sales_order",
        [{"sales_order_id": 2, "design_id": 3, "staff_id": 19, "counterparty_id": 8, "units_sold": 42972,
          "unit_price": 3.94, "currency_id": 2, "agreed_delivery_date": "2022-11-07",
          "agreed_payment_date": " 2022-11-08", "agreed_delivery_location_id": 8}],
        {"unit_price": pa.float64(), "agreed_delivery_date": pa.string(), "agreed_payment_date": pa.string()},
    )  # fmt: skip

    conformed = remodel.conform_source("sales_order", rows)

    assert conformed.schema == remodel.source_schema("sales_order")
    [row] = conformed.to_pylist()
    assert row["unit_price"] == Decimal("3.94")  # not 3.9399999999999999467...
    assert (row["agreed_delivery_date"], row["agreed_payment_date"]) == (date(2022, 11, 7), date(2022, 11, 8))
    assert row["last_updated"] == T0  # nanoseconds to microseconds, naive


def test_nullable_ids_read_back_as_floats_become_integers_with_their_nulls():
    rows = pandas_export(
        "transaction",
        [{"transaction_id": 1, "transaction_type": "PURCHASE", "sales_order_id": None, "purchase_order_id": 2.0},
         {"transaction_id": 2, "transaction_type": "SALE", "sales_order_id": 3.0, "purchase_order_id": float("nan")}],
        {"sales_order_id": pa.float64(), "purchase_order_id": pa.float64()},
    )  # fmt: skip

    conformed = remodel.conform_source("transaction", rows)

    assert conformed["sales_order_id"].type == pa.int32()
    assert conformed.select(["sales_order_id", "purchase_order_id"]).to_pylist() == [
        {"sales_order_id": None, "purchase_order_id": 2},
        {"sales_order_id": 3, "purchase_order_id": None},
    ]


@pytest.mark.parametrize(
    ("value", "scale", "expected"),
    [(3.94, 2, "3.94"), (981451.44, 2, "981451.44"), (2.675, 2, "2.68"), (-2.675, 2, "-2.68"), (4, 2, "4.00"),
     ("361.39", 2, "361.39"), (Decimal("1.005"), 2, "1.01"), (None, 2, None)],
)  # fmt: skip
def test_a_price_is_read_as_the_decimal_that_prints_it_and_rounded_as_postgresql_rounds(value, scale, expected):
    assert remodel.to_decimal(value, scale) == (None if expected is None else Decimal(expected))


def test_the_source_s_own_types_pass_through_unchanged():
    rows = pa.Table.from_pylist(
        [{"payment_id": 1, "transaction_id": 1, "counterparty_id": 1, "payment_amount": Decimal("10.50"),
          "currency_id": 1, "payment_type_id": 1, "paid": False, "payment_date": date(2024, 1, 2),
          "company_ac_number": 1, "counterparty_ac_number": 2, "created_at": T0, "last_updated": T1}],
        schema=remodel.source_schema("payment"),
    )  # fmt: skip
    assert remodel.conform_source("payment", rows).equals(rows)


def test_a_decimal_of_another_precision_a_zoned_timestamp_and_extra_columns_are_conformed():
    schema = pa.schema([("currency_id", pa.int64()), ("currency_code", pa.large_string()),
                        ("created_at", pa.timestamp("ms", "Europe/London")),
                        ("last_updated", pa.timestamp("us", "UTC")), ("extra", pa.string())])  # fmt: skip
    summer = datetime(2024, 7, 1, 12, 0, tzinfo=__import__("datetime").UTC)
    rows = pa.Table.from_pylist(
        [{"currency_id": 1, "currency_code": "GBP", "created_at": summer, "last_updated": summer, "extra": "x"}],
        schema=schema,
    )
    [row] = remodel.conform_source("currency", rows).to_pylist()
    assert row == {"currency_id": 1, "currency_code": "GBP", "created_at": datetime(2024, 7, 1, 12, 0),
                   "last_updated": datetime(2024, 7, 1, 12, 0)}  # fmt: skip
    money = pa.table({"value": pa.array([Decimal("12.3456")], pa.decimal128(38, 4))})["value"]
    assert remodel._as_decimal(money, pa.decimal128(10, 2), "t", "c").to_pylist() == [Decimal("12.35")]


@pytest.mark.parametrize(
    ("table", "column", "value", "message"),
    [("payment", "payment_date", "03/11/2022",
      "payment.payment_date: not a date written YYYY-MM-DD, e.g. '03/11/2022'"),
     ("sales_order", "agreed_delivery_date", "2022-02-30", "not a date"),
     ("transaction", "sales_order_id", 2.5, "transaction.sales_order_id: not a whole number, e.g. 2.5"),
     ("sales_order", "unit_price", 123456789.0, "sales_order.unit_price: not a decimal(10, 2)")],
)  # fmt: skip
def test_a_value_that_cannot_be_read_fails_the_job_naming_table_column_and_value(table, column, value, message):
    types = {column: pa.string() if isinstance(value, str) else pa.float64()}
    record = {name: None for name, _ in remodel.SOURCE[table]} | {f"{table}_id": 1, column: value}
    rows = pandas_export(table, [record], types)
    with pytest.raises(remodel.SourceValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        remodel.conform_source(table, rows)


def test_a_missing_column_fails_naming_it():
    rows = pa.table({"currency_id": [1], "created_at": [T0], "last_updated": [T0]})
    with pytest.raises(remodel.SourceValueError, match="currency: the batch has no column currency_code"):
        remodel.conform_source("currency", rows)


# -- versions -----------------------------------------------------------------------------------------


def rows(table: str, *records: dict) -> pa.Table:
    full = [{"created_at": T0, "last_updated": T0, **record} for record in records]
    return pa.Table.from_pylist(full, schema=remodel.source_schema(table))


def empty_batch() -> dict[str, pa.Table]:
    return {table: remodel.source_schema(table).empty_table() for table in remodel.SOURCE}


def department(stamp: datetime, location: str, department_id: int = 1) -> dict:
    return {"department_id": department_id, "department_name": f"Sales {department_id}", "location": location,
            "manager": "Richard Roma", "last_updated": stamp}  # fmt: skip


def staff(stamp: datetime, email: str, department_id: int = 1) -> dict:
    return {"staff_id": 1, "first_name": "Jeremie", "last_name": "Franey", "department_id": department_id,
            "email_address": email, "last_updated": stamp}  # fmt: skip


def address(stamp: datetime, city: str) -> dict:
    return {"address_id": 1, "address_line_1": "6826 Herzog Via", "city": city, "postal_code": "28441",
            "country": "Turkey", "phone": "1803 637401", "last_updated": stamp}  # fmt: skip


def counterparty(stamp: datetime, contact: str) -> dict:
    return {"counterparty_id": 1, "counterparty_legal_name": "Fahey and Sons", "legal_address_id": 1,
            "commercial_contact": contact, "last_updated": stamp}  # fmt: skip


def design(stamp: datetime, file_name: str) -> dict:
    return {"design_id": 1, "design_name": "Wooden", "file_location": "/usr", "file_name": file_name,
            "last_updated": stamp}  # fmt: skip


def sales_order(stamp: datetime, units: int) -> dict:
    return {"sales_order_id": 1, "design_id": 1, "staff_id": 1, "counterparty_id": 1, "units_sold": units,
            "unit_price": Decimal("3.94"), "currency_id": 1, "agreed_delivery_date": date(2024, 11, 20),
            "agreed_payment_date": date(2024, 11, 21), "agreed_delivery_location_id": 1,
            "last_updated": stamp}  # fmt: skip


def first_batch() -> dict[str, pa.Table]:
    batch = empty_batch()
    batch |= {
        "department": rows("department", department(T0, "Manchester"), department(T0, "Leeds", 2)),
        "staff": rows("staff", staff(T0, "jeremie@terrifictotes.com")),
        "address": rows("address", address(T0, "New Patienceburgh")),
        "counterparty": rows("counterparty", counterparty(T0, "Micheal Toy")),
        "design": rows("design", design(T0, "wooden-1.json")),
        "currency": rows("currency", {"currency_id": 1, "currency_code": "GBP"}),
        "payment_type": rows("payment_type", {"payment_type_id": 1, "payment_type_name": "SALES_RECEIPT"}),
        "sales_order": rows("sales_order", sales_order(T0, 100)),
    }
    return batch


def second_batch() -> dict[str, pa.Table]:  # the day after: the same rows change
    batch = empty_batch()
    batch |= {
        "department": rows("department", department(T1, "Salford")),
        "staff": rows("staff", staff(T1, "jeremie.franey@terrifictotes.com")),
        "address": rows("address", address(T1, "Aliso Viejo")),
        "design": rows("design", design(T1, "wooden-2.json")),
        "sales_order": rows("sales_order", sales_order(T1, 120)),
    }
    return batch


def third_batch() -> dict[str, pa.Table]:  # and again; the staff member moves to department 2
    batch = empty_batch()
    batch |= {
        "staff": rows("staff", staff(T2, "jf@terrifictotes.com", department_id=2)),
        "address": rows("address", address(T2, "Lake Charles")),
        "counterparty": rows("counterparty", counterparty(T2, "Melba Sanford")),
        "design": rows("design", design(T2, "wooden-3.json")),
        "sales_order": rows("sales_order", sales_order(T2, 150)),
    }
    return batch


BATCHES = {"b1": first_batch, "b2": second_batch, "b3": third_batch}


def remodel_in_order(order, state=None):
    """Remodel the batches in ``order``, each on the state the one before left; (outputs, state)."""
    state, outputs = dict(state or {}), []
    for name in order:
        tables, state = remodel.remodel(BATCHES[name](), state)
        outputs.append((name, tables))
    return outputs, state


def test_every_dimension_row_carries_the_version_it_was_built_from():
    [(_, first), (_, second)], _ = remodel_in_order(["b1", "b2"])

    for name in ("dim_location", "dim_currency", "dim_design", "dim_payment_type"):
        assert set(first[name]["source_last_updated"].to_pylist()) == {T0}, name
    assert second["dim_design"].to_pylist()[0]["source_last_updated"] == T1
    [staff_row] = second["dim_staff"].to_pylist()  # its department changed too
    assert (staff_row["source_last_updated"], staff_row["department_last_updated"]) == (T1, T1)
    assert staff_row["location"] == "Salford"
    [counterparty_row] = second["dim_counterparty"].to_pylist()  # re-emitted for its address
    assert (counterparty_row["source_last_updated"], counterparty_row["address_last_updated"]) == (T0, T1)
    assert counterparty_row["counterparty_legal_city"] == "Aliso Viejo"
    assert second["dim_date"].schema == remodel.warehouse_schema("dim_date")  # dim_date has no version


def test_the_state_never_rolls_back_whatever_order_batches_are_remodelled_in():
    _, latest = remodel_in_order(["b1", "b2", "b3"])

    for order in itertools.permutations(BATCHES):
        _, state = remodel_in_order(order)
        assert {t: state[t].to_pylist() for t in state} == {t: latest[t].to_pylist() for t in latest}, order
    _, again = remodel_in_order(["b1", "b2"], latest)  # reprocessing older batches
    assert {t: again[t].to_pylist() for t in again} == {t: latest[t].to_pylist() for t in latest}


def test_an_equal_version_leaves_the_state_s_row_and_a_newer_one_replaces_it():
    state = rows("staff", staff(T1, "state@x"))
    assert remodel.merge_state(state, rows("staff", staff(T1, "batch@x")), "staff_id")["email_address"].to_pylist() \
        == ["state@x"]  # fmt: skip
    assert remodel.merge_state(state, rows("staff", staff(T2, "batch@x")), "staff_id")["email_address"].to_pylist() \
        == ["batch@x"]  # fmt: skip
    assert remodel.merge_state(state, rows("staff", staff(T0, "old@x")), "staff_id")["email_address"].to_pylist() \
        == ["state@x"]  # fmt: skip


def test_a_batch_remodelled_again_after_newer_ones_emits_its_joined_rows_at_their_newest():
    _, latest = remodel_in_order(["b1", "b2", "b3"])

    tables, _ = remodel.remodel(first_batch(), latest)

    [staff_row] = tables["dim_staff"].to_pylist()
    assert staff_row["email_address"] == "jf@terrifictotes.com" and staff_row["location"] == "Leeds"
    assert tables["dim_design"].to_pylist()[0]["file_name"] == "wooden-1.json"  # its own row: the load drops it


def test_a_pair_version_keeps_a_move_to_a_department_last_changed_before_it():
    """The greatest of the two stamps would rank the move below the version it replaces."""
    old = remodel.remodel(first_batch(), {})[1]
    department_1_later = empty_batch() | {"department": rows("department", department(T3, "Bolton"))}
    _, state = remodel.remodel(department_1_later, old)  # department 1 changed at T3
    [before] = remodel.remodel(department_1_later, state)[0]["dim_staff"].to_pylist()
    move = empty_batch() | {"staff": rows("staff", staff(T2, "jf@x", department_id=2))}  # at T2, to department 2
    [after] = remodel.remodel(move, state)[0]["dim_staff"].to_pylist()

    assert max(after["source_last_updated"], after["department_last_updated"]) < max(
        before["source_last_updated"], before["department_last_updated"]
    )
    assert (after["source_last_updated"], after["department_last_updated"]) > (
        before["source_last_updated"], before["department_last_updated"]
    )


# -- the load SQL on PostgreSQL --------------------------------------------------------------------------

KEYS = {name: (f"{name.removeprefix('dim_')}_id",) for name in remodel.WAREHOUSE if name.startswith("dim_")}
KEYS |= {"dim_date": ("date_id",), "dim_location": ("location_id",)}
KEYS |= {
    fact: (key, "last_updated_date", "last_updated_time")
    for fact, key in (("fact_sales_order", "sales_order_id"), ("fact_purchase_orders", "purchase_order_id"),
                      ("fact_payment", "payment_id"))
}  # fmt: skip
LOADED_AT = datetime(2026, 11, 29, 12, 0)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    if sql is None:
        pytest.skip("the load SQL runs through the toolkit's SQL runner, which needs Airflow: checked in .venv")
    import pgserver
    import psycopg2
    from psycopg2.extensions import parse_dsn

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    connection = psycopg2.connect(**parse_dsn(server.get_uri()))
    yield connection
    connection.close()
    server.cleanup()


@pytest.fixture
def warehouse(postgres):
    with postgres, postgres.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS totesys CASCADE")
        sql.execute(cursor, "totesys", "create_tables.sql")
    return postgres


def load(connection, batch_id: str, tables: dict[str, pa.Table]) -> None:
    """One batch into the warehouse as ``load_warehouse`` does: staged, then its SQL file, in one transaction."""
    with connection, connection.cursor() as cursor:
        for entity, rows_ in tables.items():
            if rows_.num_rows == 0:
                continue
            staged = sql.stage_arrow(cursor, "totesys", entity, rows_)
            sql.execute(cursor, "totesys", "load_fact.sql" if entity.startswith("fact_") else "load_dimension.sql",
                        {"batch_id": batch_id, "loaded_at": LOADED_AT}, table=f"totesys.{entity}", staged=staged,
                        columns=rows_.column_names, keys=KEYS[entity])  # fmt: skip


def dump(connection, *, surrogates: bool = True) -> dict[str, list[tuple]]:
    """Every row of every table, by key, without load times (and without surrogate ids if asked)."""
    dropped = {"loaded_at"} | (set() if surrogates else {"sales_record_id", "purchase_record_id", "payment_record_id"})
    out = {}
    with connection, connection.cursor() as cursor:
        for entity, key in KEYS.items():
            cursor.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'totesys' "
                "AND table_name = %s ORDER BY ordinal_position",
                (entity,),
            )
            columns = [name for (name,) in cursor.fetchall() if name not in dropped]
            cursor.execute(f"SELECT {', '.join(columns)} FROM totesys.{entity} ORDER BY {', '.join(key)}")
            out[entity] = cursor.fetchall()
    return out


def test_the_dimension_load_never_replaces_a_newer_version_with_an_older_one(warehouse):
    outputs, _ = remodel_in_order(["b1", "b2", "b3"])
    for batch_id, tables in outputs:
        load(warehouse, batch_id, tables)
    loaded = dump(warehouse)

    for batch_id, tables in remodel_in_order(["b1", "b2"])[0]:  # the older batches' own rows, loaded again
        load(warehouse, batch_id, tables)

    assert dump(warehouse) == loaded
    [design_row] = loaded["dim_design"]
    assert "wooden-3.json" in design_row and T2 in design_row
    assert [row[-2:] for row in loaded["dim_staff"]] == [(T2, T0)]  # department 2, unchanged since T0


def test_reprocessing_loaded_batches_in_any_order_leaves_every_table_as_it_was(warehouse):
    outputs, state = remodel_in_order(["b1", "b2", "b3"])
    for batch_id, tables in outputs:
        load(warehouse, batch_id, tables)
    loaded = dump(warehouse)

    for order in itertools.permutations(BATCHES):
        reprocessed, state = remodel_in_order(order, state)
        for batch_id, tables in reprocessed:
            load(warehouse, batch_id, tables)
        assert dump(warehouse) == loaded, order


def test_a_failed_batch_loaded_after_a_newer_one_ends_as_it_does_in_order(postgres):
    """After the first, full batch: the second fails and runs again once the third has loaded."""
    finals = set()
    for order in (["b1", "b2", "b3"], ["b1", "b3", "b2"]):
        with postgres, postgres.cursor() as cursor:
            cursor.execute("DROP SCHEMA IF EXISTS totesys CASCADE")
            sql.execute(cursor, "totesys", "create_tables.sql")
        outputs, _ = remodel_in_order(order)
        for batch_id, tables in outputs:
            load(postgres, batch_id, tables)
        finals.add(repr(dump(postgres, surrogates=False)))
    assert len(finals) == 1


def test_a_stale_output_loaded_last_changes_no_dimension(warehouse):
    """Outputs of remodels that ran in order but loaded in reverse: the oldest arrives last."""
    outputs, _ = remodel_in_order(["b1", "b2", "b3"])
    for batch_id, tables in outputs:
        load(warehouse, batch_id, tables)
    loaded = dump(warehouse)
    for batch_id, tables in reversed(outputs):
        load(warehouse, batch_id, tables)
    assert dump(warehouse) == loaded


def test_rows_loaded_before_versions_were_kept_take_the_next_version(warehouse):
    with warehouse, warehouse.cursor() as cursor:
        cursor.execute("INSERT INTO totesys.dim_design (design_id, design_name, file_location, file_name) "
                       "VALUES (1, 'Wooden', '/usr', 'unversioned.json')")  # fmt: skip
        sql.execute(cursor, "totesys", "create_tables.sql")  # again: idempotent
    load(warehouse, "b1", {"dim_design": remodel.remodel(first_batch(), {})[0]["dim_design"]})
    assert dump(warehouse)["dim_design"] == [(1, "Wooden", "/usr", "wooden-1.json", T0)]


def test_create_tables_adds_the_version_columns_to_tables_made_without_them(postgres):
    with postgres, postgres.cursor() as cursor:
        cursor.execute("DROP SCHEMA IF EXISTS totesys CASCADE")
        cursor.execute("CREATE SCHEMA totesys; CREATE TABLE totesys.dim_staff (staff_id int PRIMARY KEY, "
                       "first_name text NOT NULL, last_name text NOT NULL, department_name text, location text, "
                       "email_address text NOT NULL)")  # fmt: skip
        cursor.execute("INSERT INTO totesys.dim_staff VALUES (1, 'A', 'B', 'Sales', 'Leeds', 'a@b')")
        sql.execute(cursor, "totesys", "create_tables.sql")
        cursor.execute("SELECT * FROM totesys.dim_staff")
        assert cursor.fetchall() == [(1, "A", "B", "Sales", "Leeds", "a@b", None, None)]
        cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = 'totesys' "
                       "AND column_name LIKE '%%last_updated' ORDER BY table_name, ordinal_position")  # fmt: skip
        assert len(cursor.fetchall()) == 9
