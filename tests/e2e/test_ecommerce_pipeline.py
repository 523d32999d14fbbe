"""The e-commerce pipeline end to end on the local stack: a batch with every kind of bad row,
updates, and every fault the pipeline must survive.

Each test writes the days of its own (distinct dates, so distinct transaction ids) and a marker
that names its objects, so no test's objects become another's batch; the one test of the
listing rule (a marker without ``objects``) empties ``transactions/`` first. ``ecommerce_pipeline``
runs with ``dag.test()``: the sensor finds the marker, the crawlers and the Glue job really run,
and the SNS messages are read back from their inbox queues.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from devstack.runs import task_return_value
from devstack.sample_data import ecommerce as sample
from tests.conftest import run_dag

pytestmark = pytest.mark.e2e

RAW, ARCHIVE = sample.RAW_BUCKET, sample.ARCHIVE_BUCKET
_days = iter(range(0, 900, 5))


@pytest.fixture
def day():
    """A first day of its own for each test: tests use at most five days from it."""
    return date(2024, 1, 1) + timedelta(days=next(_days))


@pytest.fixture(scope="module")
def no_ecommerce(stack, aws, airflow_db, sql):
    """No trace of e-commerce batches in S3 or the warehouse: the module starts from nothing."""
    s3 = aws("s3")
    for bucket in (RAW, ARCHIVE):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
    sql("DROP SCHEMA IF EXISTS ecommerce CASCADE")
    if sql("SELECT 1 FROM information_schema.tables WHERE table_schema = 'audit' AND table_name = 'batches'"):
        sql("DELETE FROM audit.layer_counts WHERE pipeline = 'ecommerce'")
        sql("DELETE FROM audit.batches WHERE pipeline = 'ecommerce'")


@pytest.fixture
def pipeline(dags, no_ecommerce):
    return dags["ecommerce_pipeline"]


def write_batch(aws, batch_id: str, *days: sample.Day, extra_rows: dict | None = None) -> tuple[list[str], int]:
    """Each day's CSV, then the marker naming them; returns (keys, data rows)."""
    s3 = aws("s3")
    keys = [key for one in days for key in sample.write_day(s3, one)]
    rows = sum(len(one.rows) for one in days)
    for on, extra in (extra_rows or {}).items():
        keys.append(sample.write_updates(s3, on, extra))
        rows += len(extra)
    sample.write_marker(s3, batch_id, objects=keys, expected_counts={"transactions": rows})
    return keys, rows


def run(pipeline, **conf):
    dag_run, tis = run_dag(pipeline, **conf)
    return dag_run, {task: ti.state for task, ti in tis.items()}


def layer_counts(sql, batch_id: str) -> dict:
    rows = sql(
        "SELECT layer, details->'counts' FROM audit.layer_counts WHERE pipeline = 'ecommerce' AND batch_id = %s",
        batch_id,
    )
    return {layer: counts for layer, counts in rows}


