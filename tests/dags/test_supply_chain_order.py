"""The supply chain's task order: what must have finished before each step may start."""

from __future__ import annotations

import pytest

# step -> the steps that must have finished before it starts (directly or through others)
MUST_FOLLOW = {
    "check_silver_schema": {"silver_dimensions"},
    # nothing is catalogued or validated against dimensions that failed the gate
    "crawl_silver_dimensions": {"check_silver_schema"},
    "silver_facts": {"check_silver_schema"},
    "count_silver": {"count_landing", "count_rejected", "count_superseded"},
    # gold is built from facts that reconciled, and catalogued and counted once it is written
    "gold": {"count_silver"},
    "crawl_gold": {"gold"},
    "count_gold": {"gold"},
    "load_warehouse": {"count_gold"},
    "count_warehouse": {"load_warehouse"},
}


@pytest.fixture(scope="module")
def supply_chain(dags):
    return dags["supply_chain_pipeline"]


@pytest.mark.parametrize("step", sorted(MUST_FOLLOW))
def test_each_step_waits_for_what_it_reads(supply_chain, step):
    upstream = supply_chain.get_task(step).get_flat_relative_ids(upstream=True)
    assert MUST_FOLLOW[step] <= upstream, f"{step} may start before {sorted(MUST_FOLLOW[step] - upstream)}"
