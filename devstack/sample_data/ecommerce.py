"""Sample e-commerce transactions as the upstream generator lands them, plus the batch marker.

The files follow docs/interfaces.md ("E-commerce"): bucket ``ecommerce-raw``, CSV in UTF-8,
comma-separated, ``\\n`` line ends, a header row and exactly the columns

    transaction_id,customer_id,product_id,quantity,price,transaction_date,payment_type,status

one file per day at ``transactions/year=YYYY/month=MM/day=DD/transactions_YYYY-MM-DD.csv``, or a
day split into parts ``transactions_YYYY-MM-DD_partN.csv`` (N from 1).

The values are the upstream generator's:

- ``transaction_id``: ``TXN`` and 8 digits;
- ``customer_id``: ``CUST00001`` to ``CUST00005`` and ``product_id``: ``PROD00001`` to
  ``PROD00010``, the reference rows in ``CUSTOMERS`` and ``PRODUCTS`` (the warehouse setup
  preloads the same rows into ``ecommerce.dim_customers`` and ``ecommerce.dim_products``);
- ``quantity``: 1 to 5;
- ``price``: the line's total, the product's unit price times the quantity, with 2 decimals;
- ``transaction_date``: the file's day, ``YYYY-MM-DD``;
- ``payment_type``: ``Credit Card``, ``Debit Card`` or ``Cash on Delivery``;
- ``status``: ``Completed`` (on request, a share of ``Pending`` and ``Cancelled``); the valid
  statuses are ``Pending``, ``Completed``, ``Cancelled`` and ``Refunded``.

A transaction id names its day and its row: the day's position in a 1000-day cycle starting
2020-01-01, times 100,000, plus the row number, passed through a fixed bijection of the 8-digit
numbers (multiply by an odd constant not divisible by 5 and add an offset, modulo 10^8, then
mix the two 4-digit halves in a few Feistel rounds). The ids look random but never repeat
within any 1000 consecutive days, and a day holds at most 100,000 transactions. The ids do not
depend on the random seed: generating a day again, with any options, gives its transactions the
same ids, which is how updates to an earlier day are made.

To exercise the pipeline, a day can carry rows that must be rejected (``INVALID_KINDS``: an
unknown customer or product, a quantity of 0, a price or date that does not parse, a status
outside the list), identical copies of valid rows (dropped as duplicates) and conflicting copies
(same transaction id, one value changed: both copies are rejected). ``generate_day`` records
which rows are which, by position in the file. ``update_rows`` sends a share of a day's
valid transactions with a later state: ``Completed`` becoming ``Refunded``, or a corrected
(discounted) price.

More customers and products (``CUST00006``..., ``PROD00011``...) can be added to the warehouse's
dimensions with ``add_dimensions``; ``generate_day(customers=n, products=m)`` then draws from
the first n customers and m products. An added product's price depends on its id only
(``product_price``), so the generated line totals match the dimension whatever seed added it.

Generation is deterministic for a given (seed, day) and vectorised: 100,000 rows take a
fraction of a second. Each file is written with one ``put_object``.

CLI (endpoint from ``AWS_ENDPOINT_URL``; warehouse from ``AIRFLOW_CONN_WAREHOUSE_DB``, JSON or
URI, as in ``.local/stack.env``)::

    python -m devstack.sample_data.ecommerce batch --batch-id B1 --start 2026-11-01 --days 2 \\
        --per-day 15 [--seed 7] [--invalid-share 0.02] [--duplicates N] [--conflicts N] \\
        [--update-days 2026-10-30,2026-10-31 --update-share 0.2] [--parts 1] [--no-marker]
    python -m devstack.sample_data.ecommerce dimensions --customers 100 --products 50

``batch`` writes each day's CSV, then (with ``--update-days``) one file of updates to those
earlier days' transactions, regenerated from the same seed and options, in the partition of
the batch's last day (``transactions_<last day>_updates.csv``), then the marker
``batch-completion/<batch id>.json``: ``batch_id``, ``started_at``, ``completed_at``,
``expected_counts: {"transactions": data rows written}`` and ``objects``, every key written.
It prints one JSON line with the keys and counts.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import re
import sys
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

import numpy as np

RAW_BUCKET = "ecommerce-raw"
ARCHIVE_BUCKET = "ecommerce-archive"
PREFIX = "transactions/"
MARKER_PREFIX = "batch-completion/"

COLUMNS = (
    "transaction_id",
    "customer_id",
    "product_id",
    "quantity",
    "price",
    "transaction_date",
    "payment_type",
    "status",
)
PAYMENT_TYPES = ("Credit Card", "Debit Card", "Cash on Delivery")
STATUSES = ("Pending", "Completed", "Cancelled", "Refunded")
INVALID_KINDS = ("unknown_customer", "unknown_product", "zero_quantity", "bad_price", "bad_date", "unknown_status")

# Values that make a row invalid; the ids stay unknown because dimensions stop at MAX_DIMENSION.
UNKNOWN_CUSTOMER = "CUST99999"
UNKNOWN_PRODUCT = "PROD99999"
BAD_PRICES = ("abc", "12,50")
UNKNOWN_STATUS = "Shipped"
MAX_DIMENSION = 99_998

ROWS_PER_DAY = 100_000
ID_EPOCH = date(2020, 1, 1)
ID_DAYS = 1000  # 10^8 ids / ROWS_PER_DAY: ids are unique within any ID_DAYS consecutive days
_ID_MODULUS = 10**8
_ID_MULTIPLIER = 73_939_133  # odd and not a multiple of 5: invertible modulo 10^8
_ID_OFFSET = 27_182_818
_ID_INVERSE = pow(_ID_MULTIPLIER, -1, _ID_MODULUS)
_ID_HALF = 10**4
_ID_ROUND_KEYS = (1201, 4457, 8093)

# Positions of the columns in a row.
TRANSACTION_ID, CUSTOMER_ID, PRODUCT_ID, QUANTITY, PRICE, TRANSACTION_DATE, PAYMENT_TYPE, STATUS = range(len(COLUMNS))


@dataclass(frozen=True)
class Customer:
    customer_id: str
    first_name: str
    last_name: str
    email: str
    membership_level: str


@dataclass(frozen=True)
class Product:
    product_id: str
    product_name: str
    category: str
    price: Decimal
    supplier_id: str


CUSTOMERS = (
    Customer("CUST00001", "Yash", "Bhawsar", "yash.bha@example.com", "BR"),
    Customer("CUST00002", "Vini", "Shrivastava", "vini.stva@example.com", "SL"),
    Customer("CUST00003", "Ram", "Heerekar", "ram.heer@example.com", "GL"),
    Customer("CUST00004", "Matin", "Khan", "matin.khan@example.com", "BR"),
    Customer("CUST00005", "Bikki", "Tamoli", "Bikki.tamoli@example.com", "SL"),
)
PRODUCTS = (
    Product("PROD00001", "Laptop", "Electronics", Decimal("799.99"), "SUP00001"),
    Product("PROD00002", "Smartphone", "Electronics", Decimal("499.99"), "SUP00002"),
    Product("PROD00003", "Headphones", "Electronics", Decimal("79.99"), "SUP00001"),
    Product("PROD00004", "T-Shirt", "Clothing", Decimal("19.99"), "SUP00003"),
    Product("PROD00005", "Jeans", "Clothing", Decimal("49.99"), "SUP00003"),
    Product("PROD00006", "Coffee Maker", "Home Goods", Decimal("99.99"), "SUP00002"),
    Product("PROD00007", "Microwave", "Home Goods", Decimal("149.99"), "SUP00001"),
    Product("PROD00008", "Vacuum Cleaner", "Home Goods", Decimal("199.99"), "SUP00002"),
    Product("PROD00009", "Book", "Other", Decimal("14.99"), "SUP00003"),
    Product("PROD00010", "Movie", "Other", Decimal("19.99"), "SUP00002"),
)
MEMBERSHIP_LEVELS = ("BR", "SL", "GL")
SUPPLIERS = ("SUP00001", "SUP00002", "SUP00003")

# For the customers and products added beyond the reference rows.
_FIRST_NAMES = ("Aarav", "Priya", "Rohan", "Ananya", "Kabir", "Meera", "Arjun", "Isha", "Vikram", "Sara", "Dev",
                "Nisha", "Omar", "Leela", "Tara", "Kiran", "Zoya", "Neel", "Riya", "Aditya")  # fmt: skip
_LAST_NAMES = ("Sharma", "Patel", "Iyer", "Reddy", "Nair", "Gupta", "Mehta", "Joshi", "Das", "Kulkarni", "Bose",
               "Menon", "Rao", "Chopra", "Verma", "Pillai")  # fmt: skip
_CATALOG = {
    "Electronics": ("Tablet", "Smartwatch", "Speaker", "Monitor", "Keyboard", "Camera", "Charger", "Router"),
    "Clothing": ("Jacket", "Sweater", "Dress", "Shorts", "Sneakers", "Scarf", "Cap", "Socks"),
    "Home Goods": ("Toaster", "Blender", "Kettle", "Lamp", "Pillow", "Cookware Set", "Air Fryer", "Fan"),
    "Other": ("Board Game", "Puzzle", "Notebook", "Backpack", "Water Bottle", "Yoga Mat", "Umbrella", "Plant"),
}
_ADJECTIVES = ("Classic", "Compact", "Deluxe", "Eco", "Pro", "Smart", "Travel", "Ultra")
_ID = re.compile(r"(CUST|PROD)(\d{5})")


@dataclass(frozen=True)
class Row:
    """One CSV line's cells, as strings, in ``COLUMNS`` order."""

    transaction_id: str
    customer_id: str
    product_id: str
    quantity: str
    price: str
    transaction_date: str
    payment_type: str
    status: str

    def as_csv_cells(self) -> tuple[str, ...]:
        return astuple(self)

    @classmethod
    def from_cells(cls, cells: Sequence[str]) -> Row:
        return cls(*cells)


