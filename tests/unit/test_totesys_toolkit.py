"""The toolkit pieces the totesys DAGs added: producing batches, reconciling layers of many tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from etl_toolkit import batches, reconcile


def test_a_configured_name_off_the_allow_list_fails_the_run_at_once():
    with pytest.raises(batches.RefusedName, match="staff; DROP TABLE staff"):
        batches.allowed_names(["staff; DROP TABLE staff"], ("staff", "payment"))
    with pytest.raises(batches.RefusedName):
        batches.allowed_names("staff,pg_shadow", ("staff", "payment"))


def test_no_configured_names_means_all_of_the_allow_list():
    assert batches.allowed_names(None, ("staff", "payment")) == ["staff", "payment"]
    assert batches.allowed_names("", ("staff", "payment")) == ["staff", "payment"]
    assert batches.allowed_names(" payment ,staff", ("staff", "payment")) == ["payment", "staff"]


def test_a_new_batch_id_is_the_runs_time_and_a_valid_marker_name():
    batch_id = batches.new_batch_id("totesys", datetime(2026, 11, 25, 3, 4, 5, 6789, tzinfo=UTC))
    assert batch_id == "totesys-20261125T030405.006789"
    assert batches.batch_id_from_key(batches.marker_key(batch_id)) == batch_id


def result(layer: str, **counts: int) -> dict:
    return {"layer": layer, "counts": counts}


def test_rules_compare_entities_named_differently_across_layers():
    landing = result("landing", sales_order=5, staff=2)
    rules = {"fact_sales_order": ("landing", "sales_order"), "dim_staff": ("landing", "staff")}
    assert reconcile.rule_mismatches(result("processed", fact_sales_order=5, dim_staff=2), [landing], rules) == []
    assert reconcile.rule_mismatches(result("processed", fact_sales_order=4, dim_staff=2), [landing], rules) == [
        "processed has 4 fact_sales_order, landing has 5 sales_order"
    ]


def test_a_layer_that_breaks_a_rule_fails_with_the_counts_so_far():
    landing = result("landing", sales_order=5)
    with pytest.raises(reconcile.CountMismatch, match="does not reconcile at layer processed"):
        reconcile.check_layer_rules(
            result("processed", fact_sales_order=4),
            {"batch_id": "b1", "expected_counts": {"sales_order": 5}},
            [landing],
            {"fact_sales_order": ("landing", "sales_order")},
        )


def test_counts_by_entity_has_a_row_per_entity_and_a_column_per_layer():
    table = reconcile.counts_by_entity(
        [result("landing", sales_order=5), result("processed", fact_sales_order=5)], {"sales_order": 5}
    )
    lines = table.splitlines()
    assert lines[0].split() == ["entity", "marker", "landing", "processed"]
    assert lines[1].split() == ["sales_order", "5", "5", "-"]
    assert lines[2].split() == ["fact_sales_order", "-", "-", "5"]
