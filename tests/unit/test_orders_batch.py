"""orders_batch, the one definition of an orders batch, and the landing audit job built on it.

The audit and the transform must count the same batch: both scripts run here as processes
against a moto server, on landing data made to test the batch rule (duplicates, ties across
objects, null processing_ts, a late object), and on a landing prefix full of other batches'
objects whose data pages are corrupt, which only a job that reads nothing of them survives.

Every test that touches S3 uses buckets of its own, so tests share one emulator.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devstack.sample_data.orders import LANDING_SCHEMA
from tests.faults import corrupt_data_pages

# Run again under AWS Glue 5.0's versions by `make test-glue5`: imports no Airflow.
pytestmark = pytest.mark.glue5

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "include" / "glue_scripts" / "orders"
LANDING_TO_STAGING = SCRIPTS / "orders_landing_to_staging.py"
AUDIT_LANDING = SCRIPTS / "orders_audit_landing.py"
REGION = "eu-west-1"
HOUR = "orders/year=2026/month=11/day=25/hour={:02d}/"

# The scripts import their shared module as Glue ships it (--extra-py-files): from sys.path.
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
import orders_batch  # noqa: E402


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def lines(count: int | None) -> list[dict] | None:
    """``count`` product lines (None: null products)."""
    if count is None:
        return None
    return [{"product_code": f"P{n}", "product_name": "Café", "quantity": n, "unit_price": Decimal("1.50")}
            for n in range(1, count + 1)]  # fmt: skip


def parquet_bytes(rows: list[dict], schema: pa.Schema = LANDING_SCHEMA, row_group_size: int | None = None) -> bytes:
    defaults = {"customer_id": "CUST-1", "order_ts": ts("2026-11-25 07:00:00"), "currency": "EUR"}
    table = pa.Table.from_pylist([{**defaults, **row} for row in rows], schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy", row_group_size=row_group_size)
    return sink.getvalue()


def order(order_id: str, processing_ts: str | None, products: int | None, run_id: str = "B7") -> dict:
    return {"order_id": order_id, "run_id": run_id, "products": lines(products),
            "processing_ts": ts(processing_ts) if processing_ts else None}  # fmt: skip


def run_id_range(parquet: bytes) -> tuple[str, str]:
    group = pq.read_metadata(io.BytesIO(parquet)).row_group(0)
    column = next(group.column(c) for c in range(group.num_columns) if group.column(c).path_in_schema == "run_id")
    return column.statistics.min, column.statistics.max


# --- the batch rule, in process --------------------------------------------------------------


def test_batch_prefixes_widen_by_late_minutes_and_cover_the_whole_prefix_without_a_window():
    assert orders_batch.batch_prefixes("orders", "2026-11-25T08:10:00Z", "2026-11-25T09:40:00Z") == [
        HOUR.format(8), HOUR.format(9)]  # fmt: skip
    assert orders_batch.batch_prefixes("orders/", "2026-11-25T08:10:00", "2026-11-25T09:40:00", 20) == [
        HOUR.format(8), HOUR.format(9), HOUR.format(10)]  # fmt: skip
    assert orders_batch.batch_prefixes("/orders/", "", "") == ["orders/"]
    assert orders_batch.batch_prefixes("orders/", "2026-11-25T08:10:00Z", "") == ["orders/"]
    assert orders_batch.batch_prefixes("", "", "") == [""]


def test_row_groups_whose_run_id_statistics_exclude_the_batch_are_skipped():
    rows = [order("a", "2026-11-25 08:00:00", 1, run_id="A1"), order("b", "2026-11-25 08:00:00", 1, run_id="A1"),
            order("c", "2026-11-25 08:00:00", 1, run_id="B7"), order("d", "2026-11-25 08:00:00", 1, run_id="C1"),
            order("e", "2026-11-25 08:00:00", 1, run_id="A1"), order("f", "2026-11-25 08:00:00", 1, run_id="C1")]
    parquet = pq.ParquetFile(io.BytesIO(parquet_bytes(rows, row_group_size=2)))

    # groups: [A1 A1] [B7 C1] [A1 C1]; the last spans A1..C1, so min/max cannot exclude B7
    assert list(orders_batch._row_groups_of_batch(parquet, "B7")) == [(1, 2), (2, 4)]
    assert list(orders_batch._row_groups_of_batch(parquet, "A1")) == [(0, 0), (2, 4)]
    assert list(orders_batch._row_groups_of_batch(parquet, "Z9")) == []


def test_the_length_of_products_is_read_from_one_fixed_width_leaf():
    parquet = pq.ParquetFile(io.BytesIO(parquet_bytes([order("a", None, 2)])))

    assert orders_batch._list_length_column(parquet, "products") == "products.list.element.quantity"
    assert orders_batch._list_length_column(parquet, "order_id") == "order_id"


def test_batch_keys_count_list_lengths_with_null_and_empty_as_zero():
    batch = pa.RecordBatch.from_pylist(
        [order("a", None, 3), order("b", None, None), order("c", None, 0), order("d", None, 2, run_id="X")],
        schema=LANDING_SCHEMA,
    )

    keys = orders_batch.batch_keys(batch, "B7", file_index=0, first_row=10, lines_of="products")

    assert keys.column("order_id").to_pylist() == ["a", "b", "c"]
    assert keys.column("lines").to_pylist() == [3, 0, 0]
    assert keys.column("row_index").to_pylist() == [10, 11, 12]


def test_select_latest_copies_carries_extra_columns_of_the_winners():
    same = ts("2026-11-25 08:00:00")
    keys = pa.table({
        "order_id": ["x", "x", "y", "y"],
        "processing_ts": pa.array([same, same, None, ts("2026-11-25 07:00:00")], orders_batch.PROCESSING_TS),
        "file_index": pa.array([0, 1, 1, 0], pa.int32()),
        "row_index": pa.array([0, 0, 1, 1], pa.int64()),
        "lines": pa.array([4, 2, 9, 1], pa.int64()),
    })  # fmt: skip

    winners, dropped = orders_batch.select_latest_copies(keys, carry=["lines"])

    assert dropped == 2
    assert winners.to_pylist() == [
        {"file_index": 0, "row_index": 1, "lines": 1},  # y: a null processing_ts loses
        {"file_index": 1, "row_index": 0, "lines": 2},  # x: a tie goes to the later object
    ]


def test_audit_record_lists_the_objects_holding_the_batch_by_key():
    keys = orders_batch.BatchKeys(objects=["lb/orders/h=1/b", "lb/orders/h=1/a", "lb/orders/h=2/c"], rows_read=5,
                                  duplicates=2, holding=[0, 1], lines=7)  # fmt: skip
    keys.winners = {0: [1, 2], 1: [0]}
    audit = load_audit_module()

    assert audit.audit_record("B7", keys, partitions=3) == {
        "batch_id": "B7", "orders": 3, "order_lines": 7, "duplicates_dropped": 2, "rows_read": 5,
        "objects": ["orders/h=1/a", "orders/h=1/b"], "objects_listed": 3, "partitions": 3}  # fmt: skip


def load_audit_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("glue_script_orders_audit_landing", AUDIT_LANDING)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the scripts, for real -----------------------------------------------------------------


@pytest.fixture(scope="module")
def aws(moto_endpoint):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=moto_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
    )
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return {"env": env, "s3": session.client("s3", endpoint_url=moto_endpoint)}


def new_bucket(aws, purpose: str) -> str:
    name = f"orders-{purpose}-{uuid.uuid4().hex[:12]}"
    aws["s3"].create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


def run(aws, script: Path, **arguments: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(script), "--JOB_NAME", script.stem, "--JOB_RUN_ID", "jr_1"]
    for name, value in arguments.items():
        argv += [f"--{name}", value]
    argv += ["--TempDir", "s3://ignored/tmp/", "--enable-metrics", "true"]  # Glue's extras
    return subprocess.run(argv, env=aws["env"], capture_output=True, text=True, timeout=120)


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def audit(aws, landing: str, batch_id: str, marker: dict, **optional: str) -> subprocess.CompletedProcess:
    return run(aws, AUDIT_LANDING, batch_id=batch_id, landing_bucket=landing, landing_prefix="orders/",
               started_at=marker["started_at"], completed_at=marker["completed_at"],
               audit_bucket=landing, audit_key=f"audit/{batch_id}/landing.json", **optional)  # fmt: skip


def transform(aws, landing: str, batch_id: str, marker: dict, **optional: str) -> dict:
    """The transform's run, and what it wrote: orders (versions) and lines, counted from S3."""
    staging = new_bucket(aws, "staging")
    result = run(aws, LANDING_TO_STAGING, batch_id=batch_id, landing_bucket=landing, landing_prefix="orders/",
                 staging_bucket=staging, staging_prefix="orders/", started_at=marker["started_at"],
                 completed_at=marker["completed_at"], **optional)  # fmt: skip
    summary = last_json(result)
    return {"summary": summary, "orders": rows_under(aws, staging, "order_versions/"),
            "order_lines": rows_under(aws, staging, "orders/")}  # fmt: skip