def keys_in(aws, bucket: str, keys: list[str]) -> list[str]:
    s3 = aws("s3")
    return [key for key in keys if s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount")]


def fact(sql, transaction_ids) -> dict[str, tuple]:
    rows = sql(
        "SELECT transaction_id, customer_email, product_name, quantity, total_price::text, status, batch_id, loaded_at "
        "FROM ecommerce.fact_transactions WHERE transaction_id = ANY(%s)",
        list(transaction_ids),
    )
    return {row[0]: row[1:] for row in rows or []}


def rejected(sql, batch_id: str) -> dict[tuple[str, int], tuple[str, str]]:
    rows = sql(
        "SELECT object_key, line_number, rule, reason FROM ecommerce.rejected_transactions WHERE batch_id = %s",
        batch_id,
    )
    return {(key, line): (rule, reason) for key, line, rule, reason in rows or []}


# -- a batch with every kind of row --------------------------------------------------------------------------

REASONS = {  # the stage job's reason for each kind of invalid row the generator writes
    "unknown_customer": ("reference", "customer_id"),
    "unknown_product": ("reference", "product_id"),
    "zero_quantity": ("format", "quantity 0 is below 1"),
    "bad_price": ("format", "price"),
    "bad_date": ("format", "transaction_date"),
    "unknown_status": ("format", "status"),
}


def test_a_batch_loads_its_valid_rows_rejects_each_bad_one_with_its_reason_and_is_archived(
    aws, pipeline, inbox, sql, day
):
    first = sample.generate_day(day, 120, seed=3, invalid_share=0.05, identical_duplicates=2, conflicting_duplicates=1)
    second = sample.generate_day(day + timedelta(days=1), 60, seed=3)
    keys, rows = write_batch(aws, "ec-kinds", first, second)
    assert set(first.invalid.values()) == set(REASONS)

    dag_run, states = run(pipeline)

    assert dag_run.state == "success", states
    key = keys[0]
    found = rejected(sql, "ec-kinds")
    for index, kind in first.invalid.items():
        rule, reason = found.pop((key, index + 2))  # line 1 is the header
        assert (rule, REASONS[kind][1] in reason) == (REASONS[kind][0], True), (kind, reason)
    conflicting = {i for pair in first.conflicts.items() for i in pair}
    for index in conflicting:
        rule, reason = found.pop((key, index + 2))
        assert rule == "conflicting_duplicate" and "different values" in reason
    assert not found, f"rejected rows the generator did not spoil: {found}"

    rejects = len(first.invalid) + len(conflicting)
    duplicates = len(first.duplicates)
    valid = rows - rejects - duplicates
    counts = layer_counts(sql, "ec-kinds")
    assert counts["landing"]["transactions"] == rows
    assert counts["rejected"]["rejected"] == rejects
    assert counts["duplicates_dropped"]["duplicates_dropped"] == duplicates
    assert counts["valid"]["transactions"] == valid
    assert counts["final"] == {"transactions": valid, "inserted": valid, "updated": 0, "unchanged": 0, "superseded": 0}

    # The fact table carries the dimensions' e-mail and product name for each loaded row.
    loaded_row = first.rows[first.valid[0]]
    customer = next(c for c in sample.CUSTOMERS if c.customer_id == loaded_row[1])
    product = next(p for p in sample.PRODUCTS if p.product_id == loaded_row[2])
    assert fact(sql, [loaded_row[0]])[loaded_row[0]][:2] == (customer.email, product.product_name)

    # Every object moved to the archive under its key, byte for byte; none left in raw.
    assert keys_in(aws, RAW, keys) == []
    assert keys_in(aws, ARCHIVE, keys) == keys
    archived = aws("s3").get_object(Bucket=ARCHIVE, Key=key)["Body"].read()
    assert archived == sample.csv_bytes(first.rows)

    [success] = inbox("etl-success-inbox")
    assert success["subject"] == "SUCCESS ecommerce ec-kinds"
    assert success["counts"]["final"]["inserted"] == valid
    assert success["counts"]["rejected"] == {"rejected": rejects}
    assert success["counts"]["duplicates_dropped"] == {"duplicates_dropped": duplicates}
    catalog = aws("glue").get_table(DatabaseName="etl_catalog", Name="warehouse_ecommerce_fact_transactions")["Table"]
    assert [c["Name"] for c in catalog["StorageDescriptor"]["Columns"]][:2] == ["transaction_id", "customer_id"]


def test_an_update_batch_updates_rows_in_place_and_leaves_unchanged_rows_alone(aws, pipeline, sql, inbox, day):
    original = sample.generate_day(day, 40, seed=5)
    write_batch(aws, "ec-update-1", original)
    assert run(pipeline)[0].state == "success"
    before = fact(sql, [row[0] for row in original.rows])

    updates = sample.update_rows(original, 0.25, seed=5)
    changed = {row[0] for row in updates}
    untouched = [row for row in original.rows if row[0] not in changed][:5]  # sent again, exactly as they were
    write_batch(aws, "ec-update-2", extra_rows={day + timedelta(days=1): updates + untouched})
    dag_run, states = run(pipeline)

    assert dag_run.state == "success", states
    after = fact(sql, [row[0] for row in original.rows])
    for transaction_id, values in after.items():
        if transaction_id in changed:
            assert values[5] == "ec-update-2" and values != before[transaction_id]
        else:
            assert values == before[transaction_id], "an unchanged row moved (its batch or loaded_at changed)"
    final = layer_counts(sql, "ec-update-2")["final"]
    assert (final["inserted"], final["updated"], final["unchanged"]) == (0, len(updates), len(untouched))
    refunded = [row for row in updates if row[7] == "Refunded"]
    assert refunded and all(after[row[0]][4] == "Refunded" for row in refunded)


def test_an_older_batch_loaded_again_does_not_undo_a_newer_one(aws, pipeline, sql, inbox, day):
    original = sample.generate_day(day, 20, seed=6)
    write_batch(aws, "ec-old", original)
    assert run(pipeline)[0].state == "success"
    updates = sample.update_rows(original, 0.5, seed=6)
    write_batch(aws, "ec-new", extra_rows={day + timedelta(days=1): updates})
    assert run(pipeline)[0].state == "success"
    newest = fact(sql, [row[0] for row in original.rows])

    # The old batch's objects are archived: put them back, as an operator reprocessing it would.
    s3 = aws("s3")
    for key in sample.write_day(s3, original):
        assert key
    dag_run, states = run(pipeline, batch_id="ec-old", reprocess=True)

    assert dag_run.state == "success", states
    assert fact(sql, [row[0] for row in original.rows]) == newest
    final = layer_counts(sql, "ec-old")["final"]
    assert (final["superseded"], final["updated"]) == (len(updates), 0)


# -- bad batches ---------------------------------------------------------------------------------------------


def test_a_batch_over_the_rejected_share_fails_and_loads_nothing(aws, pipeline, sql, inbox, day):
    bad = sample.generate_day(day, 50, seed=8, invalid_share=0.2)
    keys, _ = write_batch(aws, "ec-too-many", bad)

    dag_run, states = run(pipeline)

    assert dag_run.state == "failed"
    assert states["upsert_transactions"] == "failed"
    assert fact(sql, [row[0] for row in bad.rows]) == {}
    assert keys_in(aws, RAW, keys) == keys and keys_in(aws, ARCHIVE, keys) == []
    [failure] = inbox("etl-failure-inbox")
    assert failure["task_id"] == "upsert_transactions"
    assert "rows rejected" in failure["error"] and "over the limit of 5.0%" in failure["error"]
    assert sql("SELECT status FROM audit.batches WHERE pipeline = 'ecommerce' AND batch_id = 'ec-too-many'") == [
        ("FAILED",)
    ]


@pytest.mark.parametrize("broken", ["missing", "extra"])
def test_a_csv_with_a_missing_or_an_extra_column_fails_the_schema_check(aws, pipeline, inbox, day, broken):
    import csv
    import io

    rows = sample.generate_day(day, 10, seed=9).rows
    if broken == "missing":
        named, header, body = (
            "payment_type",
            [c for c in sample.COLUMNS if c != "payment_type"],
            [r[:6] + r[7:] for r in rows],
        )
    else:
        named, header, body = "coupon_code", [*sample.COLUMNS, "coupon_code"], [(*r, "X1") for r in rows]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *body])
    key = sample.object_key(day)
    aws("s3").put_object(Bucket=RAW, Key=key, Body=text.getvalue().encode())
    sample.write_marker(aws("s3"), f"ec-schema-{broken}", objects=[key])

    dag_run, states = run(pipeline)

    assert dag_run.state == "failed" and states["check_raw_schema"] == "failed", states
    assert states["stage_transactions"] == "upstream_failed"
    [failure] = inbox("etl-failure-inbox")
    assert "expect_table_columns_to_match_set" in failure["error"]
    assert named in failure["error"] and key in failure["error"]
    aws("s3").delete_object(Bucket=RAW, Key=key)


