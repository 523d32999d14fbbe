"""The supply-chain sources: the OLTP database the applications keep, and the fact archives they drop.

**The OLTP source** (database ``supplychain``, as the role ``supplychain_app``): the four tables of
``include/sql/supplychain/source_schema.sql`` (supplier, product, warehouse, customer).
``create_source`` drops and recreates them; ``populate`` fills a starting state whose rows were
created and last changed days ago; ``working_day`` then changes it as the ERP, CRM and
project-management applications do during a day: new rows in every table, changed lead times, unit
costs, capacities and segments (``updated_at = now()``), and hard deletes, always at least one
product (the fact files may still refer to it). Each change is its own short transaction, as an
application commits it, so every change has its own ``updated_at``. The ids of new rows follow the
largest id of their table, and the row with the largest id is never deleted, so an id is never used
twice. A supplier is deleted only when no product refers to it.

**The fact archives** (bucket ``supplychain-landing``): ``write_batch`` writes zip archives
``incoming/<batch_id>/<system>-<n>.zip`` (the systems ``erp``, ``crm``, ``pm`` in turn), each
holding CSV members ``shipments-<n>.csv`` and ``purchase_orders-<n>.csv`` (header row, UTF-8, the
columns in ``SHIPMENT_COLUMNS`` / ``PURCHASE_ORDER_COLUMNS`` order, each table's rows cut evenly
over its members), then the marker ``batch-completion/<batch_id>.json`` with ``expected_counts``
= the data rows written, rejected and superseded ones included. What the rows hold:

- shipments: about 5 % cancelled, 60 % delivered (about 10 % of those delivered after the
  promised date), the rest shipped and not yet delivered; purchase orders about 6 % cancelled,
  55 % received (``received_at`` 1 to 40 days after ``ordered_at``, around the supplier's lead
  time when the catalog is given), the rest open. Timestamps are UTC with a ``+00:00`` offset.
- a share of rows refers to an id the dimensions do not hold (``unknown_share``), and optionally
  a share is malformed (``bad_share``: the kinds of ``BAD_KINDS`` in turn); both are listed in
  ``Batch.rejects`` with their object, member and line.
- a share of rows comes twice within the batch (``resend_in_batch_share``): an earlier state of
  the row (a delivered shipment still ``shipped``, a received order still ``open``) with an older
  ``updated_at``, at a random place, before or after the final state.
- ``resend``: rows of earlier batches sent again with new values (shipped -> delivered, open ->
  received...) and a newer ``updated_at``; a share of them (``resend_older``) with an earlier state
  and an ``updated_at`` older than the copy already sent, which must not replace it.

Generation is deterministic for a seed (``random.Random(seed)``; the marker's times are the clock's)
and formats each line from pre-built strings, so a million rows take seconds.

CLI (the database from ``AIRFLOW_CONN_SUPPLYCHAIN_DB``, S3 from ``AWS_ENDPOINT_URL``: the
environment, or else ``.local/stack.env``)::

    python -m devstack.sample_data.supplychain source [--populate] [--suppliers 25] [--products 400]
        [--warehouses 8] [--customers 2000] [--seed 0]
    python -m devstack.sample_data.supplychain working-day [--seed 1]
    python -m devstack.sample_data.supplychain batch --batch-id B1 [--shipments 1000] [--purchase-orders 200]
        [--first-shipment-id 1] [--first-po-id 1] [--seed 0] [--archives 2] [--members 2]
        [--unknown-share 0.01] [--bad-share 0] [--resend-in-batch-share 0.01] [--shipped-from 2026-03-01] [--days 7]
        [--bucket supplychain-landing] [--no-source] [--no-objects] [--no-marker]

``batch`` reads the current ids (and each product's supplier, cost and lead time) from the source;
``--no-source`` uses the ids a default ``populate`` creates instead.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import sys
import zipfile
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

LANDING_BUCKET = "supplychain-landing"
LAKEHOUSE_BUCKET = "supplychain-lakehouse"
PREFIX = "incoming/"
MARKER_PREFIX = "batch-completion/"
SOURCE_TABLES = ("supplier", "product", "warehouse", "customer")
SOURCE_SCHEMA = Path(__file__).resolve().parents[2] / "include" / "sql" / "supplychain" / "source_schema.sql"

SHIPMENT_COLUMNS = (
    "shipment_id", "customer_id", "product_id", "warehouse_id", "quantity", "shipped_at", "promised_date",
    "delivered_at", "status", "updated_at",
)  # fmt: skip
PURCHASE_ORDER_COLUMNS = (
    "po_id", "supplier_id", "product_id", "warehouse_id", "quantity", "unit_cost", "ordered_at", "received_at",
    "status", "updated_at",
)  # fmt: skip
FACT_TABLES = ("shipments", "purchase_orders")
COLUMNS = {"shipments": SHIPMENT_COLUMNS, "purchase_orders": PURCHASE_ORDER_COLUMNS}
KEY_COLUMN = {"shipments": "shipment_id", "purchase_orders": "po_id"}
# The dimension each id column refers to.
REFERENCES = {
    "shipments": {"customer_id": "customer", "product_id": "product", "warehouse_id": "warehouse"},
    "purchase_orders": {"supplier_id": "supplier", "product_id": "product", "warehouse_id": "warehouse"},
}
STATUSES = {"shipments": ("shipped", "delivered", "cancelled"), "purchase_orders": ("open", "received", "cancelled")}
SYSTEMS = ("erp", "crm", "pm")

# Malformed rows, the kinds used in turn: quantity 0, a status outside the list, a timestamp of a day
# that does not exist, and a value that does not parse as its column's type (a fractional quantity;
# a unit cost with a decimal comma, which RFC 4180 quoting keeps in one field).
ZERO_QUANTITY, UNKNOWN_STATUS, IMPOSSIBLE_TIMESTAMP = "zero_quantity", "unknown_status", "impossible_timestamp"
FRACTIONAL_QUANTITY, DECIMAL_COMMA = "fractional_quantity", "decimal_comma"
BAD_KINDS = {
    "shipments": (ZERO_QUANTITY, UNKNOWN_STATUS, IMPOSSIBLE_TIMESTAMP, FRACTIONAL_QUANTITY),
    "purchase_orders": (ZERO_QUANTITY, UNKNOWN_STATUS, IMPOSSIBLE_TIMESTAMP, DECIMAL_COMMA),
}
UNKNOWN_STATUS_TEXT = {"shipments": "returned", "purchase_orders": "partial"}
IMPOSSIBLE_TIMESTAMPS = ("2026-02-30T09:15:00+00:00", "2026-04-31T14:00:00+00:00", "2026-13-01T08:00:00+00:00")

# Rows kept as Python values in Batch.rows, unless asked, only up to this many per batch.
KEEP_ROWS_UP_TO = 50_000
MINUTES_PER_DAY = 1440

# -- the OLTP source's vocabulary ----------------------------------------------------------------------

COMPANY_SUFFIX = {
    "GB": "Ltd", "DE": "GmbH", "NL": "B.V.", "FR": "SAS", "PL": "Sp. z o.o.", "ES": "S.L.", "IT": "S.r.l.",
    "SE": "AB", "US": "Inc.", "CN": "Co., Ltd.", "VN": "JSC", "IN": "Pvt Ltd", "TR": "A.Ş.", "MX": "S.A. de C.V.",
}  # fmt: skip
COUNTRIES = tuple(COMPANY_SUFFIX)
SUPPLIER_WORDS = (
    "Baltic", "Northwind", "Meridian", "Harbour", "Summit", "Kestrel", "Lindqvist", "Żuraw", "Anadolu", "Delta",
    "Pacific", "Crown", "Sierra", "Vulcan", "Atlas", "Müller", "Orion", "Pioneer", "Saffron", "Évora",
)  # fmt: skip
SUPPLIER_TRADES = ("Components", "Industrial", "Supply", "Manufacturing", "Trading", "Fasteners", "Packaging", "Tools")
# category: (sku prefix, adjectives, nouns, unit cost range in cents)
CATEGORIES = {
    "Fasteners": ("FST", ("Galvanised", "Stainless", "Zinc-plated", "Brass"),
                  ("Hex Bolt M8", "Wood Screw 4x40", "Rivet 4.8", "Wall Plug", "Washer M10"), (5, 900)),
    "Packaging": ("PKG", ("Recycled", "Double-wall", "Heavy-duty", "Kraft"),
                  ("Carton 40x30", "Pallet Wrap", "Mailer Bag", "Void Fill", "Tape Roll"), (20, 4_500)),
    "Electrical": ("ELC", ("Insulated", "Weatherproof", "Dimmable", "Industrial"),
                   ("Cable 2.5mm", "LED Panel", "Junction Box", "Socket", "Circuit Breaker"), (150, 25_000)),
    "Tools": ("TLS", ("Cordless", "Ergonomic", "Professional", "Compact"),
              ("Drill", "Torque Wrench", "Angle Grinder", "Spirit Level", "Hammer"), (800, 45_000)),
    "Safety": ("SFT", ("Hi-vis", "Anti-slip", "Cut-resistant", "Flame-retardant"),
               ("Gloves", "Vest", "Safety Boots", "Goggles", "Hard Hat"), (200, 12_000)),
    "Hydraulics": ("HYD", ("High-pressure", "Braided", "Compact", "Sealed"),
                   ("Hose 1/2in", "Coupling", "Pump", "Valve", "Cylinder"), (900, 50_000)),
    "Cleaning": ("CLN", ("Biodegradable", "Concentrated", "Industrial", "Scented"),
                 ("Degreaser 5L", "Floor Mop", "Wipes", "Hand Soap", "Bin Liners"), (100, 6_000)),
}  # fmt: skip
WAREHOUSE_CITIES = (
    ("Rotterdam", "NL"), ("Felixstowe", "GB"), ("Duisburg", "DE"), ("Łódź", "PL"), ("Zaragoza", "ES"),
    ("Lyon", "FR"), ("Göteborg", "SE"), ("Milano", "IT"), ("Memphis", "US"), ("Monterrey", "MX"),
    ("Daventry", "GB"), ("Venlo", "NL"),
)  # fmt: skip
CUSTOMER_FIRST = (
    "Bright", "Castle", "Green", "Hill", "Lake", "Metro", "North", "Oak", "River", "Stone", "Sun", "West",
    "Nord", "Ström", "Cañada", "Błysk",
)  # fmt: skip
CUSTOMER_SECOND = ("Builders", "Retail", "Stores", "Hardware", "Facilities", "Logistics", "Engineering", "Homes")
SEGMENTS = ("retail", "wholesale", "trade", "online", "public sector")
LEAD_TIME_DAYS = (2, 30)

DEFAULT_INSERTS = {"supplier": 1, "product": 8, "warehouse": 1, "customer": 25}
DEFAULT_UPDATES = {"supplier": 3, "product": 20, "warehouse": 1, "customer": 30}
DEFAULT_DELETES = {"supplier": 1, "product": 1, "warehouse": 0, "customer": 2}


# -- the OLTP source ---------------------------------------------------------------------------------


def connect(conn: str | None = None):
    """A psycopg2 connection to the source (default: ``AIRFLOW_CONN_SUPPLYCHAIN_DB``, JSON or URI,
    from the environment or else ``.local/stack.env``)."""
    from devstack.sample_data import totesys  # the same Airflow-connection parsing

    conn = conn or _stack_setting("AIRFLOW_CONN_SUPPLYCHAIN_DB")
    if not conn:
        raise SystemExit("AIRFLOW_CONN_SUPPLYCHAIN_DB is not set and .local/stack.env is missing: run make stack")
    return totesys.connect(conn)


def create_source(conn) -> None:
    """Drop and recreate the source's tables (``source_schema.sql``), empty."""
    with conn, conn.cursor() as cursor:
        cursor.execute(SOURCE_SCHEMA.read_text())


