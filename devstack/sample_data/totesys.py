"""The totesys OLTP source: its schema, a realistic starting state and a simulated business day.

The eleven tables of docs/interfaces.md ("Totesys"), each with ``created_at`` and ``last_updated``,
created in the ``totesys`` database as the role that owns it (``totesys_app``). ``init`` drops
and recreates them and fills a starting state; ``business-day`` then changes the data the way
the application would during a day: new sales orders, purchase orders, transactions and
payments; changed staff emails, counterparty contacts and order quantities; a few payments
marked paid. Every change moves ``last_updated``. Both are deterministic for a given seed
(timestamps are the database clock, as the application's are).

The column types are the real totesys database's: prices are numeric, ids are integers, and the
agreed delivery and payment dates and the payment date are text written ``YYYY-MM-DD`` (the
contract names these columns without promising a type, and the real source keeps them as
text, so the pipeline reads them as the source has them).

``init --from-real DIR`` makes a copy of the real database the starting state instead: the
eleven tables exported as ``DIR/<table>.parquet`` (as pandas writes them: prices as floats,
dates as strings, nullable ids as floats, naive timestamps), each value loaded into the column
the schema declares (a whole float into an integer, a float price into numeric, a date string
into text) with COPY, and each id sequence moved past the loaded ids, so ``business-day`` adds
rows after them.

CLI (connection from ``AIRFLOW_CONN_TOTESYS_DB``, JSON or URI, as in ``.local/stack.env``)::

    python -m devstack.sample_data.totesys init [--sales-orders 200] [--seed 7]
    python -m devstack.sample_data.totesys init --from-real DIR
    python -m devstack.sample_data.totesys business-day [--sales-orders 20] [--seed 8]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

TABLES = (
    "address",
    "counterparty",
    "currency",
    "department",
    "design",
    "staff",
    "sales_order",
    "purchase_order",
    "payment",
    "payment_type",
    "transaction",
)

DDL = """
DROP TABLE IF EXISTS payment, transaction, sales_order, purchase_order, staff, counterparty,
    department, design, currency, payment_type, address CASCADE;

CREATE TABLE address (
    address_id serial PRIMARY KEY, address_line_1 text NOT NULL, address_line_2 text,
    district text, city text NOT NULL, postal_code text NOT NULL, country text NOT NULL,
    phone text NOT NULL,
    created_at timestamp NOT NULL DEFAULT now(), last_updated timestamp NOT NULL DEFAULT now());
CREATE TABLE currency (
    currency_id serial PRIMARY KEY, currency_code char(3) NOT NULL,
    created_at timestamp NOT NULL DEFAULT now(), last_updated timestamp NOT NULL DEFAULT now());
CREATE TABLE department (
    department_id serial PRIMARY KEY, department_name text NOT NULL, location text, manager text,
    created_at timestamp NOT NULL DEFAULT now(), last_updated timestamp NOT NULL DEFAULT now());
CREATE TABLE design (
    design_id serial PRIMARY KEY, design_name text NOT NULL, file_location text NOT NULL,
    file_name text NOT NULL,
    created_at timestamp NOT NULL DEFAULT now(), last_updated timestamp NOT NULL DEFAULT now());
CREATE TABLE payment_type (
    payment_type_id serial PRIMARY KEY, payment_type_name text NOT NULL,
    created_at timestamp NOT NULL DEFAULT now(), last_updated timestamp NOT NULL DEFAULT now());
CREATE TABLE counterparty (
    counterparty_id serial PRIMARY KEY, counterparty_legal_name text NOT NULL,
    legal_address_id int NOT NULL REFERENCES address, commercial_contact text, delivery_contact text,
    created_at timestamp NOT NULL DEFAULT now(), last_updated timestamp NOT NULL DEFAULT now());
CREATE TABLE staff (
    staff_id serial PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL,
    department_id int NOT NULL REFERENCES department, email_address text NOT NULL,
    created_at timestamp NOT NULL DEFAULT now(), last_updated timestamp NOT NULL DEFAULT now());