def test_a_marker_naming_a_missing_object_fails_naming_it(aws, pipeline, inbox, day):
    present = sample.write_day(aws("s3"), sample.generate_day(day, 5, seed=10))
    missing = sample.object_key(day + timedelta(days=1))
    sample.write_marker(aws("s3"), "ec-missing-object", objects=[*present, missing])

    dag_run, states = run(pipeline)

    assert dag_run.state == "failed", states
    [failure] = inbox("etl-failure-inbox")
    assert missing in failure["error"]
    assert keys_in(aws, RAW, present) == present  # a failed batch's objects stay where they are
    for key in present:
        aws("s3").delete_object(Bucket=RAW, Key=key)


# -- faults --------------------------------------------------------------------------------------------------


def test_the_same_marker_again_is_a_no_op(aws, pipeline, sql, inbox, day):
    one = sample.generate_day(day, 10, seed=12)
    keys, rows = write_batch(aws, "ec-twice", one)
    assert run(pipeline)[0].state == "success"
    inbox("etl-success-inbox")
    loaded = fact(sql, [row[0] for row in one.rows])

    sample.write_marker(aws("s3"), "ec-twice", objects=keys, expected_counts={"transactions": rows})
    dag_run, states = run(pipeline)

    assert dag_run.state == "success", states
    assert states["stage_transactions"] == "skipped"
    # The archive step runs again for an already-loaded batch, and finds everything archived.
    assert states["archive_objects"] == "success"
    assert task_return_value(dag_run, "archive_objects")["already archived"] == len(keys)
    assert fact(sql, [row[0] for row in one.rows]) == loaded
    [success] = inbox("etl-success-inbox")
    assert "already loaded" in success["note"]


