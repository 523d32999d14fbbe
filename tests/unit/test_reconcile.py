"""Reconciliation of layer counts, driven by the pipeline's declared layers."""

import pytest

from etl_toolkit.contract import CountMismatch, Layer, Pipeline
from etl_toolkit.reconcile import check_layer, counts_table, reconcile_all

ORDERS = Pipeline(
    "orders",
    landing_bucket="landing",
    layers=(Layer("landing", ("orders", "order_lines")), Layer("staging", ("order_lines",)),
            Layer("final", ("order_lines",))),
)  # fmt: skip
LANDING = {"layer": "landing", "counts": {"orders": 10, "order_lines": 27}}
CLAIM = {"batch_id": "b1", "expected_counts": {"orders": 10, "order_lines": 27}}


def layer(name, lines):
    return {"layer": name, "counts": {"order_lines": lines}}


def test_a_layer_that_matches_landing_and_the_marker_passes():
    check_layer(ORDERS, layer("staging", 27), [LANDING], CLAIM)


def test_a_layer_short_of_landing_fails_with_the_counts_table():
    with pytest.raises(CountMismatch) as failure:
        check_layer(ORDERS, layer("staging", 25), [LANDING], CLAIM)
    message = str(failure.value)
    assert "batch b1 does not reconcile at layer staging" in message
    assert "staging has 25 order_lines, landing has 27" in message
    assert "marker (expected)" in message and "staging" in message.splitlines()[1]


def test_landing_that_disagrees_with_the_marker_fails():
    short_landing = {"layer": "landing", "counts": {"orders": 10, "order_lines": 20}}
    with pytest.raises(CountMismatch, match="landing has 20 order_lines, the marker expects 27"):
        check_layer(ORDERS, short_landing, [], CLAIM)


def test_a_layer_that_does_not_count_a_declared_entity_fails_naming_it():
    with pytest.raises(CountMismatch, match="landing did not count order_lines"):
        check_layer(ORDERS, {"layer": "landing", "counts": {"orders": 10}}, [], CLAIM)


def test_a_marker_without_expectations_compares_with_landing_only():
    check_layer(ORDERS, layer("final", 27), [LANDING], {"batch_id": "b1", "expected_counts": {}})


def test_reconcile_all_summarises_every_declared_layer():
    summary = reconcile_all(ORDERS, {"landing": LANDING, "staging": layer("staging", 27),
                                     "final": layer("final", 27)}, CLAIM)  # fmt: skip
    assert summary["counts"]["final"] == {"order_lines": 27}
    assert summary["table"].splitlines()[0].split() == ["entity", "marker", "(expected)", "landing", "staging", "final"]


def test_a_declared_layer_that_was_not_counted_fails_naming_the_layer():
    """A count task renamed, moved into a TaskGroup or skipped must not make reconcile pass with
    nothing compared."""
    with pytest.raises(CountMismatch, match="declared layer staging was not counted"):
        reconcile_all(ORDERS, {"landing": LANDING, "staging": None, "final": layer("final", 27)}, CLAIM)
    with pytest.raises(CountMismatch, match="declared layer final was not counted"):
        reconcile_all(ORDERS, {"landing": LANDING, "staging": layer("staging", 27)}, CLAIM)


def test_reconcile_all_compares_every_layer_not_only_the_last():
    with pytest.raises(CountMismatch, match="staging has 26 order_lines, landing has 27"):
        reconcile_all(ORDERS, {"landing": LANDING, "staging": layer("staging", 26), "final": layer("final", 27)}, CLAIM)


def test_counts_table_shows_a_dash_for_what_a_layer_does_not_count():
    table = counts_table([LANDING, layer("staging", 27)], {})
    assert table.splitlines()[1].split() == ["orders", "10", "-"]


STAR = Pipeline(
    "totesys",
    landing_bucket="ingestion",
    layers=(
        Layer("landing", ("sales_order", "staff")),
        Layer("processed", ("fact_sales_order", "dim_staff"), matches={"fact_sales_order": ("landing", "sales_order")}),
    ),
)


def test_matches_compare_entities_named_differently_across_layers():
    landing = {"layer": "landing", "counts": {"sales_order": 5, "staff": 2}}
    claim = {"batch_id": "b1", "expected_counts": {"sales_order": 5, "staff": 2}}
    check_layer(STAR, {"layer": "processed", "counts": {"fact_sales_order": 5, "dim_staff": 7}}, [landing], claim)
    with pytest.raises(CountMismatch, match="processed has 4 fact_sales_order, landing has 5 sales_order"):
        check_layer(STAR, {"layer": "processed", "counts": {"fact_sales_order": 4, "dim_staff": 2}}, [landing], claim)


def test_a_declaration_refuses_a_match_with_a_later_layer():
    with pytest.raises(ValueError, match="not a layer declared before it"):
        Pipeline("x", "b", (Layer("landing", ("a",)), Layer("p", ("b",), matches={"b": ("q", "c")}),
                            Layer("q", ("c",))))  # fmt: skip


# -- a count split over several layers (plus) -----------------------------------------------------------

SPLIT = Pipeline(
    name="split",
    landing_bucket="b",
    layers=(
        Layer("landing", ("transactions",)),
        Layer("rejected", ("rejected",)),
        Layer("duplicates_dropped", ("duplicates_dropped",)),
        Layer("valid", ("transactions",),
              plus={"transactions": (("rejected", "rejected"), ("duplicates_dropped", "duplicates_dropped"))}),
    ),
)  # fmt: skip


def _split_counts(landing: int, rejected: int, duplicates: int, valid: int) -> dict:
    return {
        "landing": {"layer": "landing", "counts": {"transactions": landing}},
        "rejected": {"layer": "rejected", "counts": {"rejected": rejected}},
        "duplicates_dropped": {"layer": "duplicates_dropped", "counts": {"duplicates_dropped": duplicates}},
        "valid": {"layer": "valid", "counts": {"transactions": valid}},
    }


def test_a_layer_plus_the_layers_it_is_split_with_must_equal_landing():
    reconcile_all(SPLIT, _split_counts(100, 3, 2, 95), {"batch_id": "B"})
    expected = r"valid has 94 transactions \+ rejected 3 rejected \+ duplicates_dropped 2 duplicates_dropped = 99"
    with pytest.raises(CountMismatch, match=expected + ", landing has 100"):
        reconcile_all(SPLIT, _split_counts(100, 3, 2, 94), {"batch_id": "B"})


def test_a_split_over_a_layer_declared_later_fails_the_declaration():
    with pytest.raises(ValueError, match="not a layer declared before it"):
        Pipeline("bad", "b", (Layer("landing", ("t",)), Layer("valid", ("t",), plus={"t": (("later", "x"),)}),
                              Layer("later", ("x",))))  # fmt: skip
