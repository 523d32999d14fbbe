"""The supply-chain lakehouse end to end on the local stack: the OLTP source's changes and zipped
fact drops through silver and gold to the warehouse, the summary e-mail, and every fault it must
survive.

``supply_chain_pipeline`` runs with ``dag.test()``: the three PySpark Glue jobs run on the local
Spark runtime, the warehouse load COPYs through ADBC, the crawlers catalogue silver and gold, and
the SNS messages are read back from their inbox queues. The source is the stack's ``supplychain``
database, changed as its applications would (``devstack.sample_data.supplychain``).

The module's story is shared (one source, one lakehouse): ``loaded`` runs a first drop, a working
day in the source with a late-committing transaction, a second drop that re-sends rows, and a
third small drop that picks up the late commit; the tests read what those runs left. The fault
tests each write a batch of their own and run it by id.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from devstack.sample_data import supplychain as sample
from tests.conftest import run_dag
from tests.e2e import supplychain_gold as expected_gold

pytestmark = pytest.mark.e2e

LANDING, LAKEHOUSE = sample.LANDING_BUCKET, sample.LAKEHOUSE_BUCKET
GOLD_TABLES = ("gold_supplier_performance", "gold_inventory_position", "gold_daily_shipments")
GOLD_KEYS = {
    "gold_supplier_performance": ("supplier_id",),
    "gold_inventory_position": ("warehouse_id", "product_id"),
    "gold_daily_shipments": ("ship_date", "warehouse_id"),
}
# The extract leaves to a later run what changed in the last COMMIT_LAG seconds (a transaction may
# still commit rows stamped then). Long enough for a run to reach the extract while a transaction
# the test holds open stays unseen; the working day's changes are waited out before a run.
COMMIT_LAG = 20


# -- the module's source, lakehouse and runs ---------------------------------------------------------


def _empty(s3, bucket: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])


@pytest.fixture(scope="module")
def source(stack, aws, airflow_db, sql):
    """A fresh source, empty buckets, no supplychain schema or audit trail; the commit lag set."""
    for bucket in (LANDING, LAKEHOUSE):
        _empty(aws("s3"), bucket)
    sql("DROP SCHEMA IF EXISTS supplychain CASCADE")
    if sql("SELECT 1 FROM information_schema.tables WHERE table_schema = 'audit' AND table_name = 'batches'"):
        sql("DELETE FROM audit.layer_counts WHERE pipeline = 'supplychain'")
        sql("DELETE FROM audit.batches WHERE pipeline = 'supplychain'")
    variable = "AIRFLOW_VAR_SUPPLYCHAIN_COMMIT_LAG_SECONDS"
    saved = os.environ.get(variable)
    os.environ[variable] = str(COMMIT_LAG)
    conn = sample.connect(stack["AIRFLOW_CONN_SUPPLYCHAIN_DB"])
    sample.create_source(conn)
    sample.populate(conn, suppliers=8, products=40, warehouses=3, customers=60, seed=3)
    yield conn
    conn.close()
    if saved is None:
        os.environ.pop(variable, None)
    else:
        os.environ[variable] = saved


@pytest.fixture(scope="module")
def pipeline(dags, source):
    return dags["supply_chain_pipeline"]


def run(pipeline, batch_id: str, **conf):
    dag_run, tis = run_dag(pipeline, batch_id=batch_id, **conf)
    return dag_run, {task_id: ti.state for task_id, ti in tis.items()}


def parquet_rows(aws, prefix: str) -> list[dict]:
    s3 = aws("s3")
    rows = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=LAKEHOUSE, Prefix=prefix):
        for obj in sorted(page.get("Contents", []), key=lambda o: o["Key"]):
            if obj["Key"].endswith(".parquet"):
                rows += pq.read_table(
                    io.BytesIO(s3.get_object(Bucket=LAKEHOUSE, Key=obj["Key"])["Body"].read())
                ).to_pylist()
    return rows


def rejected(aws, batch_id: str) -> list[dict]:
    s3 = aws("s3")
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=LAKEHOUSE, Prefix=f"silver/rejected/batch_id={batch_id}/"
    ):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=LAKEHOUSE, Key=obj["Key"])["Body"].read().decode()
            lines += [json.loads(line) for line in body.splitlines() if line.strip()]
    return lines


def layer_counts(sql, batch_id: str) -> dict[str, dict]:
    rows = sql(
        "SELECT layer, details FROM audit.layer_counts WHERE pipeline = 'supplychain' AND batch_id = %s", batch_id
    )
    return {layer: details["counts"] for layer, details in rows}


def silver(aws) -> dict[str, list[dict]]:
    tables = ("dim_supplier", "dim_product", "dim_warehouse", "dim_customer", "fact_shipments", "fact_purchase_orders")
    return {table: parquet_rows(aws, f"silver/{table}/") for table in tables}


def source_rows(conn, table: str) -> list[dict]:
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} ORDER BY 1")  # noqa: S608 - the four fixed table names
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    conn.rollback()
    return rows


def by_key(rows: list[dict], *key: str) -> list[dict]:
    return sorted(rows, key=lambda row: tuple(row[k] for k in key))


@pytest.fixture(scope="module")
def loaded(aws, pipeline, source, sql, stack):
    """Three drops through the pipeline, and what each left: the messages, the counts, silver."""
    s3 = aws("s3")
    inboxes = _Inboxes(aws)
    runs = {}

    first = sample.write_batch(
        s3,
        "sc-first",
        ids=sample.read_dimension_ids(source),
        shipments=300,
        purchase_orders=80,
        seed=11,
        catalog=sample.read_catalog(source),
        unknown_share=0.02,
        bad_share=0.01,
        keep_rows=True,
    )
    runs["sc-first"] = (first, *run(pipeline, "sc-first"), inboxes.read(), silver(aws))

    day = sample.working_day(source, seed=12)
    time.sleep(COMMIT_LAG + 1)  # the working day's changes are now older than the lag: the next extract reads them
    late = _LateCommit(stack["AIRFLOW_CONN_SUPPLYCHAIN_DB"])  # stamped now, committed after the next extract
    # Rows the first drop loaded, moved on (delivered, received) or sent again in an older state.
    in_silver = {
        (t, row[sample.KEY_COLUMN[t]])
        for t, table in (("shipments", "fact_shipments"), ("purchase_orders", "fact_purchase_orders"))
        for row in runs["sc-first"][4][table]
    }
    moving = [
        row
        for row in first.final_rows("shipments")
        if row["status"] == "shipped" and ("shipments", row["shipment_id"]) in in_silver
    ][:40]
    moving += [
        row
        for row in first.final_rows("purchase_orders")
        if row["status"] == "open" and ("purchase_orders", row["po_id"]) in in_silver
    ][:20]
    deleted = set(day["product"]["deleted"])
    gone = [
        row
        for row in first.final_rows("shipments")
        if row["product_id"] in deleted and ("shipments", row["shipment_id"]) in in_silver
    ][:5]
    second = sample.write_batch(
        s3,
        "sc-second",
        ids=sample.read_dimension_ids(source),
        shipments=100,
        purchase_orders=30,
        seed=13,
        start_id=first.next_id,
        catalog=sample.read_catalog(source),
        resend=moving + gone,
        resend_older=0.25,
        unknown_share=0.0,
        keep_rows=True,
    )
    runs["sc-second"] = (second, *run(pipeline, "sc-second"), inboxes.read(), silver(aws))
    late.commit()

    time.sleep(COMMIT_LAG + 1)
    third = sample.write_batch(
        s3,
        "sc-third",
        ids=sample.read_dimension_ids(source),
        shipments=20,
        purchase_orders=5,
        seed=14,
        start_id=second.next_id,
        keep_rows=True,
    )
    runs["sc-third"] = (third, *run(pipeline, "sc-third"), inboxes.read(), silver(aws))
    return {"runs": runs, "day": day, "late": late, "deleted": deleted, "gone": gone}


class _Inboxes:
    def __init__(self, aws):
        from devstack.resources import read_inbox

        self._read = lambda topic: [
            {"subject": e.get("Subject"), **json.loads(e["Message"])} for e in read_inbox(aws("sqs"), topic)
        ]
        self.read()

    def read(self) -> dict[str, list[dict]]:
        return {"success": self._read("etl-success"), "failure": self._read("etl-failure")}


class _LateCommit:
    """An application transaction that changes a supplier's lead time now and commits later."""

    def __init__(self, url: str):
        self.conn = sample.connect(url)
        with self.conn.cursor() as cursor:
            cursor.execute(
                "UPDATE supplier SET lead_time_days = lead_time_days + 100, updated_at = now() "
                "WHERE supplier_id = (SELECT min(supplier_id) FROM supplier) RETURNING supplier_id, lead_time_days"
            )
            self.supplier_id, self.lead_time_days = cursor.fetchone()

    def commit(self) -> None:
        self.conn.commit()
        self.conn.close()


