"""Reconciliation: pure comparisons of a batch's counts, driven by the pipeline's declaration.

Layer 3, and no I/O: the counts come in as values (``{"layer", "counts", ...}`` per layer) and
the declaration (``contract.Pipeline``) says which layers must be there and which entity must
equal which. A layer is checked as soon as it is counted (``check_layer``), so a batch that does
not reconcile stops at that layer, and every layer once more at the end (``reconcile_all``),
which also fails, naming the layer, when a declared layer was never counted.
"""

from __future__ import annotations

from typing import Any

from etl_toolkit.contract import LANDING, CountMismatch, Layer, Pipeline


def mismatches(
    layer: Layer, result: dict[str, Any], earlier: dict[str, dict[str, int]], expected: dict[str, int]
) -> list[str]:
    """What disagrees, one sentence each; empty when the layer reconciles.

    ``earlier``: the counts of the layers counted before it, by layer name.
    """
    problems = []
    counts = result["counts"]
    missing = [entity for entity in layer.entities if entity not in counts]
    if missing:
        problems.append(f"{layer.name} did not count {', '.join(missing)}")
    for entity, count in sorted(counts.items()):
        if layer.name == LANDING and entity in expected and count != expected[entity]:
            problems.append(f"{layer.name} has {count} {entity}, the marker expects {expected[entity]}")
        other_layer, other = layer.matches.get(entity, (LANDING, entity))
        if other_layer == layer.name:
            continue
        reference = earlier.get(other_layer, {}).get(other)
        if reference is None:
            continue
        parts = layer.plus.get(entity, ())
        absent = [f"{part_layer}.{part}" for part_layer, part in parts if part not in earlier.get(part_layer, {})]
        if absent:
            problems.append(f"{layer.name}.{entity} is checked with {', '.join(absent)}, not counted before it")
            continue
        total = count + sum(earlier[part_layer][part] for part_layer, part in parts)
        if total != reference:
            terms = "".join(f" + {part_layer} {earlier[part_layer][part]} {part}" for part_layer, part in parts)
            summed = f"{terms} = {total}" if parts else ""
            problems.append(f"{layer.name} has {count} {entity}{summed}, {other_layer} has {reference} {other}")
    return problems


def check_layer(pipeline: Pipeline, result: dict[str, Any], earlier: list[dict[str, Any]], claim: dict) -> None:
    """Raise CountMismatch (with the counts so far) when a freshly counted layer disagrees."""
    layer = pipeline.layer(result["layer"])
    expected = claim.get("expected_counts") or {}
    problems = mismatches(layer, result, {r["layer"]: r["counts"] for r in earlier}, expected)
    if problems:
        table = counts_table([*earlier, result], expected)
        raise CountMismatch(
            f"batch {claim['batch_id']} does not reconcile at layer {layer.name}: " + "; ".join(problems) + "\n" + table
        )


def reconcile_all(pipeline: Pipeline, counted: dict[str, dict[str, Any] | None], claim: dict) -> dict[str, Any]:
    """Every declared layer against the others; the summary the success notification carries.

    ``counted``: layer name -> that layer's count result (None when it was not counted).
    """
    expected = claim.get("expected_counts") or {}
    absent = [layer.name for layer in pipeline.layers if not counted.get(layer.name)]
    undeclared = sorted(set(counted) - {layer.name for layer in pipeline.layers})
    results = [counted[layer.name] for layer in pipeline.layers if counted.get(layer.name)]
    table = counts_table(results, expected)
    problems = [f"declared layer {name} was not counted" for name in absent]
    problems += [f"layer {name} was counted but is not declared" for name in undeclared]
    by_layer: dict[str, dict[str, int]] = {}
    for layer in pipeline.layers:
        result = counted.get(layer.name)
        if result:
            problems += mismatches(layer, result, by_layer, expected)
            by_layer[layer.name] = result["counts"]
    if problems:
        raise CountMismatch(f"batch {claim['batch_id']} does not reconcile: " + "; ".join(problems) + "\n" + table)
    return {"counts": by_layer, "table": table}


def counts_table(results: list[dict[str, Any]], expected: dict[str, int]) -> str:
    """A fixed-width table of the counts: one row per entity, one column per layer.

    Entities in the order they first appear (the marker's, then each layer's).
    """
    entities: dict[str, None] = dict.fromkeys(expected)
    for result in results:
        entities.update(dict.fromkeys(result["counts"]))
    rows = [["entity", *(["marker (expected)"] if expected else []), *(r["layer"] for r in results)]]
    for entity in entities:
        marker = [str(expected.get(entity, "-"))] if expected else []
        rows.append([entity, *marker, *(str(r["counts"].get(entity, "-")) for r in results)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)
