"""devstack.sample_data.supplychain's fact archives: deterministic zips of CSV members with the
contract's columns, counts that match the marker, the shares of cancelled, late and unknown rows,
malformed rows where ``rejects`` says, and copies and re-sent rows whose updated_at says which wins."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from devstack.sample_data import supplychain as sc

IDS = {
    "supplier": list(range(1, 26)),
    "product": list(range(1, 401)),
    "warehouse": list(range(1, 9)),
    "customer": list(range(1, 2001)),
}


def _objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def _members(body: bytes) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name).decode("utf-8") for name in archive.namelist()}


def _read_back(s3, bucket: str, batch: sc.Batch) -> dict[str, list[tuple[str, str, int, dict]]]:
    """Every data row of the batch as the pipeline reads it: (object, member, line, fields as text), per table."""
    rows: dict[str, list] = {table: [] for table in sc.FACT_TABLES}
    for key in batch.keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for member, text in _members(body).items():
            table = "shipments" if member.rsplit("/", 1)[-1].startswith("shipments") else "purchase_orders"
            reader = csv.DictReader(io.StringIO(text))
            assert tuple(reader.fieldnames) == sc.COLUMNS[table]
            rows[table] += [(key, member, n + 2, record) for n, record in enumerate(reader)]
    return rows


def _timestamp(text: str) -> datetime:
    assert text.endswith("+00:00"), text
    return datetime.fromisoformat(text)


def test_the_same_seed_writes_the_same_archives_and_another_seed_others(s3, bucket):
    first = sc.write_batch(s3, "D1", ids=IDS, shipments=300, purchase_orders=80, seed=5, bucket=bucket)
    again = sc.write_batch(s3, "D2", ids=IDS, shipments=300, purchase_orders=80, seed=5, bucket=bucket)
    other = sc.write_batch(s3, "D3", ids=IDS, shipments=300, purchase_orders=80, seed=6, bucket=bucket)

    def bodies(batch):
        return [body for _key, body in sorted(_objects(s3, bucket, f"incoming/{batch.batch_id}/").items())]

    assert bodies(first) == bodies(again)  # byte for byte, zip entry times included
    assert first.rows == again.rows
    assert [r._replace(object=r.object.replace("D1", "D2")) for r in first.rejects] == again.rejects
    assert bodies(first) != bodies(other) and first.rows != other.rows


def test_archives_hold_csv_members_whose_rows_add_up_to_the_markers_counts(s3, bucket):
    batch = sc.write_batch(
        s3, "F1", ids=IDS, shipments=1000, purchase_orders=200, archives=4, members_per_archive=2, bucket=bucket
    )

    assert batch.keys == [
        f"incoming/F1/{name}" for name in ("erp-0001.zip", "crm-0001.zip", "pm-0001.zip", "erp-0002.zip")
    ]
    objects = _objects(s3, bucket, "incoming/F1/")
    assert sorted(objects) == sorted(batch.keys)
    first = _members(objects[batch.keys[0]])
    assert list(first) == [
        "shipments-0001.csv",
        "shipments-0002.csv",
        "purchase_orders-0001.csv",
        "purchase_orders-0002.csv",
    ]
    assert all(text.startswith(",".join(sc.COLUMNS[name.split("-")[0]]) + "\n") for name, text in first.items())
    assert all(text.endswith("\n") and "\r" not in text for text in first.values())

    rows = _read_back(s3, bucket, batch)
    counts = {table: len(found) for table, found in rows.items()}
    # New rows plus the copies sent twice within the batch.
    assert counts == {"shipments": 1000 + 10, "purchase_orders": 200 + 2} == batch.expected_counts
    assert batch.members == {
        key: {name: text.count("\n") - 1 for name, text in _members(objects[key]).items()} for key in batch.keys
    }
    per_member = [n for members in batch.members.values() for n in members.values()]
    assert max(per_member) - min(per_member) > 0 and min(per_member) > 0  # each table cut evenly over 8 members
    marker = json.loads(s3.get_object(Bucket=bucket, Key="batch-completion/F1.json")["Body"].read())
    assert marker == batch.marker
    assert marker["batch_id"] == "F1" and marker["objects"] == batch.keys
    assert marker["expected_counts"] == {"shipments": 1010, "purchase_orders": 202}
    assert marker["started_at"] <= marker["completed_at"]
    assert batch.next_id == {"shipments": 1001, "purchase_orders": 201}


def test_rows_as_written_match_the_kept_python_values(s3, bucket):
    batch = sc.write_batch(s3, "V1", ids=IDS, shipments=400, purchase_orders=100, seed=2, bucket=bucket)

    rows = _read_back(s3, bucket, batch)
    for table in sc.FACT_TABLES:
        written = [record for _key, _member, _line, record in rows[table]]
        assert written == [{c: sc._cell(row[c]) for c in sc.COLUMNS[table]} for row in batch.rows[table]]
        assert [sc._csv_line(sc.COLUMNS[table], row) for row in batch.rows[table]] == [
            ",".join(record.values()) for record in written
        ]


def test_shipments_look_real_and_hold_the_shares_asked(s3, bucket):
    batch = sc.write_batch(
        s3,
        "S1",
        ids=IDS,
        shipments=20_000,
        purchase_orders=0,
        unknown_share=0,
        resend_in_batch_share=0,
        seed=11,
        bucket=bucket,
    )
    rows = batch.rows["shipments"]

    assert [row["shipment_id"] for row in rows] == list(range(1, 20_001))
    assert {row["status"] for row in rows} == {"shipped", "delivered", "cancelled"}
    assert all(isinstance(row["quantity"], int) and row["quantity"] >= 1 for row in rows)
    assert all(date(2026, 3, 1) <= row["shipped_at"].date() < date(2026, 3, 8) for row in rows)
    assert all(row["promised_date"] > row["shipped_at"].date() for row in rows)
    assert all(row["updated_at"] >= row["shipped_at"] for row in rows)
    delivered = [row for row in rows if row["status"] == "delivered"]
    assert all(
        row["delivered_at"] > row["shipped_at"] and row["updated_at"] >= row["delivered_at"] for row in delivered
    )
    assert all(row["delivered_at"] is None for row in rows if row["status"] != "delivered")
    cancelled = sum(row["status"] == "cancelled" for row in rows) / len(rows)
    late = sum(row["delivered_at"].date() > row["promised_date"] for row in delivered) / len(delivered)
    assert 0.04 < cancelled < 0.06 and 0.08 < late < 0.12
    assert 0.55 < len(delivered) / len(rows) < 0.65
    assert batch.rejects == [] and batch.expected_counts == {"shipments": 20_000, "purchase_orders": 0}
    assert all(
        list(members) == [f"shipments-{n:04d}.csv" for n in (1, 2)]
        or list(members) == [f"shipments-{n:04d}.csv" for n in (3, 4)]
        for members in batch.members.values()
    )


def test_purchase_orders_look_real_and_follow_the_catalog(s3, bucket):
    catalog = sc.Catalog(
        product_supplier={p: 1 + p % 20 for p in IDS["product"]},
        unit_cost={p: Decimal(p) + Decimal("0.99") for p in IDS["product"]},
        lead_time_days={s: 5 + s for s in IDS["supplier"]},
    )
    batch = sc.write_batch(
        s3,
        "P1",
        ids=IDS,
        shipments=0,
        purchase_orders=10_000,
        catalog=catalog,
        unknown_share=0,
        resend_in_batch_share=0,
        seed=12,
        bucket=bucket,
    )
    rows = batch.rows["purchase_orders"]

    assert {row["status"] for row in rows} == {"open", "received", "cancelled"}
    assert all(row["quantity"] >= 1 for row in rows)
    received = [row for row in rows if row["status"] == "received"]
    assert 0.5 < len(received) / len(rows) < 0.6
    assert 0.04 < sum(row["status"] == "cancelled" for row in rows) / len(rows) < 0.08
    assert all(
        timedelta(hours=1) <= row["received_at"] - row["ordered_at"] <= timedelta(days=40, hours=4) for row in received
    )
    assert all(row["received_at"] is None for row in rows if row["status"] != "received")
    usual = sum(row["supplier_id"] == catalog.product_supplier[row["product_id"]] for row in rows) / len(rows)
    assert usual > 0.9
    for row in rows:
        cost = catalog.unit_cost[row["product_id"]]
        assert cost * Decimal("0.94") <= row["unit_cost"] <= cost * Decimal("1.06")
        assert row["unit_cost"] == row["unit_cost"].quantize(Decimal("0.01"))
    # Suppliers differ in punctuality: the on-time share of the worst is well below the best's.
    on_time: dict[int, list[bool]] = {}
    for row in received:
        days = (row["received_at"].date() - row["ordered_at"].date()).days
        on_time.setdefault(row["supplier_id"], []).append(days <= catalog.lead_time_days[row["supplier_id"]])
    rates = [sum(flags) / len(flags) for flags in on_time.values() if len(flags) > 50]
    assert max(rates) - min(rates) > 0.15


def test_a_share_of_rows_refers_to_unknown_ids_and_rejects_say_where(s3, bucket):
    batch = sc.write_batch(
        s3,
        "U1",
        ids=IDS,
        shipments=3000,
        purchase_orders=1000,
        unknown_share=0.02,
        seed=4,
        archives=3,
        members_per_archive=2,
        bucket=bucket,
    )

    rows = _read_back(s3, bucket, batch)
    found = []
    for table, records in rows.items():
        for key, member, line, record in records:
            unknown = [d for c, d in sc.REFERENCES[table].items() if int(record[c]) not in IDS[d]]
            if unknown:
                [dimension] = unknown  # one bad reference per row
                found.append((key, member, line, table, int(record[sc.KEY_COLUMN[table]]), f"unknown_{dimension}"))
    assert sorted(found) == sorted(batch.rejects)
    assert sum(r.table == "shipments" for r in batch.rejects) == 60
    assert sum(r.table == "purchase_orders" for r in batch.rejects) == 20
    assert {r.kind for r in batch.rejects} == {
        "unknown_customer",
        "unknown_product",
        "unknown_warehouse",
        "unknown_supplier",
    }
    # The positions are in the order written: archive by archive, member by member, line by line.
    order = [(batch.keys.index(r.object), list(batch.members[r.object]).index(r.member), r.line) for r in batch.rejects]
    assert order == sorted(order)


def test_malformed_rows_of_each_kind_are_where_rejects_say(s3, bucket):
    batch = sc.write_batch(
        s3,
        "M1",
        ids=IDS,
        shipments=400,
        purchase_orders=400,
        unknown_share=0,
        bad_share=0.02,
        member_folder="export/2026-03-08/",
        seed=8,
        bucket=bucket,
    )

    rows = {
        (key, member, line): record
        for records in _read_back(s3, bucket, batch).values()
        for key, member, line, record in records
    }
    assert all(member.startswith("export/2026-03-08/") for members in batch.members.values() for member in members)
    assert len(batch.rejects) == 16
    kinds = {(r.table, r.kind) for r in batch.rejects}
    assert kinds == {(t, k) for t in sc.FACT_TABLES for k in sc.BAD_KINDS[t]}
    for reject in batch.rejects:
        record = rows[reject.object, reject.member, reject.line]
        assert int(record[sc.KEY_COLUMN[reject.table]]) == reject.key
        if reject.kind == sc.ZERO_QUANTITY:
            assert record["quantity"] == "0"
        elif reject.kind == sc.FRACTIONAL_QUANTITY:
            assert record["quantity"].endswith(".5")
        elif reject.kind == sc.UNKNOWN_STATUS:
            assert record["status"] not in sc.STATUSES[reject.table]
        elif reject.kind == sc.DECIMAL_COMMA:
            assert "," in record["unit_cost"]  # one field, thanks to the quotes
        else:
            column = "shipped_at" if reject.table == "shipments" else "ordered_at"
            with pytest.raises(ValueError):
                datetime.fromisoformat(record[column])
    good = [record for key, record in rows.items() if key not in {(r.object, r.member, r.line) for r in batch.rejects}]
    assert all(int(record["quantity"]) >= 1 for record in good)


def test_copies_within_a_batch_are_an_earlier_state_with_an_older_updated_at(s3, bucket):
    batch = sc.write_batch(
        s3,
        "C1",
        ids=IDS,
        shipments=2000,
        purchase_orders=1000,
        resend_in_batch_share=0.05,
        unknown_share=0,
        seed=9,
        bucket=bucket,
    )

    assert batch.expected_counts == {"shipments": 2100, "purchase_orders": 1050}
    for table, open_status in (("shipments", "shipped"), ("purchase_orders", "open")):
        key_column = sc.KEY_COLUMN[table]
        copies: dict[int, list[tuple[int, dict]]] = {}
        for place, row in enumerate(batch.rows[table]):
            copies.setdefault(row[key_column], []).append((place, row))
        twice = {key: found for key, found in copies.items() if len(found) == 2}
        assert sorted(twice) == sorted(batch.copied[table]) and len(twice) == len(batch.copied[table]) == 50 * (
            2 if table == "shipments" else 1
        )
        earlier_first = 0
        for key, found in twice.items():
            [(_, earlier)] = [(p, row) for p, row in found if row["status"] == open_status]
            [(_, final)] = [(p, row) for p, row in found if row["status"] != open_status]
            assert earlier["updated_at"] < final["updated_at"]
            earlier_first += found[0][1] is earlier
            assert batch.final_rows(table)[key - 1] is final
        assert 0 < earlier_first < len(twice)  # placed at random: the earlier state comes first or last


def test_resent_rows_carry_new_values_and_a_newer_updated_at_or_an_older_one(s3, bucket):
    first = sc.write_batch(
        s3, "R1", ids=IDS, shipments=500, purchase_orders=500, unknown_share=0, seed=1, bucket=bucket
    )
    earlier = first.final_rows("shipments")[:200] + first.final_rows("purchase_orders")[:200]
    second = sc.write_batch(
        s3,
        "R2",
        ids=IDS,
        shipments=100,
        purchase_orders=100,
        unknown_share=0,
        resend=earlier,
        resend_older=0.1,
        start_id=first.next_id,
        seed=2,
        bucket=bucket,
    )

    assert second.expected_counts == {"shipments": 100 + 1 + 200, "purchase_orders": 100 + 1 + 200}
    assert min(r["shipment_id"] for r in second.rows["shipments"] if r["shipment_id"] > 500) == 501
    for table in sc.FACT_TABLES:
        key_column = sc.KEY_COLUMN[table]
        before = {row[key_column]: row for row in earlier if key_column in row}
        after = {row[key_column]: row for row in second.rows[table] if row[key_column] in before}
        assert sorted(second.resent[table] + second.resent_older[table]) == sorted(before) == sorted(after)
        assert len(second.resent_older[table]) == 20
        for key in second.resent[table]:
            old, new = before[key], after[key]
            assert new["updated_at"] > old["updated_at"]
            assert {c: v for c, v in new.items() if c != "updated_at"} != {
                c: v for c, v in old.items() if c != "updated_at"
            }
        for key in second.resent_older[table]:
            assert after[key]["updated_at"] < before[key]["updated_at"]
        moved = {(before[k]["status"], after[k]["status"]) for k in second.resent[table]}
        expected = {("shipped", "delivered"), ("open", "received")}
        assert moved & expected
    shipped_then_delivered = [
        (before, second_row)
        for before in earlier
        if "shipment_id" in before and before["status"] == "shipped"
        for second_row in second.rows["shipments"]
        if second_row["shipment_id"] == before["shipment_id"] and second_row["status"] == "delivered"
    ]
    assert all(
        new["delivered_at"] > new["shipped_at"] and new["updated_at"] >= new["delivered_at"]
        for _old, new in shipped_then_delivered
    )
    assert second.rejects == []


def test_resent_rows_that_refer_to_a_deleted_product_are_rejects():
    s3 = _Memory()
    first = sc.write_batch(
        s3, "X1", ids=IDS, shipments=200, purchase_orders=0, unknown_share=0, resend_in_batch_share=0
    )
    deleted = first.rows["shipments"][0]["product_id"]
    referring = [row for row in first.rows["shipments"] if row["product_id"] == deleted]
    now = {**IDS, "product": [p for p in IDS["product"] if p != deleted]}

    second = sc.write_batch(
        s3,
        "X2",
        ids=now,
        shipments=10,
        purchase_orders=0,
        unknown_share=0,
        resend_in_batch_share=0,
        resend=referring,
        start_id=first.next_id,
    )

    assert sorted(r.key for r in second.rejects) == sorted(row["shipment_id"] for row in referring)
    assert {r.kind for r in second.rejects} == {"unknown_product"}


def test_large_batches_keep_no_rows_unless_asked():
    s3 = _Memory()
    large = sc.write_batch(s3, "L1", ids=IDS, shipments=sc.KEEP_ROWS_UP_TO, purchase_orders=1, resend_in_batch_share=0)
    assert large.rows is None and large.expected_counts == {"shipments": sc.KEEP_ROWS_UP_TO, "purchase_orders": 1}
    kept = sc.write_batch(s3, "L2", ids=IDS, shipments=10, purchase_orders=10, keep_rows=False)
    assert kept.rows is None
    with pytest.raises(ValueError, match="not kept"):
        kept.final_rows("shipments")


def test_options_for_fault_tests(s3, bucket):
    silent = sc.write_batch(s3, "O1", ids=IDS, shipments=10, purchase_orders=0, marker=False, bucket=bucket)
    assert silent.marker == {} and _objects(s3, bucket, "batch-completion/O1") == {}
    assert all(
        list(members) == [f"shipments-{n:04d}.csv" for n in (1, 2)]
        or list(members) == [f"shipments-{n:04d}.csv" for n in (3, 4)]
        for members in silent.members.values()
    )

    unlisted = sc.write_batch(
        s3,
        "O2",
        ids=IDS,
        shipments=10,
        purchase_orders=5,
        objects_in_marker=False,
        expected={"shipments": 99, "purchase_orders": 5},
        line_end="\r\n",
        bucket=bucket,
    )
    assert "objects" not in unlisted.marker and unlisted.marker["expected_counts"]["shipments"] == 99
    assert unlisted.expected_counts["shipments"] == 10  # what was written
    text = _members(s3.get_object(Bucket=bucket, Key=unlisted.keys[0])["Body"].read())["shipments-0001.csv"]
    assert text.startswith("shipment_id,customer_id,") and text.count("\r\n") == text.count("\n") == 3


def test_helpers_write_any_member_object_and_marker(s3, bucket):
    text = sc.csv_text(
        ("po_id", "quantity", "unit_cost", "ordered_at", "received_at", "note"),
        [
            {
                "po_id": 1,
                "quantity": 5,
                "unit_cost": Decimal("2.5"),
                "ordered_at": datetime(2026, 3, 1, 8, tzinfo=UTC),
                "received_at": None,
                "note": 'say "hi", twice',
            },
            (2, "0", "1,50", "2026-02-30T09:00:00+00:00", date(2026, 3, 2), "x"),
        ],
    )
    assert text == (
        "po_id,quantity,unit_cost,ordered_at,received_at,note\n"
        '1,5,2.50,2026-03-01T08:00:00+00:00,,"say ""hi"", twice"\n'
        '2,0,"1,50",2026-02-30T09:00:00+00:00,2026-03-02,x\n'
    )
    body = sc.zip_bytes({"in/a folder/purchase_orders-x.csv": text, "readme.txt": b"\x00raw"})
    assert body == sc.zip_bytes({"in/a folder/purchase_orders-x.csv": text, "readme.txt": b"\x00raw"})
    assert _members(body)["in/a folder/purchase_orders-x.csv"] == text

    key = sc.write_object(s3, "H1", "not-a-zip.zip", b"plain text", bucket=bucket)
    assert key == "incoming/H1/not-a-zip.zip"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"plain text"
    marker = sc.write_marker(s3, "H1", {"shipments": 0, "purchase_orders": 1}, objects=[key], bucket=bucket)
    stored = json.loads(s3.get_object(Bucket=bucket, Key="batch-completion/H1.json")["Body"].read())
    assert stored == marker and stored["objects"] == [key]
    assert stored["expected_counts"] == {"shipments": 0, "purchase_orders": 1}
    assert "objects" not in sc.write_marker(s3, "H2", None, bucket=bucket)


def test_invalid_options_are_refused():
    s3 = _Memory()
    with pytest.raises(ValueError):
        sc.write_batch(s3, "E1", ids=IDS, shipments=-1)
    with pytest.raises(ValueError):
        sc.write_batch(s3, "E2", ids=IDS, unknown_share=0.6, resend_in_batch_share=0.6)
    with pytest.raises(ValueError, match="customer"):
        sc.write_batch(s3, "E3", ids={**IDS, "customer": []}, shipments=1)
    with pytest.raises(ValueError, match="neither"):
        sc.write_batch(s3, "E4", ids=IDS, resend=[{"id": 1}])
    assert s3.objects == {}


def test_the_cli_writes_a_batch_and_prints_what_it_wrote(s3, bucket, moto_endpoint, monkeypatch, capsys):
    for name, value in (
        ("AWS_ENDPOINT_URL", moto_endpoint),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ):
        monkeypatch.setenv(name, value)

    code = sc.main(
        [
            "batch",
            "--batch-id",
            "K1",
            "--shipments",
            "200",
            "--purchase-orders",
            "100",
            "--no-source",
            "--first-po-id",
            "1000",
            "--bucket",
            bucket,
            "--archives",
            "3",
            "--members",
            "1",
        ]
    )

    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["expected_counts"] == {"shipments": 202, "purchase_orders": 101}
    assert summary["next_id"] == {"shipments": 201, "purchase_orders": 1100}
    assert list(summary["objects"]) == [
        "incoming/K1/erp-0001.zip",
        "incoming/K1/crm-0001.zip",
        "incoming/K1/pm-0001.zip",
    ]
    assert summary["marker"]["objects"] == list(summary["objects"]) and summary["rejects"] == 3


class _Memory:
    """Enough of an S3 client for write_batch, in memory."""

    def __init__(self):
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_object(self, Bucket, Key, Body, **_):  # noqa: N803 (boto3's names)
        self.objects[Bucket, Key] = Body
