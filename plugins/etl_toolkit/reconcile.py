"""Reconciliation: every layer's counts against the landing layer and the marker's expectations.

Counts are compared as soon as a layer is counted (``check_layer``), so a batch that does not
reconcile stops at that layer and never reaches the final table, and once more for the whole
batch at the end (``reconcile_batch``), which closes the batch's row in ``audit.batches``.
A mismatch fails the task (no retry: recounting the same data gives the same answer) with a
table of the counts in its message, which the failure notification carries.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import TriggerRule, task
from airflow.sdk.exceptions import AirflowFailException

from etl_toolkit import warehouse

LANDING = "landing"
CLAIM_TASK_ID = "claim_batch"
LAYER_COUNTS_KEY = "layer_counts"
log = logging.getLogger(__name__)


class CountMismatch(AirflowFailException):
    pass


def mismatches(result: dict[str, Any], landing: dict[str, Any] | None, expected: dict[str, int]) -> list[str]:
    """What disagrees, one sentence each; empty when the layer reconciles."""
    problems = []
    for entity, count in sorted(result["counts"].items()):
        if entity in expected and count != expected[entity]:
            problems.append(f"{result['layer']} has {count} {entity}, the marker expects {expected[entity]}")
        if landing is not None and result["layer"] != LANDING:
            landed = landing["counts"].get(entity)
            if landed is not None and count != landed:
                problems.append(f"{result['layer']} has {count} {entity}, landing has {landed}")
    return problems


def counts_table(results: list[dict[str, Any]], expected: dict[str, int]) -> str:
    """A fixed-width table: one row per layer, one column per entity, the marker's row first."""
    entities = sorted({e for r in results for e in r["counts"]} | set(expected))
    rows = [["layer", *entities]]
    if expected:
        rows.append(["marker (expected)", *[str(expected.get(e, "-")) for e in entities]])
    rows += [[r["layer"], *[str(r["counts"].get(e, "-")) for e in entities]] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def check_layer(
    result: dict[str, Any], claim: dict[str, Any], landing: dict[str, Any] | None, earlier: list[dict[str, Any]]
) -> None:
    """Raise CountMismatch (with the counts so far) when ``result`` disagrees with landing or the marker."""
    expected = claim.get("expected_counts") or {}
    problems = mismatches(result, landing, expected)
    if problems:
        table = counts_table([*earlier, result], expected)
        raise CountMismatch(
            f"batch {claim['batch_id']} does not reconcile at layer {result['layer']}: "
            + "; ".join(problems)
            + "\n"
            + table
        )


def reconcile_all(results: list[dict[str, Any]], claim: dict[str, Any]) -> dict[str, Any]:
    """Compare every layer once more; return the summary the success notification carries."""
    landing = next((r for r in results if r["layer"] == LANDING), None)
    expected = claim.get("expected_counts") or {}
    problems = [p for r in results for p in mismatches(r, landing, expected)]
    table = counts_table(results, expected)
    if problems:
        raise CountMismatch(f"batch {claim['batch_id']} does not reconcile: " + "; ".join(problems) + "\n" + table)
    return {"counts": {r["layer"]: r["counts"] for r in results}, "table": table}


def earlier_counts(ti, dag, before_layer: str | None = None) -> list[dict[str, Any]]:
    """This run's count results so far, in the DAG's order, up to (not including) ``before_layer``."""
    results = []
    for task_id in dag.task_ids:
        if not task_id.startswith("count_"):
            continue
        if before_layer and task_id == f"count_{before_layer}":
            break
        value = ti.xcom_pull(task_ids=task_id, key=LAYER_COUNTS_KEY)
        if value:
            results.append(value)
    return results


def close_batch(pipeline: str, batch_id: str, dag_run_id: str, status: str, error: str | None = None) -> None:
    warehouse.run(
        "audit",
        "finish_batch.sql",
        {
            "pipeline": pipeline,
            "batch_id": batch_id,
            "dag_run_id": dag_run_id,
            "status": status,
            "error": error,
            "now": datetime.now(UTC).isoformat(),
        },
    )


def reconcile_batch(pipeline: str):
    """Task ``reconcile``: every layer against landing and the marker, then the batch is SUCCESS."""

    @task(task_id="reconcile", trigger_rule=TriggerRule.ALL_SUCCESS)
    def reconcile(**context) -> dict[str, Any]:
        ti = context["ti"]
        claim = ti.xcom_pull(task_ids=CLAIM_TASK_ID)
        summary = reconcile_all(earlier_counts(ti, context["dag"]), claim)
        log.info("Batch %s reconciles:\n%s", claim["batch_id"], summary["table"])
        close_batch(pipeline, claim["batch_id"], context["run_id"], "SUCCESS")
        return summary

    return reconcile()


# -- layers whose entities have other names than landing's (e.g. a star schema) -------------------

# A rule says which earlier count an entity of a layer must equal: entity -> (layer, entity).
Rules = dict[str, tuple[str, str]]


def rule_mismatches(result: dict[str, Any], earlier: list[dict[str, Any]], rules: Rules) -> list[str]:
    """What disagrees with the rules, one sentence each; empty when the layer reconciles."""
    by_layer = {r["layer"]: r["counts"] for r in earlier}
    problems = []
    for entity, (layer, other) in sorted(rules.items()):
        count, reference = result["counts"].get(entity), by_layer.get(layer, {}).get(other)
        if count is not None and reference is not None and count != reference:
            problems.append(f"{result['layer']} has {count} {entity}, {layer} has {reference} {other}")
    return problems


def check_layer_rules(
    result: dict[str, Any], claim: dict[str, Any], earlier: list[dict[str, Any]], rules: Rules
) -> None:
    """Raise CountMismatch (with the counts so far) when ``result`` breaks one of ``rules``."""
    problems = rule_mismatches(result, earlier, rules)
    if problems:
        table = counts_table([*earlier, result], claim.get("expected_counts") or {})
        raise CountMismatch(
            f"batch {claim['batch_id']} does not reconcile at layer {result['layer']}: "
            + "; ".join(problems)
            + "\n"
            + table
        )


def counts_by_entity(results: list[dict[str, Any]], expected: dict[str, int]) -> str:
    """``counts_table`` turned on its side, for many entities: one row per entity, one column per layer."""
    # Grouped by the first layer that has them, by name within a group (JSON stores lose the order).
    first = {}
    for index, entity in [(-1, e) for e in expected] + [(i, e) for i, r in enumerate(results) for e in r["counts"]]:
        first.setdefault(entity, index)
    entities = sorted(first, key=lambda e: (max(first[e], 0), e))
    rows = [["entity", *(["marker"] if expected else []), *(r["layer"] for r in results)]]
    for entity in entities:
        marker = [str(expected.get(entity, "-"))] if expected else []
        rows.append([entity, *marker, *(str(r["counts"].get(entity, "-")) for r in results)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def reconcile_batch_by_rules(pipeline: str, rules: dict[str, Rules]):
    """Task ``reconcile``: as ``reconcile_batch``, and every layer against its rules (layer -> rules).

    For pipelines whose layers name their entities differently (source tables, then warehouse
    tables): landing is compared with the marker by name, every other layer by its rules.
    """

    @task(task_id="reconcile", trigger_rule=TriggerRule.ALL_SUCCESS)
    def reconcile(**context) -> dict[str, Any]:
        ti = context["ti"]
        claim = ti.xcom_pull(task_ids=CLAIM_TASK_ID)
        results = earlier_counts(ti, context["dag"])
        summary = reconcile_all(results, claim)
        summary["table"] = counts_by_entity(results, claim.get("expected_counts") or {})
        problems = [p for r in results for p in rule_mismatches(r, results, rules.get(r["layer"], {}))]
        if problems:
            raise CountMismatch(
                f"batch {claim['batch_id']} does not reconcile: " + "; ".join(problems) + "\n" + summary["table"]
            )
        log.info("Batch %s reconciles:\n%s", claim["batch_id"], summary["table"])
        close_batch(pipeline, claim["batch_id"], context["run_id"], "SUCCESS")
        return summary

    return reconcile()
