"""The supply chain's silver facts Glue script on the local stack's Spark runtime, run as AWS runs it.

``supplychain_silver_facts.py`` is uploaded and run with plain boto3 (``create_job``,
``start_job_run``) on zip archives this module writes itself (``zipfile``), against silver
dimensions it writes itself (pyarrow); what the job writes is read back and compared with what
the rows written make of it, computed here in plain Python.

The batches run in order on one lakehouse, each test's expectations computed from silver as it
was before its run: batch A (a first run, no silver fact table yet; duplicates, ties, every kind
of bad row), batch B (copies of A's rows sent again, newer, older and as old; no purchase orders)
run twice (unzipping on the executors, then on the driver), a batch whose first run is killed
mid-merge and run again, four refused batches, and a run that finds an earlier run's ready record.
Ten job runs in all; the five that refuse a batch or finish a swap start no JVM.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.glue_runs import ACTIVE, create_job, output_and_error_lines, start_job_run, wait_for_job_run

pytestmark = pytest.mark.e2e

SCRIPTS = Path(__file__).resolve().parents[2] / "include" / "glue_scripts" / "supplychain"
LANDING, LAKEHOUSE = "supplychain-landing", "supplychain-lakehouse"
JOB = "supplychain_silver_facts"

COLUMNS = {
    "shipments": ["shipment_id", "customer_id", "product_id", "warehouse_id", "quantity", "shipped_at",
                  "promised_date", "delivered_at", "status", "updated_at"],
    "purchase_orders": ["po_id", "supplier_id", "product_id", "warehouse_id", "quantity", "unit_cost", "ordered_at",
                        "received_at", "status", "updated_at"],
}  # fmt: skip
KEYS = {"shipments": "shipment_id", "purchase_orders": "po_id"}
TIMESTAMP = pa.timestamp("us", tz="UTC")
SILVER_SCHEMAS = {
    "shipments": pa.schema(
        [("shipment_id", pa.int64()), ("customer_id", pa.int32()), ("product_id", pa.int32()),
         ("warehouse_id", pa.int32()), ("quantity", pa.int32()), ("shipped_at", TIMESTAMP),
         ("promised_date", pa.date32()), ("delivered_at", TIMESTAMP), ("status", pa.string()),
         ("updated_at", TIMESTAMP), ("batch_id", pa.string())]
    ),
    "purchase_orders": pa.schema(
        [("po_id", pa.int64()), ("supplier_id", pa.int32()), ("product_id", pa.int32()), ("warehouse_id", pa.int32()),
         ("quantity", pa.int32()), ("unit_cost", pa.decimal128(10, 2)), ("ordered_at", TIMESTAMP),
         ("received_at", TIMESTAMP), ("status", pa.string()), ("updated_at", TIMESTAMP), ("batch_id", pa.string())]
    ),
}  # fmt: skip
CUSTOMERS, PRODUCTS, WAREHOUSES, SUPPLIERS = 30, 40, 5, 8
MANY_CUSTOMERS = 100_001
BASE = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- the rows and the archives ------------------------------------------------------------------------


def shipment(rng: random.Random, key: int, updated_at: datetime, **values) -> dict:
    shipped = BASE + timedelta(minutes=rng.randrange(0, 60 * 24 * 10))
    status = rng.choice(["shipped", "delivered", "delivered", "cancelled"])
    row = {
        "shipment_id": key, "customer_id": rng.randint(1, CUSTOMERS), "product_id": rng.randint(1, PRODUCTS),
        "warehouse_id": rng.randint(1, WAREHOUSES), "quantity": rng.randint(1, 50), "shipped_at": shipped,
        "promised_date": (shipped + timedelta(days=rng.randint(1, 4))).date(),
        "delivered_at": shipped + timedelta(hours=rng.randint(2, 24 * 6)) if status == "delivered" else None,
        "status": status, "updated_at": updated_at,
    }  # fmt: skip
    return {**row, **values}


def purchase_order(rng: random.Random, key: int, updated_at: datetime, **values) -> dict:
    ordered = BASE - timedelta(minutes=rng.randrange(0, 60 * 24 * 30))
    status = rng.choice(["open", "received", "received", "cancelled"])
    row = {
        "po_id": key, "supplier_id": rng.randint(1, SUPPLIERS), "product_id": rng.randint(1, PRODUCTS),
        "warehouse_id": rng.randint(1, WAREHOUSES), "quantity": rng.randint(1, 500),
        "unit_cost": Decimal(rng.randint(1, 99_999)) / 100, "ordered_at": ordered,
        "received_at": ordered + timedelta(hours=rng.randint(24, 24 * 20)) if status == "received" else None,
        "status": status, "updated_at": updated_at,
    }  # fmt: skip
    return {**row, **values}


OFFSETS = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]


def text_of(value, rng: random.Random) -> str:
    """A value as an upstream system writes it: timestamps ISO 8601 with an offset, in any zone,
    with or without fractions, ``Z`` or ``+00:00`` for UTC."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.astimezone(rng.choice(OFFSETS)).isoformat()
        return text.replace("+00:00", "Z") if rng.random() < 0.3 else text
    return str(value)


