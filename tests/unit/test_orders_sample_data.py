"""The orders sample-data generator writes what the Firehose stream and upstream would.

Runs against a real moto server on loopback (not ``mock_aws``, which would reset the state of
any emulator other tests run in this process); every test writes to its own bucket.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from devstack.sample_data import orders as sample

REGION = "eu-west-1"
STARTED_AT = datetime(2026, 11, 25, 8, 20, tzinfo=UTC)

# docs/interfaces.md, "Orders": the landing columns, written out here so the generator cannot drift.
PRODUCT = pa.struct(
    [
        ("product_code", pa.string()),
        ("product_name", pa.string()),
        ("quantity", pa.int32()),
        ("unit_price", pa.decimal128(10, 2)),
    ]
)
CONTRACT_COLUMNS = [
    ("order_id", pa.string()),
    ("customer_id", pa.string()),
    ("order_ts", pa.timestamp("ms", tz="UTC")),
    ("currency", pa.string()),
    ("products", pa.list_(PRODUCT)),
    ("run_id", pa.string()),
    ("processing_ts", pa.timestamp("ms", tz="UTC")),
]
KEY = re.compile(
    r"orders/year=(\d{4})/month=(\d\d)/day=(\d\d)/hour=(\d\d)/"
    r"orders-firehose-1-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d-[0-9a-f-]{36}\.parquet"
)
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def read(s3, bucket: str, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def landing_rows(s3, bucket: str) -> list[tuple[str, dict]]:
    return [
        (key, row) for key in keys(s3, bucket, "orders/") for row in read(s3, bucket, key).to_pylist()
    ]


def latest_copies(rows: list[dict]) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for row in rows:
        kept = latest.get(row["order_id"])
        if kept is None or row["processing_ts"] > kept["processing_ts"]:
            latest[row["order_id"]] = row
    return latest


def test_landing_objects_have_the_contract_schema_and_the_firehose_layout(s3, bucket):
    body = sample.write_orders_batch(s3, bucket, "B-LAYOUT", orders=3000, started_at=STARTED_AT, hours=3)

    data_keys = keys(s3, bucket, "orders/")
    per_hour = Counter(KEY.fullmatch(k).groups() for k in data_keys)
    assert all(KEY.fullmatch(k) for k in data_keys)
    assert sorted(h[3] for h in per_hour) == ["08", "09", "10", "11"]
    assert all(n >= 2 for n in per_hour.values()), per_hour
    for key in data_keys:
        metadata = pq.ParquetFile(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())).metadata
        assert metadata.row_group(0).column(0).compression == "SNAPPY"
        table = read(s3, bucket, key)
        assert [(f.name, f.type) for f in table.schema] == CONTRACT_COLUMNS
        # every row sits in the hour partition of its processing time, inside the batch window
        year, month, day, hour = KEY.fullmatch(key).groups()
        for ts in table.column("processing_ts").to_pylist():
            assert f"{ts:%Y %m %d %H}" == f"{year} {month} {day} {hour}"
            assert STARTED_AT <= ts <= datetime.fromisoformat(body["completed_at"])


def test_marker_counts_the_distinct_orders_and_the_lines_of_their_latest_copies(s3, bucket):
    body = sample.write_orders_batch(s3, bucket, "B-COUNTS", orders=2500, started_at=STARTED_AT)

    latest = latest_copies([row for _, row in landing_rows(s3, bucket)])
    assert body == {
        "batch_id": "B-COUNTS",
        "started_at": "2026-11-25T08:20:00Z",
        "completed_at": "2026-11-25T11:20:00Z",
        "expected_counts": {
            "orders": 2500,
            "order_lines": sum(len(row["products"] or []) for row in latest.values()),
        },
    }
    assert len(latest) == 2500
    marker = s3.get_object(Bucket=bucket, Key="batch-completion/B-COUNTS.json")["Body"].read()
    assert json.loads(marker) == body
    assert ISO_UTC.fullmatch(body["started_at"]) and ISO_UTC.fullmatch(body["completed_at"])


def test_batch_has_redeliveries_amendments_null_and_empty_products_and_non_ascii_names(s3, bucket):
    sample.write_orders_batch(s3, bucket, "B-MIX", orders=3000, started_at=STARTED_AT)
    rows = landing_rows(s3, bucket)

    copies: dict[str, list[tuple[str, dict]]] = {}
    for key, row in rows:
        copies.setdefault(row["order_id"], []).append((key, row))
    redelivered = {oid: c for oid, c in copies.items() if len(c) > 1}
    assert 0.02 * 3000 < len(redelivered) < 0.1 * 3000
    assert any(len({key for key, _ in c}) > 1 for c in redelivered.values()), "copies in other objects"
    assert any(len({row["products"] and len(row["products"]) for _, row in c}) > 1 for c in redelivered.values())
    for c in redelivered.values():  # a later copy is a later processing time, same order
        assert len({row["processing_ts"] for _, row in c}) == len(c)
        assert len({(row["customer_id"], row["order_ts"], row["currency"]) for _, row in c}) == 1

    all_rows = [row for _, row in rows]
    assert any(row["products"] is None for row in all_rows)
    assert any(row["products"] == [] for row in all_rows)
    names = {p["product_name"] for row in all_rows for p in row["products"] or []}
    assert {"Café crème capsules (10)", "Überzug für Sofakissen"} <= names
    assert any("東京" in name for name in names)
    assert {row["currency"] for row in all_rows} <= {"EUR", "GBP", "USD", "JPY", "CHF", "SEK"}
    assert all(str(uuid.UUID(row["order_id"])) == row["order_id"] for row in all_rows)
    assert {row["run_id"] for row in all_rows} == {"B-MIX"}


def test_same_seed_writes_the_same_objects_and_another_seed_does_not(s3):
    written = []
    for seed in (7, 7, 8):
        bucket = f"orders-seed-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        body = sample.write_orders_batch(s3, bucket, "B-SEED", orders=800, seed=seed)
        objects = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys(s3, bucket)}
        written.append((body, objects))
    assert written[0] == written[1]
    assert written[0][1].keys() != written[2][1].keys()


def test_objects_are_generated_one_firehose_buffer_at_a_time(s3, bucket):
    sample.write_orders_batch(s3, bucket, "B-CHUNKS", orders=120_000, hours=1, duplicate_rate=0.05)

    sizes = [pq.ParquetFile(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)["Body"].read())).metadata.num_rows
             for k in keys(s3, bucket, "orders/")]
    assert sum(sizes) > 120_000
    assert max(sizes) <= sample.ROWS_PER_OBJECT * 1.2


def test_no_marker_and_overridden_expected_counts(s3, bucket):
    body = sample.write_orders_batch(s3, bucket, "B-NOMARK", orders=50, write_marker=False)
    assert keys(s3, bucket, "batch-completion/") == []
    assert body["expected_counts"]["orders"] == 50

    body = sample.write_orders_batch(s3, bucket, "B-WRONG", orders=50, expected_counts={"orders": 49})
    marker = s3.get_object(Bucket=bucket, Key="batch-completion/B-WRONG.json")["Body"].read()
    assert json.loads(marker)["expected_counts"] == {"orders": 49} == body["expected_counts"]


def test_write_marker_writes_a_string_body_verbatim(s3, bucket):
    key = sample.write_marker(s3, bucket, "B-BAD", "{not json")
    assert key == "batch-completion/B-BAD.json"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"{not json"


def test_an_empty_batch_writes_only_its_marker(s3, bucket):
    body = sample.write_orders_batch(s3, bucket, "B-EMPTY", orders=0)
    assert keys(s3, bucket) == ["batch-completion/B-EMPTY.json"]
    assert body["expected_counts"] == {"orders": 0, "order_lines": 0}


def test_cli_writes_a_batch_through_aws_endpoint_url(s3, bucket, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.meta.endpoint_url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    assert sample.main(["--orders", "40", "--seed", "3", "--batch-id", "B-CLI", "--bucket", bucket]) == 0

    body = json.loads(capsys.readouterr().out)
    assert body["batch_id"] == "B-CLI" and body["expected_counts"]["orders"] == 40
    assert "batch-completion/B-CLI.json" in keys(s3, bucket)