@dataclass
class Day:
    """A day's file as generated: its rows and which of them were made invalid or copied, on purpose.

    Indices are positions in ``rows`` (0 is the first line after the header).
    """

    day: date
    rows: list[tuple[str, ...]]
    invalid: dict[int, str]  # row -> one of INVALID_KINDS
    duplicates: dict[int, int]  # identical copy -> its original
    conflicts: dict[int, int]  # conflicting copy -> its original (both rejected)

    @property
    def rejected(self) -> set[int]:
        """Rows the pipeline must reject: the invalid ones and both copies of each conflict."""
        return set(self.invalid) | set(self.conflicts) | set(self.conflicts.values())

    @property
    def valid(self) -> list[int]:
        """Rows the pipeline loads, one per transaction: not rejected and not an identical copy."""
        skip = self.rejected | set(self.duplicates)
        return [i for i in range(len(self.rows)) if i not in skip]


# -- ids and reference data ------------------------------------------------------------------------------------


def _id_numbers(day: date, rows: np.ndarray) -> np.ndarray:
    slot = (day - ID_EPOCH).days % ID_DAYS
    x = (_ID_MULTIPLIER * (slot * ROWS_PER_DAY + rows) + _ID_OFFSET) % _ID_MODULUS
    high, low = np.divmod(x, _ID_HALF)
    for key in _ID_ROUND_KEYS:  # Feistel rounds on the two 4-digit halves: a bijection
        high, low = low, (high + _mix(low, key)) % _ID_HALF
    return high * _ID_HALF + low