def _supplier_row(rng: random.Random, supplier_id: int) -> dict[str, Any]:
    country = rng.choice(COUNTRIES)
    name = f"{rng.choice(SUPPLIER_WORDS)} {rng.choice(SUPPLIER_TRADES)} {COMPANY_SUFFIX[country]}"
    return {
        "supplier_id": supplier_id,
        "supplier_name": name,
        "country": country,
        "lead_time_days": rng.randint(*LEAD_TIME_DAYS),
    }


def _product_row(rng: random.Random, product_id: int, supplier_id: int) -> dict[str, Any]:
    category = rng.choice(list(CATEGORIES))
    code, adjectives, nouns, (low, high) = CATEGORIES[category]
    return {
        "product_id": product_id,
        "sku": f"{code}-{product_id:06d}",  # unique because ids are never reused
        "product_name": f"{rng.choice(adjectives)} {rng.choice(nouns)}",
        "category": category,
        "unit_cost": Decimal(rng.randint(low, high)).scaleb(-2),
        "supplier_id": supplier_id,
    }


def _warehouse_row(rng: random.Random, warehouse_id: int) -> dict[str, Any]:
    city, country = WAREHOUSE_CITIES[(warehouse_id - 1) % len(WAREHOUSE_CITIES)]
    site = (warehouse_id - 1) // len(WAREHOUSE_CITIES) + 1
    return {
        "warehouse_id": warehouse_id,
        "warehouse_name": f"{city} DC" + (f" {site}" if site > 1 else ""),
        "city": city,
        "country": country,
        "capacity_units": rng.randint(20, 400) * 500,
    }


def _customer_row(rng: random.Random, customer_id: int) -> dict[str, Any]:
    country = rng.choice(COUNTRIES)
    name = f"{rng.choice(CUSTOMER_FIRST)} {rng.choice(CUSTOMER_SECOND)} {COMPANY_SUFFIX[country]}"
    return {"customer_id": customer_id, "customer_name": name, "segment": rng.choice(SEGMENTS), "country": country}


def _history(rng: random.Random, now: datetime) -> tuple[datetime, datetime]:
    """(created_at, updated_at) of a row made 30 to 400 days ago, changed since for some rows, and
    untouched for at least a day: the starting state is all in the past."""
    created = now - timedelta(days=30 + rng.random() * 370)
    if rng.random() < 0.4:
        return created, created + (now - timedelta(days=1) - created) * rng.random()
    return created, created


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_rows(cursor, table: str, rows: list[dict[str, Any]]) -> None:
    """Rows (dicts with the same keys) into ``table`` with one ``COPY ... FROM STDIN``."""
    if not rows:
        return
    columns = list(rows[0])
    lines = []
    for row in rows:
        values = (value.isoformat() if isinstance(value, datetime) else str(value) for value in row.values())
        lines.append("\t".join(value.translate(_COPY_ESCAPES) for value in values) + "\n")
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", io.StringIO("".join(lines)))  # own names