def test_an_archive_killed_after_half_its_objects_converges_when_run_again(aws, pipeline, sql, monkeypatch, day):
    from etl_toolkit import s3 as toolkit_s3

    days = [sample.generate_day(day + timedelta(days=n), 5, seed=13) for n in range(4)]
    keys, _ = write_batch(aws, "ec-archive-crash", *days)
    real_delete, deleted = toolkit_s3.delete_original, []

    def dies_after_two(client, bucket, key):
        if len(deleted) == 2:  # the third object is copied, then the worker dies before the delete
            deleted.append(None)
            raise RuntimeError("worker lost between copy and delete")
        deleted.append(key)
        real_delete(client, bucket, key)

    monkeypatch.setattr(toolkit_s3, "delete_original", dies_after_two)
    dag_run, states = run(pipeline)

    # The task's retry ran the archive again: everything moved once, nothing left, nothing lost.
    assert dag_run.state == "success", states
    assert keys_in(aws, RAW, keys) == [] and keys_in(aws, ARCHIVE, keys) == keys
    result = task_return_value(dag_run, "archive_objects")
    assert (result["moved"], result.get("already archived", 0)) == (2, 2)
    for one, key in zip(days, keys, strict=True):
        assert aws("s3").get_object(Bucket=ARCHIVE, Key=key)["Body"].read() == sample.csv_bytes(one.rows)


def test_three_markers_at_once_load_once_each_oldest_first(aws, pipeline, sql, inbox, day):
    batches = {}
    for n in range(3):
        one = sample.generate_day(day + timedelta(days=n), 8, seed=14 + n)
        batches[f"ec-three-{n}"] = write_batch(aws, f"ec-three-{n}", one)[0]

    claimed = []
    for _ in batches:
        dag_run, states = run(pipeline)
        assert dag_run.state == "success", states
        claimed.append(task_return_value(dag_run, "claim_batch", key="claim")["batch_id"])

    assert claimed == sorted(batches)
    loads = sql("SELECT batch_id, inserted FROM ecommerce.batch_loads WHERE batch_id LIKE 'ec-three-%%' ORDER BY 1")
    assert loads == [(batch_id, 8) for batch_id in sorted(batches)]
    assert len(inbox("etl-success-inbox")) == 3


def test_a_marker_without_objects_takes_every_csv_under_transactions(aws, pipeline, sql, day):
    s3 = aws("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=RAW, Prefix=sample.PREFIX):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=RAW, Key=obj["Key"])
    days = [sample.generate_day(day + timedelta(days=n), 6, seed=20) for n in range(2)]
    keys = [key for one in days for key in sample.write_day(s3, one)]
    s3.put_object(Bucket=RAW, Key=f"{sample.PREFIX}_SUCCESS", Body=b"")  # not data: skipped
    sample.write_marker(s3, "ec-listed")

    dag_run, states = run(pipeline)

    assert dag_run.state == "success", states
    objects = sql("SELECT object_key FROM ecommerce.batch_objects WHERE batch_id = 'ec-listed' ORDER BY 1")
    assert [key for (key,) in objects] == sorted(keys)
    assert keys_in(aws, ARCHIVE, keys) == keys
    assert json.loads(json.dumps(layer_counts(sql, "ec-listed")["landing"]))["transactions"] == 12