# -- the happy path, batch by batch ----------------------------------------------------------------


def test_each_drop_loads_and_reconciles_layer_by_layer(loaded, sql):
    for batch_id, (batch, dag_run, states, messages, _) in loaded["runs"].items():
        assert dag_run.state == "success", (batch_id, states)
        counts = layer_counts(sql, batch_id)
        for table in ("shipments", "purchase_orders"):
            landing = counts["landing"][table]
            assert landing == batch.expected_counts[table] == len(batch.rows[table])
            assert landing == (
                counts["silver"][table]
                + counts["rejected"][f"{table}_rejected"]
                + counts["superseded"][f"{table}_superseded"]
            )
        assert counts["warehouse"] == counts["gold"]
        [success] = messages["success"]
        assert success["status"] == "SUCCESS" and success["batch_id"] == batch_id and not messages["failure"]


def test_rejected_rows_are_set_aside_with_their_place_and_reason(loaded, aws, sql):
    first = loaded["runs"]["sc-first"][0]
    rejects = rejected(aws, "sc-first")
    assert {(r["object"], r["member"], r["line"]) for r in rejects} == {
        (r.object, r.member, r.line) for r in first.rejects
    }
    assert all(set(r) == {"object", "member", "line", "reason"} and r["reason"] for r in rejects)
    unknown = [r for r in first.rejects if r.kind.startswith("unknown_")]
    reasons = {(r["object"], r["member"], r["line"]): r["reason"] for r in rejects}
    for planted in unknown:
        assert planted.kind.removeprefix("unknown_") in reasons[(planted.object, planted.member, planted.line)]
    counts = layer_counts(sql, "sc-first")["rejected"]
    assert counts["shipments_rejected"] + counts["purchase_orders_rejected"] == len(first.rejects)


