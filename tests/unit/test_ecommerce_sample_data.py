"""The e-commerce sample-data generator writes what the upstream generator would, with defects on request.

The S3 parts run against a real moto server on loopback (every test writes to its own bucket);
the dimensions against a throwaway PostgreSQL (pgserver).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import astuple
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

import pytest

from devstack.sample_data import ecommerce as sample

REGION = "eu-west-1"
DAY = date(2026, 11, 1)
TXN = re.compile(r"TXN\d{8}")
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")
KEY = re.compile(r"transactions/year=(\d{4})/month=(\d\d)/day=(\d\d)/transactions_(\d{4}-\d\d-\d\d)(_part\d+)?\.csv")

# docs/interfaces.md, "E-commerce", written out here so the generator cannot drift.
CONTRACT_COLUMNS = ["transaction_id", "customer_id", "product_id", "quantity", "price", "transaction_date",
                    "payment_type", "status"]  # fmt: skip
CONTRACT_STATUSES = {"Pending", "Completed", "Cancelled", "Refunded"}


def keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def read_csv(s3, bucket: str, key: str) -> list[list[str]]:
    text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    return list(csv.reader(io.StringIO(text)))


def problems(row, customers: int = 5, products: int = 10) -> list[str]:
    """What makes a row invalid under the contract (empty when it is valid)."""
    found = []
    tid, customer, product, quantity, price, day, payment, status = row
    if not TXN.fullmatch(tid):
        found.append("transaction_id")
    if not (re.fullmatch(r"CUST\d{5}", customer) and 1 <= int(customer[4:]) <= customers):
        found.append("customer")
    if not (re.fullmatch(r"PROD\d{5}", product) and 1 <= int(product[4:]) <= products):
        found.append("product")
    if not (quantity.isdigit() and int(quantity) >= 1):
        found.append("quantity")
    try:
        if Decimal(price) < 0 or not re.fullmatch(r"\d+\.\d\d", price):
            found.append("price")
    except InvalidOperation:
        found.append("price")
    try:
        if date.fromisoformat(day).isoformat() != day:
            found.append("date")
    except ValueError:
        found.append("date")
    if not payment:
        found.append("payment_type")
    if status not in CONTRACT_STATUSES:
        found.append("status")
    return found


def differing(a, b) -> list[str]:
    return [CONTRACT_COLUMNS[i] for i in range(len(CONTRACT_COLUMNS)) if a[i] != b[i]]


# -- reference data and ids -------------------------------------------------------------------------------------


def test_the_columns_and_reference_rows_are_the_upstream_generators():
    assert list(sample.COLUMNS) == CONTRACT_COLUMNS
    assert set(sample.STATUSES) == CONTRACT_STATUSES
    assert sample.PAYMENT_TYPES == ("Credit Card", "Debit Card", "Cash on Delivery")
    assert (sample.RAW_BUCKET, sample.ARCHIVE_BUCKET) == ("ecommerce-raw", "ecommerce-archive")
    assert (sample.PREFIX, sample.MARKER_PREFIX) == ("transactions/", "batch-completion/")
    assert [c.customer_id for c in sample.CUSTOMERS] == [f"CUST0000{i}" for i in range(1, 6)]
    assert sample.CUSTOMERS[4] == sample.Customer("CUST00005", "Bikki", "Tamoli", "Bikki.tamoli@example.com", "SL")
    assert [p.product_id for p in sample.PRODUCTS] == [f"PROD{i:05d}" for i in range(1, 11)]
    assert sample.PRODUCTS[0] == sample.Product("PROD00001", "Laptop", "Electronics", Decimal("799.99"), "SUP00001")
    assert sample.PRODUCTS[7] == sample.Product(
        "PROD00008", "Vacuum Cleaner", "Home Goods", Decimal("199.99"), "SUP00002"
    )
    assert [str(p.price) for p in sample.PRODUCTS] == ["799.99", "499.99", "79.99", "19.99", "49.99", "99.99",
                                                       "149.99", "199.99", "14.99", "19.99"]  # fmt: skip


def test_product_prices_come_from_the_id_alone():
    assert sample.product_price("PROD00003") == Decimal("79.99")
    added = [sample.product_price(f"PROD{n:05d}") for n in range(11, 300)]
    assert added == [sample.product_price(f"PROD{n:05d}") for n in range(11, 300)]
    assert all(p > 0 and p == p.quantize(Decimal("0.01")) for p in added)
    assert len(set(added)) > 50
    for seed in (1, 7):
        assert sample.product_row(42, seed=seed).price == sample.product_price("PROD00042")
    assert sample.product_row(42, seed=1) == sample.product_row(42, seed=1)
    assert sample.customer_row(3) == sample.CUSTOMERS[2]
    with pytest.raises(ValueError, match="not a PROD id"):
        sample.product_price("CUST00001")


def test_transaction_ids_are_unique_across_twenty_days_and_name_their_day_and_row():
    ids = []
    for i in range(20):
        day = sample.generate_day(DAY + timedelta(days=i), 5000)
        ids += [row[0] for row in day.rows]
    assert len(ids) == 100_000 == len(set(ids))
    assert all(TXN.fullmatch(t) for t in ids)
    steps = {int(b[3:]) - int(a[3:]) for a, b in zip(ids[:100], ids[1:100], strict=False)}
    assert len(steps) > 90  # they look random, not counted up in a fixed step
    tid = sample.transaction_id(DAY, 1234)
    assert sample.transaction_position(tid) == ((DAY - date(2020, 1, 1)).days % 1000, 1234)
    assert sample.generate_day(DAY, 1235).rows[1234][0] == tid


def test_a_day_holds_at_most_100000_transactions():
    assert len(sample.generate_day(DAY, 100_000).rows) == 100_000
    with pytest.raises(ValueError, match="100,000"):
        sample.generate_day(DAY, 100_001)


# -- a day's rows ----------------------------------------------------------------------------------------------


def test_generation_is_deterministic_for_a_seed_and_a_day():
    options = {"invalid_share": 0.1, "identical_duplicates": 3, "conflicting_duplicates": 3}
    first = sample.generate_day(DAY, 200, seed=3, **options)
    assert sample.generate_day(DAY, 200, seed=3, **options) == first
    other_seed = sample.generate_day(DAY, 200, seed=4, **options)
    assert other_seed.rows != first.rows
    # the ids name (day, row), whatever the seed
    assert sorted({r[0] for r in other_seed.rows}) == sorted({r[0] for r in first.rows})
    assert {r[0] for r in sample.generate_day(DAY + timedelta(days=1), 200, seed=3).rows}.isdisjoint(
        {r[0] for r in first.rows}
    )


def test_valid_rows_follow_the_contract_and_the_upstream_prices():
    day = sample.generate_day(DAY, 3000, seed=11)
    assert day.invalid == day.duplicates == day.conflicts == {}
    assert day.valid == list(range(3000))
    prices = {p.product_id: p.price for p in sample.PRODUCTS}
    for row in day.rows:
        assert len(row) == 8 and all(isinstance(cell, str) for cell in row)
        assert problems(row) == [], row
        assert 1 <= int(row[3]) <= 5
        assert Decimal(row[4]) == (prices[row[2]] * int(row[3])).quantize(Decimal("0.01"))
        assert row[5] == "2026-11-01" and row[7] == "Completed"
        assert row[6] in sample.PAYMENT_TYPES
    assert {r[1] for r in day.rows} == {c.customer_id for c in sample.CUSTOMERS}
    assert {r[2] for r in day.rows} == set(prices)
    assert {r[6] for r in day.rows} == set(sample.PAYMENT_TYPES)
    assert sample.Row.from_cells(day.rows[0]).as_csv_cells() == day.rows[0]


def test_more_customers_and_products_and_other_statuses_on_request():
    day = sample.generate_day(DAY, 4000, customers=300, products=120, status_share=0.1)
    assert all(problems(row, customers=300, products=120) == [] for row in day.rows)
    assert max(int(r[1][4:]) for r in day.rows) > 250 and max(int(r[2][4:]) for r in day.rows) > 100
    for row in day.rows:
        assert Decimal(row[4]) == sample.product_price(row[2]) * int(row[3])
    statuses = [r[7] for r in day.rows]
    assert 0.05 < (statuses.count("Pending") + statuses.count("Cancelled")) / len(statuses) < 0.15
    assert statuses.count("Pending") and statuses.count("Cancelled") and "Refunded" not in statuses


def test_every_invalid_kind_appears_with_its_spoiled_cell():
    clean = sample.generate_day(DAY, 1000)
    day = sample.generate_day(DAY, 1000, invalid_share=0.06)
    assert len(day.invalid) == 60
    assert sorted(set(day.invalid.values())) == sorted(sample.INVALID_KINDS)
    expected_cells = {"unknown_customer": ["customer_id"], "unknown_product": ["product_id"],
                      "zero_quantity": ["quantity", "price"], "bad_price": ["price"],
                      "bad_date": ["transaction_date"], "unknown_status": ["status"]}  # fmt: skip
    bad_prices, bad_dates = set(), set()
    for index, row in enumerate(day.rows):
        original = clean.rows[index]
        kind = day.invalid.get(index)
        if kind is None:
            assert row == original and problems(row) == []
            continue
        assert differing(row, original) == expected_cells[kind], (kind, row)
        assert problems(row), (kind, row)
        if kind == "unknown_customer":
            assert row[1] == "CUST99999"
        elif kind == "unknown_product":
            assert row[2] == "PROD99999"
        elif kind == "zero_quantity":
            assert row[3] == "0"
        elif kind == "bad_price":
            bad_prices.add(row[4])
        elif kind == "bad_date":
            bad_dates.add(row[5])
        else:
            assert row[7] == "Shipped"
    assert bad_prices == {"abc", "12,50"}
    assert bad_dates == {"2026-02-30", "01/11/2026"}


def test_only_the_kinds_asked_for():
    day = sample.generate_day(DAY, 500, invalid_share=0.1, kinds=("zero_quantity",))
    assert set(day.invalid.values()) == {"zero_quantity"} and len(day.invalid) == 50
    with pytest.raises(ValueError, match="kinds"):
        sample.generate_day(DAY, 10, invalid_share=0.1, kinds=("negative_price",))


def test_identical_copies_repeat_their_original_and_conflicting_copies_differ_in_one_cell():
    day = sample.generate_day(DAY, 400, invalid_share=0.05, identical_duplicates=15, conflicting_duplicates=12)
    assert len(day.rows) == 427 and len(day.duplicates) == 15 and len(day.conflicts) == 12
    originals = list(day.duplicates.values()) + list(day.conflicts.values())
    assert len(set(originals)) == 27 and not set(originals) & set(day.invalid)
    for copy, original in day.duplicates.items():
        assert copy > original and day.rows[copy] == day.rows[original]
    changed = set()
    for copy, original in day.conflicts.items():
        assert copy > original and day.rows[copy][0] == day.rows[original][0]
        (column,) = differing(day.rows[copy], day.rows[original])
        changed.add(column)
        assert problems(day.rows[copy]) == []  # only the conflict makes it invalid
    assert changed <= {"quantity", "payment_type", "status"} and len(changed) > 1
    assert len(day.rejected) == 20 + 2 * 12
    assert len(day.valid) == len(day.rows) - len(day.rejected) - len(day.duplicates)
    valid_ids = [day.rows[i][0] for i in day.valid]
    assert len(valid_ids) == len(set(valid_ids))
    # The defects are added to the same transactions: a valid row is the same with or without them.
    clean = {row[0]: row for row in sample.generate_day(DAY, 400).rows}
    assert all(day.rows[i] == clean[day.rows[i][0]] for i in day.valid)


def test_copies_need_enough_valid_rows():
    with pytest.raises(ValueError, match="valid rows"):
        sample.generate_day(DAY, 10, invalid_share=0.5, identical_duplicates=4, conflicting_duplicates=2)


def test_updates_keep_the_ids_and_change_the_status_or_the_price_only():
    day = sample.generate_day(DAY, 1000, invalid_share=0.02, identical_duplicates=5, conflicting_duplicates=5)
    valid = {day.rows[i][0]: day.rows[i] for i in day.valid}
    updates = sample.update_rows(day, 0.2)
    assert updates == sample.update_rows(day, 0.2) != sample.update_rows(day, 0.2, seed=8)
    assert len(updates) == round(0.2 * len(valid)) and len({u[0] for u in updates}) == len(updates)
    positions = [day.rows.index(valid[u[0]]) for u in updates]
    assert positions == sorted(positions)  # in file order
    kinds = []
    for update in updates:
        original = valid[update[0]]
        assert problems(update) == []
        change = differing(update, original)
        assert change in (["status"], ["price"])
        if change == ["status"]:
            assert (original[7], update[7]) == ("Completed", "Refunded")
        else:
            assert re.fullmatch(r"\d+\.\d\d", update[4]) and 0 <= Decimal(update[4]) < Decimal(original[4])
        kinds.append(change[0])
    assert 0.4 < kinds.count("status") / len(kinds) < 0.6
    assert sample.update_rows(day, 0) == [] and len(sample.update_rows(day, 1)) == len(valid)


# -- files and marker ------------------------------------------------------------------------------------------


def test_the_file_is_a_header_and_the_rows_exactly_as_generated():
    day = sample.generate_day(DAY, 300, invalid_share=0.1)
    data = sample.csv_bytes(day.rows)
    assert data.startswith(b"transaction_id,customer_id,product_id,quantity,price,transaction_date,"
                           b"payment_type,status\n")  # fmt: skip
    assert b"\r" not in data and b'"12,50"' in data
    assert [tuple(r) for r in csv.reader(io.StringIO(data.decode("utf-8")))] == [tuple(sample.COLUMNS), *day.rows]
    assert sample.csv_bytes([sample.Row.from_cells(r) for r in day.rows]) == data


def test_object_keys_are_hive_partitions_by_day():
    assert sample.object_key(date(2026, 2, 3)) == "transactions/year=2026/month=02/day=03/transactions_2026-02-03.csv"
    assert sample.object_key(DAY, 2) == "transactions/year=2026/month=11/day=01/transactions_2026-11-01_part2.csv"
    assert sample.object_key(DAY, updates=True).endswith("/day=01/transactions_2026-11-01_updates.csv")


def test_write_day_puts_one_object_per_part(s3, bucket):
    day = sample.generate_day(DAY, 101)
    assert sample.write_day(s3, day, bucket=bucket) == [sample.object_key(DAY)]
    parts = sample.write_day(s3, day.day, day.rows, bucket=bucket, parts=3)
    assert parts == [sample.object_key(DAY, n) for n in (1, 2, 3)]
    assert keys(s3, bucket) == sorted([sample.object_key(DAY), *parts])
    for key in keys(s3, bucket):
        year, month, dd, named, _ = KEY.fullmatch(key).groups()
        assert f"{year}-{month}-{dd}" == named == "2026-11-01"
    whole = read_csv(s3, bucket, sample.object_key(DAY))
    assert whole[0] == CONTRACT_COLUMNS and [tuple(r) for r in whole[1:]] == day.rows
    split = [read_csv(s3, bucket, key) for key in parts]
    assert all(rows[0] == CONTRACT_COLUMNS for rows in split)
    assert [tuple(r) for rows in split for r in rows[1:]] == day.rows
    assert [len(rows) - 1 for rows in split] == [33, 34, 34]


def test_write_marker_writes_the_batch_its_objects_and_counts(s3, bucket):
    key = sample.write_marker(
        s3,
        "B-MARK",
        bucket=bucket,
        objects=["transactions/a.csv", "transactions/b.csv"],
        expected_counts={"transactions": 30},
        started_at=datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
        completed_at=datetime(2026, 11, 25, 8, 0, 5, 250000, tzinfo=UTC),
    )
    assert key == "batch-completion/B-MARK.json"
    assert json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == {
        "batch_id": "B-MARK",
        "started_at": "2026-11-25T08:00:00Z",
        "completed_at": "2026-11-25T08:00:05.250Z",
        "expected_counts": {"transactions": 30},
        "objects": ["transactions/a.csv", "transactions/b.csv"],
    }
    sample.write_marker(s3, "B-BARE", bucket=bucket)
    bare = json.loads(s3.get_object(Bucket=bucket, Key="batch-completion/B-BARE.json")["Body"].read())
    assert set(bare) == {"batch_id", "started_at", "completed_at"} and ISO_UTC.fullmatch(bare["started_at"])


# -- CLI -------------------------------------------------------------------------------------------------------


@pytest.fixture
def aws_env(s3, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.meta.endpoint_url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_cli_writes_days_updates_and_the_marker(s3, bucket, aws_env, capsys):
    argv = ["batch", "--batch-id", "B1", "--start", "2026-11-01", "--days", "2", "--per-day", "40", "--seed", "5",
            "--invalid-share", "0.05", "--duplicates", "2", "--conflicts", "1", "--parts", "2",
            "--update-days", "2026-10-30,2026-10-31", "--update-share", "0.25", "--bucket", bucket]  # fmt: skip
    assert sample.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)

    updates_key = "transactions/year=2026/month=11/day=02/transactions_2026-11-02_updates.csv"
    day_keys = [sample.object_key(d, n) for d in (DAY, DAY + timedelta(days=1)) for n in (1, 2)]
    assert list(summary["objects"]) == [*day_keys, updates_key]
    assert keys(s3, bucket) == sorted([*day_keys, updates_key, "batch-completion/B1.json"])
    rows = {key: read_csv(s3, bucket, key) for key in summary["objects"]}
    assert {key: len(r) - 1 for key, r in rows.items()} == summary["objects"]
    assert all(r[0] == CONTRACT_COLUMNS for r in rows.values())

    marker = json.loads(s3.get_object(Bucket=bucket, Key="batch-completion/B1.json")["Body"].read())
    assert marker["batch_id"] == "B1" and marker["objects"] == list(summary["objects"])
    written = sum(len(r) - 1 for r in rows.values())
    assert marker["expected_counts"] == summary["expected_counts"] == {"transactions": written}
    assert marker["expected_counts"]["transactions"] == 2 * (40 + 3) + summary["updates"]
    assert ISO_UTC.fullmatch(marker["started_at"]) and marker["started_at"] <= marker["completed_at"]
    assert (summary["invalid"], summary["duplicates"], summary["conflicts"]) == (4, 4, 2)

    # the day files are generate_day's rows; the updates are those of the earlier days, regenerated
    options = {"seed": 5, "invalid_share": 0.05, "identical_duplicates": 2, "conflicting_duplicates": 1}
    first = sample.generate_day(DAY, 40, **options)
    assert [tuple(r) for k in day_keys[:2] for r in rows[k][1:]] == first.rows
    expected_updates = [u for d in (date(2026, 10, 30), date(2026, 10, 31))
                        for u in sample.update_rows(sample.generate_day(d, 40, **options), 0.25, seed=5)]  # fmt: skip
    assert [tuple(r) for r in rows[updates_key][1:]] == expected_updates
    assert summary["updates"] == len(expected_updates) > 0


def test_cli_without_marker_and_refusing_updates_inside_the_batch(s3, bucket, aws_env, capsys):
    assert sample.main(["batch", "--batch-id", "B2", "--start", "2026-11-05", "--bucket", bucket, "--no-marker"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["marker"] is None and summary["expected_counts"] == {"transactions": 15}
    assert keys(s3, bucket) == [sample.object_key(date(2026, 11, 5))]

    with pytest.raises(SystemExit):
        sample.main(["batch", "--batch-id", "B3", "--start", "2026-11-05", "--days", "2", "--bucket", bucket,
                     "--update-days", "2026-11-06"])  # fmt: skip
    assert "before --start" in capsys.readouterr().err


# -- dimensions ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


def test_add_dimensions_needs_the_warehouse_setup_then_fills_the_dimensions_once(warehouse):
    import psycopg2

    with pytest.raises(RuntimeError, match="run the e-commerce warehouse setup first"):
        sample.add_dimensions(warehouse, customers=10)

    conn = psycopg2.connect(warehouse)
    with conn, conn.cursor() as cursor:
        cursor.execute("""
            CREATE SCHEMA ecommerce;
            CREATE TABLE ecommerce.dim_customers (customer_id text PRIMARY KEY, first_name text, last_name text,
                email text, membership_level text);
            CREATE TABLE ecommerce.dim_products (product_id text PRIMARY KEY, product_name text, category text,
                price numeric(10,2), supplier_id text);
        """)
        cursor.executemany("INSERT INTO ecommerce.dim_customers VALUES (%s, %s, %s, %s, %s)",
                           [astuple(c) for c in sample.CUSTOMERS])  # fmt: skip
        cursor.executemany("INSERT INTO ecommerce.dim_products VALUES (%s, %s, %s, %s, %s)",
                           [astuple(p) for p in sample.PRODUCTS])  # fmt: skip

    assert sample.add_dimensions(warehouse, customers=40, products=25) == (35, 15)
    assert sample.add_dimensions(warehouse, customers=40, products=25, seed=99) == (0, 0)
    assert sample.add_dimensions(warehouse, customers=45) == (5, 0)

    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT customer_id FROM ecommerce.dim_customers ORDER BY 1")
        assert [r[0] for r in cursor.fetchall()] == [f"CUST{n:05d}" for n in range(1, 46)]
        cursor.execute("SELECT * FROM ecommerce.dim_customers WHERE customer_id = 'CUST00001'")
        assert cursor.fetchone() == ("CUST00001", "Yash", "Bhawsar", "yash.bha@example.com", "BR")
        cursor.execute("SELECT product_id, product_name, category, price, supplier_id FROM ecommerce.dim_products")
        dims = {r[0]: r for r in cursor.fetchall()}
    conn.close()
    assert len(dims) == 25
    assert dims["PROD00020"] == astuple(sample.product_row(20))
    # a day drawn from the added rows prices each line from the dimension's price
    day = sample.generate_day(DAY, 2000, customers=45, products=25)
    for row in day.rows:
        assert row[2] in dims and Decimal(row[4]) == dims[row[2]][3] * int(row[3])