def populate(
    conn, *, suppliers: int = 25, products: int = 400, warehouses: int = 8, customers: int = 2000, seed: int = 0
) -> dict[str, int]:
    """Fill the (empty) source with a starting state, in one transaction; returns each table's rows.

    Ids run from 1. Products come from the first nine suppliers in ten; the others are newly
    onboarded and supply nothing yet (the ones a working day may delete). Timestamps are days in
    the past by the database's clock."""
    if min(suppliers, warehouses) < 1 or min(products, customers) < 0:
        raise ValueError("at least one supplier and one warehouse; products and customers >= 0")
    rng = random.Random(seed)
    stocked = max(1, suppliers - suppliers // 10)
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT now()")
        now = cursor.fetchone()[0]
        rows = {
            "supplier": [_supplier_row(rng, i) for i in range(1, suppliers + 1)],
            "product": [_product_row(rng, i, rng.randint(1, stocked)) for i in range(1, products + 1)],
            "warehouse": [_warehouse_row(rng, i) for i in range(1, warehouses + 1)],
            "customer": [_customer_row(rng, i) for i in range(1, customers + 1)],
        }
        for table in SOURCE_TABLES:  # supplier before the products that refer to it
            for row in rows[table]:
                row["created_at"], row["updated_at"] = _history(rng, now)
            _copy_rows(cursor, table, rows[table])
    return table_counts(conn)


def table_counts(conn) -> dict[str, int]:
    with conn, conn.cursor() as cursor:
        counts = {}
        for table in SOURCE_TABLES:
            cursor.execute(f"SELECT count(*) FROM {table}")  # fixed names
            counts[table] = cursor.fetchone()[0]
    return counts


def read_dimension_ids(conn) -> dict[str, list[int]]:
    """The keys each source table holds now, ascending, read in one snapshot."""
    with conn, conn.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        ids = {}
        for table in SOURCE_TABLES:
            cursor.execute(f"SELECT {table}_id FROM {table} ORDER BY 1")  # fixed names
            ids[table] = [row[0] for row in cursor.fetchall()]
    return ids


@dataclass(frozen=True)
class Catalog:
    """What the fact files take from the source to look real: each product's supplier and unit cost,
    each supplier's lead time."""

    product_supplier: dict[int, int]
    unit_cost: dict[int, Decimal]
    lead_time_days: dict[int, int]


def read_catalog(conn) -> Catalog:
    with conn, conn.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SELECT product_id, supplier_id, unit_cost FROM product")
        products = cursor.fetchall()
        cursor.execute("SELECT supplier_id, lead_time_days FROM supplier")
        lead_times = dict(cursor.fetchall())
    return Catalog({p: s for p, s, _ in products}, {p: cost for p, _, cost in products}, lead_times)


def supplier_of_products(conn) -> dict[int, int]:
    """product_id -> supplier_id, as the source holds them now."""
    return read_catalog(conn).product_supplier


def _commit(conn, statement: str, parameters: Sequence[Any]) -> None:
    """One change in its own transaction, as the application commits it."""
    with conn, conn.cursor() as cursor:
        cursor.execute(statement, parameters)


def _insert(conn, table: str, row: dict[str, Any]) -> None:
    # Table and column names are this module's own; values are bound. created_at and updated_at
    # take their default, now().
    columns = ", ".join(row)
    _commit(conn, f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(row))})", list(row.values()))


def _counts(value: Mapping[str, int] | None, defaults: dict[str, int], what: str) -> dict[str, int]:
    unknown = set(value or {}) - set(SOURCE_TABLES)
    if unknown:
        raise ValueError(f"{what}: no such table {sorted(unknown)}; the tables are {SOURCE_TABLES}")
    counts = {**defaults, **(value or {})}
    if any(n < 0 for n in counts.values()):
        raise ValueError(f"{what}: counts must be >= 0")
    return counts


def working_day(
    conn,
    *,
    seed: int,
    inserts: Mapping[str, int] | None = None,
    updates: Mapping[str, int] | None = None,
    deletes: Mapping[str, int] | None = None,
) -> dict[str, dict[str, list[int]]]:
    """A day of the applications: per table, ``inserts`` new rows, ``updates`` changed ones and
    ``deletes`` hard-deleted ones (each a {table: count}, over ``DEFAULT_INSERTS``,
    ``DEFAULT_UPDATES``, ``DEFAULT_DELETES``), every change in its own transaction. At least one
    product is deleted; a supplier only when no product refers to it (fewer than asked, or none,
    when there are not enough). The three sets are disjoint: today's new rows are neither updated
    nor deleted, and an updated row is not deleted.

    Returns ``{table: {"inserted": ids, "updated": ids, "deleted": ids}}``."""
    rng = random.Random(seed)
    inserts = _counts(inserts, DEFAULT_INSERTS, "inserts")
    updates = _counts(updates, DEFAULT_UPDATES, "updates")
    deletes = _counts(deletes, DEFAULT_DELETES, "deletes")
    deletes["product"] = max(1, deletes["product"])
    existing = read_dimension_ids(conn)
    product_supplier = supplier_of_products(conn)

    # The rows that go are chosen first, so that the updates leave them alone: products before
    # suppliers, as deleting a product may leave its supplier without any. Never the largest id.
    deleted: dict[str, list[int]] = {}
    in_use: set[int] = set()  # suppliers of the products that stay
    for table in ("product", "warehouse", "customer", "supplier"):
        deletable = existing[table][:-1]
        if table == "supplier":
            in_use = {s for p, s in product_supplier.items() if p not in set(deleted["product"])}
            deletable = [s for s in deletable if s not in in_use]
        deleted[table] = sorted(rng.sample(deletable, min(deletes[table], len(deletable))))
    updated = {}
    for table in SOURCE_TABLES:
        candidates = sorted(set(existing[table]) - set(deleted[table]))
        updated[table] = sorted(rng.sample(candidates, min(updates[table], len(candidates))))
    # New products come from a supplier the buyers already source from (and that stays).
    sourced = sorted(in_use) or sorted(set(existing["supplier"]) - set(deleted["supplier"]))

    inserted: dict[str, list[int]] = {}
    for table in SOURCE_TABLES:  # suppliers before the products that may refer to them
        first = max(existing[table], default=0) + 1
        inserted[table] = list(range(first, first + inserts[table]))
        for new_id in inserted[table]:
            if table == "product":
                row = _product_row(rng, new_id, rng.choice(sourced))
            else:
                row = {"supplier": _supplier_row, "warehouse": _warehouse_row, "customer": _customer_row}[table](
                    rng, new_id
                )
            _insert(conn, table, row)
    current = _current_values(conn)
    for table in SOURCE_TABLES:
        for key in updated[table]:
            _commit(conn, *_update(rng, table, key, current[table][key]))
    for table, keys in deleted.items():  # products before the suppliers they may have referred to
        for key in keys:
            _commit(conn, f"DELETE FROM {table} WHERE {table}_id = %s", (key,))  # fixed names
    return {
        table: {"inserted": inserted[table], "updated": updated[table], "deleted": deleted[table]}
        for table in SOURCE_TABLES
    }


def _current_values(conn) -> dict[str, dict[int, Any]]:
    """The value each update changes, per table and key."""
    queries = {
        "supplier": "SELECT supplier_id, lead_time_days FROM supplier",
        "product": "SELECT product_id, unit_cost FROM product",
        "warehouse": "SELECT warehouse_id, capacity_units FROM warehouse",
        "customer": "SELECT customer_id, segment FROM customer",
    }
    with conn, conn.cursor() as cursor:
        values = {}
        for table, query in queries.items():
            cursor.execute(query)
            values[table] = dict(cursor.fetchall())
    return values


def _update(rng: random.Random, table: str, key: int, current: Any) -> tuple[str, tuple]:
    """The application's update of one row: a new value (always a different one) and updated_at = now()."""
    if table == "supplier":
        lead_time = rng.choice([d for d in range(LEAD_TIME_DAYS[0], LEAD_TIME_DAYS[1] + 1) if d != current])
        return "UPDATE supplier SET lead_time_days = %s, updated_at = now() WHERE supplier_id = %s", (lead_time, key)
    if table == "product":  # a price change of up to 15 % either way
        factor = Decimal(rng.choice([f for f in range(85, 116) if f != 100])) / 100
        unit_cost = max(Decimal("0.01"), (current * factor).quantize(Decimal("0.01")))
        if unit_cost == current:
            unit_cost += Decimal("0.01")
        return "UPDATE product SET unit_cost = %s, updated_at = now() WHERE product_id = %s", (unit_cost, key)
    if table == "warehouse":
        capacity = max(500, current + rng.choice([-1, 1]) * rng.randint(1, 20) * 500)
        return "UPDATE warehouse SET capacity_units = %s, updated_at = now() WHERE warehouse_id = %s", (capacity, key)
    segment = rng.choice([s for s in SEGMENTS if s != current])
    return "UPDATE customer SET segment = %s, updated_at = now() WHERE customer_id = %s", (segment, key)