def test_facts_of_a_product_deleted_in_the_source_are_rejected_with_that_reason(loaded, aws):
    assert loaded["gone"], "the first drop shipped none of the deleted products: pick another seed"
    reasons = [r["reason"] for r in rejected(aws, "sc-second")]
    for product_id in {row["product_id"] for row in loaded["gone"]}:
        assert any(f"product_id {product_id}" in reason for reason in reasons), reasons


def _orphans(batch, ids: dict[str, list[int]], table: str) -> set[int]:
    """Keys of the batch's re-sent rows that refer to a dimension row no longer in the source."""
    key, known = sample.KEY_COLUMN[table], {t: set(v) for t, v in ids.items()}
    return {
        row[key]
        for row in batch.rows[table]
        if any(row[column] not in known[dimension] for column, dimension in sample.REFERENCES[table].items())
    }


def test_silver_keeps_the_newest_copy_of_every_fact_row(loaded, aws, sql):
    second, *_, state = loaded["runs"]["sc-second"]
    ids = {
        table[len("dim_") :]: [row[f"{table[len('dim_') :]}_id"] for row in state[table]]
        for table in ("dim_supplier", "dim_product", "dim_warehouse", "dim_customer")
    }
    facts = {row["shipment_id"]: row for row in state["fact_shipments"]}
    assert len(facts) == len(state["fact_shipments"]), "a shipment is in silver twice"
    before = {row["shipment_id"]: row for row in loaded["runs"]["sc-first"][4]["fact_shipments"]}
    orphans = _orphans(second, ids, "shipments")
    newer = set(second.resent["shipments"]) - orphans
    older = set(second.resent_older["shipments"]) - orphans
    assert newer and older
    for shipment_id in newer:
        assert facts[shipment_id]["batch_id"] == "sc-second"
        assert facts[shipment_id]["updated_at"] > before[shipment_id]["updated_at"]
    for shipment_id in older:
        assert facts[shipment_id] == before[shipment_id]  # the older copy lost: silver unchanged
    superseded = layer_counts(sql, "sc-second")["superseded"]
    in_batch = {table: set(second.copied[table]) - _orphans(second, ids, table) for table in second.copied}
    lost = {table: set(second.resent_older[table]) - _orphans(second, ids, table) for table in second.copied}
    for table in ("shipments", "purchase_orders"):
        assert superseded[f"{table}_superseded"] == len(in_batch[table]) + len(lost[table]), table


