"""For a DAG that produces batches (extracts from a source and writes the marker).

Layer 4: name the batch a run writes, and check the names it covers against an allow-list.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from etl_toolkit.contract import BATCH_ID_PATTERN, InvalidMarker, is_batch_id
from etl_toolkit.tasks.frame import step

_log = logging.getLogger(__name__)


class RefusedName(AirflowFailException):
    """A configured name that is not on the allow-list: refused before any work is done."""


def allowed_names(configured, allowed: tuple[str, ...]) -> list[str]:
    """The configured names (a list, or a comma-separated string; empty: all of ``allowed``),
    refused with a clear error unless every one is on the allow-list."""
    if isinstance(configured, str):
        names = [part.strip() for part in configured.split(",") if part.strip()]
    else:
        names = [str(part).strip() for part in configured or []]
    if not names:
        return list(allowed)
    refused = [name for name in names if name not in allowed]
    if refused:
        raise RefusedName(f"refused name(s) {refused}: only these are allowed: {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def new_batch_id(prefix: str, run_after: datetime) -> str:
    """A batch id of the run's own: the prefix and the run's time to the microsecond (UTC)."""
    batch_id = f"{prefix}-{run_after.astimezone(UTC):%Y%m%dT%H%M%S.%f}"
    if not is_batch_id(batch_id):
        raise InvalidMarker(f"batch id {batch_id!r} does not match {BATCH_ID_PATTERN}")
    return batch_id


def plan_batch(
    prefix: str, *, allowed: tuple[str, ...], names_param: str = "tables", names_variable: str | None = None
):
    """Task ``plan_batch``: the batch a producing run writes, and the allow-listed names it covers.

    The names come from the run's ``names_param``, else the Airflow Variable ``names_variable``
    (comma-separated), else all of ``allowed``; one name off the list fails the run at once.
    """

    @step(task_id="plan_batch")
    def plan_batch(**context) -> dict[str, Any]:
        from airflow.sdk import Variable

        configured = (context.get("params") or {}).get(names_param)
        if not configured and names_variable:
            configured = Variable.get(names_variable, default=None)
        names = allowed_names(configured, allowed)
        batch_id = new_batch_id(prefix, context["dag_run"].run_after)
        _log.info("Batch %s covers %s", batch_id, ", ".join(names))
        return {"batch_id": batch_id, names_param: names}

    return plan_batch()