# -- the fact archives ---------------------------------------------------------------------------------


class Reject(NamedTuple):
    """A written row the pipeline must reject, where it is and why."""

    object: str  # the archive's key
    member: str  # the CSV's name in the archive
    line: int  # 1-based line in the member; the header is line 1
    table: str  # shipments or purchase_orders
    key: int  # its shipment_id or po_id
    kind: str  # unknown_<dimension> or one of BAD_KINDS


@dataclass
class Batch:
    """What ``write_batch`` wrote."""

    batch_id: str
    keys: list[str]  # the archives' keys, in the order written
    expected_counts: dict[str, int]  # data rows written per table (as in the marker, unless overridden)
    marker: dict  # the marker's body ({} when none was written)
    # Per table, every row written in the order written (archive, member, line), as Python values
    # (int, Decimal, datetime in UTC, date, None for an empty cell; a cell that does not parse holds
    # its text); None when the batch was too large to keep them (keep_rows).
    rows: dict[str, list[dict]] | None
    members: dict[str, dict[str, int]]  # archive key -> member name -> data rows
    rejects: list[Reject]  # in the order written
    copied: dict[str, list[int]]  # keys sent twice in this batch: an earlier state, older, and the final one
    resent: dict[str, list[int]]  # keys of earlier rows sent again with new values and a newer updated_at
    resent_older: dict[str, list[int]]  # keys of earlier rows sent again with an older updated_at
    next_id: dict[str, int] = field(default_factory=dict)  # the first key of each table the next batch can use

    def final_rows(self, table: str) -> list[dict]:
        """The copy of each key that a merge keeps: the latest updated_at, on a tie the one written
        later; in key order. Rejected rows are not left out."""
        if self.rows is None:
            raise ValueError(f"batch {self.batch_id}: rows were not kept (keep_rows)")
        latest: dict[int, dict] = {}
        key_column = KEY_COLUMN[table]
        for row in self.rows[table]:
            kept = latest.get(row[key_column])
            if kept is None or row["updated_at"] >= kept["updated_at"]:
                latest[row[key_column]] = row
        return [latest[key] for key in sorted(latest)]


def write_batch(
    s3,
    batch_id: str,
    *,
    ids: Mapping[str, Sequence[int]],
    shipments: int = 1000,
    purchase_orders: int = 200,
    seed: int = 0,
    archives: int = 2,
    members_per_archive: int = 2,
    unknown_share: float = 0.01,
    bad_share: float = 0.0,
    resend_in_batch_share: float = 0.01,
    resend: Sequence[Mapping[str, Any]] = (),
    resend_older: float = 0.0,
    start_id: Mapping[str, int] | None = None,
    catalog: Catalog | None = None,
    shipped_from: date = date(2026, 3, 1),
    days: int = 7,
    cancelled_share: float = 0.05,
    late_share: float = 0.10,
    member_folder: str = "",
    line_end: str = "\n",
    marker: bool = True,
    objects_in_marker: bool = True,
    expected: Mapping[str, int] | None = None,
    keep_rows: bool | None = None,
    bucket: str = LANDING_BUCKET,
) -> Batch:
    """Write a batch's archives under ``incoming/<batch_id>/``, then (unless ``marker=False``) its marker.

    ``ids``: the dimensions' current keys ({table: ids}, as ``read_dimension_ids`` returns them);
    rows refer to these, except the ``unknown_share`` that refer to an id not among them.
    ``shipments`` and ``purchase_orders``: new rows, keys from ``start_id`` ({"shipments": first,
    "purchase_orders": first}, default 1; ``Batch.next_id`` continues). On top of them the batch
    carries the earlier-state copies (``resend_in_batch_share`` of the new rows) and the rows of ``resend``
    (rows of earlier batches' ``Batch.rows``, of either table), all at random places.
    Shipments are shipped and orders placed in the ``days`` days from ``shipped_from``; with a
    ``catalog`` (``read_catalog``) orders go to the product's supplier at about its unit cost, and
    arrive around the supplier's lead time. ``archives`` zips each hold ``members_per_archive``
    members of each table (none of a table without rows), under ``member_folder`` in the zip.
    ``expected`` overrides the marker's counts (fault tests). ``keep_rows`` defaults to keeping
    ``Batch.rows`` up to ``KEEP_ROWS_UP_TO`` rows."""
    if min(shipments, purchase_orders) < 0 or archives < 1 or members_per_archive < 1 or days < 1:
        raise ValueError("shipments and purchase_orders must be >= 0; archives, members_per_archive, days >= 1")
    shares = {"unknown_share": unknown_share, "bad_share": bad_share, "resend_in_batch_share": resend_in_batch_share}
    if not all(0 <= share <= 1 for share in (*shares.values(), resend_older)) or sum(shares.values()) > 1:
        raise ValueError(f"{', '.join(shares)} must be within [0, 1] and add up to at most 1; resend_older too")
    started_at = datetime.now(UTC)
    rng = random.Random(seed)
    start = _start_ids(start_id)
    new_rows = {"shipments": shipments, "purchase_orders": purchase_orders}
    resend_rows = _split_resend(resend)
    total = len(resend) + sum(n + round(n * resend_in_batch_share) for n in new_rows.values())
    keep = total <= KEEP_ROWS_UP_TO if keep_rows is None else keep_rows
    window = _Window(shipped_from, days)
    known = {table: set(values) for table, values in ids.items()}
    for table, count in new_rows.items():
        needed = [t for t in REFERENCES[table].values() if not ids.get(t)]
        if count and needed:
            raise ValueError(f"{table}: ids has no keys for {needed}")

    written: dict[str, _TableRows] = {}
    for table in FACT_TABLES:
        generate = _new_shipments if table == "shipments" else _new_purchase_orders
        fresh = generate(
            rng, new_rows[table], start[table], ids, catalog, window, keep,
            _specials(rng, table, new_rows[table], unknown_share, bad_share, resend_in_batch_share),
            cancelled_share=cancelled_share, late_share=late_share,
        )  # fmt: skip
        _resend(rng, fresh, resend_rows[table], resend_older, known, catalog, late_share, keep)
        written[table] = _interleave(rng, fresh)

    keys, members, rejects = _write_archives(
        s3, batch_id, written, archives, members_per_archive, member_folder, line_end, window.export_time, bucket
    )
    counts = {table: len(written[table].lines) for table in FACT_TABLES}
    body: dict = {}
    if marker:
        body = write_marker(
            s3, batch_id, dict(expected) if expected is not None else counts,
            objects=keys if objects_in_marker else None, started_at=started_at, bucket=bucket,
        )  # fmt: skip
    return Batch(
        batch_id=batch_id,
        keys=keys,
        expected_counts=counts,
        marker=body,
        rows={table: written[table].rows for table in FACT_TABLES} if keep else None,
        members=members,
        rejects=rejects,
        copied={table: written[table].copied for table in FACT_TABLES},
        resent={table: written[table].resent for table in FACT_TABLES},
        resent_older={table: written[table].resent_older for table in FACT_TABLES},
        next_id={table: start[table] + new_rows[table] for table in FACT_TABLES},
    )


