"""The orders pipeline end to end on the local stack: a good batch, and every bad batch and fault.

Each test writes its batch into hour partitions of its own (a distinct day), so a corrupt or
drifted file in one test never reaches another test's batch, and runs ``orders_pipeline`` with
``dag.test()``: the deferrable sensor finds the marker, the Glue jobs and crawlers really run,
and the SNS messages are read back from their inbox queues.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from devstack.sample_data.orders import write_marker, write_orders_batch
from tests.conftest import run_dag

pytestmark = pytest.mark.e2e

LANDING = "fo-to-dw-orders-landing-area"
def final_lines(warehouse, batch_id: str) -> int:
    return warehouse("SELECT count(*) FROM orders.fact_order_lines WHERE run_id = %s", batch_id)[0][0]


def batch_status(warehouse, batch_id: str):
    rows = warehouse("SELECT status FROM audit.batches WHERE pipeline = 'orders' AND batch_id = %s", batch_id)
    return rows[0][0] if rows else None


def key_exists(aws, key: str) -> bool:
    return "Contents" in aws("s3").list_objects_v2(Bucket=LANDING, Prefix=key)


def put_parquet(aws, key: str, table) -> None:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    aws("s3").put_object(Bucket=LANDING, Key=key, Body=buffer.getvalue())


def hour_prefix(start: datetime) -> str:
    return f"orders/year={start:%Y}/month={start:%m}/day={start:%d}/hour={start:%H}/"


def landing_tables(aws, prefix: str):
    """Every landing file under a prefix, read back as a pyarrow table."""
    import pyarrow.parquet as pq

    s3 = aws("s3")
    for obj in s3.list_objects_v2(Bucket=LANDING, Prefix=prefix).get("Contents", []):
        yield pq.read_table(io.BytesIO(s3.get_object(Bucket=LANDING, Key=obj["Key"])["Body"].read()))


# -- the good path ------------------------------------------------------------------------------


def test_a_batch_loads_reconciles_at_every_layer_and_reports_success(aws, orders_dag, inbox, warehouse, batch_start):
    marker = write_orders_batch(aws("s3"), LANDING, "e2e-good", orders=400, seed=11, started_at=batch_start)
    expected = marker["expected_counts"]

    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    assert final_lines(warehouse, "e2e-good") == expected["order_lines"]
    layers = dict(warehouse("SELECT layer, row_count FROM audit.layer_counts WHERE batch_id = %s", "e2e-good"))
    assert layers == {
        "landing": expected["orders"],  # the landing row's primary count is distinct orders
        "staging": expected["order_lines"],
        "warehouse_staging": expected["order_lines"],
        "final": expected["order_lines"],
    }
    assert batch_status(warehouse, "e2e-good") == "SUCCESS"
    [success] = inbox("etl-success-inbox")
    assert success["subject"] == "SUCCESS orders e2e-good"
    assert success["counts"]["final"] == {"order_lines": expected["order_lines"]}
    assert success["counts"]["landing"] == expected
    assert inbox("etl-failure-inbox") == []
    # The marker is archived, so the sensor never takes it twice.
    assert not key_exists(aws, "batch-completion/e2e-good.json")
    assert key_exists(aws, "batch-archive/loaded/e2e-good.json")
    # line_amount = quantity × unit_price, order_date = UTC date of order_ts.
    assert warehouse(
        "SELECT count(*) FROM orders.fact_order_lines WHERE run_id = %s "
        "AND (line_amount <> quantity * unit_price OR order_date <> (order_ts AT TIME ZONE 'UTC')::date)",
        "e2e-good",
    ) == [(0,)]


def test_the_same_marker_again_changes_nothing_and_says_so(aws, orders_dag, inbox, warehouse, batch_start):
    write_orders_batch(aws("s3"), LANDING, "e2e-again", orders=150, seed=12, started_at=batch_start)
    assert run_dag(orders_dag)[0].state == "success"
    before = warehouse(
        "SELECT order_id, line_number, loaded_at FROM orders.fact_order_lines WHERE run_id = %s ORDER BY 1, 2",
        "e2e-again",
    )
    inbox("etl-success-inbox")

    write_marker(
        aws("s3"),
        LANDING,
        "e2e-again",
        aws("s3").get_object(Bucket=LANDING, Key="batch-archive/loaded/e2e-again.json")["Body"].read().decode(),
    )
    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "success"
    assert tis["landing_to_staging"].state == "skipped" and tis["load_final_table"].state == "skipped"
    after = warehouse(
        "SELECT order_id, line_number, loaded_at FROM orders.fact_order_lines WHERE run_id = %s ORDER BY 1, 2",
        "e2e-again",
    )
    assert after == before
    [success] = inbox("etl-success-inbox")
    assert "already loaded" in success["note"] and "no-op" in success["note"]


def test_a_reprocessed_batch_gives_the_same_warehouse_state(aws, orders_dag, warehouse, batch_start):
    write_orders_batch(aws("s3"), LANDING, "e2e-rerun", orders=150, seed=13, started_at=batch_start)
    assert run_dag(orders_dag)[0].state == "success"
    snapshot = (
        "SELECT order_id, line_number, product_code, quantity, line_amount "
        "FROM orders.fact_order_lines WHERE run_id = %s ORDER BY 1, 2"
    )
    before = warehouse(snapshot, "e2e-rerun")

    dag_run, tis = run_dag(orders_dag, batch_id="e2e-rerun", reprocess=True)

    assert dag_run.state == "success" and tis["load_final_table"].state == "success"
    assert warehouse(snapshot, "e2e-rerun") == before


def test_an_empty_batch_succeeds_with_zero_counts(aws, orders_dag, inbox, warehouse, batch_start):
    end = batch_start + timedelta(hours=1)
    write_marker(
        aws("s3"), LANDING, "e2e-empty",
        {"batch_id": "e2e-empty", "started_at": batch_start.isoformat(), "completed_at": end.isoformat(),
         "expected_counts": {"orders": 0, "order_lines": 0}},
    )  # fmt: skip

    dag_run, _ = run_dag(orders_dag)

    assert dag_run.state == "success"
    messages = inbox("etl-success-inbox")
    assert [m["subject"] for m in messages] == ["SUCCESS orders e2e-empty"]
    [success] = messages
    assert success["counts"]["landing"] == {"orders": 0, "order_lines": 0}
    assert success["counts"]["final"] == {"order_lines": 0}


def test_three_markers_at_once_load_three_batches_once_each_oldest_first(
    aws, orders_dag, inbox, warehouse, batch_start
):
    expected = {}
    for number, batch_id in enumerate(["e2e-three-a", "e2e-three-b", "e2e-three-c"]):
        start = batch_start + timedelta(hours=3 * number)
        expected[batch_id] = write_orders_batch(
            aws("s3"), LANDING, batch_id, orders=80, seed=20 + number, started_at=start
        )["expected_counts"]["order_lines"]
        time.sleep(1.1)  # S3 LastModified has one-second resolution: make "oldest first" observable

    for _ in expected:  # the continuous schedule: one run after the other
        assert run_dag(orders_dag)[0].state == "success"

    claimed = warehouse("SELECT batch_id FROM audit.batches WHERE batch_id LIKE 'e2e-three-%%' ORDER BY claimed_at")
    assert [batch_id for (batch_id,) in claimed] == list(expected)
    for batch_id, lines in expected.items():
        assert final_lines(warehouse, batch_id) == lines
    assert [m["subject"] for m in inbox("etl-success-inbox")] == [f"SUCCESS orders {b}" for b in expected]


def test_an_order_delivered_again_in_a_later_batch_with_fewer_lines_loses_its_old_lines(
    aws, orders_dag, warehouse, batch_start
):
    import pyarrow as pa

    write_orders_batch(aws("s3"), LANDING, "e2e-first", orders=60, seed=14, started_at=batch_start, duplicate_rate=0)
    assert run_dag(orders_dag)[0].state == "success"
    order_id, lines = warehouse(
        "SELECT order_id, count(*) FROM orders.fact_order_lines WHERE run_id = %s "
        "GROUP BY 1 HAVING count(*) > 1 LIMIT 1",
        "e2e-first",
    )[0]

    # Batch two re-delivers that order with only its first product.
    later = batch_start + timedelta(hours=5)
    day = hour_prefix(batch_start).rsplit("hour=", 1)[0]
    table = next(t for t in landing_tables(aws, day) if order_id in t["order_id"].to_pylist())
    source = next(row for row in table.to_pylist() if row["order_id"] == order_id)
    row = {**source, "products": source["products"][:1], "run_id": "e2e-second", "processing_ts": later}
    put_parquet(aws, f"{hour_prefix(later)}redelivery.parquet", pa.Table.from_pylist([row], schema=table.schema))
    write_marker(
        aws("s3"), LANDING, "e2e-second",
        {"batch_id": "e2e-second", "started_at": later.isoformat(), "completed_at": later.isoformat(),
         "expected_counts": {"orders": 1, "order_lines": 1}},
    )  # fmt: skip

    assert run_dag(orders_dag)[0].state == "success"

    assert lines > 1
    assert warehouse("SELECT line_number, run_id FROM orders.fact_order_lines WHERE order_id = %s", order_id) == [
        (1, "e2e-second")
    ]


def redeliver(aws, batch_start: datetime, batch_id: str, at: datetime, products_of: dict) -> None:
    """A batch ``batch_id`` processed at ``at`` that re-delivers orders of the batch written at
    ``batch_start`` with new products (order id -> products list, [] or None), and its marker."""
    import pyarrow as pa

    day = hour_prefix(batch_start).rsplit("hour=", 1)[0]
    rows, schema = [], None
    for table in landing_tables(aws, day):
        for source in table.to_pylist():
            if source["order_id"] in products_of:
                products = products_of[source["order_id"]]
                rows.append({**source, "products": products, "run_id": batch_id, "processing_ts": at})
                schema = table.schema
    assert sorted(r["order_id"] for r in rows) == sorted(products_of), "each order must be found once"
    put_parquet(aws, f"{hour_prefix(at)}redelivery-{batch_id}.parquet", pa.Table.from_pylist(rows, schema=schema))
    lines = sum(len(products or []) for products in products_of.values())
    write_marker(
        aws("s3"), LANDING, batch_id,
        {"batch_id": batch_id, "started_at": at.isoformat(), "completed_at": at.isoformat(),
         "expected_counts": {"orders": len(products_of), "order_lines": lines}},
    )  # fmt: skip


def orders_with_lines(warehouse, batch_id: str, count: int) -> list[tuple[str, int]]:
    """``count`` orders of the batch with more than one line: (order_id, lines)."""
    return warehouse(
        "SELECT order_id, count(*) FROM orders.fact_order_lines WHERE run_id = %s "
        "GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT %s",
        batch_id,
        count,
    )


def layer_counts(warehouse, batch_id: str) -> dict[str, int]:
    return dict(warehouse("SELECT layer, row_count FROM audit.layer_counts WHERE batch_id = %s", batch_id))


def test_an_order_delivered_again_with_no_products_loses_its_lines(aws, orders_dag, warehouse, batch_start):
    marker = write_orders_batch(
        aws("s3"), LANDING, "e2e-nolines-1", orders=60, seed=31, started_at=batch_start, duplicate_rate=0
    )
    assert run_dag(orders_dag)[0].state == "success"
    (emptied, emptied_lines), (nulled, nulled_lines) = orders_with_lines(warehouse, "e2e-nolines-1", 2)

    # Batch two re-delivers one order with an empty products list and one with null products:
    # both mean "no lines" (docs/interfaces.md), so both orders must lose every line.
    redeliver(aws, batch_start, "e2e-nolines-2", batch_start + timedelta(hours=5), {emptied: [], nulled: None})
    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    assert warehouse("SELECT count(*) FROM orders.fact_order_lines WHERE order_id IN (%s, %s)", emptied, nulled) == [
        (0,)
    ]
    assert final_lines(warehouse, "e2e-nolines-1") == (
        marker["expected_counts"]["order_lines"] - emptied_lines - nulled_lines
    )
    assert layer_counts(warehouse, "e2e-nolines-2") == {
        "landing": 2, "staging": 0, "warehouse_staging": 0, "final": 0,
    }  # fmt: skip


def test_reprocessing_an_older_batch_after_a_newer_one_keeps_the_newer_lines(
    aws, orders_dag, inbox, warehouse, batch_start
):
    marker = write_orders_batch(
        aws("s3"), LANDING, "e2e-older", orders=60, seed=32, started_at=batch_start, duplicate_rate=0
    )
    assert run_dag(orders_dag)[0].state == "success"
    expected = marker["expected_counts"]["order_lines"]
    (shrunk, shrunk_lines), (emptied, emptied_lines) = orders_with_lines(warehouse, "e2e-older", 2)
    first_product = warehouse(
        "SELECT product_code, product_name, quantity, unit_price FROM orders.fact_order_lines "
        "WHERE order_id = %s AND line_number = 1",
        shrunk,
    )[0]

    # A newer batch re-delivers one order with only its first product and one with none.
    newer = batch_start + timedelta(hours=5)
    products = [dict(zip(["product_code", "product_name", "quantity", "unit_price"], first_product, strict=True))]
    redeliver(aws, batch_start, "e2e-newer", newer, {shrunk: products, emptied: []})
    assert run_dag(orders_dag)[0].state == "success"
    snapshot = "SELECT * FROM orders.fact_order_lines WHERE order_id IN (%s, %s) ORDER BY 1, 2"
    newer_state = warehouse(snapshot, shrunk, emptied)
    assert [(row[0], row[1], row[11]) for row in newer_state] == [(shrunk, 1, "e2e-newer")]
    inbox("etl-success-inbox")

    # Reprocessing the older batch must not bring its older versions of those orders back.
    dag_run, tis = run_dag(orders_dag, batch_id="e2e-older", reprocess=True)

    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    assert tis["load_final_table"].state == "success" and tis["reconcile"].state == "success"
    assert warehouse(snapshot, shrunk, emptied) == newer_state
    # The older batch keeps every other order; its final count still reconciles with landing,
    # counting the lines of its orders that a newer version superseded (count_final.sql).
    assert final_lines(warehouse, "e2e-older") == expected - shrunk_lines - emptied_lines
    assert layer_counts(warehouse, "e2e-older")["final"] == expected
    [success] = inbox("etl-success-inbox")
    assert success["counts"]["final"] == {"order_lines": expected}

    # Rerunning the newer batch changes nothing either.
    before = warehouse("SELECT order_id, line_number, run_id, line_amount FROM orders.fact_order_lines "
                       "WHERE run_id IN ('e2e-older', 'e2e-newer') ORDER BY 1, 2")  # fmt: skip
    assert run_dag(orders_dag, batch_id="e2e-newer", reprocess=True)[0].state == "success"
    assert warehouse("SELECT order_id, line_number, run_id, line_amount FROM orders.fact_order_lines "
                     "WHERE run_id IN ('e2e-older', 'e2e-newer') ORDER BY 1, 2") == before  # fmt: skip


# -- bad input and faults -------------------------------------------------------------------------


def test_a_marker_that_is_not_json_fails_naming_the_marker_and_loads_nothing(aws, orders_dag, inbox, warehouse):
    write_marker(aws("s3"), LANDING, "e2e-not-json", "{this is not json")

    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "failed" and tis["claim_batch"].state == "failed"
    [failure] = inbox("etl-failure-inbox")
    assert failure["subject"] == "FAILURE orders e2e-not-json"
    assert failure["task_id"] == "claim_batch"
    assert "batch-completion/e2e-not-json.json" in failure["error"] and "not valid JSON" in failure["error"]
    assert final_lines(warehouse, "e2e-not-json") == 0
    # Set aside with its reason, so the batches behind it are not blocked.
    assert not key_exists(aws, "batch-completion/e2e-not-json.json")
    reason = json.loads(
        aws("s3").get_object(Bucket=LANDING, Key="batch-archive/failed/e2e-not-json.reason.json")["Body"].read()
    )
    assert "not valid JSON" in reason["error"]


def test_a_marker_whose_batch_id_differs_from_its_name_fails(aws, orders_dag, inbox):
    write_marker(aws("s3"), LANDING, "e2e-named", {"batch_id": "something-else", "expected_counts": {}})

    dag_run, _ = run_dag(orders_dag)

    assert dag_run.state == "failed"
    [failure] = inbox("etl-failure-inbox")
    assert "says batch_id 'something-else' but its file name says 'e2e-named'" in failure["error"]


def test_a_key_that_is_not_a_marker_is_rejected_and_never_processed(aws, orders_dag, warehouse, batch_start):
    aws("s3").put_object(Bucket=LANDING, Key="batch-completion/not a batch id.txt", Body=b"{}")
    write_orders_batch(aws("s3"), LANDING, "e2e-after-junk", orders=30, seed=15, started_at=batch_start)

    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "success"
    assert batch_status(warehouse, "e2e-after-junk") == "SUCCESS"
    assert key_exists(aws, "batch-archive/rejected/not a batch id.txt")
    assert not key_exists(aws, "batch-completion/not a batch id.txt")


def test_expected_counts_that_disagree_with_the_data_fail_with_the_counts_table(
    aws, orders_dag, inbox, warehouse, batch_start
):
    marker = write_orders_batch(
        aws("s3"), LANDING, "e2e-short", orders=100, seed=16, started_at=batch_start, write_marker=False
    )
    claimed = dict(marker["expected_counts"], order_lines=marker["expected_counts"]["order_lines"] + 3)
    write_marker(aws("s3"), LANDING, "e2e-short", {**marker, "expected_counts": claimed})

    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "failed" and tis["count_landing"].state == "failed"
    # The jobs beside the landing audit wrote the batch's own staging; the final load never ran.
    assert tis["count_staging"].state == "upstream_failed" and tis["load_final_table"].state == "upstream_failed"
    assert final_lines(warehouse, "e2e-short") == 0
    [failure] = inbox("etl-failure-inbox")
    landed = marker["expected_counts"]["order_lines"]
    assert f"landing has {landed} order_lines, the marker expects {claimed['order_lines']}" in failure["error"]
    assert "marker (expected)" in failure["error"]  # the counts table
    assert failure["counts"]["landing"]["order_lines"] == marker["expected_counts"]["order_lines"]
    assert final_lines(warehouse, "e2e-short") == 0
    assert batch_status(warehouse, "e2e-short") == "FAILED"


@contextmanager
def losing_one_staged_line(warehouse_dsn: str, batch_id: str):
    """The warehouse's staging table loses one of the batch's lines as it is loaded: a trigger
    deletes one after the Glue job's COPY, in the job's transaction. Removed afterwards."""
    import psycopg2

    def run(statement: str) -> None:
        with psycopg2.connect(warehouse_dsn) as conn, conn.cursor() as cursor:
            cursor.execute(statement)

    run(f"""
        CREATE OR REPLACE FUNCTION orders.e2e_lose_one_line() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM orders.stg_order_lines WHERE ctid IN (
                SELECT ctid FROM orders.stg_order_lines WHERE run_id = '{batch_id}' LIMIT 1);
            RETURN NULL;
        END $$;
        CREATE TRIGGER e2e_lose_one_line AFTER INSERT ON orders.stg_order_lines
            FOR EACH STATEMENT EXECUTE FUNCTION orders.e2e_lose_one_line();
    """)  # fmt: skip
    try:
        yield
    finally:
        run("DROP TRIGGER IF EXISTS e2e_lose_one_line ON orders.stg_order_lines; "
            "DROP FUNCTION IF EXISTS orders.e2e_lose_one_line();")  # fmt: skip


def test_a_line_lost_on_the_way_into_the_warehouse_stops_the_batch_before_the_final_load(
    aws, orders_dag, inbox, warehouse, warehouse_dsn, batch_start
):
    """The final load takes the warehouse staging table's audit count before it loads: one line
    fewer than staging fails the batch at that layer, and the final table never sees it."""
    marker = write_orders_batch(aws("s3"), LANDING, "e2e-lost-line", orders=50, seed=41, started_at=batch_start)
    lines = marker["expected_counts"]["order_lines"]

    with losing_one_staged_line(warehouse_dsn, "e2e-lost-line"):
        dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "failed" and tis["load_final_table"].state == "failed"
    assert tis["staging_to_warehouse_staging"].state == "success"
    [failure] = inbox("etl-failure-inbox")
    assert failure["task_id"] == "load_final_table"
    assert f"does not reconcile at layer warehouse_staging: warehouse_staging has {lines - 1} order_lines" in (
        failure["error"]
    )
    assert failure["counts"]["staging"]["order_lines"] == lines
    assert failure["counts"]["warehouse_staging"]["order_lines"] == lines - 1
    assert "final" not in failure["counts"]
    assert final_lines(warehouse, "e2e-lost-line") == 0
    assert batch_status(warehouse, "e2e-lost-line") == "FAILED"
    assert key_exists(aws, "batch-archive/failed/e2e-lost-line.json")


@pytest.fixture
def planted(aws):
    """Keys of landing objects a test plants to break its batch, deleted after it: a later test
    whose marker has no window reads the footers of every object under the landing prefix."""
    keys: list[str] = []
    yield keys
    for key in keys:
        aws("s3").delete_object(Bucket=LANDING, Key=key)


def test_a_corrupt_parquet_file_fails_naming_the_object_and_loads_nothing(
    aws, orders_dag, inbox, warehouse, batch_start, planted
):
    write_orders_batch(
        aws("s3"), LANDING, "e2e-corrupt", orders=50, seed=17, started_at=batch_start, write_marker=False
    )
    corrupt_key = f"{hour_prefix(batch_start)}corrupt-delivery.parquet"
    planted.append(corrupt_key)
    aws("s3").put_object(Bucket=LANDING, Key=corrupt_key, Body=b"PAR1 this is not a parquet file")
    write_marker(
        aws("s3"),
        LANDING,
        "e2e-corrupt",
        {
            "batch_id": "e2e-corrupt",
            "started_at": batch_start.isoformat(),
            "completed_at": (batch_start + timedelta(hours=3)).isoformat(),
        },
    )

    dag_run, tis = run_dag(orders_dag)

    # Both jobs that read landing fail on the object, side by side: the run announces one failure.
    assert dag_run.state == "failed"
    assert tis["audit_landing"].state == "failed" and tis["landing_to_staging"].state == "failed"
    [failure] = inbox("etl-failure-inbox")
    assert corrupt_key in failure["error"]
    assert final_lines(warehouse, "e2e-corrupt") == 0


@pytest.mark.parametrize("drift", ["missing column", "wrong type"])
def test_schema_drift_fails_the_schema_check_with_the_failed_expectations(
    aws, orders_dag, inbox, warehouse, batch_start, drift, planted
):
    import pyarrow as pa
    import pyarrow.compute as pc

    batch_id = f"e2e-drift-{drift.replace(' ', '-')}"
    marker = write_orders_batch(
        aws("s3"), LANDING, batch_id, orders=40, seed=18, started_at=batch_start, write_marker=False
    )
    table = next(landing_tables(aws, hour_prefix(batch_start)))
    if drift == "missing column":
        table = table.drop_columns(["currency"])
        expectation = "expect_table_columns_to_match_set"
    else:
        table = table.set_column(
            table.schema.get_field_index("order_ts"), "order_ts", pc.cast(table["order_ts"], pa.string())
        )
        expectation = "expect_column_arrow_type_to_be"
    planted.append(f"{hour_prefix(batch_start)}drifted.parquet")
    put_parquet(aws, planted[-1], table.filter(pc.equal(table["run_id"], batch_id)))
    write_marker(aws("s3"), LANDING, batch_id, {**marker, "expected_counts": {}})

    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "failed" and tis["check_landing_schema"].state == "failed"
    [failure] = inbox("etl-failure-inbox")
    assert expectation in failure["error"]
    assert ("currency" if drift == "missing column" else "order_ts") in failure["error"]
    assert final_lines(warehouse, batch_id) == 0


def test_a_glue_job_that_dies_mid_run_is_retried_and_converges_without_duplicates(
    aws, orders_dag, warehouse, batch_start
):
    import psutil

    marker = write_orders_batch(aws("s3"), LANDING, "e2e-killed", orders=3000, seed=19, started_at=batch_start)
    killed = []

    def kill_first_load():
        """SIGKILL the first warehouse load process of this batch once it has been running a moment."""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            for process in psutil.process_iter(["cmdline", "create_time"]):
                cmdline = " ".join(process.info["cmdline"] or [])
                if "orders_staging_to_warehouse_staging.py" in cmdline and "e2e-killed" in cmdline:
                    if time.time() - process.info["create_time"] > 0.8:
                        process.kill()
                        killed.append(process.pid)
                        return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_first_load, daemon=True)
    killer.start()
    dag_run, tis = run_dag(orders_dag)
    killer.join(timeout=5)

    assert killed, "the load job was never caught running"
    assert dag_run.state == "success"
    assert tis["staging_to_warehouse_staging"].try_number == 2
    lines = marker["expected_counts"]["order_lines"]
    assert final_lines(warehouse, "e2e-killed") == lines
    assert warehouse("SELECT count(*) FROM orders.stg_order_lines WHERE run_id = %s", "e2e-killed") == [(lines,)]


@contextmanager
def queued_run(dag_id: str):
    """A run of the DAG waiting in the queue, as the UI's trigger button leaves one behind a
    continuous DAG's active run; deleted afterwards."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    run_id = f"manual__queued-{uuid.uuid4().hex[:8]}"
    with create_session() as session:
        session.add(
            DagRun(
                dag_id=dag_id,
                run_id=run_id,
                run_type=DagRunType.MANUAL,
                state=DagRunState.QUEUED,
                run_after=datetime.now(UTC),
                triggered_by=DagRunTriggeredByType.UI,
                conf={},
            )
        )
    try:
        yield run_id
    finally:
        with create_session() as session:
            session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).delete()


def test_a_run_waiting_for_a_marker_makes_way_for_a_run_queued_from_the_ui(aws, orders_dag, inbox, capfd):
    """A continuous DAG has one active run: a run triggered from the UI queues behind the run that
    waits for the next marker. That run's trigger sees the queued run and ends the wait, skipped,
    so the queued run can start; nothing else of it runs and nothing is published."""
    pending = aws("s3").list_objects_v2(Bucket=LANDING, Prefix="batch-completion/").get("Contents", [])
    assert pending == [], "an earlier test left a marker pending, so the sensor would not wait"

    with queued_run("orders_pipeline"):
        _, tis = run_dag(orders_dag)

    assert {task: ti.state for task, ti in tis.items() if ti.state != "skipped"} == {}
    assert "1 queued run(s) of orders_pipeline" in capfd.readouterr().out
    assert inbox("etl-success-inbox") == [] and inbox("etl-failure-inbox") == []