def test_silver_dimensions_are_the_source_as_it_is(loaded, source):
    dims = loaded["runs"]["sc-third"][4]
    for table, key in (
        ("supplier", "supplier_id"),
        ("product", "product_id"),
        ("warehouse", "warehouse_id"),
        ("customer", "customer_id"),
    ):
        assert by_key(dims[f"dim_{table}"], key) == by_key(source_rows(source, table), key), table
    deleted = loaded["deleted"]
    assert deleted and not deleted & {row["product_id"] for row in dims["dim_product"]}


def test_a_dimension_row_committed_late_is_read_by_the_next_run(loaded):
    late = loaded["late"]
    before = {r["supplier_id"]: r for r in loaded["runs"]["sc-second"][4]["dim_supplier"]}[late.supplier_id]
    after = {r["supplier_id"]: r for r in loaded["runs"]["sc-third"][4]["dim_supplier"]}[late.supplier_id]
    assert before["lead_time_days"] != late.lead_time_days  # committed after the second run's extract
    assert after["lead_time_days"] == late.lead_time_days  # and read by the third run, not skipped


def test_gold_in_s3_and_the_warehouse_equals_an_independent_computation(loaded, aws, sql):
    state = loaded["runs"]["sc-third"][4]
    expected = {
        "gold_supplier_performance": expected_gold.supplier_performance(
            state["dim_supplier"], state["fact_purchase_orders"]
        ),
        "gold_inventory_position": expected_gold.inventory_position(
            state["fact_shipments"], state["fact_purchase_orders"]
        ),
        "gold_daily_shipments": expected_gold.daily_shipments(state["fact_shipments"]),
    }
    for table in GOLD_TABLES:
        key = GOLD_KEYS[table]
        assert by_key(parquet_rows(aws, f"gold/{table}/"), *key) == expected[table], table
        columns = list(expected[table][0])
        rows = sql(f"SELECT {', '.join(columns)} FROM supplychain.{table}")  # noqa: S608 - fixed names
        warehouse = [dict(zip(columns, row, strict=True)) for row in rows]
        assert by_key(warehouse, *key) == expected[table], table