def _start_ids(start_id: Mapping[str, int] | None) -> dict[str, int]:
    """The first key of each table: {"shipments": ..., "purchase_orders": ...} (the key columns'
    names, shipment_id and po_id, are understood too); 1 where not given."""
    start = {table: 1 for table in FACT_TABLES}
    tables = {**{table: table for table in FACT_TABLES}, **{column: table for table, column in KEY_COLUMN.items()}}
    for name, first in (start_id or {}).items():
        if name not in tables:
            raise ValueError(f"start_id: {name!r} is neither a fact table nor its key column")
        start[tables[name]] = first
    return start


class _Window:
    """The batch's time range as minutes from ``shipped_from`` 00:00 UTC, each minute's timestamp
    text built once: rows pick minutes, not datetimes."""

    # Beyond the last day of shipping or ordering: a purchase order received 40 days later and
    # updated hours after, a late delivery, a cancellation days after the order.
    MARGIN_DAYS = 42

    def __init__(self, first_day: date, days: int):
        self.start = datetime.combine(first_day, time(), UTC)
        self.minutes = days * MINUTES_PER_DAY
        day_texts = [(first_day + timedelta(days=d)).isoformat() for d in range(days + self.MARGIN_DAYS)]
        clock = [f"T{m // 60:02d}:{m % 60:02d}:00+00:00" for m in range(MINUTES_PER_DAY)]
        self.timestamps = [day + hm for day in day_texts for hm in clock]
        self.dates = day_texts
        self.export_time = (first_day + timedelta(days=days)).timetuple()[:6]

    def at(self, minute: int) -> datetime:
        return self.start + timedelta(minutes=minute)

    def day(self, index: int) -> date:
        return self.start.date() + timedelta(days=index)


@dataclass
class _TableRows:
    """One table's rows on the way to the archives. ``lines``/``rows`` are the new rows in key order
    until ``_interleave`` places the extras (copies and re-sent rows) among them."""

    table: str
    lines: list[str]
    rows: list[dict] | None
    rejects: dict[int, str]  # index in lines -> kind
    extras: list[tuple[str, dict | None, str | None]] = field(default_factory=list)  # (line, row, reject kind)
    copied: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)
    resent_older: list[int] = field(default_factory=list)


COPY = "copy"


def _specials(rng, table: str, count: int, unknown_share: float, bad_share: float, copy_share: float) -> dict:
    """Which new rows (by index) refer to an unknown id, are malformed, or get an earlier-state copy."""
    n_unknown, n_bad, n_copy = round(count * unknown_share), round(count * bad_share), round(count * copy_share)
    chosen = rng.sample(range(count), n_unknown + n_bad + n_copy)
    dimensions = list(REFERENCES[table].values())
    kinds = [f"unknown_{dimensions[i % len(dimensions)]}" for i in range(n_unknown)]
    kinds += [BAD_KINDS[table][i % len(BAD_KINDS[table])] for i in range(n_bad)]
    kinds += [COPY] * n_copy
    return dict(zip(chosen, kinds, strict=True))


def _unknown_ids(rng, ids: Mapping[str, Sequence[int]]) -> dict[str, list[str]]:
    """A few ids per dimension well above its largest: rows the applications know and the
    dimensions do not (yet)."""
    return {
        table: [str(max(values, default=0) + 100_000 + rng.randrange(100_000)) for _ in range(5)]
        for table, values in ids.items()
    }


def _quantities(low: int, high: int, small_bias: int) -> list[str]:
    """Quantity texts to pick from, small quantities more often than large ones."""
    return [str(q) for q in range(low, high + 1) for _ in range(max(1, small_bias - q))]


def _cost_cents(product_ids: Sequence[int], catalog: Catalog | None) -> list[int]:
    """Each product's unit cost in cents: the catalog's, or one derived from the id (the same in
    every batch)."""
    costs = catalog.unit_cost if catalog else {}
    return [
        int(costs[p] * 100) if p in costs else 100 + (p * 2_654_435_761) % 50_000
        for p in product_ids
    ]  # fmt: skip


def _new_shipments(
    rng, count, first_id, ids, catalog, window: _Window, keep, specials, *, cancelled_share, late_share
) -> _TableRows:
    r = rng.random
    customers, products, warehouses = ([str(i) for i in ids.get(t, ())] for t in ("customer", "product", "warehouse"))
    n_customers, n_products, n_warehouses = len(customers), len(products), len(warehouses)
    unknown = _unknown_ids(rng, ids)
    quantities = _quantities(1, 40, 25)
    n_quantities = len(quantities)
    stamp, dates, minutes = window.timestamps, window.dates, window.minutes
    delivered_share = 0.60
    lines: list[str] = []
    rows: list[dict] | None = [] if keep else None
    rejects: dict[int, str] = {}
    result = _TableRows("shipments", lines, rows, rejects)
    for i in range(count):
        shipment_id = first_id + i
        kind = specials.get(i)
        customer = customers[int(r() * n_customers)]
        product = products[int(r() * n_products)]
        warehouse = warehouses[int(r() * n_warehouses)]
        quantity = quantities[int(r() * n_quantities)]
        shipped = int(r() * minutes)
        promised_day = shipped // MINUTES_PER_DAY + 2 + int(r() * 6)
        u = r()
        if u < cancelled_share:
            status, delivered = "cancelled", None
            updated = shipped + 60 + int(r() * 1380)
        elif u < cancelled_share + delivered_share or kind == COPY:  # a copied row has an earlier state
            status = "delivered"
            promised_end = (promised_day + 1) * MINUTES_PER_DAY
            if r() < late_share:
                delivered = promised_end + int(r() * 5 * MINUTES_PER_DAY)
            else:
                delivered = shipped + 180 + int(r() * (promised_end - shipped - 180))
            updated = delivered + int(r() * 120)
        else:
            status, delivered = "shipped", None
            updated = shipped + int(r() * 60)
        shipped_text, status_text = stamp[shipped], status
        if kind is not None and kind != COPY:
            rejects[len(lines)] = kind
            if kind == "unknown_customer":
                customer = unknown["customer"][i % 5]
            elif kind == "unknown_product":
                product = unknown["product"][i % 5]
            elif kind == "unknown_warehouse":
                warehouse = unknown["warehouse"][i % 5]
            elif kind == ZERO_QUANTITY:
                quantity = "0"
            elif kind == FRACTIONAL_QUANTITY:
                quantity = f"{quantity}.5"
            elif kind == UNKNOWN_STATUS:
                status_text = UNKNOWN_STATUS_TEXT["shipments"]
            elif kind == IMPOSSIBLE_TIMESTAMP:
                shipped_text = IMPOSSIBLE_TIMESTAMPS[i % len(IMPOSSIBLE_TIMESTAMPS)]
        head = f"{shipment_id},{customer},{product},{warehouse},{quantity},{shipped_text},{dates[promised_day]}"
        delivered_text = "" if delivered is None else stamp[delivered]
        lines.append(f"{head},{delivered_text},{status_text},{stamp[updated]}")
        if kind == COPY:  # the same shipment as it was when it left: shipped, stamped before its final state
            earlier = shipped + int(r() * 30)
            row = None
            if keep:
                row = _shipment_row(shipment_id, customer, product, warehouse, quantity, window.at(shipped),
                                    window.day(promised_day), None, "shipped", window.at(earlier))  # fmt: skip
            result.extras.append((f"{head},,shipped,{stamp[earlier]}", row, None))
            result.copied.append(shipment_id)
        if keep:
            rows.append(
                _shipment_row(
                    shipment_id, customer, product, warehouse, quantity,
                    shipped_text if shipped_text != stamp[shipped] else window.at(shipped), window.day(promised_day),
                    None if delivered is None else window.at(delivered), status_text, window.at(updated),
                )
            )  # fmt: skip
    return result


