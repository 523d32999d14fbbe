"""Reconciliation of layer counts against landing and the marker."""

import pytest

from etl_toolkit.reconcile import CountMismatch, check_layer, counts_table, reconcile_all

LANDING = {"layer": "landing", "counts": {"orders": 10, "order_lines": 27}}
CLAIM = {"batch_id": "b1", "expected_counts": {"orders": 10, "order_lines": 27}}


def layer(name, lines):
    return {"layer": name, "counts": {"order_lines": lines}}


def test_a_layer_that_matches_landing_and_the_marker_passes():
    check_layer(layer("staging", 27), CLAIM, LANDING, [LANDING])


def test_a_layer_short_of_landing_fails_with_the_counts_table():
    with pytest.raises(CountMismatch) as failure:
        check_layer(layer("staging", 25), CLAIM, LANDING, [LANDING])
    message = str(failure.value)
    assert "batch b1 does not reconcile at layer staging" in message
    assert "staging has 25 order_lines, landing has 27" in message
    assert "marker (expected)" in message and "staging" in message.splitlines()[-1]


def test_landing_that_disagrees_with_the_marker_fails():
    short_landing = {"layer": "landing", "counts": {"orders": 10, "order_lines": 20}}
    with pytest.raises(CountMismatch, match="landing has 20 order_lines, the marker expects 27"):
        check_layer(short_landing, CLAIM, None, [])


def test_a_marker_without_expectations_compares_with_landing_only():
    check_layer(layer("final", 27), {"batch_id": "b1", "expected_counts": {}}, LANDING, [LANDING])


def test_reconcile_all_summarises_every_layer():
    summary = reconcile_all([LANDING, layer("staging", 27), layer("final", 27)], CLAIM)
    assert summary["counts"]["final"] == {"order_lines": 27}
    assert summary["table"].splitlines()[0].split() == ["layer", "order_lines", "orders"]


def test_counts_table_shows_a_dash_for_what_a_layer_does_not_count():
    table = counts_table([LANDING, layer("staging", 27)], {})
    assert table.splitlines()[-1].split() == ["staging", "27", "-"]