CREATE TABLE sales_order (
    sales_order_id serial PRIMARY KEY, design_id int NOT NULL REFERENCES design,
    staff_id int NOT NULL REFERENCES staff, counterparty_id int NOT NULL REFERENCES counterparty,
    units_sold int NOT NULL, unit_price numeric(10,2) NOT NULL,
    currency_id int NOT NULL REFERENCES currency, agreed_delivery_date text NOT NULL,
    agreed_payment_date text NOT NULL, agreed_delivery_location_id int NOT NULL REFERENCES address,
    created_at timestamp NOT NULL DEFAULT now(), last_updated timestamp NOT NULL DEFAULT now());
CREATE TABLE purchase_order (
    purchase_order_id serial PRIMARY KEY, staff_id int NOT NULL REFERENCES staff,
    counterparty_id int NOT NULL REFERENCES counterparty, item_code text NOT NULL,
    item_quantity int NOT NULL, item_unit_price numeric(10,2) NOT NULL,
    currency_id int NOT NULL REFERENCES currency, agreed_delivery_date text NOT NULL,
    agreed_payment_date text NOT NULL, agreed_delivery_location_id int NOT NULL REFERENCES address,
    created_at timestamp NOT NULL DEFAULT now(), last_updated timestamp NOT NULL DEFAULT now());
CREATE TABLE transaction (
    transaction_id serial PRIMARY KEY, transaction_type text NOT NULL
        CHECK (transaction_type IN ('SALE', 'PURCHASE')),
    sales_order_id int REFERENCES sales_order, purchase_order_id int REFERENCES purchase_order,
    created_at timestamp NOT NULL DEFAULT now(), last_updated timestamp NOT NULL DEFAULT now());
CREATE TABLE payment (
    payment_id serial PRIMARY KEY, transaction_id int NOT NULL REFERENCES transaction,
    counterparty_id int NOT NULL REFERENCES counterparty, payment_amount numeric(12,2) NOT NULL,
    currency_id int NOT NULL REFERENCES currency, payment_type_id int NOT NULL REFERENCES payment_type,
    paid boolean NOT NULL, payment_date text NOT NULL, company_ac_number int NOT NULL,
    counterparty_ac_number int NOT NULL,
    created_at timestamp NOT NULL DEFAULT now(), last_updated timestamp NOT NULL DEFAULT now());
