"""The totesys source simulator: the connection it reads, the tables it owns, and the real data
loaded as its starting state (on a throwaway PostgreSQL, from an export made here with the real
data's quirks)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devstack.sample_data import totesys
from tests.unit.test_totesys_glue_scripts import extract


def test_the_connection_is_read_from_the_airflow_connection_in_json_or_uri_form():
    conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5433, "schema": "totesys", "login": "totesys_app",
            "password": "p@ss word"}  # fmt: skip
    expected = {"host": "127.0.0.1", "port": 5433, "dbname": "totesys", "user": "totesys_app", "password": "p@ss word"}
    assert totesys._connect_kwargs(json.dumps(conn)) == expected
    assert totesys._connect_kwargs("postgresql://totesys_app:p%40ss%20word@127.0.0.1:5433/totesys") == expected


def test_the_source_has_the_eleven_tables_and_exactly_the_columns_the_extract_allows():
    assert set(totesys.TABLES) == set(extract.TABLES)
    for table, columns in extract.TABLES.items():
        body = re.search(rf"CREATE TABLE {table} \((.*?)\);", totesys.DDL, re.S)[1]
        declared = [line.split()[0] for line in re.split(r",\s*(?![^()]*\))", body) if line.split()]
        declared = [name for name in declared if name not in ("CHECK",)]
        assert declared == [name for name, _ in columns], table


# -- the real data as a starting state ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "declared", "expected"),
    [(2.0, "integer", "2"), (None, "integer", "\\N"), (float("nan"), "integer", "\\N"), (3.94, "numeric", "3.94"),
     (981451.44, "numeric", "981451.44"), ("2022-11-04", "text", "2022-11-04"), (True, "boolean", "t"),
     (datetime(2022, 11, 3, 14, 20, 49, 962000), "timestamp without time zone", "2022-11-03 14:20:49.962000"),
     ("a\tb", "text", "a\\tb")],
)  # fmt: skip
def test_each_exported_value_is_written_as_copy_text_for_its_declared_column(value, declared, expected):
    assert totesys.copy_text(value, declared, "t.c") == expected


def test_a_fractional_float_in_an_integer_column_is_refused_naming_it():
    with pytest.raises(totesys.RealDataError, match=r"transaction.sales_order_id: 2.5 is not a whole number"):
        totesys.copy_text(2.5, "integer", "transaction.sales_order_id")


STAMP = datetime(2022, 11, 3, 14, 20, 49, 962000)


def export(folder, table: str, columns: dict[str, pa.DataType], records: list[dict]) -> None:
    """One table as pandas exports it: int64 ids, float prices, string dates, ns timestamps."""
    schema = pa.schema([*columns.items(), ("created_at", pa.timestamp("ns")), ("last_updated", pa.timestamp("ns"))])
    full = [{"created_at": STAMP, "last_updated": STAMP, **record} for record in records]
    pq.write_table(pa.Table.from_pylist(full, schema=schema), folder / f"{table}.parquet")


def real_export(folder) -> None:
    i, f, s, b = pa.int64(), pa.float64(), pa.string(), pa.bool_()
    export(folder, "address", {"address_id": i, "address_line_1": s, "address_line_2": s, "district": s, "city": s,
                               "postal_code": s, "country": s, "phone": s},
           [{"address_id": n, "address_line_1": f"{n} Via", "city": "Leeds", "postal_code": "LS1", "country": "UK",
             "phone": "0113"} for n in (1, 2)])  # fmt: skip
    export(folder, "currency", {"currency_id": i, "currency_code": s}, [{"currency_id": 1, "currency_code": "GBP"}])
    export(folder, "department", {"department_id": i, "department_name": s, "location": s, "manager": s},
           [{"department_id": 1, "department_name": "Sales", "location": "Leeds"}])  # fmt: skip
    export(folder, "design", {"design_id": i, "design_name": s, "file_location": s, "file_name": s},
           [{"design_id": 8, "design_name": "Wooden", "file_location": "/usr", "file_name": "w.json"}])  # fmt: skip
    export(folder, "payment_type", {"payment_type_id": i, "payment_type_name": s},
           [{"payment_type_id": n, "payment_type_name": name} for n, name in
            enumerate(("SALES_RECEIPT", "SALES_REFUND", "PURCHASE_PAYMENT"), 1)])  # fmt: skip
    export(folder, "counterparty", {"counterparty_id": i, "counterparty_legal_name": s, "legal_address_id": i,
                                    "commercial_contact": s, "delivery_contact": s},
           [{"counterparty_id": n, "counterparty_legal_name": f"C{n}", "legal_address_id": n}
            for n in (1, 2)])  # fmt: skip
    export(folder, "staff", {"staff_id": i, "first_name": s, "last_name": s, "department_id": i, "email_address": s},
           [{"staff_id": n, "first_name": "A", "last_name": "B", "department_id": 1, "email_address": f"{n}@x"}
            for n in (1, 2)])  # fmt: skip
    order = {"design_id": 8, "staff_id": 1, "counterparty_id": 2, "currency_id": 1, "agreed_delivery_location_id": 2,
             "agreed_delivery_date": "2022-11-07", "agreed_payment_date": "2022-11-08"}  # fmt: skip
    export(folder, "sales_order", {"sales_order_id": i, "design_id": i, "staff_id": i, "counterparty_id": i,
                                   "units_sold": i, "unit_price": f, "currency_id": i, "agreed_delivery_date": s,
                                   "agreed_payment_date": s, "agreed_delivery_location_id": i},
           [{**order, "sales_order_id": n, "units_sold": 1000 + n, "unit_price": 3.94} for n in (2, 3, 5)])  # fmt: skip
    export(folder, "purchase_order", {"purchase_order_id": i, "staff_id": i, "counterparty_id": i, "item_code": s,
                                      "item_quantity": i, "item_unit_price": f, "currency_id": i,
                                      "agreed_delivery_date": s, "agreed_payment_date": s,
                                      "agreed_delivery_location_id": i},
           [{**order, "purchase_order_id": 1, "item_code": "ZDOI5EA", "item_quantity": 371,
             "item_unit_price": 361.39}])  # fmt: skip
    export(folder, "transaction", {"transaction_id": i, "transaction_type": s, "sales_order_id": f,
                                   "purchase_order_id": f},
           [{"transaction_id": 1, "transaction_type": "PURCHASE", "purchase_order_id": 1.0},
            {"transaction_id": 2, "transaction_type": "SALE", "sales_order_id": 2.0}])  # fmt: skip
    export(folder, "payment", {"payment_id": i, "transaction_id": i, "counterparty_id": i, "payment_amount": f,
                               "currency_id": i, "payment_type_id": i, "paid": b, "payment_date": s,
                               "company_ac_number": i, "counterparty_ac_number": i},
           [{"payment_id": 2, "transaction_id": 2, "counterparty_id": 2, "payment_amount": 552548.62,
             "currency_id": 1, "payment_type_id": 1, "paid": False, "payment_date": "2022-11-04",
             "company_ac_number": 67305075, "counterparty_ac_number": 31622269}])  # fmt: skip


@pytest.fixture(scope="module")
def source_db(tmp_path_factory):
    import pgserver
    import psycopg2
    from psycopg2.extensions import parse_dsn

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    conn = psycopg2.connect(**parse_dsn(server.get_uri()))
    yield conn
    conn.close()
    server.cleanup()


def test_the_real_export_loads_into_the_declared_columns_and_the_sequences_follow_it(tmp_path, source_db):
    totesys.init(source_db, sales_orders=5, seed=1)  # something to replace
    real_export(tmp_path)

    counts = totesys.init_from_real(source_db, tmp_path)

    assert counts == {"address": 2, "counterparty": 2, "currency": 1, "department": 1, "design": 1,
                      "staff": 2, "sales_order": 3, "purchase_order": 1, "payment": 1, "payment_type": 3,
                      "transaction": 2}  # fmt: skip
    with source_db, source_db.cursor() as cursor:
        cursor.execute("SELECT unit_price, agreed_delivery_date, created_at FROM sales_order WHERE sales_order_id = 2")
        assert cursor.fetchone() == (Decimal("3.94"), "2022-11-07", STAMP)
        cursor.execute("SELECT transaction_id, sales_order_id, purchase_order_id FROM transaction ORDER BY 1")
        assert cursor.fetchall() == [(1, None, 1), (2, 2, None)]
        cursor.execute("SELECT payment_amount, payment_date FROM payment")
        assert cursor.fetchall() == [(Decimal("552548.62"), "2022-11-04")]

    day = totesys.business_day(source_db, sales_orders=2, seed=3)  # new rows after the loaded ids

    assert day["inserted"]["sales_order"] == 2
    with source_db, source_db.cursor() as cursor:
        for table, first_new_id in (("sales_order", 6), ("transaction", 3), ("payment", 3)):
            cursor.execute(f"SELECT min({table}_id) FROM {table} WHERE created_at > %s", (STAMP,))
            assert cursor.fetchone()[0] == first_new_id, table


def test_an_export_that_does_not_fit_the_schema_is_refused_and_the_source_is_left_as_it_was(tmp_path, source_db):
    before = totesys.init(source_db, sales_orders=5, seed=1)
    real_export(tmp_path)
    (tmp_path / "payment_type.parquet").unlink()

    with pytest.raises(totesys.RealDataError, match="payment_type.parquet is missing"):
        totesys.init_from_real(source_db, tmp_path)

    assert totesys.table_counts(source_db) == before