def _number(text: str) -> int | str:
    """An id or quantity as a Python value: the int, or the text when it is not one."""
    return int(text) if text.lstrip("-").isdigit() else text


def _shipment_row(shipment_id, customer, product, warehouse, quantity, shipped_at, promised_date, delivered_at,
                  status, updated_at) -> dict:  # fmt: skip
    return {
        "shipment_id": shipment_id, "customer_id": int(customer), "product_id": int(product),
        "warehouse_id": int(warehouse), "quantity": _number(quantity), "shipped_at": shipped_at,
        "promised_date": promised_date, "delivered_at": delivered_at, "status": status, "updated_at": updated_at,
    }  # fmt: skip


def _new_purchase_orders(
    rng, count, first_id, ids, catalog, window: _Window, keep, specials, *, cancelled_share, late_share
) -> _TableRows:
    del late_share  # lateness of orders comes from the supplier's lead time
    r = rng.random
    product_ids = list(ids.get("product", ()))
    products = [str(p) for p in product_ids]
    suppliers = [str(s) for s in ids.get("supplier", ())]
    warehouses = [str(w) for w in ids.get("warehouse", ())]
    n_products, n_suppliers, n_warehouses = len(products), len(suppliers), len(warehouses)
    known_suppliers = set(ids.get("supplier", ()))
    product_supplier = catalog.product_supplier if catalog else {}
    # The product's own supplier where the catalog names one the dimensions hold; otherwise any.
    usual_supplier = [
        str(product_supplier[p]) if product_supplier.get(p) in known_suppliers else None for p in product_ids
    ]
    cents = _cost_cents(product_ids, catalog)
    # Per supplier: its lead time and how far past it its deliveries tend to slip (some suppliers
    # are reliably late), so that on-time rates differ between suppliers.
    lead_times = catalog.lead_time_days if catalog else {}
    lateness = {s: (lead_times.get(int(s)), int(s) % 5) for s in suppliers}
    unknown = _unknown_ids(rng, ids)
    stamp, minutes = window.timestamps, window.minutes
    received_share = 0.55
    cancelled_share = cancelled_share + 0.01  # orders are cancelled a little more often than shipments
    lines: list[str] = []
    rows: list[dict] | None = [] if keep else None
    rejects: dict[int, str] = {}
    result = _TableRows("purchase_orders", lines, rows, rejects)
    for i in range(count):
        po_id = first_id + i
        kind = specials.get(i)
        k = int(r() * n_products)
        product = products[k]
        supplier = usual_supplier[k]
        if supplier is None or r() < 0.05:
            supplier = suppliers[int(r() * n_suppliers)]
        warehouse = warehouses[int(r() * n_warehouses)]
        quantity = str((1 + int(r() * 50)) * 10)
        cost = int(cents[k] * (0.95 + 0.1 * r())) or 1
        cost_text = f"{cost // 100}.{cost % 100:02d}"
        ordered = int(r() * minutes)
        u = r()
        if u < cancelled_share:
            status, received = "cancelled", None
            updated = ordered + 120 + int(r() * 5 * MINUTES_PER_DAY)
        elif u < cancelled_share + received_share or kind == COPY:  # a copied row has an earlier state
            status = "received"
            lead_time, slip = lateness[supplier] if supplier in lateness else (None, 0)
            if lead_time is None:
                days_taken = 1 + int(r() * 40)
            else:
                days_taken = min(40, max(1, lead_time - 5 + int(r() * (7 + slip))))
            received = max(ordered + 60, ordered + days_taken * MINUTES_PER_DAY + int(r() * 480) - 240)
            updated = received + int(r() * 240)
        else:
            status, received = "open", None
            updated = ordered + int(r() * 60)
        ordered_text, status_text = stamp[ordered], status
        if kind is not None and kind != COPY:
            rejects[len(lines)] = kind
            if kind == "unknown_supplier":
                supplier = unknown["supplier"][i % 5]
            elif kind == "unknown_product":
                product = unknown["product"][i % 5]
            elif kind == "unknown_warehouse":
                warehouse = unknown["warehouse"][i % 5]
            elif kind == ZERO_QUANTITY:
                quantity = "0"
            elif kind == DECIMAL_COMMA:
                cost_text = f'"{cost_text.replace(".", ",")}"'
            elif kind == UNKNOWN_STATUS:
                status_text = UNKNOWN_STATUS_TEXT["purchase_orders"]
            elif kind == IMPOSSIBLE_TIMESTAMP:
                ordered_text = IMPOSSIBLE_TIMESTAMPS[i % len(IMPOSSIBLE_TIMESTAMPS)]
        head = f"{po_id},{supplier},{product},{warehouse},{quantity},{cost_text},{ordered_text}"
        received_text = "" if received is None else stamp[received]
        lines.append(f"{head},{received_text},{status_text},{stamp[updated]}")
        if kind == COPY:  # the same order while it was open, stamped before its final state
            earlier = ordered + int(r() * 60)
            row = None
            if keep:
                row = _purchase_order_row(po_id, supplier, product, warehouse, quantity, cost_text,
                                          window.at(ordered), None, "open", window.at(earlier))  # fmt: skip
            result.extras.append((f"{head},,open,{stamp[earlier]}", row, None))
            result.copied.append(po_id)
        if keep:
            rows.append(
                _purchase_order_row(
                    po_id, supplier, product, warehouse, quantity, cost_text,
                    ordered_text if ordered_text != stamp[ordered] else window.at(ordered),
                    None if received is None else window.at(received), status_text, window.at(updated),
                )
            )  # fmt: skip
    return result


def _purchase_order_row(po_id, supplier, product, warehouse, quantity, cost_text, ordered_at, received_at, status,
                        updated_at) -> dict:  # fmt: skip
    unit_cost: Decimal | str = cost_text.strip('"') if "," in cost_text else Decimal(cost_text)
    return {
        "po_id": po_id, "supplier_id": int(supplier), "product_id": int(product), "warehouse_id": int(warehouse),
        "quantity": _number(quantity), "unit_cost": unit_cost, "ordered_at": ordered_at, "received_at": received_at,
        "status": status, "updated_at": updated_at,
    }  # fmt: skip


# -- rows of earlier batches, sent again ---------------------------------------------------------------