"""

CURRENCIES = ("GBP", "USD", "EUR")
PAYMENT_TYPES = ("SALES_RECEIPT", "SALES_REFUND", "PURCHASE_PAYMENT", "PURCHASE_REFUND")
DEPARTMENTS = (
    ("Sales", "Manchester"),
    ("Purchasing", "Manchester"),
    ("Production", "Leeds"),
    ("Dispatch", "Leeds"),
    ("Finance", "Manchester"),
    ("Facilities", "Manchester"),
    ("Communications", "Leeds"),
    ("HR", "Leeds"),
)
FIRST_NAMES = ("Jeremie", "Deron", "Jeanette", "Ana", "Magdalena", "Korey", "Raphael", "Oswaldo", "Brody", "Jazmyn",
               "Meda", "Imani", "Stan", "Rigoberto", "Tom", "Pierre", "Zoë", "Łukasz", "Siân", "Aoife")  # fmt: skip
LAST_NAMES = ("Franey", "Beier", "Erdman", "Glover", "Zieme", "Boyer", "Rippin", "Bergstrom", "Ratke", "Kuhn",
              "Reichel", "Schmidt", "Lehner", "Müller", "O'Brien", "Ó Súilleabháin", "Hahn", "Kozey")  # fmt: skip
CITIES = (("New Patienceburgh", "Avon", "US"), ("Aliso Viejo", None, "US"), ("Lake Charles", "Bedfordshire", "UK"),
          ("Olsonside", None, "Guernsey"), ("Fort Shadburgh", "Cambridgeshire", "UK"), ("Kendraburgh", None, "Japan"),
          ("Suffolk", "Buckinghamshire", "Austria"), ("East Bobbie", None, "Germany"))  # fmt: skip
COMPANIES = ("Fahey and Sons", "Leannon, Predovic and Morar", "Armstrong Inc", "Kohler Inc",
             "Frami, Yundt and Macejkovic", "Mraz LLC", "Padberg, Lueilwitz and Johnson", "Grant - Lakin",
             "Price LLC", "Bryant Group", "Yost, Watsica and Mann", "Hansen Ltd", "Moen Inc",
             "Ankunding, Bins and Corkery")  # fmt: skip
DESIGN_WORDS = ("Wooden", "Bronze", "Granite", "Soft", "Frozen", "Steel", "Cotton", "Rubber", "Plastic", "Fresh")


def _connect_kwargs(conn: str) -> dict[str, Any]:
    """psycopg2 keyword arguments from an Airflow connection (JSON or URI form)."""
    if conn.lstrip().startswith("{"):
        spec = json.loads(conn)
        return {
            "host": spec.get("host"),
            "port": int(spec.get("port") or 5432),
            "dbname": spec.get("schema"),
            "user": spec.get("login"),
            "password": spec.get("password"),
        }
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(conn)
    return {
        "host": parts.hostname,
        "port": parts.port or 5432,
        "dbname": parts.path.lstrip("/"),
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
    }


def connect(conn: str | None = None):
    """A psycopg2 connection to the totesys source (default: ``AIRFLOW_CONN_TOTESYS_DB``)."""
    import psycopg2

    conn = conn or os.environ.get("AIRFLOW_CONN_TOTESYS_DB")
    if not conn:
        raise SystemExit("AIRFLOW_CONN_TOTESYS_DB is not set: source .local/stack.env first")
    return psycopg2.connect(**_connect_kwargs(conn))


# The columns _new_orders writes, per table, in the order it writes the tables.
ORDER_COLUMNS = {
    "sales_order": ("sales_order_id", "design_id", "staff_id", "counterparty_id", "units_sold", "unit_price",
                    "currency_id", "agreed_delivery_date", "agreed_payment_date", "agreed_delivery_location_id"),
    "purchase_order": ("purchase_order_id", "staff_id", "counterparty_id", "item_code", "item_quantity",
                       "item_unit_price", "currency_id", "agreed_delivery_date", "agreed_payment_date",
                       "agreed_delivery_location_id"),
    "transaction": ("transaction_id", "transaction_type", "sales_order_id", "purchase_order_id"),
    "payment": ("payment_id", "transaction_id", "counterparty_id", "payment_amount", "currency_id", "payment_type_id",
                "paid", "payment_date", "company_ac_number", "counterparty_ac_number"),
}  # fmt: skip


def _reserve_ids(cursor, table: str, n: int) -> list[int]:
    """The next ``n`` ids of the table's serial column, taken from its sequence as inserts would."""
    if n <= 0:
        return []
    cursor.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)", (table, f"{table}_id", n)
    )
    return sorted(row[0] for row in cursor.fetchall())


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value).translate(_COPY_ESCAPES)