@dataclass
class Line:
    row: dict | None = None  # None: a blank line
    overrides: dict = field(default_factory=dict)  # column -> text written instead of the row's value
    reason: str | None = None  # the expected reason of a bad line
    extra_field: bool = False


@dataclass
class Member:
    name: str
    table: str
    lines: list[Line]
    columns: list[str] | None = None  # the header; the contract's order when None
    crlf: bool = False
    quote_all: bool = False

    def render(self, rng: random.Random) -> bytes:
        header = self.columns or COLUMNS[self.table]
        out = io.StringIO()
        terminator = "\r\n" if self.crlf else "\n"
        writer = csv.writer(out, lineterminator=terminator, quoting=csv.QUOTE_ALL if self.quote_all else 0)
        writer.writerow(header)
        for line in self.lines:
            if line.row is None:
                out.write(terminator)
                continue
            texts = {name: text_of(line.row.get(name), rng) for name in header}
            texts.update(line.overrides)
            values = [texts[name] for name in header] + (["surplus"] if line.extra_field else [])
            writer.writerow(values)
        return out.getvalue().encode("utf-8")


def zip_bytes(members: list[Member], rng: random.Random) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("exports/", b"")  # a folder entry: skipped
        for member in members:
            archive.writestr(member.name, member.render(rng))
    return buffer.getvalue()


@dataclass
class Batch:
    batch_id: str
    archives: dict[str, list[Member]]  # object key -> members

    def write(self, s3, seed: int) -> None:
        rng = random.Random(seed)
        for key, members in self.archives.items():
            s3.put_object(Bucket=LANDING, Key=key, Body=zip_bytes(members, rng))

    def lines(self, table: str):
        """(object, member, line number, line) of every row line of the table; the header is line 1."""
        for key, members in sorted(self.archives.items()):
            for member in members:
                if member.table == table:
                    for number, line in enumerate(member.lines, start=2):
                        yield key, member.name, number, line

    def rejects(self) -> list[dict]:
        found = [
            {"object": key, "member": name, "line": number, "reason": line.reason}
            for table in COLUMNS
            for key, name, number, line in self.lines(table)
            if line.reason
        ]
        return sorted(found, key=lambda r: (r["object"], r["member"], r["line"]))

    def landing(self, table: str) -> int:
        return sum(1 for *_, line in self.lines(table) if line.row is not None)


def expected_merge(batch: Batch, table: str, silver: list[dict]) -> tuple[list[dict], dict]:
    """Silver after the batch, and the batch's counts: per key the copy with the latest updated_at;
    in the batch, ties to the later (object, member, line); the batch's copy over silver's when
    not older."""
    key = KEYS[table]
    best: dict = {}
    for obj, member, number, line in batch.lines(table):
        if line.row is not None and not line.reason:
            order = (line.row["updated_at"], obj, member, number)
            if line.row[key] not in best or order > best[line.row[key]][0]:
                best[line.row[key]] = (order, {**line.row, "batch_id": batch.batch_id})
    result = {row[key]: row for row in silver}
    won = 0
    for value, (_, row) in best.items():
        if value not in result or row["updated_at"] >= result[value]["updated_at"]:
            result[value] = row
            won += 1
    valid = sum(1 for *_, line in batch.lines(table) if line.row is not None and not line.reason)
    counts = {"landing": batch.landing(table), "rejected": batch.landing(table) - valid, "silver": won,
              "superseded": valid - won}  # fmt: skip
    winners = [row for value, (_, row) in best.items() if result[value] is row]
    return sorted(result.values(), key=lambda r: r[key]), {**counts, "winners": winners}


def is_late(row: dict) -> bool:
    delivered = row["delivered_at"]
    if row["status"] != "delivered" or delivered is None:
        return False
    return delivered.astimezone(UTC).date() > row["promised_date"]


def expected_report(batch: Batch, objects: list[str], merges: dict[str, dict]) -> dict:
    shipped = merges["shipments"]["winners"]
    received = merges["purchase_orders"]["winners"]
    return {
        "batch_id": batch.batch_id,
        "objects": objects,
        **{f"{count}_{table}": merges[table][count] for count in ("landing", "rejected", "superseded", "silver")
           for table in COLUMNS},
        "first_rejections": batch.rejects()[:10],
        "published": {
            "batch": {
                "units_shipped": sum(r["quantity"] for r in shipped if r["status"] != "cancelled"),
                "units_received": sum(r["quantity"] for r in received if r["status"] == "received"),
                "late_deliveries": sum(1 for r in shipped if is_late(r)),
            }
        },
    }  # fmt: skip


# -- the stack -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def job(stack, aws):
    name = _unique("e2e-supplychain-silver-facts")
    create_job(aws, name, f"tests/supplychain/{name}/{JOB}.py", (SCRIPTS / f"{JOB}.py").read_bytes())
    return name