def _mix(half, key: int):
    return (half * (half + key) * 7919 + key) % _ID_HALF


def _row_numbers(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of _id_numbers: (day slot, row number) of each id number."""
    high, low = np.divmod(numbers.astype(np.int64), _ID_HALF)
    for key in reversed(_ID_ROUND_KEYS):
        high, low = (low - _mix(high, key)) % _ID_HALF, high
    x = (high * _ID_HALF + low - _ID_OFFSET) % _ID_MODULUS * _ID_INVERSE % _ID_MODULUS
    return np.divmod(x, ROWS_PER_DAY)


def transaction_id(day: date, row: int) -> str:
    """The id of the day's transaction at row number ``row`` (0-based, before any copies)."""
    if not 0 <= row < ROWS_PER_DAY:
        raise ValueError(f"row must be within [0, {ROWS_PER_DAY})")
    return f"TXN{int(_id_numbers(day, np.array([row], dtype=np.int64))[0]):08d}"


def transaction_position(transaction_id: str) -> tuple[int, int]:
    """(day's position in the 1000-day cycle, row number) that a transaction id was made from."""
    match = re.fullmatch(r"TXN(\d{8})", transaction_id)
    if not match:
        raise ValueError(f"not a transaction id: {transaction_id!r}")
    slot, row = _row_numbers(np.array([int(match[1])]))
    return int(slot[0]), int(row[0])


def _number(dimension_id: str, kind: str) -> int:
    match = _ID.fullmatch(dimension_id)
    if not match or match[1] != kind:
        raise ValueError(f"not a {kind} id: {dimension_id!r}")
    return int(match[2])


def product_price(product_id: str) -> Decimal:
    """A product's unit price: the reference price, or for an added product one from its id alone."""
    n = _number(product_id, "PROD")
    if 1 <= n <= len(PRODUCTS):
        return PRODUCTS[n - 1].price
    return Decimal(f"{4 + zlib.crc32(product_id.encode()) % 496}.99")


def customer_row(n: int, *, seed: int = 7) -> Customer:
    """Customer ``CUST<n>``: a reference row, or an added one made from (seed, n)."""
    if 1 <= n <= len(CUSTOMERS):
        return CUSTOMERS[n - 1]
    _check_dimension_size(n, "customer")
    customer_id = f"CUST{n:05d}"
    rng = random.Random(f"{seed}:{customer_id}")
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    email = f"{first.lower()}.{last.lower()}{n}@example.com"
    return Customer(customer_id, first, last, email, rng.choice(MEMBERSHIP_LEVELS))


def product_row(n: int, *, seed: int = 7) -> Product:
    """Product ``PROD<n>``: a reference row, or an added one made from (seed, n), priced by ``product_price``."""
    if 1 <= n <= len(PRODUCTS):
        return PRODUCTS[n - 1]
    _check_dimension_size(n, "product")
    product_id = f"PROD{n:05d}"
    rng = random.Random(f"{seed}:{product_id}")
    category = rng.choice(sorted(_CATALOG))
    name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_CATALOG[category])}"
    return Product(product_id, name, category, product_price(product_id), rng.choice(SUPPLIERS))