def _copy(cursor, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Rows into the table with one ``COPY ... FROM STDIN`` (text format)."""
    if not rows:
        return
    data = io.StringIO("".join("\t".join(map(_copy_value, row)) + "\n" for row in rows))
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", data)  # this module's own names


def _insert(cursor, table: str, row: dict[str, Any]) -> int:
    # Table and column names are this module's own constants; values are bound.
    columns = ", ".join(row)
    placeholders = ", ".join(f"%({c})s" for c in row)
    cursor.execute(f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) RETURNING 1", row)
    return 1


def _phone(rng: random.Random) -> str:
    return f"{rng.randint(1000, 9999)} {rng.randint(100000, 999999)}"


def _address(rng: random.Random) -> dict[str, Any]:
    city, district, country = rng.choice(CITIES)
    return {
        "address_line_1": f"{rng.randint(1, 999)} {rng.choice(LAST_NAMES)} Street",
        "address_line_2": rng.choice([None, f"Flat {rng.randint(1, 40)}"]),
        "district": district,
        "city": city,
        "postal_code": f"{rng.randint(10000, 99999)}",
        "country": country,
        "phone": _phone(rng),
    }


def _ids(cursor, table: str) -> list[int]:
    cursor.execute(f"SELECT {table}_id FROM {table} ORDER BY 1")
    return [row[0] for row in cursor.fetchall()]


def _order_dates(rng: random.Random, today: date) -> tuple[date, date]:
    delivery = today + timedelta(days=rng.randint(1, 30))
    return delivery, delivery + timedelta(days=rng.randint(0, 30))


def _new_orders(cursor, rng: random.Random, sales_orders: int, purchase_orders: int) -> dict[str, int]:
    """New sales and purchase orders, each with its transaction and (for some) a payment.

    The rows are made in memory, in the order the application would insert them one by one, with
    ids taken from each table's own sequence, and written with one COPY per table: the same rows,
    ids and sequences as row-by-row inserts, fast enough for a source of 100,000 orders.
    """
    today = date.today()
    designs, staff, counterparties = _ids(cursor, "design"), _ids(cursor, "staff"), _ids(cursor, "counterparty")
    currencies, addresses = _ids(cursor, "currency"), _ids(cursor, "address")
    rows: dict[str, list[tuple]] = {table: [] for table in ORDER_COLUMNS}
    transaction_ids = iter(_reserve_ids(cursor, "transaction", sales_orders + purchase_orders))
    payments = []
    for kind, table, n in (("SALE", "sales_order", sales_orders), ("PURCHASE", "purchase_order", purchase_orders)):
        for order_id in _reserve_ids(cursor, table, n):
            delivery, payment_date = _order_dates(rng, today)
            counterparty = rng.choice(counterparties)
            currency = rng.choice(currencies)
            if kind == "SALE":
                quantity, price = rng.randint(1000, 100000), Decimal(rng.randint(200, 400)) / 100
                rows[table].append(
                    (order_id, rng.choice(designs), rng.choice(staff), counterparty, quantity, price, currency,
                     delivery, payment_date, rng.choice(addresses))
                )  # fmt: skip
                link = (order_id, None)
            else:
                quantity, price = rng.randint(1, 1000), Decimal(rng.randint(100, 100000)) / 100
                rows[table].append(
                    (order_id, rng.choice(staff), counterparty,
                     f"{rng.choice('ABCDEFGHJK')}{rng.randint(1000000, 9999999)}", quantity, price, currency,
                     delivery, payment_date, rng.choice(addresses))
                )  # fmt: skip
                link = (None, order_id)
            transaction_id = next(transaction_ids)
            rows["transaction"].append((transaction_id, kind, *link))
            if rng.random() < 0.8:
                payment_type = 1 if kind == "SALE" else 3
                payments.append(
                    (transaction_id, counterparty, (quantity * price).quantize(Decimal("0.01")), currency,
                     payment_type, False, payment_date, rng.randint(10000000, 99999999),
                     rng.randint(10000000, 99999999))
                )  # fmt: skip
    payment_ids = _reserve_ids(cursor, "payment", len(payments))
    rows["payment"] = [(payment_id, *row) for payment_id, row in zip(payment_ids, payments, strict=True)]
    for table, columns in ORDER_COLUMNS.items():  # parents before the rows that refer to them
        _copy(cursor, table, columns, rows[table])
    return {table: len(table_rows) for table, table_rows in rows.items()}


def init(conn, *, sales_orders: int = 200, seed: int = 7) -> dict[str, int]:
    """Recreate the schema and fill a starting state; returns the row count of every table."""
    rng = random.Random(seed)
    with conn, conn.cursor() as cursor:
        cursor.execute(DDL)
        for code in CURRENCIES:
            _insert(cursor, "currency", {"currency_code": code})
        for name in PAYMENT_TYPES:
            _insert(cursor, "payment_type", {"payment_type_name": name})
        for name, location in DEPARTMENTS:
            manager = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            _insert(cursor, "department", {"department_name": name, "location": location, "manager": manager})
        for _ in range(30):
            _insert(cursor, "address", _address(rng))
        for i in range(40):
            word = rng.choice(DESIGN_WORDS)
            _insert(cursor, "design", {"design_name": word, "file_location": f"/{word.lower()}",
                                       "file_name": f"{word.lower()}-{i:04d}.json"})  # fmt: skip
        for i in range(20):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            _insert(cursor, "staff", {"first_name": first, "last_name": last,
                                      "department_id": rng.randint(1, len(DEPARTMENTS)),
                                      "email_address": f"staff{i}@terrifictotes.com"})  # fmt: skip
        for name in COMPANIES:
            contacts = [f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}" for _ in range(2)]
            row = {"counterparty_legal_name": name, "legal_address_id": rng.randint(1, 30)}
            _insert(cursor, "counterparty", {**row, "commercial_contact": contacts[0], "delivery_contact": contacts[1]})
        _new_orders(cursor, rng, sales_orders, max(1, sales_orders // 2))
    return table_counts(conn)


# The tables in an order that loads every row after the rows it refers to.
LOAD_ORDER = ("address", "currency", "department", "design", "payment_type", "counterparty", "staff",
              "sales_order", "purchase_order", "transaction", "payment")  # fmt: skip


class RealDataError(ValueError):
    """The exported tables cannot be loaded into the schema as they are: says which and why."""


def _declared_types(cursor, table: str) -> dict[str, str]:
    """Each column of ``table`` and the type the schema declares for it (``integer``, ``text``...)."""
    cursor.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )
    return dict(cursor.fetchall())


def copy_text(value: Any, declared: str, where: str) -> str:
    """``value`` as COPY text for a column declared ``declared`` (``where`` names it in errors).

    A float in an integer column (a nullable id, as pandas exports it) must be a whole number;
    a float in a numeric column is written as the shortest decimal that prints it, which
    PostgreSQL rounds to the column's scale; NaN is a null; a timestamp keeps its microseconds.
    """
    if value is None or (isinstance(value, float) and value != value):
        return "\\N"
    if declared in ("integer", "bigint", "smallint"):
        if isinstance(value, float):
            if not value.is_integer():
                raise RealDataError(f"{where}: {value!r} is not a whole number, and the column is {declared}")
            value = int(value)
        return str(value)
    if hasattr(value, "isoformat") and not isinstance(value, str):
        return value.isoformat(sep=" ") if "timestamp" in declared else value.isoformat()
    return _copy_value(value)


def _real_rows(folder: Path, table: str, columns: dict[str, str]) -> list[str]:
    """The COPY lines of ``folder/<table>.parquet``, in the order of ``columns``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / f"{table}.parquet"
    if not path.is_file():
        raise RealDataError(f"{path} is missing: the folder must hold the eleven tables as <table>.parquet")
    data = pq.read_table(path)
    missing = [name for name in columns if name not in data.column_names]
    unknown = [name for name in data.column_names if name not in columns]
    if missing or unknown:
        raise RealDataError(f"{path}: columns missing {missing}, not in the schema {unknown}")
    arrays = []
    for name in columns:  # timestamps as microseconds: Python datetimes, as PostgreSQL keeps them
        values = data[name]
        if pa.types.is_timestamp(values.type):
            values = values.cast(pa.timestamp("us", values.type.tz))
        arrays.append(values.to_pylist())
    places = [(f"{table}.{name}", declared) for name, declared in columns.items()]
    lines = []
    for row in zip(*arrays, strict=True):
        fields = [copy_text(value, declared, where) for value, (where, declared) in zip(row, places, strict=True)]
        lines.append("\t".join(fields) + "\n")
    return lines


def init_from_real(conn, folder: str | Path) -> dict[str, int]:
    """Recreate the schema and load the real tables exported in ``folder`` as the starting state.

    Replaces whatever the source held. Every table is checked against the schema before any row
    is written, and the load is one transaction: it loads whole or not at all. Returns the row
    count of every table.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RealDataError(f"{folder} is not a folder")
    with conn, conn.cursor() as cursor:
        cursor.execute(DDL)
        declared = {table: _declared_types(cursor, table) for table in LOAD_ORDER}
        lines = {table: _real_rows(folder, table, declared[table]) for table in LOAD_ORDER}
        for table in LOAD_ORDER:  # parents before the rows that refer to them
            if lines[table]:
                data = io.StringIO("".join(lines[table]))
                cursor.copy_expert(f"COPY {table} ({', '.join(declared[table])}) FROM STDIN", data)  # own names
            # The next id after the loaded ones (1 for an empty table), as if the rows had been inserted.
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence(%s, %s), coalesce(max({table}_id), 0) + 1, false) FROM {table}",
                (table, f"{table}_id"),
            )
    return table_counts(conn)


def business_day(conn, *, sales_orders: int = 20, seed: int = 8) -> dict[str, Any]:
    """One day of the application: new orders and payments, and changes to existing rows.

    Returns what changed: ``inserted`` (rows per table) and ``updated`` (ids per table).
    """
    rng = random.Random(seed)
    updated: dict[str, list[int]] = {}
    with conn, conn.cursor() as cursor:
        # Existing rows change first, so the new ones below are not among them.
        staff = rng.sample(_ids(cursor, "staff"), 2)
        for staff_id in staff:
            cursor.execute(
                "UPDATE staff SET email_address = %s, last_updated = now() WHERE staff_id = %s",
                (f"staff{staff_id}.{seed}@terrifictotes.com", staff_id),
            )
        counterparties = rng.sample(_ids(cursor, "counterparty"), 2)
        for counterparty_id in counterparties:
            cursor.execute(
                "UPDATE counterparty SET commercial_contact = %s, last_updated = now() WHERE counterparty_id = %s",
                (f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}", counterparty_id),
            )
        orders = rng.sample(_ids(cursor, "sales_order"), 3)
        for sales_order_id in orders:
            cursor.execute(
                "UPDATE sales_order SET units_sold = units_sold + %s, last_updated = now() WHERE sales_order_id = %s",
                (rng.randint(1, 500), sales_order_id),
            )
        cursor.execute("SELECT payment_id FROM payment WHERE NOT paid ORDER BY 1")
        unpaid = [row[0] for row in cursor.fetchall()]
        paid = rng.sample(unpaid, min(3, len(unpaid)))
        for payment_id in paid:
            cursor.execute("UPDATE payment SET paid = true, last_updated = now() WHERE payment_id = %s", (payment_id,))
        updated = {"staff": staff, "counterparty": counterparties, "sales_order": orders, "payment": paid}
        inserted = _new_orders(cursor, rng, sales_orders, max(1, sales_orders // 2))
    return {"inserted": inserted, "updated": updated}


def table_counts(conn) -> dict[str, int]:
    with conn, conn.cursor() as cursor:
        counts = {}
        for table in TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")  # fixed names
            counts[table] = cursor.fetchone()[0]
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.sample_data.totesys", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("init", "business-day"))
    parser.add_argument("--sales-orders", type=int, default=None, help="new sales orders (default 200 / 20)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--from-real", metavar="DIR", default=None,
        help="init only: load the real tables exported as DIR/<table>.parquet instead of a generated state",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.from_real and args.command != "init":
        parser.error("--from-real goes with init")
    if args.from_real and not Path(args.from_real).is_dir():
        parser.error(f"--from-real {args.from_real}: no such folder")
    conn = connect()
    try:
        if args.command == "init" and args.from_real:
            result: Any = init_from_real(conn, args.from_real)
        elif args.command == "init":
            result = init(conn, sales_orders=args.sales_orders or 200, seed=7 if args.seed is None else args.seed)
        else:
            result = business_day(
                conn, sales_orders=args.sales_orders or 20, seed=8 if args.seed is None else args.seed
            )
    finally:
        conn.close()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