def test_the_summary_carries_the_batchs_units_and_the_least_punctual_suppliers(loaded, sql):
    batch, _, _, messages, state = loaded["runs"]["sc-second"]
    [success] = messages["success"]
    won = [row for row in state["fact_shipments"] if row["batch_id"] == "sc-second"]
    received = [row for row in state["fact_purchase_orders"] if row["batch_id"] == "sc-second"]
    assert success["batch"] == {
        "units_shipped": sum(r["quantity"] for r in won if r["status"] != "cancelled"),
        "units_received": sum(r["quantity"] for r in received if r["status"] == "received"),
        "late_deliveries": sum(
            1
            for r in won
            if r["status"] == "delivered" and expected_gold.utc_date(r["delivered_at"]) > r["promised_date"]
        ),
    }
    performance = expected_gold.supplier_performance(state["dim_supplier"], state["fact_purchase_orders"])
    rated = sorted(
        (r for r in performance if r["on_time_rate"] is not None), key=lambda r: (r["on_time_rate"], r["supplier_id"])
    )
    assert [(s["supplier_id"], Decimal(str(s["on_time_rate"]))) for s in success["lowest_on_time_suppliers"]] == [
        (r["supplier_id"], r["on_time_rate"]) for r in rated[:3]
    ]
    assert set(success["counts"]) == {"landing", "rejected", "superseded", "silver", "gold", "warehouse"}
    assert success["counts"]["landing"] == batch.expected_counts


# -- faults ---------------------------------------------------------------------------------------------


def test_the_same_marker_again_is_a_no_op(loaded, aws, pipeline, inbox):
    first = loaded["runs"]["sc-first"][0]
    before = silver(aws)
    sample.write_marker(aws("s3"), "sc-first", first.expected_counts, objects=first.keys)

    dag_run, states = run(pipeline, "sc-first")

    assert dag_run.state == "success", states
    assert states["silver_dimensions"] == "skipped" and states["silver_facts"] == "skipped"
    [success] = inbox("etl-success-inbox")
    assert "already loaded" in success["note"]
    assert silver(aws)["fact_shipments"] == before["fact_shipments"]


@pytest.mark.parametrize(
    ("case", "members", "named"),
    [
        ("not-a-zip", None, ["erp-0001.zip", "not a zip"]),
        (
            "unknown-member",
            {"shipments-1.csv": None, "returns-1.csv": "return_id\n1\n"},
            ["erp-0001.zip", "returns-1.csv"],
        ),
        ("missing-column", {"shipments-1.csv": "drop:status"}, ["erp-0001.zip", "shipments-1.csv", "status"]),
    ],
)
def test_a_drop_that_breaks_the_file_contract_is_refused_naming_the_object(
    source, aws, pipeline, inbox, case, members, named
):
    s3 = aws("s3")
    batch_id = f"sc-{case}"
    good = sample.write_batch(
        s3,
        f"{batch_id}-rows",
        ids=sample.read_dimension_ids(source),
        shipments=10,
        purchase_orders=0,
        seed=21,
        marker=False,
        keep_rows=True,
    )
    rows = good.rows["shipments"]
    header = list(sample.SHIPMENT_COLUMNS)
    if members is None:
        body = b"this is not a zip archive\n" * 10
    else:
        contents = {}
        for name, text in members.items():
            if text is None:
                text = sample.csv_text(header, rows)
            elif text.startswith("drop:"):
                dropped = text.removeprefix("drop:")
                text = sample.csv_text(
                    [c for c in header if c != dropped], [{k: v for k, v in r.items() if k != dropped} for r in rows]
                )
            contents[name] = text
        body = sample.zip_bytes(contents)
    key = sample.write_object(s3, batch_id, "erp-0001.zip", body)
    sample.write_marker(s3, batch_id, {"shipments": len(rows), "purchase_orders": 0}, objects=[key])
    before = silver(aws)["fact_shipments"]

    dag_run, tis = run_dag(pipeline, batch_id=batch_id)

    assert dag_run.state == "failed" and tis["silver_facts"].state == "failed"
    assert tis["silver_facts"].try_number == 1  # refused: not retried
    [failure] = inbox("etl-failure-inbox")
    for text in named:
        assert text in failure["error"], failure["error"]
    assert silver(aws)["fact_shipments"] == before