def _check_dimension_size(n: int, what: str) -> None:
    if not 1 <= n <= MAX_DIMENSION:
        raise ValueError(f"{what} numbers go from 1 to {MAX_DIMENSION} ({what} 99999 stands for an unknown one)")


@lru_cache(maxsize=8)
def _unit_cents(products: int) -> np.ndarray:
    """Unit prices in cents of PROD00001..PROD<products>, at index product number."""
    cents = np.zeros(products + 1, dtype=np.int64)
    for n in range(1, products + 1):
        cents[n] = int(product_price(f"PROD{n:05d}") * 100)
    return cents


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


# -- generation ------------------------------------------------------------------------------------------------


def generate_day(
    day: date,
    transactions: int,
    *,
    seed: int = 7,
    invalid_share: float = 0.0,
    kinds: Sequence[str] = INVALID_KINDS,
    identical_duplicates: int = 0,
    conflicting_duplicates: int = 0,
    customers: int | None = None,
    products: int | None = None,
    status_share: float = 0.0,
) -> Day:
    """A day's transactions as the upstream generator writes them, with defects on request.

    ``transactions`` rows (at most 100,000) get their own ids; ``invalid_share`` of them are
    spoiled, cycling through ``kinds`` so that each kind appears once there are enough of them.
    ``identical_duplicates`` and ``conflicting_duplicates`` add that many copies of distinct valid
    rows, each somewhere after its original; a conflicting copy differs in one of quantity,
    payment type or status, with a value that is valid on its own. ``status_share`` of the rows
    are ``Pending`` or ``Cancelled`` instead of ``Completed``.

    The rows, the defects and the copies come from separate random streams of (seed, day), so a
    transaction's values do not depend on the other options.
    """
    customers = len(CUSTOMERS) if customers is None else customers
    products = len(PRODUCTS) if products is None else products
    if not 0 <= transactions <= ROWS_PER_DAY:
        raise ValueError(f"a day holds 0 to {ROWS_PER_DAY:,} transactions (its ids number the rows in 5 digits)")
    if not (1 <= customers <= MAX_DIMENSION and 1 <= products <= MAX_DIMENSION):
        raise ValueError(f"customers and products must be within [1, {MAX_DIMENSION}]")
    if not (0 <= invalid_share <= 1 and 0 <= status_share <= 1):
        raise ValueError("invalid_share and status_share must be within [0, 1]")
    if identical_duplicates < 0 or conflicting_duplicates < 0:
        raise ValueError("identical_duplicates and conflicting_duplicates must be >= 0")
    unknown = set(kinds) - set(INVALID_KINDS)
    if unknown or (invalid_share and not kinds):
        raise ValueError(f"kinds must be a non-empty selection of {INVALID_KINDS}, not {sorted(unknown) or kinds}")

    streams = [np.random.default_rng([seed, day.toordinal(), stream]) for stream in range(3)]
    rows = _base_rows(streams[0], day, transactions, customers, products, status_share)

    n_invalid = round(invalid_share * transactions)
    chosen = streams[1].choice(transactions, size=n_invalid, replace=False).tolist() if n_invalid else []
    invalid = {row: kinds[i % len(kinds)] for i, row in enumerate(chosen)}
    for row, kind in invalid.items():
        rows[row] = _spoil(streams[1], rows[row], kind, day)

    copies = identical_duplicates + conflicting_duplicates
    if not copies:
        return Day(day, rows, dict(sorted(invalid.items())), {}, {})
    valid = np.setdiff1d(np.arange(transactions), np.array(chosen, dtype=np.int64))
    if copies > len(valid):
        raise ValueError(f"{copies} copies asked for, but the day has only {len(valid)} valid rows to copy")
    rng = streams[2]
    originals = rng.choice(valid, size=copies, replace=False)
    copied = [rows[o] for o in originals[:identical_duplicates]]
    copied += [_conflicting(rng, rows[o]) for o in originals[identical_duplicates:]]

    # Each copy goes at a random place after its original; base rows keep their order.
    after = originals + rng.random(copies) * (transactions - originals)
    keys = np.concatenate([np.arange(transactions, dtype=np.float64), after])
    order = np.argsort(keys, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    everything = rows + copied
    pos = position.tolist()
    copy_of = {transactions + i: int(o) for i, o in enumerate(originals)}
    duplicates = {pos[c]: pos[o] for c, o in copy_of.items() if c < transactions + identical_duplicates}
    conflicts = {pos[c]: pos[o] for c, o in copy_of.items() if c >= transactions + identical_duplicates}
    return Day(
        day=day,
        rows=[everything[i] for i in order.tolist()],
        invalid=dict(sorted((pos[row], kind) for row, kind in invalid.items())),
        duplicates=dict(sorted(duplicates.items())),
        conflicts=dict(sorted(conflicts.items())),
    )


def _base_rows(
    rng: np.random.Generator, day: date, n: int, customers: int, products: int, status_share: float
) -> list[tuple[str, ...]]:
    customer = rng.integers(1, customers + 1, size=n)
    product = rng.integers(1, products + 1, size=n)
    quantity = rng.integers(1, 6, size=n)
    payment = rng.integers(0, len(PAYMENT_TYPES), size=n)
    other = rng.random(n) < status_share
    status = np.where(other, np.where(rng.random(n) < 0.5, 0, 2), 1)  # Pending / Cancelled / Completed
    cents = _unit_cents(products)[product] * quantity

    customer_ids = [f"CUST{c:05d}" for c in range(customers + 1)]
    product_ids = [f"PROD{p:05d}" for p in range(products + 1)]
    numbers = _id_numbers(day, np.arange(n, dtype=np.int64)).tolist()
    return list(
        zip(
            [f"TXN{v:08d}" for v in numbers],
            [customer_ids[c] for c in customer.tolist()],
            [product_ids[p] for p in product.tolist()],
            [str(q) for q in quantity.tolist()],
            [f"{c // 100}.{c % 100:02d}" for c in cents.tolist()],
            [day.isoformat()] * n,
            [PAYMENT_TYPES[p] for p in payment.tolist()],
            [STATUSES[s] for s in status.tolist()],
            strict=True,
        )
    )


def _spoil(rng: np.random.Generator, row: tuple[str, ...], kind: str, day: date) -> tuple[str, ...]:
    cells = list(row)
    if kind == "unknown_customer":
        cells[CUSTOMER_ID] = UNKNOWN_CUSTOMER
    elif kind == "unknown_product":
        cells[PRODUCT_ID] = UNKNOWN_PRODUCT
    elif kind == "zero_quantity":
        cells[QUANTITY], cells[PRICE] = "0", "0.00"
    elif kind == "bad_price":
        cells[PRICE] = BAD_PRICES[int(rng.integers(len(BAD_PRICES)))]
    elif kind == "bad_date":
        cells[TRANSACTION_DATE] = f"{day:%Y}-02-30" if rng.random() < 0.5 else f"{day:%d/%m/%Y}"
    else:
        cells[STATUS] = UNKNOWN_STATUS
    return tuple(cells)


def _conflicting(rng: np.random.Generator, row: tuple[str, ...]) -> tuple[str, ...]:
    cells = list(row)
    column = (QUANTITY, PAYMENT_TYPE, STATUS)[int(rng.integers(3))]
    choices = {QUANTITY: ("1", "2", "3", "4", "5"), PAYMENT_TYPE: PAYMENT_TYPES, STATUS: STATUSES}[column]
    others = [value for value in choices if value != cells[column]]
    cells[column] = others[int(rng.integers(len(others)))]
    return tuple(cells)


def update_rows(day: Day, share: float, *, seed: int = 7) -> list[tuple[str, ...]]:
    """A later state of ``share`` of the day's valid transactions, same ids, in file order.

    Every other one (about half) is a ``Completed`` transaction now ``Refunded``; the rest keep
    their status and get a corrected price, 5 to 20% off. Which transactions change, and how,
    depends on (seed, day) and each transaction's row number, not on the other rows.
    """
    if not 0 <= share <= 1:
        raise ValueError("share must be within [0, 1]")
    rng = np.random.default_rng([seed, day.day.toordinal(), 3])
    order_key, discount_key = rng.random(ROWS_PER_DAY), rng.integers(1, 5, size=ROWS_PER_DAY)
    valid = day.valid
    numbers = _row_numbers(np.array([int(day.rows[i][TRANSACTION_ID][3:]) for i in valid], dtype=np.int64))[1]
    chosen = np.argsort(order_key[numbers], kind="stable")[: round(share * len(valid))].tolist()

    updates: dict[int, tuple[str, ...]] = {}
    for rank, j in enumerate(chosen):
        cells = list(day.rows[valid[j]])
        if rank % 2 == 0 and cells[STATUS] == "Completed":
            cells[STATUS] = "Refunded"
        else:
            cents = int(Decimal(cells[PRICE]) * 100)
            off = int(discount_key[numbers[j]]) * 5
            cells[PRICE] = _money(max(0, min(cents - 1, (cents * (100 - off) + 50) // 100)))
        updates[valid[j]] = tuple(cells)
    return [updates[i] for i in sorted(updates)]


# -- files and marker ------------------------------------------------------------------------------------------


def csv_bytes(rows: Iterable[Sequence[str] | Row]) -> bytes:
    """The file for these rows: header, then one line per row, ``\\n`` line ends, UTF-8."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(row.as_csv_cells() if isinstance(row, Row) else row for row in rows)
    return out.getvalue().encode()


def object_key(day: date, part: int | None = None, *, updates: bool = False) -> str:
    """``transactions/year=YYYY/month=MM/day=DD/transactions_YYYY-MM-DD[_partN|_updates].csv``."""
    suffix = "_updates" if updates else "" if part is None else f"_part{part}"
    return f"{PREFIX}year={day:%Y}/month={day:%m}/day={day:%d}/transactions_{day:%Y-%m-%d}{suffix}.csv"


def write_day(s3, day: Day | date, rows=None, *, bucket: str = RAW_BUCKET, parts: int = 1) -> list[str]:
    """Write a day's rows (default: the Day's) as ``parts`` files of consecutive rows; their keys.

    With ``parts`` > 1 the files are ``_part1`` to ``_partN``, each with the header, the last ones
    possibly empty when there are fewer rows than parts.
    """
    if parts < 1:
        raise ValueError("parts must be >= 1")
    on = day.day if isinstance(day, Day) else day
    if rows is None:
        if not isinstance(day, Day):
            raise ValueError("rows are needed when day is a date")
        rows = day.rows
    rows = list(rows)
    bounds = [len(rows) * i // parts for i in range(parts + 1)] if parts > 1 else [0, len(rows)]
    keys = []
    for i in range(parts):
        key = object_key(on, i + 1 if parts > 1 else None)
        _put_csv(s3, bucket, key, rows[bounds[i] : bounds[i + 1]])
        keys.append(key)
    return keys


def write_updates(s3, on: date, rows, *, bucket: str = RAW_BUCKET) -> str:
    """Write updated rows of earlier days as ``transactions_<on>_updates.csv`` in day ``on``'s partition."""
    key = object_key(on, updates=True)
    _put_csv(s3, bucket, key, rows)
    return key


def _put_csv(s3, bucket: str, key: str, rows) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=csv_bytes(rows), ContentType="text/csv")


def write_marker(
    s3,
    batch_id: str,
    *,
    bucket: str = RAW_BUCKET,
    objects: list[str] | None = None,
    expected_counts: dict | None = None,
    started_at: datetime | str | None = None,
    completed_at: datetime | str | None = None,
) -> str:
    """Write ``batch-completion/<batch_id>.json``; its key.

    The body has ``batch_id``, ``started_at`` and ``completed_at`` (ISO-8601 UTC, default now),
    and ``objects`` and ``expected_counts`` when given.
    """
    now = datetime.now(UTC)
    body: dict = {
        "batch_id": batch_id,
        "started_at": _iso(started_at or now),
        "completed_at": _iso(completed_at or now),
    }
    if expected_counts is not None:
        body["expected_counts"] = dict(expected_counts)
    if objects is not None:
        body["objects"] = list(objects)
    key = f"{MARKER_PREFIX}{batch_id}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode(), ContentType="application/json")
    return key


def _iso(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


# -- dimensions ------------------------------------------------------------------------------------------------


def add_dimensions(dsn: str, *, customers: int = 0, products: int = 0, seed: int = 7) -> tuple[int, int]:
    """Fill ``ecommerce.dim_customers`` up to ``CUST<customers>`` and ``ecommerce.dim_products`` up to
    ``PROD<products>``; (customers inserted, products inserted).

    Only rows beyond the reference ones (``CUST00006``..., ``PROD00011``...) are inserted, and
    existing ids are left alone, so running it again inserts nothing. ``dsn`` is a libpq DSN or
    URI, or an Airflow connection in JSON. The tables are the warehouse setup's.
    """
    for n, what in ((customers, "customer"), (products, "product")):
        if n > MAX_DIMENSION:
            _check_dimension_size(n, what)
    new_customers = [astuple(customer_row(n, seed=seed)) for n in range(len(CUSTOMERS) + 1, customers + 1)]
    new_products = [astuple(product_row(n, seed=seed)) for n in range(len(PRODUCTS) + 1, products + 1)]

    conn = _connect(dsn)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT to_regclass('ecommerce.dim_customers'), to_regclass('ecommerce.dim_products')")
            if None in cursor.fetchone():
                raise RuntimeError(
                    "ecommerce.dim_customers or ecommerce.dim_products is missing: run the e-commerce "
                    "warehouse setup first (it creates the ecommerce schema and its dimensions)"
                )
            customers_added = _insert(cursor, "dim_customers", Customer, new_customers)
            products_added = _insert(cursor, "dim_products", Product, new_products)
    finally:
        conn.close()
    return customers_added, products_added


def _insert(cursor, table: str, row_type: type, rows: list[tuple]) -> int:
    """Insert the rows that are not there yet; how many were inserted."""
    if not rows:
        return 0
    from psycopg2.extras import execute_values

    columns = [field.name for field in fields(row_type)]
    sql = (
        f"INSERT INTO ecommerce.{table} ({', '.join(columns)}) VALUES %s "
        f"ON CONFLICT ({columns[0]}) DO NOTHING RETURNING 1"
    )
    return len(execute_values(cursor, sql, rows, page_size=1000, fetch=True))


def _connect(dsn: str):
    import psycopg2

    if dsn.lstrip().startswith("{"):
        from devstack.sample_data.totesys import _connect_kwargs

        return psycopg2.connect(**_connect_kwargs(dsn))
    return psycopg2.connect(dsn)


# -- CLI -------------------------------------------------------------------------------------------------------


def _dates(text: str) -> list[date]:
    return [date.fromisoformat(part.strip()) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.sample_data.ecommerce", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    batch = commands.add_parser("batch", help="write days of transactions to the raw bucket, then the marker")
    batch.add_argument("--batch-id", required=True)
    batch.add_argument("--start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    batch.add_argument("--days", type=int, default=1)
    batch.add_argument("--per-day", type=int, default=15, help="transactions per day (at most 100,000)")
    batch.add_argument("--seed", type=int, default=7)
    batch.add_argument("--invalid-share", type=float, default=0.0, help="share of each day's rows made invalid")
    batch.add_argument("--duplicates", type=int, default=0, help="identical copies added to each day")
    batch.add_argument("--conflicts", type=int, default=0, help="conflicting copies added to each day")
    batch.add_argument("--status-share", type=float, default=0.0, help="share of Pending or Cancelled rows")
    batch.add_argument("--customers", type=int, help="draw from CUST00001..CUST<n> (default: the reference 5)")
    batch.add_argument("--products", type=int, help="draw from PROD00001..PROD<n> (default: the reference 10)")
    batch.add_argument("--update-days", type=_dates, default=[], help="earlier days, comma-separated, to update")
    batch.add_argument("--update-share", type=float, default=0.2, help="share of those days' rows updated")
    batch.add_argument("--parts", type=int, default=1, help="files per day")
    batch.add_argument("--bucket", default=RAW_BUCKET)
    batch.add_argument("--no-marker", action="store_true", help="write the data but not the marker")

    dims = commands.add_parser("dimensions", help="add customers and products to the warehouse's dimensions")
    dims.add_argument("--customers", type=int, default=0, help="fill dim_customers up to CUST<n>")
    dims.add_argument("--products", type=int, default=0, help="fill dim_products up to PROD<n>")
    dims.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    if args.command == "dimensions":
        conn = os.environ.get("AIRFLOW_CONN_WAREHOUSE_DB")
        if not conn:
            raise SystemExit("AIRFLOW_CONN_WAREHOUSE_DB is not set: source .local/stack.env first")
        try:
            added = add_dimensions(conn, customers=args.customers, products=args.products, seed=args.seed)
        except RuntimeError as error:
            raise SystemExit(str(error)) from None
        print(json.dumps({"customers_inserted": added[0], "products_inserted": added[1]}))
        return 0

    if args.days < 1 or args.parts < 1:
        parser.error("--days and --parts must be >= 1")
    if any(d >= args.start for d in args.update_days):
        parser.error("--update-days must come before --start: an update in the batch of its original would conflict")
    options = {
        "seed": args.seed,
        "invalid_share": args.invalid_share,
        "identical_duplicates": args.duplicates,
        "conflicting_duplicates": args.conflicts,
        "customers": args.customers,
        "products": args.products,
        "status_share": args.status_share,
    }
    import boto3  # the endpoint comes from AWS_ENDPOINT_URL, as for every client of the stack

    s3 = boto3.client("s3")
    started_at = datetime.now(UTC)
    counts: dict[str, int] = {}
    summary = {"invalid": 0, "duplicates": 0, "conflicts": 0, "updates": 0}
    days = [args.start + timedelta(days=i) for i in range(args.days)]
    try:
        for on in days:
            day = generate_day(on, args.per_day, **options)
            keys = write_day(s3, day, bucket=args.bucket, parts=args.parts)
            bounds = [len(day.rows) * i // args.parts for i in range(args.parts + 1)]
            counts.update({key: bounds[i + 1] - bounds[i] for i, key in enumerate(keys)})
            summary["invalid"] += len(day.invalid)
            summary["duplicates"] += len(day.duplicates)
            summary["conflicts"] += len(day.conflicts)
        if args.update_days:
            updates = [
                row
                for on in args.update_days
                for row in update_rows(generate_day(on, args.per_day, **options), args.update_share, seed=args.seed)
            ]
            counts[write_updates(s3, days[-1], updates, bucket=args.bucket)] = len(updates)
            summary["updates"] = len(updates)
    except ValueError as error:
        parser.error(str(error))
    expected = {"transactions": sum(counts.values())}
    marker = None
    if not args.no_marker:
        marker = write_marker(
            s3,
            args.batch_id,
            bucket=args.bucket,
            objects=list(counts),
            expected_counts=expected,
            started_at=started_at,
            completed_at=datetime.now(UTC),
        )
    print(json.dumps({"batch_id": args.batch_id, "bucket": args.bucket, "objects": counts,
                      "expected_counts": expected, "marker": marker, **summary}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
