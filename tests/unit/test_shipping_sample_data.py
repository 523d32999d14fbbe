"""devstack.sample_data.shipping: deterministic JSON lines, bad lines of each kind where it says,
gzip objects among plain ones, non-ASCII personal data, and the batch marker."""

from __future__ import annotations

import gzip
import json
from datetime import datetime

import pytest

from devstack.sample_data import shipping


def _parse(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _is_real_date(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y/%m/%d")
    except ValueError:
        return False
    return len(text) == 10


def test_the_same_seed_gives_the_same_lines_and_another_seed_others():
    first = shipping.make_lines(500, seed=3, bad_share=0.02)
    assert shipping.make_lines(500, seed=3, bad_share=0.02) == first
    assert shipping.make_lines(500, seed=4, bad_share=0.02)[0] != first[0]


def test_good_lines_are_records_with_the_producers_fields_and_types():
    lines, bad = shipping.make_lines(2000, seed=1)

    assert bad == []
    records = [json.loads(line) for line in lines]
    assert all(list(record) == list(shipping.FIELDS) for record in records)  # no product_id
    assert all(isinstance(r["shipping_id"], int) and _is_real_date(r["shipping_date"]) for r in records)
    for name in ("shipping_cost", "shipping_distance", "quantity"):
        kinds = {type(r[name]) for r in records}
        assert kinds == {int, float}, name  # numbers written both ways
    assert max(abs(r["shipping_cost"] * 100 - round(r["shipping_cost"] * 100)) for r in records) < 1e-6  # cents
    ids = [r["shipping_id"] for r in records]
    assert len(set(ids)) < len(ids)  # random, so repeats happen


def test_names_and_addresses_carry_non_ascii_letters_unescaped():
    lines, _ = shipping.make_lines(300, seed=2)

    text = "\n".join(lines)
    assert "\\u" not in text  # written as UTF-8, not escaped
    names = {json.loads(line)["customer_name"] for line in lines}
    addresses = {json.loads(line)["street_address"] for line in lines}
    assert any(not name.isascii() for name in names) and any(not a.isascii() for a in addresses)


def test_bad_lines_make_up_the_share_with_the_kinds_cycled():
    lines, bad = shipping.make_lines(1000, seed=5, bad_share=0.03)

    assert len(bad) == 30
    assert [kind for _, kind in bad] == [shipping.BAD_KINDS[i % 3] for i in range(30)]
    for index, kind in bad:
        record = _parse(lines[index])
        if kind == shipping.NOT_JSON:
            assert record is None
        elif kind == shipping.COST_AS_STRING:
            assert isinstance(record["shipping_cost"], str) and float(record["shipping_cost"]) > 0
        else:
            assert not _is_real_date(record["shipping_date"])
    bad_indexes = {index for index, _ in bad}
    for index, line in enumerate(lines):
        if index not in bad_indexes:
            record = json.loads(line)
            assert isinstance(record["shipping_cost"], int | float) and _is_real_date(record["shipping_date"])


def test_customers_replace_the_word_lists():
    planted = [("Zoë Ångström", "Straße 1"), ('Quote "Q" O\'Neil', "Back\\slash Lane 2")]
    lines, _ = shipping.make_lines(50, seed=0, customers=planted)

    people = {(r["customer_name"], r["street_address"]) for r in map(json.loads, lines)}
    assert people == set(planted)


def test_a_million_lines_generate_quickly():
    import time

    started = time.perf_counter()
    lines, bad = shipping.make_lines(1_000_000, seed=0, bad_share=0.005)
    assert len(lines) == 1_000_000 and len(bad) == 5000
    assert time.perf_counter() - started < 30


def _objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_write_batch_writes_plain_and_gzip_objects_then_the_marker(s3, bucket):
    batch = shipping.write_batch(s3, "B1", shipments=1000, seed=9, bad_share=0.01, files=4, gzip_files=2, bucket=bucket)

    objects = _objects(s3, bucket, "incoming/B1/")
    assert sorted(objects) == sorted(batch.keys) and len(batch.keys) == 4
    assert [key.endswith(".json.gz") for key in batch.keys] == [False, False, True, True]
    lines_by_key = {}
    for key, body in objects.items():
        text = (gzip.decompress(body) if key.endswith(".gz") else body).decode("utf-8")
        assert text.endswith("\n")
        lines_by_key[key] = text.splitlines()
    assert sum(map(len, lines_by_key.values())) == batch.lines == 1000
    assert len(batch.bad) == 10
    for key, line, kind in batch.bad:  # (key, 1-based line, kind) point at the bad line
        record = _parse(lines_by_key[key][line - 1])
        assert (record is None) == (kind == shipping.NOT_JSON)
    good = [json.loads(line) for key in batch.keys for line in lines_by_key[key] if _parse(line)]
    good = [r for r in good if isinstance(r["shipping_cost"], int | float) and _is_real_date(r["shipping_date"])]
    assert batch.records == good

    marker = json.loads(s3.get_object(Bucket=bucket, Key="batch-completion/B1.json")["Body"].read())
    assert marker == batch.marker
    assert marker["batch_id"] == "B1" and marker["expected_counts"] == {"shipments": 1000}
    assert marker["objects"] == batch.keys
    started = datetime.fromisoformat(marker["started_at"])
    completed = datetime.fromisoformat(marker["completed_at"])
    assert started.utcoffset().total_seconds() == 0 and started <= completed
    assert marker["completed_at"].endswith("Z")


def test_write_batch_options_for_fault_tests(s3, bucket):
    batch = shipping.write_batch(
        s3, "B2", shipments=10, files=1, gzip_files=0, list_objects=False, expected=12, bucket=bucket
    )
    assert "objects" not in batch.marker and batch.marker["expected_counts"] == {"shipments": 12}

    silent = shipping.write_batch(s3, "B3", shipments=10, files=2, gzip_files=0, write_marker=False, bucket=bucket)
    assert silent.marker == {} and _objects(s3, bucket, "batch-completion/B3") == {}


def test_write_marker_alone(s3, bucket):
    body = shipping.write_marker(s3, "B4", objects=["incoming/B4/x.json"], shipments=3, bucket=bucket)

    stored = json.loads(s3.get_object(Bucket=bucket, Key="batch-completion/B4.json")["Body"].read())
    assert stored == body and body["objects"] == ["incoming/B4/x.json"]
    assert body["expected_counts"] == {"shipments": 3}
    assert shipping.write_marker(s3, "B5", bucket=bucket)["expected_counts"] == {}


def test_invalid_options_are_refused(s3, bucket):
    with pytest.raises(ValueError):
        shipping.write_batch(s3, "B6", shipments=10, files=2, gzip_files=3, bucket=bucket)
    with pytest.raises(ValueError):
        shipping.make_lines(10, bad_share=1.5)


def test_the_cli_writes_a_batch_and_prints_what_it_wrote(s3, bucket, moto_endpoint, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    code = shipping.main(
        ["batch", "--batch-id", "C1", "--shipments", "30", "--bad-share", "0.1", "--bucket", bucket, "--files", "2"]
    )

    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["lines"] == 30 and summary["bad"] == 3
    assert summary["objects"] == {"incoming/C1/shipments-0001.json": 15, "incoming/C1/shipments-0002.json.gz": 15}
    assert summary["marker"]["expected_counts"] == {"shipments": 30}