def rows_under(aws, bucket: str, prefix: str) -> int:
    s3 = aws["s3"]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sum(pq.read_metadata(io.BytesIO(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())).num_rows
               for o in listed)  # fmt: skip


def put(aws, bucket: str, key: str, body: bytes) -> str:
    aws["s3"].put_object(Bucket=bucket, Key=key, Body=body)
    return key


MARKER = {"started_at": "2026-11-25T08:10:00Z", "completed_at": "2026-11-25T09:40:00Z"}


@pytest.fixture(scope="module")
def ruled(aws):
    """Batch B7 made to exercise the rule. Objects sort a < b < c < late, which is the tie-break
    order. The winners, without the late object: o1 b (3 lines), o2 c (5: a tie of three
    objects), o3 b (empty beats a null processing_ts), o4 a (null products), o5 b's second row
    (1: a tie in one object), o7 b (1: two null processing_ts, the later object wins): 6 orders,
    10 lines, 12 rows. The late object, an hour after completed_at, brings o1 again (1 line) and
    o6 (3): 7 orders, 11 lines, 14 rows."""
    bucket = new_bucket(aws, "landing")
    a = put(aws, bucket, HOUR.format(8) + "a-orders", parquet_bytes([
        order("o1", "2026-11-25 08:15:00", 2), order("o9", "2026-11-25 08:16:00", 4, run_id="B6"),
        order("o2", "2026-11-25 08:20:00", 1), order("o3", None, 3), order("o4", "2026-11-25 08:30:00", None),
        order("o7", None, 2)], row_group_size=2))  # fmt: skip
    b = put(aws, bucket, HOUR.format(9) + "b-orders", parquet_bytes([
        order("o1", "2026-11-25 09:05:00", 3), order("o2", "2026-11-25 08:20:00", 4),
        order("o3", "2026-11-25 09:10:00", 0), order("o5", "2026-11-25 09:15:00", 2),
        order("o5", "2026-11-25 09:15:00", 1), order("o7", None, 1)], row_group_size=4))  # fmt: skip
    c = put(aws, bucket, HOUR.format(9) + "c-orders", parquet_bytes([order("o2", "2026-11-25 08:20:00", 5)]))
    late = put(aws, bucket, HOUR.format(10) + "late-orders", parquet_bytes([
        order("o1", "2026-11-25 10:20:00", 1), order("o6", "2026-11-25 10:25:00", 3)]))  # fmt: skip
    # Glue and Athena skip these names; neither is parquet, so reading one would fail.
    put(aws, bucket, HOUR.format(9) + "_SUCCESS", b"")
    put(aws, bucket, HOUR.format(9) + ".b-orders.crc", b"not parquet")
    return {"bucket": bucket, "in_window": [a, b, c], "late": late}


