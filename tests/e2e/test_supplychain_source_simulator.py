"""devstack.sample_data.supplychain on the local stack: the OLTP source created, filled and changed in
the ``supplychain`` database as the application role (``supplychain_app``), and a batch of fact
archives, drawn from the source's keys, in the landing bucket."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from devstack.sample_data import supplychain as sc

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def conn(stack):
    connection = sc.connect(stack["AIRFLOW_CONN_SUPPLYCHAIN_DB"])
    yield connection
    connection.close()


def _state(conn) -> dict[str, dict[int, tuple]]:
    """Every row of every table: key -> (created_at, updated_at, the other columns)."""
    state = {}
    with conn, conn.cursor() as cursor:
        for table in sc.SOURCE_TABLES:
            cursor.execute(f"SELECT * FROM {table}")  # fixed names
            names = [column.name for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            state[table] = {
                row[f"{table}_id"]: (row.pop("created_at"), row.pop("updated_at"), row) for row in rows
            }  # fmt: skip
    return state


def _now(conn):
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def test_a_working_day_inserts_updates_and_deletes_rows_as_the_applications_do(conn):
    sc.create_source(conn)
    counts = sc.populate(conn, suppliers=20, products=300, warehouses=6, customers=500, seed=3)
    assert counts == {"supplier": 20, "product": 300, "warehouse": 6, "customer": 500}
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == "supplychain_app"
    before, started = _state(conn), _now(conn)
    assert all(updated < started for rows in before.values() for _created, updated, _row in rows.values())

    changes = sc.working_day(conn, seed=5, deletes={"customer": 3, "warehouse": 1})

    after = _state(conn)
    for table in sc.SOURCE_TABLES:
        inserted, updated, deleted = (changes[table][what] for what in ("inserted", "updated", "deleted"))
        assert inserted and updated, table
        assert not set(inserted) & set(updated) and not (set(inserted) | set(updated)) & set(deleted)
        assert min(inserted) > max(before[table])  # new ids, after every id there was
        assert set(after[table]) == (set(before[table]) | set(inserted)) - set(deleted)
        for key in inserted:
            created_at, updated_at, _row = after[table][key]
            assert created_at == updated_at >= started
        for key in updated:
            _created, updated_at, row = after[table][key]
            assert updated_at >= started > before[table][key][1]
            assert row != before[table][key][2]  # a value changed with it
        untouched = set(before[table]) - set(updated) - set(deleted)
        assert all(after[table][key] == before[table][key] for key in untouched)
    assert len(changes["product"]["deleted"]) == 1 and len(changes["customer"]["deleted"]) == 3
    assert len(changes["warehouse"]["deleted"]) == 1
    products_after = sc.supplier_of_products(conn)
    assert set(products_after) == set(after["product"])
    assert not set(changes["supplier"]["deleted"]) & set(products_after.values())  # never a supplier in use
    # Populate leaves 2 of 20 suppliers without products; one may go, never the one with the largest id.
    assert changes["supplier"]["deleted"] and max(before["supplier"]) not in changes["supplier"]["deleted"]
    assert sc.read_dimension_ids(conn) == {table: sorted(rows) for table, rows in after.items()}

    following = sc.working_day(conn, seed=6)
    for table in sc.SOURCE_TABLES:  # ids are never reused, deleted ones included
        assert min(following[table]["inserted"], default=max(after[table]) + 1) > max(after[table])


def test_a_batch_from_the_sources_keys_lands_in_the_landing_bucket(conn, aws):
    sc.create_source(conn)
    sc.populate(conn, seed=4)
    ids, catalog = sc.read_dimension_ids(conn), sc.read_catalog(conn)
    s3 = aws("s3")
    batch_id = "sample-data-e2e"
    try:
        batch = sc.write_batch(s3, batch_id, ids=ids, catalog=catalog, shipments=2000, purchase_orders=500, seed=7)

        listed = s3.list_objects_v2(Bucket=sc.LANDING_BUCKET, Prefix=f"{sc.PREFIX}{batch_id}/")["Contents"]
        assert sorted(o["Key"] for o in listed) == sorted(batch.keys)
        marker = json.loads(
            s3.get_object(Bucket=sc.LANDING_BUCKET, Key=f"{sc.MARKER_PREFIX}{batch_id}.json")["Body"].read()
        )
        assert marker["expected_counts"] == batch.expected_counts == {"shipments": 2020, "purchase_orders": 505}
        rows = 0
        for key in batch.keys:
            body = s3.get_object(Bucket=sc.LANDING_BUCKET, Key=key)["Body"].read()
            with zipfile.ZipFile(io.BytesIO(body)) as archive:
                rows += sum(archive.read(name).decode().count("\n") - 1 for name in archive.namelist())
        assert rows == sum(batch.expected_counts.values())
        orders = [row for row in batch.rows["purchase_orders"] if row["product_id"] in catalog.product_supplier]
        usual = sum(row["supplier_id"] == catalog.product_supplier[row["product_id"]] for row in orders)
        assert usual / len(orders) > 0.9
    finally:  # no marker left behind for a pipeline to pick up
        for prefix in (f"{sc.PREFIX}{batch_id}/", f"{sc.MARKER_PREFIX}{batch_id}"):
            for o in s3.list_objects_v2(Bucket=sc.LANDING_BUCKET, Prefix=prefix).get("Contents", []):
                s3.delete_object(Bucket=sc.LANDING_BUCKET, Key=o["Key"])


def test_the_cli_recreates_fills_and_changes_the_source(conn, capsys):
    # The stack fixture has put AIRFLOW_CONN_SUPPLYCHAIN_DB in the environment, as stack.env does.
    assert sc.main(["source", "--populate", "--customers", "50", "--seed", "2"]) == 0
    assert json.loads(capsys.readouterr().out) == {"supplier": 25, "product": 400, "warehouse": 8, "customer": 50}

    assert sc.main(["working-day", "--seed", "3"]) == 0
    changes = json.loads(capsys.readouterr().out)
    assert len(changes["product"]["deleted"]) == 1 and changes["customer"]["inserted"]
    assert sc.table_counts(conn)["customer"] == 50 + len(changes["customer"]["inserted"]) - len(
        changes["customer"]["deleted"]
    )