def _split_resend(resend: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The rows to send again, per table (a shipment has ``shipment_id``, an order ``po_id``)."""
    split: dict[str, list[Mapping[str, Any]]] = {table: [] for table in FACT_TABLES}
    for row in resend:
        for table in FACT_TABLES:
            if KEY_COLUMN[table] in row:
                split[table].append(row)
                break
        else:
            raise ValueError(f"a row to send again has neither shipment_id nor po_id: {dict(row)}")
    return split


def _resend(rng, rows: _TableRows, earlier, older_share, known, catalog, late_share, keep) -> None:
    """Add the ``earlier`` rows to ``rows``' extras: with new values and a newer updated_at, or
    (``older_share`` of them) in an earlier state with an older one."""
    table = rows.table
    older = set(rng.sample(range(len(earlier)), round(len(earlier) * older_share)))
    for index, row in enumerate(earlier):
        if index in older:
            new = _older_state(rng, table, row)
            rows.resent_older.append(row[KEY_COLUMN[table]])
        else:
            new = (
                _later_shipment(rng, row, late_share)
                if table == "shipments"
                else _later_purchase_order(rng, row, catalog)
            )
            rows.resent.append(row[KEY_COLUMN[table]])
        rows.extras.append((_csv_line(COLUMNS[table], new), new if keep else None, _problem(table, new, known)))


def _minutes(rng, low: int, high: int) -> timedelta:
    return timedelta(minutes=rng.randint(low, high))


def _later_shipment(rng, row: Mapping[str, Any], late_share: float) -> dict:
    """A shipment's next state: shipped -> delivered (or, for one in ten, cancelled); delivered ->
    a corrected delivery time; cancelled -> shipped again."""
    new = dict(row)
    status, shipped_at = row["status"], row["shipped_at"]
    after = row["updated_at"] + _minutes(rng, 1, 3 * MINUTES_PER_DAY)
    if not isinstance(shipped_at, datetime) or not isinstance(row["promised_date"], date):
        pass  # a malformed row is sent again as it was, only newer
    elif status == "shipped" and rng.random() < 0.9:
        promised_end = datetime.combine(row["promised_date"] + timedelta(days=1), time(), UTC)
        if rng.random() < late_share:
            delivered = promised_end + _minutes(rng, 0, 5 * MINUTES_PER_DAY)
        else:
            delivered = shipped_at + _minutes(
                rng, 180, max(180, int((promised_end - shipped_at).total_seconds() // 60))
            )
        new.update(status="delivered", delivered_at=delivered)
        after = max(after, delivered + _minutes(rng, 0, 120))
    elif status == "shipped":
        new["status"] = "cancelled"
    elif status == "delivered" and isinstance(row["delivered_at"], datetime):
        new["delivered_at"] = row["delivered_at"] + _minutes(rng, 1, 12 * 60)
        after = max(after, new["delivered_at"] + _minutes(rng, 0, 60))
    else:
        new.update(status="shipped", delivered_at=None)
    new["updated_at"] = after
    return new


def _later_purchase_order(rng, row: Mapping[str, Any], catalog: Catalog | None) -> dict:
    """An order's next state: open -> received (or, for about one in seven, cancelled); received ->
    a corrected quantity; cancelled -> open again."""
    new = dict(row)
    status, ordered_at = row["status"], row["ordered_at"]
    after = row["updated_at"] + _minutes(rng, 1, 3 * MINUTES_PER_DAY)
    if not isinstance(ordered_at, datetime):
        pass  # a malformed row is sent again as it was, only newer
    elif status == "open" and rng.random() < 0.85:
        lead_time = (catalog.lead_time_days if catalog else {}).get(row["supplier_id"])
        days_taken = rng.randint(1, 40) if lead_time is None else min(40, max(1, lead_time + rng.randint(-3, 4)))
        received = ordered_at + timedelta(days=days_taken)
        new.update(status="received", received_at=received)
        after = max(after, received + _minutes(rng, 0, 240))
    elif status == "open":
        new["status"] = "cancelled"
    elif status == "received" and isinstance(row["quantity"], int):
        new["quantity"] = row["quantity"] - rng.randint(1, 9) if row["quantity"] > 10 else row["quantity"] + 10
    else:
        new.update(status="open", received_at=None)
    new["updated_at"] = after
    return new


def _older_state(rng, table: str, row: Mapping[str, Any]) -> dict:
    """A state the row had before the copy already sent (delivered -> still shipped, received ->
    still open; otherwise another quantity), stamped 1 minute to 2 days earlier: it arrives late
    and must not replace the copy sent before."""
    new = dict(row)
    open_status, done_column = ("shipped", "delivered_at") if table == "shipments" else ("open", "received_at")
    if row["status"] != open_status:
        new.update(status=open_status, **{done_column: None})
    elif isinstance(row["quantity"], int):
        new["quantity"] = row["quantity"] + rng.randint(1, 5)
    new["updated_at"] = row["updated_at"] - _minutes(rng, 1, 2 * MINUTES_PER_DAY)
    return new


def _problem(table: str, row: Mapping[str, Any], known: Mapping[str, set[int]]) -> str | None:
    """Why the pipeline rejects ``row`` (a kind as in ``Reject.kind``), or None."""
    for column, dimension in REFERENCES[table].items():
        if row[column] not in known.get(dimension, ()):
            return f"unknown_{dimension}"
    quantity = row["quantity"]
    if not isinstance(quantity, int):
        return FRACTIONAL_QUANTITY
    if quantity < 1:
        return ZERO_QUANTITY
    if row["status"] not in STATUSES[table]:
        return UNKNOWN_STATUS
    if table == "purchase_orders" and not isinstance(row["unit_cost"], Decimal):
        return DECIMAL_COMMA
    if any(isinstance(row[c], str) for c in COLUMNS[table] if c.endswith("_at")):
        return IMPOSSIBLE_TIMESTAMP
    return None


# -- placing the rows in the archives --------------------------------------------------------------------


def _interleave(rng, rows: _TableRows) -> _TableRows:
    """Place the extras (copies, re-sent rows) among the new rows at random places, in random order."""
    extras = rows.extras
    rng.shuffle(extras)
    total = len(rows.lines) + len(extras)
    places = sorted(rng.sample(range(total), len(extras)))
    lines: list[str] = []
    kept: list[dict] | None = [] if rows.rows is not None else None
    rejects: dict[int, str] = {}
    taken = 0  # new rows placed so far
    for place, (line, row, problem) in zip(places, extras, strict=True):
        before = place - len(lines)  # new rows that come before this extra
        lines += rows.lines[taken : taken + before]
        if kept is not None:
            kept += rows.rows[taken : taken + before]
        taken += before
        if problem:
            rejects[len(lines)] = problem
        lines.append(line)
        if kept is not None:
            kept.append(row)
    lines += rows.lines[taken:]
    if kept is not None:
        kept += rows.rows[taken:]
    # A new row's place: its index plus the extras placed before it.
    shifts = [place - n for n, place in enumerate(places)]
    for index, kind in rows.rejects.items():
        rejects[index + bisect_right(shifts, index)] = kind
    return _TableRows(
        rows.table, lines, kept, dict(sorted(rejects.items())), [], rows.copied, rows.resent, rows.resent_older
    )


def _write_archives(s3, batch_id, written, archives, members_per_archive, member_folder, line_end, when, bucket):
    """Cut each table's rows over its members, write the zips; returns (keys, members, rejects)."""
    slots = archives * members_per_archive
    bounds = {
        table: [len(written[table].lines) * s // slots for s in range(slots + 1)] for table in FACT_TABLES
    }  # fmt: skip
    keys: list[str] = []
    members: dict[str, dict[str, int]] = {}
    rejects: list[Reject] = []
    key_of_slot, member_of_slot = {}, {}
    for a in range(archives):
        key = f"{PREFIX}{batch_id}/{SYSTEMS[a % len(SYSTEMS)]}-{a // len(SYSTEMS) + 1:04d}.zip"
        contents: dict[str, str] = {}
        for table in FACT_TABLES:
            rows = written[table]
            if not rows.lines:
                continue  # no members for a table without rows
            for s in range(a * members_per_archive, (a + 1) * members_per_archive):
                name = f"{member_folder}{table}-{s + 1:04d}.csv"
                start, end = bounds[table][s], bounds[table][s + 1]
                contents[name] = line_end.join([",".join(COLUMNS[table]), *rows.lines[start:end], ""])
                key_of_slot[table, s], member_of_slot[table, s] = key, name
        s3.put_object(Bucket=bucket, Key=key, Body=zip_bytes(contents, date_time=when))
        keys.append(key)
        members[key] = {name: text.count(line_end) - 1 for name, text in contents.items()}
    for table in FACT_TABLES:
        for index, kind in written[table].rejects.items():
            s = bisect_right(bounds[table], index) - 1
            line = index - bounds[table][s] + 2  # the header is line 1
            key = _key_of(written[table].lines[index])
            rejects.append(Reject(key_of_slot[table, s], member_of_slot[table, s], line, table, key, kind))
    order = {(key, name): n for n, (key, name) in enumerate((k, m) for k in keys for m in members[k])}
    rejects.sort(key=lambda reject: (order[reject.object, reject.member], reject.line))
    return keys, members, rejects


def _key_of(line: str) -> int:
    return int(line[: line.index(",")])


# -- helpers for writing anything, fault tests included --------------------------------------------------


def _cell(value: Any) -> str:
    """A Python value as the fact files write it."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.isoformat(timespec="seconds")
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    return value.isoformat() if isinstance(value, date) else str(value)


def _csv_line(columns: Sequence[str], row: Mapping[str, Any]) -> str:
    cells = [_cell(row[column]) for column in columns]
    return ",".join(f'"{c.replace(chr(34), chr(34) * 2)}"' if any(x in c for x in ',"') else c for c in cells)


def csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, Any] | Sequence[Any]], line_end: str = "\n") -> str:
    """A CSV member's text: the header ``columns``, then each row (a mapping read by column name, or a
    sequence in column order), values written as the fact files write them, RFC 4180 quoting."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end)
    writer.writerow(columns)
    for row in rows:
        values = [row.get(c) for c in columns] if isinstance(row, Mapping) else list(row)
        writer.writerow([_cell(value) for value in values])
    return out.getvalue()


def zip_bytes(members: Mapping[str, str | bytes], *, date_time: tuple = (2026, 1, 1, 0, 0, 0)) -> bytes:
    """A zip archive of ``members`` ({name: text (written as UTF-8) or bytes}), deflated; the same
    bytes for the same members (every entry has the time ``date_time``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in members.items():
            info = zipfile.ZipInfo(name, date_time=tuple(date_time))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16  # rw-r--r--, as an exporting system leaves it
            archive.writestr(info, body.encode("utf-8") if isinstance(body, str) else body)
    return buffer.getvalue()


def write_object(s3, batch_id: str, name: str, body: bytes, *, bucket: str = LANDING_BUCKET) -> str:
    """Put ``body`` at ``incoming/<batch_id>/<name>``; returns the key."""
    key = f"{PREFIX}{batch_id}/{name}"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return key


def write_marker(
    s3,
    batch_id: str,
    expected_counts: Mapping[str, int] | None,
    objects: Sequence[str] | None = None,
    *,
    started_at: datetime | None = None,
    completed_at: datetime | None = None,
    bucket: str = LANDING_BUCKET,
) -> dict:
    """Write ``batch-completion/<batch_id>.json``; returns its body. ``expected_counts=None`` leaves
    the counts empty; ``objects=None`` leaves ``objects`` out (the batch is then every object under
    ``incoming/<batch_id>/``)."""
    completed = completed_at or datetime.now(UTC)
    body: dict = {
        "batch_id": batch_id,
        "started_at": _iso(started_at or completed),
        "completed_at": _iso(completed),
        "expected_counts": dict(expected_counts or {}),
    }
    if objects is not None:
        body["objects"] = list(objects)
    s3.put_object(
        Bucket=bucket,
        Key=f"{MARKER_PREFIX}{batch_id}.json",
        Body=json.dumps(body).encode(),
        ContentType="application/json",
    )
    return body


def _iso(value: datetime) -> str:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- CLI ---------------------------------------------------------------------------------------------------


def _stack_setting(name: str) -> str | None:
    """``name`` from the environment, or else from the running stack's ``.local/stack.env``."""
    if os.environ.get(name):
        return os.environ[name]
    from devstack.stack import DEFAULT_STATE_DIR, read_env_file

    env_file = DEFAULT_STATE_DIR / "stack.env"
    return read_env_file(env_file).get(name) if env_file.exists() else None


def _s3_client():
    import boto3

    endpoint = _stack_setting("AWS_ENDPOINT_URL")
    if not endpoint:
        raise SystemExit("AWS_ENDPOINT_URL is not set and .local/stack.env is missing: run make stack")
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=_stack_setting("AWS_DEFAULT_REGION"),
        aws_access_key_id=_stack_setting("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_stack_setting("AWS_SECRET_ACCESS_KEY"),
    )


def _default_ids() -> dict[str, list[int]]:
    """The ids a default ``populate`` creates."""
    return {"supplier": list(range(1, 26)), "product": list(range(1, 401)), "warehouse": list(range(1, 9)),
            "customer": list(range(1, 2001))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.sample_data.supplychain", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    source = commands.add_parser("source", help="recreate the OLTP source's tables (empty, or with --populate)")
    source.add_argument("--populate", action="store_true", help="fill a starting state")
    for name, default in (("suppliers", 25), ("products", 400), ("warehouses", 8), ("customers", 2000)):
        source.add_argument(f"--{name}", type=int, default=default)
    source.add_argument("--seed", type=int, default=0)
    day = commands.add_parser("working-day", help="insert, update and delete source rows as the applications do")
    day.add_argument("--seed", type=int, default=1)
    batch = commands.add_parser("batch", help="write a batch of fact archives, then its marker")
    batch.add_argument("--batch-id", required=True)
    batch.add_argument("--shipments", type=int, default=1000, help="new shipments (copies come on top)")
    batch.add_argument("--purchase-orders", type=int, default=200, help="new purchase orders (copies on top)")
    batch.add_argument("--first-shipment-id", type=int, default=1)
    batch.add_argument("--first-po-id", type=int, default=1)
    batch.add_argument("--seed", type=int, default=0)
    batch.add_argument("--archives", type=int, default=2)
    batch.add_argument("--members", type=int, default=2, help="members of each table per archive")
    batch.add_argument("--unknown-share", type=float, default=0.01, help="rows referring to an unknown id")
    batch.add_argument("--bad-share", type=float, default=0.0, help="malformed rows (kinds in turn)")
    batch.add_argument(
        "--resend-in-batch-share", type=float, default=0.01, help="rows sent twice (an earlier state too)"
    )
    batch.add_argument("--shipped-from", type=date.fromisoformat, default=date(2026, 3, 1))
    batch.add_argument("--days", type=int, default=7)
    batch.add_argument("--bucket", default=LANDING_BUCKET)
    batch.add_argument("--no-source", action="store_true", help="use a default populate's ids, not the source's")
    batch.add_argument("--no-objects", action="store_true", help="leave the object list out of the marker")
    batch.add_argument("--no-marker", action="store_true", help="write the archives but not the marker")
    args = parser.parse_args(argv)

    if args.command == "batch":
        ids, catalog = _default_ids(), None
        if not args.no_source:
            conn = connect()
            try:
                ids, catalog = read_dimension_ids(conn), read_catalog(conn)
            finally:
                conn.close()
        try:
            written = write_batch(
                _s3_client(), args.batch_id, ids=ids, catalog=catalog, shipments=args.shipments,
                purchase_orders=args.purchase_orders, seed=args.seed, archives=args.archives,
                members_per_archive=args.members, unknown_share=args.unknown_share, bad_share=args.bad_share,
                resend_in_batch_share=args.resend_in_batch_share, shipped_from=args.shipped_from, days=args.days,
                start_id={"shipments": args.first_shipment_id, "purchase_orders": args.first_po_id},
                marker=not args.no_marker, objects_in_marker=not args.no_objects, keep_rows=False,
                bucket=args.bucket,
            )  # fmt: skip
        except ValueError as error:
            parser.error(str(error))
        result: Any = {
            "batch_id": written.batch_id,
            "objects": written.members,
            "expected_counts": written.expected_counts,
            "rejects": len(written.rejects),
            "copied": {table: len(keys) for table, keys in written.copied.items()},
            "next_id": written.next_id,
            "marker": written.marker or None,
        }
    else:
        conn = connect()
        try:
            if args.command == "source":
                create_source(conn)
                result = table_counts(conn)
                if args.populate:
                    result = populate(
                        conn, suppliers=args.suppliers, products=args.products, warehouses=args.warehouses,
                        customers=args.customers, seed=args.seed,
                    )  # fmt: skip
            else:
                result = working_day(conn, seed=args.seed)
        finally:
            conn.close()
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