@pytest.mark.parametrize(
    ("late_minutes", "expected"),
    [
        (None, {"orders": 6, "order_lines": 10, "rows_read": 12, "duplicates_dropped": 6, "partitions": 2}),
        ("60", {"orders": 7, "order_lines": 11, "rows_read": 14, "duplicates_dropped": 7, "partitions": 3}),
    ],
)
def test_the_audit_counts_what_the_transform_writes(aws, ruled, late_minutes, expected):
    optional = {"late_minutes": late_minutes} if late_minutes else {}
    bucket = ruled["bucket"]

    result = audit(aws, bucket, "B7", MARKER, **optional)
    written = transform(aws, bucket, "B7", MARKER, **optional)

    counted = last_json(result)
    assert {k: counted[k] for k in expected} == expected
    assert (counted["orders"], counted["order_lines"]) == (written["orders"], written["order_lines"])
    assert counted["duplicates_dropped"] == written["summary"]["duplicates_dropped"]
    assert counted["rows_read"] == written["summary"]["orders_read"]
    assert counted["objects"] == ruled["in_window"] + ([ruled["late"]] if late_minutes else [])
    assert counted["objects_listed"] == written["summary"]["objects_listed"] == len(counted["objects"])
    stored = aws["s3"].get_object(Bucket=bucket, Key="audit/B7/landing.json")
    assert json.loads(stored["Body"].read()) == counted
    assert f"[orders_audit_landing] counted: {expected['rows_read']} rows of the batch" in result.stdout