def keys_under(aws, bucket: str, prefix: str) -> list[str]:
    pages = aws("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def put_parquet(aws, key: str, rows: list[dict], schema: pa.Schema) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer)
    aws("s3").put_object(Bucket=LAKEHOUSE, Key=key, Body=buffer.getvalue())


@pytest.fixture(scope="module")
def lakehouse(stack, aws):
    """No fact table yet, and the four silver dimensions."""
    s3 = aws("s3")
    for prefix in ("silver/", "audit/", "_work/"):
        for key in keys_under(aws, LAKEHOUSE, prefix):
            s3.delete_object(Bucket=LAKEHOUSE, Key=key)
    write_dimensions(aws)
    return LAKEHOUSE


def write_dimensions(aws) -> None:
    """The four silver dimensions as the dimensions job leaves them (dim_product in two files)."""
    stamp = {"created_at": BASE - timedelta(days=90), "updated_at": BASE - timedelta(days=9)}
    times = [("created_at", TIMESTAMP), ("updated_at", TIMESTAMP)]
    customer_schema = pa.schema(
        [("customer_id", pa.int32()), ("customer_name", pa.string()), ("segment", pa.string()),
         ("country", pa.string()), *times]
    )  # fmt: skip
    customers = [{"customer_id": i, "customer_name": f"Customer {i}", "segment": "retail", "country": "GB", **stamp}
                 for i in range(1, CUSTOMERS + 1)]  # fmt: skip
    put_parquet(aws, "silver/dim_customer/part-0.parquet", customers, customer_schema)
    # Customers the rows never name, past the number of ids the job checks as a set: it joins this
    # dimension, and checks the other three as sets.
    many = range(1_000, 1_000 + MANY_CUSTOMERS)
    buffer = io.BytesIO()
    pq.write_table(
        pa.table(
            {
                "customer_id": pa.array(many, pa.int32()),
                "customer_name": [None] * len(many),
                "segment": [None] * len(many),
                "country": [None] * len(many),
                "created_at": [stamp["created_at"]] * len(many),
                "updated_at": [stamp["updated_at"]] * len(many),
            },
            schema=customer_schema,
        ),
        buffer,
    )
    aws("s3").put_object(Bucket=LAKEHOUSE, Key="silver/dim_customer/part-1.parquet", Body=buffer.getvalue())
    product_schema = pa.schema(
        [("product_id", pa.int32()), ("sku", pa.string()), ("product_name", pa.string()), ("category", pa.string()),
         ("unit_cost", pa.decimal128(10, 2)), ("supplier_id", pa.int32()), *times]
    )  # fmt: skip
    products = [{"product_id": i, "sku": f"SKU-{i}", "product_name": f"Product {i}", "category": "parts",
                 "unit_cost": Decimal("1.50"), "supplier_id": i % SUPPLIERS + 1, **stamp}
                for i in range(1, PRODUCTS + 1)]  # fmt: skip
    put_parquet(aws, "silver/dim_product/part-0.parquet", products[:20], product_schema)
    put_parquet(aws, "silver/dim_product/part-1.parquet", products[20:], product_schema)
    warehouses = [{"warehouse_id": i, "warehouse_name": f"W{i}", "city": "Leeds", "country": "GB",
                   "capacity_units": 10_000, **stamp} for i in range(1, WAREHOUSES + 1)]  # fmt: skip
    put_parquet(aws, "silver/dim_warehouse/part-0.parquet", warehouses, pa.schema(
        [("warehouse_id", pa.int32()), ("warehouse_name", pa.string()), ("city", pa.string()),
         ("country", pa.string()), ("capacity_units", pa.int32()), *times]))  # fmt: skip
    suppliers = [{"supplier_id": i, "supplier_name": f"Supplier {i}", "country": "DE", "lead_time_days": 7, **stamp}
                 for i in range(1, SUPPLIERS + 1)]  # fmt: skip
    put_parquet(aws, "silver/dim_supplier/part-0.parquet", suppliers, pa.schema(
        [("supplier_id", pa.int32()), ("supplier_name", pa.string()), ("country", pa.string()),
         ("lead_time_days", pa.int32()), *times]))  # fmt: skip


def silver_facts(aws, job: str, batch_id: str, expect: str = "SUCCEEDED", **arguments) -> dict:
    args = {"--batch_id": batch_id, "--landing_bucket": LANDING, "--lakehouse_bucket": LAKEHOUSE, **arguments}
    run_id = start_job_run(aws, job, **args)
    run = wait_for_job_run(aws, job, run_id)
    assert run["JobRunState"] == expect, (
        run.get("ErrorMessage"),
        "\n".join(output_and_error_lines(aws, run_id))[-4000:],
    )
    return run


def read_rows(aws, prefix: str) -> tuple[list[dict], list[pa.Schema]]:
    rows, schemas = [], []
    for key in keys_under(aws, LAKEHOUSE, prefix):
        table = pq.read_table(io.BytesIO(aws("s3").get_object(Bucket=LAKEHOUSE, Key=key)["Body"].read()))
        schemas.append(table.schema)
        rows += table.to_pylist()
    return rows, schemas


def silver(aws, table: str) -> list[dict]:
    rows, _ = read_rows(aws, f"silver/fact_{table}/")
    return sorted(rows, key=lambda r: r[KEYS[table]])


def silver_state(aws) -> dict[str, str]:
    """Every object under silver/, with its ETag."""
    s3 = aws("s3")
    return {key: s3.head_object(Bucket=LAKEHOUSE, Key=key)["ETag"] for key in keys_under(aws, LAKEHOUSE, "silver/")}


def read_json(aws, key: str):
    return json.loads(aws("s3").get_object(Bucket=LAKEHOUSE, Key=key)["Body"].read())


def read_rejects(aws, batch_id: str) -> list[dict]:
    keys = keys_under(aws, LAKEHOUSE, f"silver/rejected/batch_id={batch_id}/")
    assert keys in ([], [f"silver/rejected/batch_id={batch_id}/rejects.json"]), keys
    rows = []
    for key in keys:
        body = aws("s3").get_object(Bucket=LAKEHOUSE, Key=key)["Body"].read().decode("utf-8")
        rows += [json.loads(line) for line in body.splitlines() if line.strip()]
    return rows


def normalized(rows: list[dict]) -> list[dict]:
    """Rows as comparable values: timestamps in UTC, costs as Decimals of cents."""
    out = []
    for row in rows:
        row = dict(row)
        for name, value in row.items():
            if isinstance(value, datetime):
                row[name] = value.astimezone(UTC)
            elif isinstance(value, Decimal):
                row[name] = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        out.append(row)
    return out


# -- batch A: a first run, with duplicates, ties and bad rows ------------------------------------------


def batch_a_archives(batch_id: str) -> dict[str, list[Member]]:
    rng = random.Random(101)
    t = BASE + timedelta(days=20)
    ship = [shipment(rng, 1000 + i, t - timedelta(hours=rng.randint(0, 100))) for i in range(120)]
    orders = [purchase_order(rng, 5000 + i, t - timedelta(hours=rng.randint(0, 100))) for i in range(80)]
    tie = t + timedelta(hours=1)
    good = Line
    prefix = f"incoming/{batch_id}/"
    erp_shipments = [good(row) for row in ship[:60]] + [
        Line(),  # a blank line: skipped, not counted
        good(shipment(rng, 900, tie, status="shipped")),  # tied with crm's copy: wins, erp-0001 sorts after crm-0002
        good(shipment(rng, 901, tie, quantity=5)),  # tied, and the later line below wins
        good(shipment(rng, 901, tie, quantity=6)),
        good(shipment(rng, 902, tie - timedelta(minutes=1))),  # loses to the newer copy in crm
        good(shipment(rng, 903, tie, status="delivered", delivered_at=BASE + timedelta(days=3, hours=1),
                      promised_date=(BASE + timedelta(days=2)).date())),  # late by a day
        # delivered 01:00 at +02:00 is the 4th at 23:00 UTC: on time for a promise of the 4th
        good(shipment(rng, 904, tie, status="delivered", promised_date=date(2026, 3, 4),
                      delivered_at=datetime(2026, 3, 4, 23, 0, tzinfo=UTC)),
             overrides={"delivered_at": "2026-03-05T01:00:00+02:00"}),
        good(shipment(rng, 905, tie, quantity=1)),
        Line(shipment(rng, 910, tie), {"customer_id": "12a"}, "customer_id is not an integer"),
        Line(shipment(rng, 911, tie, product_id=999), {"customer_id": "7.5"}, "customer_id is not an integer"),
        Line(shipment(rng, 912, tie), {"shipped_at": "2026-03-01 08:15"},
             "shipped_at is not a timestamp with an offset"),
        Line(shipment(rng, 913, tie), {"updated_at": "2026-03-01T08:15:00"},
             "updated_at is not a timestamp with an offset"),
        Line(shipment(rng, 914, tie, quantity=0), reason="quantity is below 1"),
        Line(shipment(rng, 915, tie), {"quantity": "-3"}, "quantity is below 1"),
        Line(shipment(rng, 916, tie), {"status": "lost"}, "status is not one of shipped, delivered, cancelled"),
        Line(shipment(rng, 917, tie, product_id=999), reason="unknown product_id 999"),
        Line(shipment(rng, 918, tie, customer_id=31), reason="unknown customer_id 31"),
        Line(shipment(rng, 919, tie, warehouse_id=0), reason="unknown warehouse_id 0"),
        Line(shipment(rng, 920, tie), {"promised_date": "2026-02-30"}, "promised_date is not a date (YYYY-MM-DD)"),
        Line(shipment(rng, 921, tie), {"status": ""}, "status is empty"),
        Line(shipment(rng, 922, tie), {"shipment_id": ""}, "shipment_id is empty"),
        Line(shipment(rng, 923, tie), {"quantity": "99999999999"}, "quantity is not an integer"),
        Line(shipment(rng, 924, tie), {"delivered_at": "soon"}, "delivered_at is not a timestamp with an offset"),
        Line(shipment(rng, 925, tie), reason="more fields than the header", extra_field=True),
        Line(shipment(rng, 1000, t + timedelta(days=9)), {"shipped_at": "yesterday"},
             "shipped_at is not a timestamp with an offset"),  # a bad newer copy does not replace the good one
    ]  # fmt: skip
    crm_columns = ["status", "note", *[c for c in COLUMNS["shipments"] if c != "status"]]
    crm_shipments = [good(row) for row in ship[60:]] + [
        good(shipment(rng, 900, tie, status="cancelled")),
        good(shipment(rng, 902, tie)),
        good(shipment(rng, 1001, ship[1]["updated_at"] + timedelta(seconds=1), quantity=44)),  # newer: wins
        good(shipment(rng, 1002, ship[2]["updated_at"] - timedelta(seconds=1), quantity=45)),  # older: superseded
    ]
    erp_orders = [good(row) for row in orders[:50]] + [
        good(purchase_order(rng, 950, tie, unit_cost=Decimal("12.35")), {"unit_cost": "12.345"}),  # half up
        Line(purchase_order(rng, 960, tie), {"unit_cost": "12.3.4"}, "unit_cost is not a decimal(10,2)"),
        Line(purchase_order(rng, 961, tie), {"unit_cost": "123456789.00"}, "unit_cost is not a decimal(10,2)"),
        Line(purchase_order(rng, 962, tie, supplier_id=77), reason="unknown supplier_id 77"),
        Line(purchase_order(rng, 963, tie), {"received_at": "yesterday"},
             "received_at is not a timestamp with an offset"),
        Line(purchase_order(rng, 964, tie), {"status": "closed"}, "status is not one of open, received, cancelled"),
        Line(purchase_order(rng, 965, tie), {"po_id": "P-965"}, "po_id is not an integer"),
        Line(purchase_order(rng, 966, tie), {"ordered_at": ""}, "ordered_at is empty"),
    ]  # fmt: skip
    other_orders = [good(row) for row in orders[50:]] + [good(purchase_order(rng, 5003, tie, quantity=9))]
    return {
        f"{prefix}erp-0001.zip": [
            Member("exports/shipments_1.csv", "shipments", erp_shipments),
            Member("exports/purchase_orders.csv", "purchase_orders", erp_orders, crlf=True),
        ],
        f"{prefix}crm-0002.zip": [
            Member("shipments_2.csv", "shipments", crm_shipments, columns=crm_columns, quote_all=True),
            Member("nested/deeper/purchase_orders_b.csv", "purchase_orders", other_orders),
        ],
    }


@pytest.fixture(scope="module")
def batch_a(aws, job, lakehouse):
    """A first run (no fact table yet), objects from the prefix beside a folder marker."""
    batch = Batch(_unique("sc-a"), {})
    batch.archives = batch_a_archives(batch.batch_id)
    batch.write(aws("s3"), seed=1)
    aws("s3").put_object(Bucket=LANDING, Key=f"incoming/{batch.batch_id}/", Body=b"")
    assert keys_under(aws, LAKEHOUSE, "silver/fact_") == []
    run = silver_facts(aws, job, batch.batch_id)
    merges = {table: expected_merge(batch, table, []) for table in COLUMNS}
    return {"batch": batch, "run": run, "merges": merges}


def test_a_first_run_writes_the_winning_copy_of_every_row_typed(aws, batch_a):
    for table in COLUMNS:
        rows, schemas = read_rows(aws, f"silver/fact_{table}/")
        expected, _ = batch_a["merges"][table]

        assert schemas and all(schema == SILVER_SCHEMAS[table] for schema in schemas), schemas[0]
        assert normalized(sorted(rows, key=lambda r: r[KEYS[table]])) == normalized(expected)
        assert all(key.endswith(".parquet") for key in keys_under(aws, LAKEHOUSE, f"silver/fact_{table}/"))
    by_key = {row["shipment_id"]: row for row in silver(aws, "shipments")}
    assert by_key[900]["status"] == "shipped"  # the tie goes to the later object (erp sorts after crm)
    assert by_key[901]["quantity"] == 6  # and within a member to the later line
    assert by_key[1001]["quantity"] == 44 and by_key[1002]["quantity"] != 45
    assert 1000 in by_key and by_key[1000]["updated_at"] < BASE + timedelta(days=29)
    assert {row["po_id"]: row for row in silver(aws, "purchase_orders")}[950]["unit_cost"] == Decimal("12.35")


def test_rejects_name_the_object_member_line_and_first_rule_broken(aws, batch_a):
    batch = batch_a["batch"]
    rejects = read_rejects(aws, batch.batch_id)

    assert rejects == batch.rejects()
    assert {r["reason"] for r in rejects} >= {
        "customer_id is not an integer", "shipped_at is not a timestamp with an offset", "quantity is below 1",
        "status is not one of shipped, delivered, cancelled", "unknown product_id 999",
        "unit_cost is not a decimal(10,2)", "unknown supplier_id 77",
    }  # fmt: skip
    # a row breaking several rules is rejected for the first: its bad integer, not its unknown product
    obj, member, number = next((o, m, n) for o, m, n, line in batch.lines("shipments") if line.row and
                               line.row["shipment_id"] == 911)  # fmt: skip
    found = next(r for r in rejects if (r["object"], r["member"], r["line"]) == (obj, member, number))
    assert found["reason"] == "customer_id is not an integer"


def test_the_report_reconciles_the_counts_and_publishes_the_batch_metrics(aws, batch_a):
    batch, merges = batch_a["batch"], {t: m[1] for t, m in batch_a["merges"].items()}
    report = read_json(aws, f"audit/batch_id={batch.batch_id}/silver_facts.json")

    assert report == expected_report(batch, sorted(batch.archives), merges)
    for table in COLUMNS:
        landing = report[f"landing_{table}"]
        assert landing == report[f"silver_{table}"] + report[f"rejected_{table}"] + report[f"superseded_{table}"]
        assert landing == batch.landing(table)
    assert report["published"]["batch"]["late_deliveries"] >= 1
    logs = output_and_error_lines(aws, batch_a["run"]["Id"])
    assert json.loads([line for line in logs if line.startswith("{")][-1]) == report
    # the customers were joined, the other dimensions checked as sets of ids
    assert any("dim_customer: over 100,000 ids, joined" in line for line in logs)
    assert any("dim_product: 40 ids" in line for line in logs)
    assert keys_under(aws, LAKEHOUSE, f"_work/{JOB}/") == []


# -- batch B: copies sent again, run twice ----------------------------------------------------------------


@pytest.fixture(scope="module")
def batch_b(aws, job, batch_a):
    """Copies of A's shipments sent again (newer, older, as old), new ones, bad ones; no purchase
    orders. Listed by the marker."""
    before = {table: silver(aws, table) for table in COLUMNS}
    orders_files = silver_state(aws)
    rng = random.Random(202)
    old = {row["shipment_id"]: row for row in before["shipments"]}
    rows = [
        Line({**old[1010], "status": "delivered", "delivered_at": old[1010]["updated_at"] + timedelta(hours=1),
              "updated_at": old[1010]["updated_at"] + timedelta(days=1)}),  # newer: replaces A's copy
        Line({**old[1011], "quantity": 77, "updated_at": old[1011]["updated_at"] - timedelta(seconds=1)}),  # older
        Line({**old[1012], "quantity": 78}),  # as old: the batch's copy wins
        *[Line(shipment(rng, 3000 + i, BASE + timedelta(days=21))) for i in range(30)],
        Line(shipment(rng, 3100, BASE), {"customer_id": "x"}, "customer_id is not an integer"),
    ]  # fmt: skip
    batch = Batch(_unique("sc-b"), {})
    batch.archives = {f"incoming/{batch.batch_id}/wms-0001.zip": [Member("shipments.csv", "shipments", rows)]}
    batch.write(aws("s3"), seed=2)
    objects = sorted(batch.archives)
    # the first run unzips on the executors, the second on the driver (the default for a small batch)
    first = silver_facts(aws, job, batch.batch_id, **{"--objects": json.dumps(objects), "--unzip_on": "executors"})
    after_first = {
        "silver": {table: silver(aws, table) for table in COLUMNS},
        "report": read_json(aws, f"audit/batch_id={batch.batch_id}/silver_facts.json"),
        "rejects": read_rejects(aws, batch.batch_id),
        "state": silver_state(aws),
    }
    second = silver_facts(aws, job, batch.batch_id, **{"--objects": json.dumps(objects)})
    return {"batch": batch, "before": before, "orders_files": orders_files, "objects": objects,
            "after_first": after_first, "runs": (first, second)}  # fmt: skip


def test_a_newer_copy_replaces_silver_and_an_older_one_is_superseded(aws, batch_b):
    batch, before = batch_b["batch"], batch_b["before"]
    first = batch_b["after_first"]
    expected, merge = expected_merge(batch, "shipments", before["shipments"])

    assert normalized(first["silver"]["shipments"]) == normalized(expected)
    by_key = {row["shipment_id"]: row for row in first["silver"]["shipments"]}
    a_id = before["shipments"][0]["batch_id"]
    assert (by_key[1010]["status"], by_key[1010]["batch_id"]) == ("delivered", batch.batch_id)
    assert (by_key[1011]["quantity"], by_key[1011]["batch_id"]) != (77, batch.batch_id)
    assert by_key[1011]["batch_id"] == a_id
    assert (by_key[1012]["quantity"], by_key[1012]["batch_id"]) == (78, batch.batch_id)
    report = first["report"]
    assert (report["landing_shipments"], report["rejected_shipments"], report["superseded_shipments"],
            report["silver_shipments"]) == (34, 1, 1, 32)  # fmt: skip
    assert report == expected_report(batch, batch_b["objects"], {
        "shipments": merge, "purchase_orders": {"landing": 0, "rejected": 0, "superseded": 0, "silver": 0,
                                                "winners": []}})  # fmt: skip
    # no purchase order in the batch: that table is left as it is, file for file
    orders = {k: v for k, v in first["state"].items() if k.startswith("silver/fact_purchase_orders/")}
    assert orders == {k: v for k, v in batch_b["orders_files"].items() if k.startswith("silver/fact_purchase_orders/")}
    assert first["rejects"] == batch.rejects()


def test_running_the_same_batch_again_gives_the_same_silver_and_report(aws, batch_b):
    batch, first = batch_b["batch"], batch_b["after_first"]

    for table in COLUMNS:
        assert silver(aws, table) == first["silver"][table]  # no duplicates, same winners
    assert read_json(aws, f"audit/batch_id={batch.batch_id}/silver_facts.json") == first["report"]
    assert read_rejects(aws, batch.batch_id) == first["rejects"]
    assert len(keys_under(aws, LAKEHOUSE, "silver/fact_shipments/")) == len(
        [k for k in first["state"] if k.startswith("silver/fact_shipments/")]
    )


# -- a run killed mid-merge ----------------------------------------------------------------------------------


def test_a_run_killed_mid_merge_then_run_again_leaves_the_exact_winners(aws, job, batch_b):
    """SIGKILL of the job's process once Spark is merging; silver is untouched, and the next run
    of the batch writes exactly the winners, once each."""
    import psutil

    before = {table: silver(aws, table) for table in COLUMNS}
    old = {row["shipment_id"]: row for row in before["shipments"]}
    rng = random.Random(404)
    newer = BASE + timedelta(days=40)
    shipments = [Line({**old[1020], "quantity": 99, "updated_at": newer})]
    shipments += [Line(shipment(rng, 50_000 + i, newer)) for i in range(20_000)]
    orders = [Line(purchase_order(rng, 60_000 + i, newer)) for i in range(5_000)]
    batch = Batch(_unique("sc-killed"), {})
    batch.archives = {
        f"incoming/{batch.batch_id}/erp.zip": [
            Member("shipments.csv", "shipments", shipments),
            Member("purchase_orders.csv", "purchase_orders", orders),
        ]
    }
    batch.write(aws("s3"), seed=4)

    run_id = start_job_run(aws, job, **{"--batch_id": batch.batch_id, "--landing_bucket": LANDING,
                                        "--lakehouse_bucket": LAKEHOUSE})  # fmt: skip
    deadline = time.monotonic() + 240
    while not any("unzipped them" in line for line in output_and_error_lines(aws, run_id)):  # Spark is merging now
        assert time.monotonic() < deadline and aws("glue").get_job_run(JobName=job, RunId=run_id)["JobRun"][
            "JobRunState"] in ACTIVE, "the run ended before it was killed"  # fmt: skip
        time.sleep(0.1)
    killed = [
        p
        for p in psutil.process_iter(["cmdline"])
        if batch.batch_id in " ".join(p.info["cmdline"] or [])
        and JOB in " ".join(p.info["cmdline"] or [])
        and "java" not in " ".join(p.info["cmdline"] or [])
    ]
    assert killed, "the job's process was not found"
    for process in killed:
        process.kill()
    assert wait_for_job_run(aws, job, run_id)["JobRunState"] != "SUCCEEDED"
    assert {table: silver(aws, table) for table in COLUMNS} == before
    assert keys_under(aws, LAKEHOUSE, f"_work/{JOB}/batch_id={batch.batch_id}/_READY.json") == []

    silver_facts(aws, job, batch.batch_id)

    merges = {}
    for table in COLUMNS:
        expected, merges[table] = expected_merge(batch, table, before[table])
        assert normalized(silver(aws, table)) == normalized(expected)
        assert merges[table]["silver"] == batch.landing(table)  # every copy in the batch is the newest
    report = read_json(aws, f"audit/batch_id={batch.batch_id}/silver_facts.json")
    assert report == expected_report(batch, sorted(batch.archives), merges)
    assert silver(aws, "shipments")[0]["shipment_id"] < 50_000
    assert {row["shipment_id"]: row for row in silver(aws, "shipments")}[1020]["quantity"] == 99
    assert keys_under(aws, LAKEHOUSE, f"_work/{JOB}/") == []


# -- refused batches ---------------------------------------------------------------------------------------


def refused(aws, job, archives: dict[str, bytes], **arguments) -> tuple[str, str]:
    """Writes the objects, runs the batch, expects a refusal; returns (batch id, error message)
    after checking that nothing under silver/ changed."""
    batch_id = _unique("sc-refused")
    s3 = aws("s3")
    for name, body in archives.items():
        s3.put_object(Bucket=LANDING, Key=f"incoming/{batch_id}/{name}", Body=body)
    before = silver_state(aws)
    run = silver_facts(aws, job, batch_id, expect="FAILED", **arguments)
    assert silver_state(aws) == before
    assert keys_under(aws, LAKEHOUSE, f"audit/batch_id={batch_id}/") == []
    assert run["ErrorMessage"].startswith("BatchRefused"), run["ErrorMessage"]
    return batch_id, run["ErrorMessage"]


def good_zip(rows: int = 3) -> bytes:
    rng = random.Random(7)
    lines = [Line(shipment(rng, 7000 + i, BASE)) for i in range(rows)]
    return zip_bytes([Member("shipments.csv", "shipments", lines)], rng)


def test_an_object_that_is_not_a_zip_refuses_the_batch_naming_it(aws, job, batch_b):
    text = ",".join(COLUMNS["shipments"]).encode() + b"\n1,2,3\n"

    batch_id, message = refused(aws, job, {"a-good.zip": good_zip(), "b-plain.zip": text})

    assert f"batch {batch_id}" in message and f"incoming/{batch_id}/b-plain.zip is not a zip archive" in message


def test_a_member_of_another_name_refuses_the_batch_naming_object_and_member(aws, job, batch_b):
    rng = random.Random(8)
    archive = zip_bytes([Member("shipments_1.csv", "shipments", [Line(shipment(rng, 1, BASE))]),
                         Member("notes/shipments_readme.txt", "shipments", [])], rng)  # fmt: skip

    batch_id, message = refused(aws, job, {"erp.zip": archive})

    assert f"incoming/{batch_id}/erp.zip member notes/shipments_readme.txt" in message, message
    assert "is neither shipments*.csv nor purchase_orders*.csv" in message


def test_a_member_missing_a_column_refuses_the_batch_naming_it(aws, job, batch_b):
    rng = random.Random(9)
    columns = [c for c in COLUMNS["purchase_orders"] if c not in ("unit_cost", "status")]
    archive = zip_bytes([Member("in/purchase_orders_1.csv", "purchase_orders",
                                [Line(purchase_order(rng, 1, BASE))], columns=columns)], rng)  # fmt: skip

    batch_id, message = refused(aws, job, {"erp.zip": good_zip(), "pm.zip": archive})

    assert f"incoming/{batch_id}/pm.zip member in/purchase_orders_1.csv" in message, message
    assert "lacks the column(s) unit_cost, status" in message


def test_a_listed_object_that_does_not_exist_refuses_the_batch(aws, job, batch_b):
    missing = "incoming/nowhere/never-uploaded.zip"

    _, message = refused(aws, job, {"a.zip": good_zip()}, **{"--objects": json.dumps([missing])})

    assert f"s3://{LANDING}/{missing}" in message and "do not exist" in message


# -- a retry after the ready record -------------------------------------------------------------------------


def test_a_run_that_finds_the_ready_record_only_finishes_the_swap(aws, job, batch_b):
    """As a run stopped between its ready record and the end of its swap leaves things: the new
    table and the rejects in the work folder. The retry publishes them and the recorded report,
    without reading the batch (its listed object does not even exist)."""
    batch_id = _unique("sc-ready")
    work = f"_work/{JOB}/batch_id={batch_id}/"
    current = silver(aws, "shipments")
    staged = f"{work}fact_shipments/part-00000-staged.snappy.parquet"
    put_parquet(aws, staged, current, SILVER_SCHEMAS["shipments"])
    rejects = [{"object": "incoming/x.zip", "member": "shipments.csv", "line": 2, "reason": "status is empty"}]
    s3 = aws("s3")
    s3.put_object(Bucket=LAKEHOUSE, Key=f"{work}rejects.json", Body=json.dumps(rejects[0]).encode() + b"\n")
    report = {"batch_id": batch_id, "objects": ["incoming/x.zip"], "landing_shipments": 1, "rejected_shipments": 1}
    # the merge read silver as it is now: the record is still current
    base = {
        table: keys_under(aws, LAKEHOUSE, f"silver/{table}/") for table in ("fact_shipments", "fact_purchase_orders")
    }
    ready = {"report": report, "tables": {"fact_shipments": [staged]}, "rejects": f"{work}rejects.json", "base": base}
    s3.put_object(Bucket=LAKEHOUSE, Key=f"{work}_READY.json", Body=json.dumps(ready).encode())
    orders_before = keys_under(aws, LAKEHOUSE, "silver/fact_purchase_orders/")

    run = silver_facts(aws, job, batch_id, **{"--objects": json.dumps(["incoming/x.zip"])})

    assert keys_under(aws, LAKEHOUSE, "silver/fact_shipments/") == [f"silver/{staged.split('/', 3)[-1]}"]
    assert silver(aws, "shipments") == current
    assert keys_under(aws, LAKEHOUSE, "silver/fact_purchase_orders/") == orders_before
    assert read_rejects(aws, batch_id) == rejects
    assert read_json(aws, f"audit/batch_id={batch_id}/silver_facts.json") == report
    assert keys_under(aws, LAKEHOUSE, work) == []
    assert json.loads([line for line in output_and_error_lines(aws, run["Id"]) if line.startswith("{")][-1]) == report


def test_a_ready_record_made_before_a_later_swap_is_not_published(aws, job, batch_b):
    """A ready record whose merge read a silver that a later batch has since replaced would roll
    silver back: the run merges again instead, which here finds the listed object gone and fails,
    leaving silver as the later batch left it."""
    batch_id = _unique("sc-stale")
    work = f"_work/{JOB}/batch_id={batch_id}/"
    current = silver(aws, "shipments")
    staged = f"{work}fact_shipments/part-00000-stale.snappy.parquet"
    put_parquet(aws, staged, current[:1], SILVER_SCHEMAS["shipments"])
    report = {"batch_id": batch_id, "objects": ["incoming/x.zip"], "landing_shipments": 1, "rejected_shipments": 0}
    stale = {"fact_shipments": ["silver/fact_shipments/part-00000-before.snappy.parquet"]}
    ready = {"report": report, "tables": {"fact_shipments": [staged]}, "rejects": None, "base": stale}
    aws("s3").put_object(Bucket=LAKEHOUSE, Key=f"{work}_READY.json", Body=json.dumps(ready).encode())
    before = keys_under(aws, LAKEHOUSE, "silver/fact_shipments/")
    assert before and stale["fact_shipments"][0] not in before  # silver has moved on since the merge

    run = silver_facts(aws, job, batch_id, expect="FAILED", **{"--objects": json.dumps(["incoming/x.zip"])})

    assert "incoming/x.zip" in run["ErrorMessage"] and "do not exist" in run["ErrorMessage"]
    assert keys_under(aws, LAKEHOUSE, "silver/fact_shipments/") == before
    assert silver(aws, "shipments") == current
    assert any("made from another silver; recomputing" in line for line in output_and_error_lines(aws, run["Id"]))
