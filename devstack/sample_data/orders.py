"""Sample orders as the ``orders-firehose`` delivery stream lands them, plus the batch marker.

The files look like Firehose's record-format conversion output (docs/interfaces.md, "Orders"):
snappy parquet with exactly the landing schema, under
``orders/year=YYYY/month=MM/day=DD/hour=HH/`` by processing time, several objects per hour
named ``orders-firehose-1-YYYY-MM-DD-HH-MM-SS-<uuid>.parquet``.

The orders are meant to exercise the pipeline: UUID order ids, a few ISO currencies, 0 to 6
product lines, some ``products`` null and some empty, product names with non-ASCII characters,
and at-least-once delivery: a share of the orders arrives again later (same ``order_id``, later
``processing_ts``, often in another object or hour), and some re-delivered copies are
amendments with different lines, so only "latest copy wins" reproduces the marker's
``expected_counts``.

Generation is deterministic for a given (seed, batch id), and runs one Firehose object at a
time, so a million orders need a few tens of MB, not the whole batch in memory.

CLI (endpoint from ``AWS_ENDPOINT_URL``)::

    python -m devstack.sample_data.orders --orders 100000 --seed 7 --batch-id B1 [--no-marker]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

LANDING_BUCKET = "fo-to-dw-orders-landing-area"
LANDING_PREFIX = "orders/"
MARKER_PREFIX = "batch-completion/"
DELIVERY_STREAM = "orders-firehose"
DEFAULT_STARTED_AT = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)

# Firehose flushes an object when its buffer fills; this caps one object's records.
ROWS_PER_OBJECT = 50_000
MIN_OBJECTS_PER_HOUR = 3
ROW_GROUP_ROWS = 25_000
# How long after the first copy a re-delivered copy arrives, at most.
REDELIVERY_WINDOW_MS = 30 * 60 * 1000
SECOND_REDELIVERY_SHARE = 0.1  # of the re-delivered orders, how many arrive a third time
AMENDED_SHARE = 0.3  # of the re-delivered copies, how many carry different product lines

PRODUCT_TYPE = pa.struct(
    [
        pa.field("product_code", pa.string()),
        pa.field("product_name", pa.string()),
        pa.field("quantity", pa.int32()),
        pa.field("unit_price", pa.decimal128(10, 2)),
    ]
)
LANDING_SCHEMA = pa.schema(
    [
        pa.field("order_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string()),
        pa.field("order_ts", pa.timestamp("ms", tz="UTC")),
        pa.field("currency", pa.string()),
        pa.field("products", pa.list_(PRODUCT_TYPE)),
        pa.field("run_id", pa.string()),
        pa.field("processing_ts", pa.timestamp("ms", tz="UTC")),
    ]
)

# (code, name, price in EUR cents)
CATALOG = (
    ("SKU-10001", "Café crème capsules (10)", 499),
    ("SKU-10002", "Überzug für Sofakissen", 1999),
    ("SKU-10003", "東京 sencha green tea 100 g", 1250),
    ("SKU-10004", "Crème brûlée torch", 3490),
    ("SKU-10005", "Smørrebrød serving board", 2450),
    ("SKU-10006", "Jalapeño hot sauce", 650),
    ("SKU-10007", "Ceramic mug 350 ml", 1200),
    ("SKU-10008", "Wireless mouse", 2999),
    ("SKU-10009", "USB-C cable 1 m", 899),
    ("SKU-10010", "Notebook A5, dotted", 750),
    ("SKU-10011", "Espresso beans 1 kg", 2295),
    ("SKU-10012", "Reusable water bottle", 1850),
    ("SKU-10013", "Noise-cancelling headphones", 24900),
    ("SKU-10014", "Açaí bowl mix", 1100),
    ("SKU-10015", "Piñata, medium", 2700),
    ("SKU-10016", "Straßenkarte München", 895),
    ("SKU-10017", "Шарф из шерсти", 3900),
    ("SKU-10018", "Łódź linen napkins (4)", 1599),
    ("SKU-10019", "Desk lamp, LED", 4500),
    ("SKU-10020", "Phone case \u2014 clear", 1499),
    ("SKU-10021", "ラーメン bowl set", 3200),
    ("SKU-10022", "Gift card", 5000),
    ("SKU-10023", "Kaffeefilter Größe 4", 349),
    ("SKU-10024", "Ψηφιακό θερμόμετρο", 1790),
)
# currency -> (EUR cents to currency cents, round to a multiple of this many cents)
CURRENCIES = {
    "EUR": (1.0, 1),
    "GBP": (0.86, 1),
    "USD": (1.08, 1),
    "JPY": (162.0, 100),
    "CHF": (0.95, 5),
    "SEK": (11.4, 100),
}
CURRENCY_WEIGHTS = (0.40, 0.20, 0.25, 0.05, 0.05, 0.05)
# products: null, [], then 1..6 lines
LINE_KINDS_P = (0.01, 0.02, 0.35, 0.25, 0.15, 0.10, 0.08, 0.04)
QUANTITIES = np.array([1, 2, 3, 4, 5, 10], dtype=np.int32)
QUANTITIES_P = (0.55, 0.2, 0.1, 0.06, 0.05, 0.04)

_CODES = pa.array([code for code, _, _ in CATALOG], pa.string())
_NAMES = pa.array([name for _, name, _ in CATALOG], pa.string())
# unit price of product p in currency c sits at p * len(CURRENCIES) + c
_PRICES = pa.array(
    [
        Decimal(round(cents * rate / step) * step) / 100
        for _, _, cents in CATALOG
        for rate, step in CURRENCIES.values()
    ],
    pa.decimal128(10, 2),
)
_CURRENCY_CODES = pa.array(list(CURRENCIES), pa.string())


@dataclass(frozen=True)
class _Window:
    """The time span one Firehose object covers, and how many new orders start in it."""

    start_ms: int
    end_ms: int
    orders: int


def write_orders_batch(
    s3_client,
    bucket: str,
    batch_id: str,
    *,
    orders: int,
    seed: int = 7,
    started_at: datetime | None = None,
    hours: int = 3,
    duplicate_rate: float = 0.05,
    write_marker: bool = True,
    expected_counts: dict | None = None,
) -> dict:
    """Writes the landing files and (unless write_marker=False) the marker
    s3://bucket/batch-completion/<batch_id>.json; returns the marker body
    {"batch_id","started_at","completed_at","expected_counts": {"orders": distinct orders,
    "order_lines": their product lines after dedupe}}.
    expected_counts overrides the computed counts (for fault tests).

    ``started_at`` defaults to a fixed hour (DEFAULT_STARTED_AT) so that the seed and the batch
    id fully determine the output; the batch spans ``hours`` hours from it. The batch id is
    mixed into the seed so that two batches never share order ids by accident.
    """
    if orders < 0 or hours <= 0 or not 0 <= duplicate_rate <= 1:
        raise ValueError("orders must be >= 0, hours > 0 and duplicate_rate within [0, 1]")
    start = _as_utc(started_at or DEFAULT_STARTED_AT)
    end = start + timedelta(hours=hours)
    rng = np.random.default_rng([seed, zlib.crc32(batch_id.encode())])

    order_lines = 0
    for key, table, lines in _firehose_objects(rng, batch_id, start, end, orders, duplicate_rate):
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="snappy", row_group_size=ROW_GROUP_ROWS)
        s3_client.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
        order_lines += lines

    body = {
        "batch_id": batch_id,
        "started_at": _iso(start),
        "completed_at": _iso(end),
        "expected_counts": (
            dict(expected_counts) if expected_counts is not None
            else {"orders": orders, "order_lines": order_lines}
        ),
    }
    if write_marker:
        _put_marker(s3_client, bucket, batch_id, body)
    return body


def write_marker(s3_client, bucket: str, batch_id: str, body: dict | str) -> str:
    """Write the completion marker ``batch-completion/<batch_id>.json``; returns its key.

    A ``str`` body is written as is (fault tests write invalid JSON on purpose); nothing here
    validates the batch id, for the same reason.
    """
    return _put_marker(s3_client, bucket, batch_id, body)


def _put_marker(s3_client, bucket: str, batch_id: str, body: dict | str) -> str:
    key = f"{MARKER_PREFIX}{batch_id}.json"
    data = body if isinstance(body, str) else json.dumps(body)
    s3_client.put_object(Bucket=bucket, Key=key, Body=data.encode(), ContentType="application/json")
    return key


def _firehose_objects(
    rng: np.random.Generator, batch_id: str, start: datetime, end: datetime, orders: int, duplicate_rate: float
) -> Iterator[tuple[str, pa.Table, int]]:
    """Yield (key, rows, product lines that the winning copies add) per object, oldest first.

    The line count attributed to an object is the change it makes to the batch's deduplicated
    line count: an original adds its lines; a later amended copy adds the difference.
    """
    end_ms = _ms(end)
    pending: list[pa.Table] = []  # re-delivered copies not yet due
    for window in _windows(start, end, orders, duplicate_rate):
        originals = _new_orders(rng, batch_id, window, end_ms)
        lines = int(_line_counts(originals["products"]).sum())
        copies, lines_delta = _redeliveries(rng, originals, duplicate_rate, end_ms)
        lines += lines_delta

        rows = pa.concat_tables([*pending, originals, *copies])
        due = rows.filter(pc.less(rows["processing_ts"].cast(pa.int64()), window.end_ms))
        later = rows.filter(pc.greater_equal(rows["processing_ts"].cast(pa.int64()), window.end_ms))
        pending = [later] if later.num_rows else []
        if due.num_rows:  # every original is due in its own window, so no line is lost here
            due = due.sort_by([("processing_ts", "ascending")])
            yield _object_key(rng, window.start_ms), due, lines
    if pending:
        # Copies are capped just after the end of the batch; they go in the last object's hour.
        rows = pa.concat_tables(pending).sort_by([("processing_ts", "ascending")])
        yield _object_key(rng, int(rows["processing_ts"].cast(pa.int64())[0].as_py())), rows, 0


def _windows(start: datetime, end: datetime, orders: int, duplicate_rate: float) -> list[_Window]:
    """Split [start, end) at hour boundaries, each hour into a few objects' time spans, and
    spread the orders over them in proportion to time."""
    start_ms, end_ms = _ms(start), _ms(end)
    hour_ms = 3_600_000
    per_hour = orders * hour_ms / (end_ms - start_ms) * (1 + duplicate_rate)
    objects_per_hour = max(MIN_OBJECTS_PER_HOUR, math.ceil(per_hour / ROWS_PER_OBJECT))
    bounds: list[int] = []
    hour_start = start_ms
    while hour_start < end_ms:
        hour_end = min((hour_start // hour_ms + 1) * hour_ms, end_ms)
        pieces = max(MIN_OBJECTS_PER_HOUR, math.ceil(objects_per_hour * (hour_end - hour_start) / hour_ms))
        bounds += [hour_start + (hour_end - hour_start) * i // pieces for i in range(pieces)]
        hour_start = hour_end
    bounds.append(end_ms)
    span = end_ms - start_ms
    cumulative = [orders * (b - start_ms) // span for b in bounds]
    return [
        _Window(bounds[i], bounds[i + 1], cumulative[i + 1] - cumulative[i]) for i in range(len(bounds) - 1)
    ]


def _new_orders(rng: np.random.Generator, batch_id: str, window: _Window, end_ms: int) -> pa.Table:
    n = window.orders
    # The first copy arrives at least a second before the batch ends, so later copies fit.
    latest = max(window.start_ms + 1, min(window.end_ms, end_ms - 1000))
    processing_ms = rng.integers(window.start_ms, latest, size=n)
    order_ms = processing_ms - rng.integers(0, 10 * 60 * 1000, size=n)  # placed before it streams
    raw = rng.bytes(16 * n)
    order_ids = [str(uuid.UUID(bytes=raw[i * 16 : i * 16 + 16], version=4)) for i in range(n)]
    customers = [f"CUST-{c:07d}" for c in rng.integers(1, 250_000, size=n)]
    currency = rng.choice(len(CURRENCIES), size=n, p=CURRENCY_WEIGHTS)
    return pa.Table.from_arrays(
        [
            pa.array(order_ids, pa.string()),
            pa.array(customers, pa.string()),
            pa.array(order_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            _CURRENCY_CODES.take(pa.array(currency)),
            _random_products(rng, currency),
            pa.array([batch_id] * n, pa.string()),
            pa.array(processing_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        ],
        schema=LANDING_SCHEMA,
    )


def _random_products(rng: np.random.Generator, currency: np.ndarray) -> pa.Array:
    n = len(currency)
    kinds = rng.choice(len(LINE_KINDS_P), size=n, p=LINE_KINDS_P)
    counts = np.maximum(kinds - 1, 0)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    product = rng.integers(0, len(CATALOG), size=total)
    quantity = rng.choice(QUANTITIES, size=total, p=QUANTITIES_P).astype(np.int32)
    price_index = product * len(CURRENCIES) + np.repeat(currency, counts)
    values = pa.StructArray.from_arrays(
        [_CODES.take(pa.array(product)), _NAMES.take(pa.array(product)), pa.array(quantity),
         _PRICES.take(pa.array(price_index))],
        fields=list(PRODUCT_TYPE),
    )
    return pa.ListArray.from_arrays(
        pa.array(offsets), values, type=pa.list_(PRODUCT_TYPE), mask=pa.array(kinds == 0)
    )


def _redeliveries(
    rng: np.random.Generator, originals: pa.Table, duplicate_rate: float, end_ms: int
) -> tuple[list[pa.Table], int]:
    """Later copies of some orders, and how they change the deduplicated line count."""
    copies: list[pa.Table] = []
    lines_delta = 0
    chosen = np.flatnonzero(rng.random(originals.num_rows) < duplicate_rate)
    previous = originals.take(pa.array(chosen, pa.int64()))
    for delivery in (2, 3):
        if not previous.num_rows:
            break
        n = previous.num_rows
        prev_ms = previous["processing_ts"].cast(pa.int64()).to_numpy()
        room = np.maximum(end_ms - 1 - prev_ms, 1)
        later_ms = prev_ms + 1 + (rng.random(n) * np.minimum(room - 1, REDELIVERY_WINDOW_MS)).astype(np.int64)

        amended = rng.random(n) < AMENDED_SHARE
        currency = _currency_index(previous["currency"])
        fresh = _random_products(rng, currency)
        products = pa.concat_arrays([previous["products"].combine_chunks(), fresh])
        pick = np.where(amended, np.arange(n) + n, np.arange(n))
        new_products = products.take(pa.array(pick, pa.int64()))
        lines_delta += int((_line_counts(new_products) - _line_counts(previous["products"])).sum())

        copy = previous.set_column(
            previous.schema.get_field_index("products"), LANDING_SCHEMA.field("products"), new_products
        ).set_column(
            previous.schema.get_field_index("processing_ts"),
            LANDING_SCHEMA.field("processing_ts"),
            pa.array(later_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        )
        copies.append(copy)
        if delivery == 2:
            previous = copy.filter(pa.array(rng.random(n) < SECOND_REDELIVERY_SHARE))
    return copies, lines_delta


def _currency_index(codes: pa.ChunkedArray) -> np.ndarray:
    lookup = {code: i for i, code in enumerate(CURRENCIES)}
    return np.array([lookup[c] for c in codes.to_pylist()], dtype=np.int64)


def _line_counts(products: pa.Array | pa.ChunkedArray) -> np.ndarray:
    lengths = pc.list_value_length(products)
    return pc.fill_null(lengths, 0).to_numpy().astype(np.int64)


def _object_key(rng: np.random.Generator, first_ms: int) -> str:
    at = datetime.fromtimestamp(first_ms / 1000, tz=UTC)
    name = f"{DELIVERY_STREAM}-1-{at:%Y-%m-%d-%H-%M-%S}-{uuid.UUID(bytes=rng.bytes(16), version=4)}.parquet"
    return f"{LANDING_PREFIX}year={at:%Y}/month={at:%m}/day={at:%d}/hour={at:%H}/{name}"


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _iso(value: datetime) -> str:
    text = value.astimezone(UTC).isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.sample_data.orders",
        description="Write a batch of sample orders to the landing bucket, then its completion marker.",
    )
    parser.add_argument("--orders", type=int, required=True, help="distinct orders in the batch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-id", required=True)
    parser.add_argument("--bucket", default=LANDING_BUCKET)
    parser.add_argument("--started-at", type=datetime.fromisoformat, help="ISO-8601 (default: fixed hour)")
    parser.add_argument("--hours", type=int, default=3)
    parser.add_argument("--duplicate-rate", type=float, default=0.05)
    parser.add_argument("--no-marker", action="store_true", help="write the data but not the marker")
    args = parser.parse_args(argv)

    import boto3  # the endpoint comes from AWS_ENDPOINT_URL, as for every client of the stack

    body = write_orders_batch(
        boto3.client("s3"),
        args.bucket,
        args.batch_id,
        orders=args.orders,
        seed=args.seed,
        started_at=args.started_at,
        hours=args.hours,
        duplicate_rate=args.duplicate_rate,
        write_marker=not args.no_marker,
    )
    print(json.dumps(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