def test_without_a_window_both_jobs_read_only_the_objects_that_can_hold_the_batch(aws):
    bucket = new_bucket(aws, "landing")
    mine = [
        put(aws, bucket, HOUR.format(8) + "orders-mine-1", parquet_bytes(
            [order("m1", "2026-11-25 08:00:00", 2), order("m2", "2026-11-25 08:01:00", 1)])),
        put(aws, bucket, "orders/year=2026/month=11/day=27/hour=23/orders-mine-2", parquet_bytes(
            [order("m1", "2026-11-27 23:00:00", 4), order("m3", "2026-11-27 23:01:00", None)])),
    ]  # fmt: skip
    for n in range(50):
        other = parquet_bytes([order(f"x{n}-{i}", "2026-11-26 10:00:00", i % 4, run_id=f"OTHER-{n:02d}")
                               for i in range(40)])  # fmt: skip
        damaged = corrupt_data_pages(other)
        assert run_id_range(damaged) == (f"OTHER-{n:02d}",) * 2  # the footer still says what it holds
        with pytest.raises((OSError, pa.ArrowException)):
            pq.read_table(io.BytesIO(damaged))
        put(aws, bucket, f"orders/year=2026/month=11/day={25 + n % 3}/hour={n % 24:02d}/orders-other-{n:02d}", damaged)
    no_window = {"started_at": "", "completed_at": ""}

    counted = last_json(audit(aws, bucket, "B7", no_window))
    written = transform(aws, bucket, "B7", no_window)

    assert (counted["orders"], counted["order_lines"], counted["duplicates_dropped"]) == (3, 5, 1)
    assert (written["orders"], written["order_lines"]) == (3, 5)
    assert counted["objects"] == sorted(mine)
    assert (counted["objects_listed"], counted["partitions"]) == (52, 1)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(corrupt_data_pages(parquet_bytes([order(f"o{i}", "2026-11-25 09:00:00", 3) for i in range(40)])),
                     id="damaged-data-pages"),
        pytest.param(b"PAR1 this is not parquet", id="not-parquet"),
    ],
)  # fmt: skip
def test_the_audit_fails_naming_an_unreadable_object_of_the_batch_and_the_batch(aws, body):
    bucket = new_bucket(aws, "landing")
    put(aws, bucket, HOUR.format(8) + "orders-good", parquet_bytes([order("o1", "2026-11-25 08:15:00", 2)]))
    bad = put(aws, bucket, HOUR.format(9) + "orders-unreadable", body)

    result = audit(aws, bucket, "B7", MARKER)

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"s3://{bucket}/{bad}" in last_line and "batch B7" in last_line, last_line
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=bucket, Prefix="audit/")


def test_the_audit_fails_on_a_null_order_id_in_the_batch(aws):
    bucket = new_bucket(aws, "landing")
    nullable = LANDING_SCHEMA.set(0, pa.field("order_id", pa.string()))
    key = put(aws, bucket, HOUR.format(8) + "orders-null-id", parquet_bytes(
        [order("o1", "2026-11-25 08:15:00", 2), order(None, "2026-11-25 08:16:00", 1)], schema=nullable))  # fmt: skip

    result = audit(aws, bucket, "B7", MARKER)

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"s3://{bucket}/{key}" in last_line and "batch B7" in last_line and "null order_id" in last_line