def test_a_dimension_schema_drift_stops_at_the_gate_naming_the_expectation(source, aws, pipeline, inbox):
    s3 = aws("s3")
    with source.cursor() as cursor:
        cursor.execute("ALTER TABLE customer RENAME COLUMN segment TO customer_segment")
    source.commit()
    try:
        sample.write_batch(
            s3, "sc-drift", ids=sample.read_dimension_ids(source), shipments=10, purchase_orders=2, seed=31
        )
        dag_run, states = run(pipeline, "sc-drift")
    finally:
        with source.cursor() as cursor:
            cursor.execute("ALTER TABLE customer RENAME COLUMN customer_segment TO segment")
        source.commit()

    assert dag_run.state == "failed" and states["check_silver_schema"] == "failed", states
    assert states["silver_facts"] in ("upstream_failed", None) and states["gold"] in ("upstream_failed", None)
    [failure] = inbox("etl-failure-inbox")
    assert "dim_customer" in failure["error"] and "segment" in failure["error"], failure["error"]
    assert "expect_" in failure["error"], failure["error"]


def test_silver_facts_killed_mid_run_is_retried_to_the_same_silver(source, aws, pipeline, sql, inbox):
    import psutil

    s3 = aws("s3")
    batch = sample.write_batch(
        s3,
        "sc-killed",
        ids=sample.read_dimension_ids(source),
        shipments=2000,
        purchase_orders=400,
        seed=41,
        start_id={"shipments": 900_000, "purchase_orders": 900_000},
        keep_rows=True,
    )
    killed = []

    def kill_first_run():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            for process in psutil.process_iter(["cmdline", "create_time"]):
                cmdline = " ".join(process.info["cmdline"] or [])
                if "supplychain_silver_facts" in cmdline and "sc-killed" in cmdline and "java" not in cmdline:
                    if time.time() - process.info["create_time"] > 6:
                        process.kill()
                        killed.append(process.pid)
                        return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_run, daemon=True)
    killer.start()
    dag_run, tis = run_dag(pipeline, batch_id="sc-killed")
    killer.join(timeout=5)

    assert killed, "the job was never caught running"
    assert dag_run.state == "success"
    assert tis["silver_facts"].try_number == 2
    facts = silver(aws)["fact_shipments"]
    keys = [row["shipment_id"] for row in facts]
    assert len(keys) == len(set(keys)), "a shipment is in silver twice"
    counts = layer_counts(sql, "sc-killed")
    assert counts["landing"] == batch.expected_counts
    assert sum(1 for row in facts if row["batch_id"] == "sc-killed") == counts["silver"]["shipments"]


def test_a_ready_merge_made_before_a_later_batch_loaded_is_merged_again(source, aws, pipeline, sql):
    """silver_facts of a batch stopped with its merge ready; a later batch has loaded since. Run
    again, the batch must merge into silver as it is now, not swap in its stale tables."""
    s3 = aws("s3")
    ids = sample.read_dimension_ids(source)
    earlier = sample.write_batch(
        s3,
        "sc-before-stale",
        ids=ids,
        shipments=30,
        purchase_orders=5,
        seed=51,
        start_id={"shipments": 800_000, "purchase_orders": 800_000},
    )
    assert run(pipeline, "sc-before-stale")[0].state == "success"
    before = {row["shipment_id"] for row in silver(aws)["fact_shipments"]}
    stale = sample.write_batch(
        s3, "sc-stale", ids=ids, shipments=30, purchase_orders=5, seed=52, start_id=earlier.next_id
    )
    work = "_work/supplychain_silver_facts/batch_id=sc-stale/"
    record = {
        "report": {"batch_id": "sc-stale"},
        "rejects": None,
        "base": {"fact_shipments": []},
        "tables": {"fact_shipments": [f"{work}fact_shipments/part-00000-stale.parquet"]},
    }
    s3.put_object(Bucket=LAKEHOUSE, Key=f"{work}_READY.json", Body=json.dumps(record).encode())

    dag_run, states = run(pipeline, "sc-stale")

    assert dag_run.state == "success", states
    after = {row["shipment_id"]: row for row in silver(aws)["fact_shipments"]}
    assert before <= set(after)  # nothing rolled back
    assert layer_counts(sql, "sc-stale")["landing"] == stale.expected_counts
    assert (
        sum(1 for row in after.values() if row["batch_id"] == "sc-stale")
        == layer_counts(sql, "sc-stale")["silver"]["shipments"]
    )
