"""Values a task reads once per try: the environment's Variable, the run's claim.

Layer 1, at its bottom (``environment`` reads through it). A task renders its templates and runs
its code in one process, and both ask for the same few values through Airflow's execution API
again and again: the environment's Variable behind every ``{{ etl.bucket(...) }}``, the claim
behind every batch template. Each ask is a round trip to the API server (10-20 ms), and a Glue
task makes a dozen before its job starts.

A value is kept for the current task try only, keyed by the task instance's id (a new one on
every try), so a retry, a cleared task and the next task read it afresh, as does every task of a
``dag.test()``, which runs them all in one process. Outside a running task (a DAG file's parse, a
callback) nothing is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_try_id: Any = None
_values: dict[str, Any] = {}


def once_per_try(name: str, read: Callable[[], T]) -> T:
    """``read()`` the first time the current task try asks for ``name``; what it returned after."""
    global _try_id
    try_id = _current_try_id()
    if try_id is None:
        return read()
    if try_id != _try_id:
        _values.clear()
        _try_id = try_id
    if name not in _values:
        _values[name] = read()
    return _values[name]


def _current_try_id() -> Any:
    from airflow.sdk import get_current_context

    try:
        ti = get_current_context()["ti"]
    except Exception:  # no task is running in this process
        return None
    return getattr(ti, "id", None)
