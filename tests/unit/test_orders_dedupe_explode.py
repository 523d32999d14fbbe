"""The orders scripts' shortcuts give what the plain way gives: the latest-copy rule grouped by the
ids themselves whatever their hashes, pass 1's reads around a skipped row group, and the explode
of chosen orders without taking them first."""

from __future__ import annotations

import importlib.util
import io
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from devstack.sample_data.orders import LANDING_SCHEMA

# Run again under AWS Glue 5.0's versions by `make test-glue5`: imports no Airflow.
pytestmark = pytest.mark.glue5

SCRIPTS = Path(__file__).resolve().parents[2] / "include" / "glue_scripts" / "orders"

# The scripts import their shared module as Glue ships it (--extra-py-files): from sys.path.
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
import orders_batch  # noqa: E402


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"glue_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


l2s = load_script("orders_landing_to_staging")


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def line(code: str, quantity: int) -> dict:
    return {"product_code": code, "product_name": f"Café {code}", "quantity": quantity, "unit_price": Decimal("1.50")}


def landing_batch(rows: list[dict]) -> pa.RecordBatch:
    defaults = {"customer_id": "CUST-1", "order_ts": ts("2026-11-25 07:00:00"), "currency": "EUR", "run_id": "B1"}
    return pa.RecordBatch.from_pylist([{**defaults, **row} for row in rows], schema=LANDING_SCHEMA)


def test_the_latest_copy_is_chosen_by_the_ids_themselves_whatever_their_hashes(monkeypatch):
    early, late = ts("2026-11-25 08:00:00"), ts("2026-11-25 09:00:00")
    keys = pa.table(
        {
            "order_id": ["o-1", "o-2", "o-1", "o-3", "o-2", "o-4"],
            "processing_ts": pa.array([late, early, early, None, late, early], orders_batch.PROCESSING_TS),
            "file_index": pa.array([0, 0, 1, 1, 1, 2], pa.int32()),
            "row_index": pa.array([0, 1, 0, 1, 2, 0], pa.int64()),
        }
    )
    expected = [(0, 0), (1, 1), (1, 2), (2, 0)]

    def winners(table: pa.Table) -> tuple[list[tuple[int, int]], int]:
        chosen, dropped = orders_batch.select_latest_copies(table)
        return [(r["file_index"], r["row_index"]) for r in chosen.to_pylist()], dropped

    assert winners(keys) == (expected, 2)  # ids of one length: hashed from their bytes
    mixed = keys.set_column(0, "order_id", pa.array(["o-1", "o-22", "o-1", "o-3", "o-22", "o-4444"]))
    assert winners(mixed) == (expected, 2)  # ids of several lengths: their dictionary codes
    # One hash for every id: it only costs time, each order still keeps its own latest copy.
    monkeypatch.setattr(orders_batch, "_id_hashes", lambda ids: np.zeros(len(ids), dtype=np.uint64))
    assert winners(keys) == (expected, 2)


def test_pass_1_finds_the_rows_of_the_batch_around_a_row_group_it_skips(tmp_path):
    run_ids = ["A1", "A1", "B7", "C1", "A1", "C1"]  # row groups of two: [A1 A1] [B7 C1] [A1 C1]
    table = landing_batch(
        [{"order_id": f"o{n}", "run_id": r, "processing_ts": ts("2026-11-25 08:00:00")} for n, r in enumerate(run_ids)]
    )
    path = tmp_path / "orders.parquet"
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_batches([table]), sink, row_group_size=2)
    path.write_bytes(sink.getvalue())

    keys = orders_batch.scan_batch_keys(pafs.LocalFileSystem(), [str(path)], "A1")

    assert (keys.rows_read, keys.duplicates, keys.winners[0].tolist()) == (3, 0, [0, 1, 4])


def test_the_explode_and_versions_of_chosen_orders_equal_those_of_the_orders_taken_first():
    batch = landing_batch(
        [
            {"order_id": "o0", "processing_ts": ts("2026-11-25 08:00:00"), "products": [line("P0", 1)]},
            {"order_id": "o1", "processing_ts": ts("2026-11-25 08:00:01"), "products": [line("P1", 2), line("P2", 1)]},
            {"order_id": "o2", "processing_ts": ts("2026-11-25 08:00:02"), "products": None},
            {"order_id": "o3", "processing_ts": None, "products": [None, line("P3", 5)]},
            {"order_id": "o4", "processing_ts": ts("2026-11-25 08:00:04"), "products": []},
            {"order_id": "o5", "processing_ts": ts("2026-11-25 08:00:05"), "products": [line("P5", 2)]},
        ]
    ).slice(1)  # non-zero offsets, as a reader's record batches can have

    for rows in ([0, 2, 4], [1, 2, 3], [3], [], [0, 1, 2, 3, 4]):
        chosen = np.array(rows, dtype=np.int64)
        taken = batch.take(pa.array(chosen, pa.int64()))
        assert l2s.explode_products(batch, chosen).equals(l2s.explode_products(taken)), rows
        assert l2s.order_versions(batch, chosen).equals(l2s.order_versions(taken)), rows
    lines = l2s.explode_products(batch, np.array([2])).to_pylist()
    assert [(r["order_id"], r["line_number"], r["product_code"]) for r in lines] == [("o3", 1, None), ("o3", 2, "P3")]
