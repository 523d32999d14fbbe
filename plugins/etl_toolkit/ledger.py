"""The audit ledger: who holds which batch, how often it was tried, what each layer counted.

Layer 3. The warehouse schema ``audit`` is the pipelines' memory across runs and crashes:

- ``audit.batches``: one row per (pipeline, batch): status RUNNING, SUCCESS or FAILED, the run
  that holds it, the marker version it was claimed with, and how many claims it has had since it
  last started afresh (``attempts``), and which run last published a FAILURE for it, so that a
  run publishes one however many of its tasks fail;
- ``audit.layer_counts``: one row per (pipeline, batch, layer): the counted rows and the run.

A claim is exact: claims of one batch queue on an advisory lock, and a batch held by a live run
is never taken; a holder whose liveness cannot be told is treated as alive (``HolderUnknown``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from etl_toolkit import sql
from etl_toolkit.contract import ClaimRefused

RUNNING, SUCCESS, FAILED = "RUNNING", "SUCCESS", "FAILED"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchRow:
    status: str
    holder: str
    attempts: int
    marker_version: str | None
    rerun_requested: bool


@dataclass(frozen=True)
class Decision:
    """What a claim does with a batch: ``claim`` it (as attempt N), ``no-op``, ``give-up``, or
    ``hold`` it (an in-order pipeline's earlier batch has not loaded)."""

    action: str
    attempts: int
    reason: str


def decide(
    row: BatchRow | None,
    *,
    run_id: str,
    marker_version: str | None,
    requested: bool,
    reprocess: bool,
    holder_alive: Callable[[str], bool],
    max_attempts: int,
) -> Decision:
    """Pure: the claim's decision from the batch's audit row.

    ``holder_alive`` may raise: that is never read as "dead" (the caller retries).
    """
    if row is None:
        return Decision("claim", 1, "first claim")
    if row.status == RUNNING and row.holder != run_id:
        if holder_alive(row.holder):
            raise ClaimRefused(f"run {row.holder} holds the batch and is still running; this run leaves it alone")
        attempts, reason = row.attempts + 1, f"run {row.holder} died holding it"
    elif row.status == RUNNING:
        attempts, reason = row.attempts, "claimed again by the run that holds it"
    elif row.status == SUCCESS:
        if not (reprocess or row.rerun_requested):
            return Decision("no-op", row.attempts, "already loaded")
        attempts = 1
        reason = "reprocess requested" if reprocess else "its marker was written again while it loaded"
    elif requested or marker_version != row.marker_version:
        attempts, reason = 1, "run again after a failure"
    else:
        # FAILED, yet its marker is pending again with the same version: the failure handling
        # did not finish (a worker died, or setting the marker aside failed).
        attempts, reason = row.attempts + 1, "failed earlier and its marker was not set aside"
    if requested:
        attempts = 1  # a person asked for this batch: a fresh start
    if attempts > max_attempts:
        return Decision("give-up", attempts - 1, f"gave up after {attempts - 1} attempts ({reason})")
    return Decision("claim", attempts, reason)


def ensure_tables(cursor) -> None:
    sql.execute(cursor, "audit", "create_tables.sql")


def claim(
    pipeline: str,
    batch_id: str,
    *,
    run_id: str,
    marker_key: str,
    marker_version: str | None,
    expected_counts: dict[str, int],
    requested: bool,
    reprocess: bool,
    holder_alive: Callable[[str], bool],
    max_attempts: int,
    in_order: bool = False,
    held_before: list[str] | None = None,
) -> Decision:
    """Decide and record the claim of one batch, in one transaction under the batch's lock.

    ``in_order``: a batch that would be claimed is held instead while an earlier batch of the
    pipeline has not loaded, or is itself held (``held_before``: the held batches before this one);
    a reprocess of a loaded batch is never held.
    """
    keys = {"pipeline": pipeline, "batch_id": batch_id}
    with sql.transaction() as cursor:
        ensure_tables(cursor)
        sql.execute(cursor, "audit", "lock_batch.sql", keys)
        rows = sql.execute(cursor, "audit", "get_batch.sql", keys)
        row = BatchRow(*rows[0]) if rows else None
        decision = decide(
            row,
            run_id=run_id,
            marker_version=marker_version,
            requested=requested,
            reprocess=reprocess,
            holder_alive=holder_alive,
            max_attempts=max_attempts,
        )
        now = datetime.now(UTC).isoformat()
        if decision.action == "claim" and in_order and not (row and row.status == SUCCESS):
            if held_before:
                return Decision("hold", decision.attempts, f"waiting for batch {held_before[0]}, which is held")
            blockers = sql.execute(cursor, "audit", "blocker.sql", keys)
            if blockers:
                earlier, status, error = blockers[0]
                why = "is still running" if status == RUNNING else f"failed: {error}"
                return Decision("hold", decision.attempts, f"waiting for batch {earlier}, which {why}")
        if decision.action == "claim":
            sql.execute(
                cursor,
                "audit",
                "claim_batch.sql",
                {
                    **keys,
                    "marker_key": marker_key,
                    "marker_version": marker_version,
                    "expected_counts": expected_counts,
                    "dag_run_id": run_id,
                    "now": now,
                    "attempts": decision.attempts,
                },
            )
        elif decision.action == "give-up":
            sql.execute(cursor, "audit", "give_up_batch.sql", {**keys, "now": now, "error": decision.reason})
    return decision


def record_failure(pipeline: str, batch_id: str, run_id: str, marker_key: str, error: str) -> bool:
    """A batch whose marker breaks the contract: FAILED, unless it already loaded or a run holds it
    (then False: its row is kept)."""
    with sql.transaction() as cursor:
        ensure_tables(cursor)
        keys = {"pipeline": pipeline, "batch_id": batch_id}
        sql.execute(cursor, "audit", "lock_batch.sql", keys)
        recorded = sql.execute(cursor, "audit", "record_invalid_marker.sql", {**keys, "marker_key": marker_key,
                               "dag_run_id": run_id, "now": datetime.now(UTC).isoformat(), "error": error})  # fmt: skip
    return bool(recorded)


def close(pipeline: str, batch_id: str, run_id: str, status: str, error: str | None = None) -> None:
    """Close the batch with its outcome; raise if this run no longer holds it (or, to fail it, no
    longer runs it)."""
    with sql.transaction() as cursor:
        sql.execute(
            cursor,
            "audit",
            "finish_batch.sql",
            {"pipeline": pipeline, "batch_id": batch_id, "dag_run_id": run_id, "status": status,
             "error": error, "now": datetime.now(UTC).isoformat()},
        )  # fmt: skip
        if cursor.rowcount != 1:
            raise ClaimRefused(
                f"batch {batch_id} of {pipeline} is no longer held by run {run_id} (another run took it over); "
                f"not recording {status}"
            )


def first_failure_of_run(pipeline: str, batch_id: str, run_id: str, clear_number: int) -> bool:
    """Whether a failed task of ``run_id`` is the first of its run to fail since the run last
    (re)started, and so the one to announce the failure: tasks that fail side by side (or one
    after the other, as a failure's retries run out) get True once per run. A run cleared in the
    UI has a new ``clear_number``: its next failure is announced again."""
    keys = {"pipeline": pipeline, "batch_id": batch_id}
    with sql.transaction() as cursor:
        sql.execute(cursor, "audit", "lock_batch.sql", keys)
        first = sql.execute(cursor, "audit", "announce_failure.sql",
                            {**keys, "dag_run_id": run_id, "announced": f"{run_id}#{clear_number}"})  # fmt: skip
    return bool(first)


def check_holder(cursor, pipeline: str, batch_id: str, run_id: str) -> None:
    """Raise ClaimRefused unless this run holds the batch; the row stays locked until the caller's
    transaction ends, so no other run can take the batch meanwhile."""
    if not sql.execute(cursor, "audit", "holds_batch.sql",
                       {"pipeline": pipeline, "batch_id": batch_id, "dag_run_id": run_id}):  # fmt: skip
        raise ClaimRefused(f"batch {batch_id} of {pipeline} is no longer held by run {run_id}: another run took "
                           "it over, so this run neither loads nor counts it")  # fmt: skip


def first_unloaded(pipeline: str) -> str | None:
    """The pipeline's earliest batch that has not loaded (for a pipeline that loads in order)."""
    rows = sql.run("audit", "first_unloaded.sql", {"pipeline": pipeline})
    return rows[0][0] if rows else None


def request_rerun(pipeline: str, batch_id: str) -> None:
    sql.run("audit", "request_rerun.sql", {"pipeline": pipeline, "batch_id": batch_id})


def batch_of_run(pipeline: str, run_id: str) -> dict[str, Any] | None:
    rows = sql.run("audit", "batch_of_run.sql", {"pipeline": pipeline, "dag_run_id": run_id})
    if not rows:
        return None
    batch_id, marker_key, marker_version, status = rows[0]
    return {"batch_id": batch_id, "marker_key": marker_key, "marker_version": marker_version, "status": status}


def record_layer(pipeline: str, batch_id: str, run_id: str, result: dict[str, Any]) -> None:
    """One audit row for the layer: its ``rows`` (by default the sum of its entities' counts).
    Only the run that holds the batch records counts."""
    with sql.transaction() as cursor:
        check_holder(cursor, pipeline, batch_id, run_id)
        sql.execute(
            cursor,
            "audit",
            "record_layer_count.sql",
            {
                "pipeline": pipeline,
                "batch_id": batch_id,
                "layer": result["layer"],
                "row_count": result.get("rows", sum(result["counts"].values())),
                "details": {"counts": result["counts"], **result.get("details", {})},
                "dag_run_id": run_id,
                "now": result["counted_at"],
            },
        )


def counts_of_run(pipeline: str, batch_id: str, run_id: str) -> list[dict[str, Any]]:
    """What this run has counted for the batch so far: [{layer, counts, published, counted_at}], oldest
    first. ``published``: what the count asked to carry in the SUCCESS message (``details["published"]``)."""
    rows = sql.run("audit", "counts_of_run.sql", {"pipeline": pipeline, "batch_id": batch_id, "dag_run_id": run_id})
    return [
        {
            "layer": layer,
            "counts": (details or {}).get("counts", {}),
            "published": (details or {}).get("published", {}),
            "counted_at": counted_at.isoformat(),
        }
        for layer, details, counted_at in rows or []
    ]
