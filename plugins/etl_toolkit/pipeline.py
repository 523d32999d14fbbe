"""Pipeline assembly (layer 5): the DAG defaults and the frame every marker-driven DAG shares.

A DAG file declares its pipeline once (``Pipeline``: name, landing bucket, layers and their
entities) and lists only its own steps; ``marker_dag`` wraps them in the frame::

    wait_for_marker → claim_batch → <the pipeline's steps> → reconcile
        → <its steps after reconcile, if any> → notify_success

with ``claim_batch → notify_success`` too (an already-loaded batch skips the steps but its marker
is still set aside and the run reported), every layer's count handed to ``reconcile``, and the
failure notifier on every task. ``notify_success`` sets the marker aside as loaded, then
publishes. A declared layer that no step counts fails the DAG's import.

    ORDERS = Pipeline("orders", landing_bucket=environment.bucket("..."), layers=(Layer("landing", ("orders",)), ...))

    @marker_dag(ORDERS, dag_id="orders_pipeline", tags=[...], doc_md=__doc__)
    def orders_pipeline(batch):  # batch: templates of the claimed batch (batch.batch_id ...)
        chain(crawl_landing, ..., count_final)

    orders_pipeline()
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from etl_toolkit import environment
from etl_toolkit.contract import BATCH_ID_PATTERN, Layer, Pipeline
from etl_toolkit.settings import DEFAULT_RETRIES, DEFAULT_RETRY_DELAY, MARKER_SWEEP_MINUTES, start_mode
from etl_toolkit.tasks.audit import reconcile_batch
from etl_toolkit.tasks.batches import claim_batch, request_next_run, wait_for_marker
from etl_toolkit.tasks.frame import CLAIM_MACRO, BatchFrame
from etl_toolkit.tasks.marker_events import marker_asset, sweep_schedule
from etl_toolkit.tasks.notify import BatchFailureNotifier, publish_success

__all__ = ["Layer", "Pipeline", "batch_params", "default_args", "marker_dag"]


def default_args(pipeline: str, landing_bucket: str | None = None) -> dict:
    """Owner, retries and the failure notifier, for every task of a pipeline's DAG."""
    return {
        "owner": "data-engineering",
        "retries": DEFAULT_RETRIES,
        "retry_delay": DEFAULT_RETRY_DELAY,
        "on_failure_callback": [BatchFailureNotifier(pipeline=pipeline, landing_bucket=landing_bucket)],
    }


def batch_params() -> dict:
    """The trigger form of every marker-driven DAG: which batch, and whether to load it again."""
    from airflow.sdk import Param

    return {
        "batch_id": Param(
            None,
            type=["null", "string"],
            pattern=f"^{BATCH_ID_PATTERN}$",
            title="Batch id",
            description="Run this batch now (its marker may be pending or set aside). Empty: wait for the next marker.",
        ),
        "reprocess": Param(
            False,
            type="boolean",
            title="Reprocess",
            description="Load the batch again even if it already loaded (the result is the same warehouse state).",
        ),
    }


def marker_dag(pipeline: Pipeline, *, dag_id: str, **dag_kwargs: Any) -> Callable[[Callable], Callable]:
    """Decorate a function that builds a pipeline's own steps into a marker-driven DAG.

    The function gets the ``BatchFrame`` (templates of the claimed batch: ``batch_id``,
    ``started_at``, ``completed_at``). ``dag_kwargs`` go to the DAG (tags, doc_md ...). One run
    at a time; how runs start is the pipeline's start mode (``settings.start_mode``):

    - sensor: ``@continuous``; each run first waits for the next marker (``wait_for_marker``);
    - event: scheduled on the marker's S3 event (``tasks.marker_events``) or the sweep's time;
      the run starts at ``claim_batch`` and ends with the teardown ``request_next_run``, which
      asks for one more run while markers stay pending.
    """

    def decorate(build_steps: Callable[[BatchFrame], Any]) -> Callable[[], Any]:
        @functools.wraps(build_steps)
        def make_dag():
            from airflow.sdk import DAG, chain

            mode = start_mode(pipeline.name)
            settings = {
                "start_date": datetime(2026, 1, 1),
                "catchup": False,
                "max_active_runs": 1,
                "default_args": default_args(pipeline.name, pipeline.landing_bucket),
                "params": batch_params(),
                # The environment's names in templates: {{ etl.bucket('...') }} (etl_toolkit.environment)
                "user_defined_macros": environment.DAG_MACROS,
                **dag_kwargs,
            }
            if settings.get("doc_md"):
                settings["doc_md"] += _START_MODE_DOCS[mode]
            events = mode == "event"
            asset = marker_asset(pipeline.name) if events else None
            default_schedule = sweep_schedule(asset, MARKER_SWEEP_MINUTES) if events else "@continuous"
            schedule = settings.pop("schedule", default_schedule)
            with DAG(dag_id=dag_id, schedule=schedule, **settings) as dag:
                frame = BatchFrame(pipeline, dag, marker_asset=asset)
                dag.user_defined_macros = {**dag.user_defined_macros, CLAIM_MACRO: frame.pulled_claim}
                with frame.active():
                    head = [] if events else [wait_for_marker(frame)]
                    claim = claim_batch(frame)
                    head += [claim.operator]
                    framed = {task.task_id for task in dag.tasks}
                    build_steps(frame)
                    built = [task for task in dag.tasks if task.task_id not in framed]
                    steps = [task for task in built if task.task_id not in frame.finishing_task_ids]
                    finishing = [task for task in built if task.task_id in frame.finishing_task_ids]
                    _check_counts(pipeline, frame)
                    summary = reconcile_batch(frame, frame.counts)
                    notify = publish_success(frame, summary)
                chain(*head)
                loading = _ends(steps, "first") or [summary.operator]
                claim.operator >> loading
                frame.load_task_ids = {task.task_id for task in loading}
                for task in _ends(steps, "last"):
                    task >> summary.operator
                summary.operator >> (_ends(finishing, "first") or [notify.operator])
                for task in _ends(finishing, "last"):
                    task >> notify.operator
                # A batch that already loaded skips the steps but its marker is still set aside and
                # the run reported, and its finishing steps run again: a run whose finishing step
                # failed after the batch reconciled (objects left to archive) is completed by the
                # next claim.
                claim.operator >> notify.operator
                for task in _ends(finishing, "first"):
                    claim.operator >> task
                if events:
                    with frame.active():
                        next_run = request_next_run(frame)
                    # After every task, not only the last ones: a failure ends the main line early,
                    # and the teardown must still wait for the steps beside it.
                    for task in dag.tasks:
                        if task is not next_run:
                            task >> next_run
            return dag

        return make_dag

    return decorate


_START_MODE_DOCS = {
    "sensor": (
        "\n\n**Start mode: sensor.** The DAG runs continuously, one run at a time: each run waits in "
        "`wait_for_marker` (deferred in the triggerer) for a marker under `batch-completion/`. A waiting "
        "run makes way for a run triggered from the UI within one look (it ends skipped); a day without a "
        "marker also ends a run skipped, and the next run waits again."
    ),
    "event": (
        "\n\n**Start mode: event.** A run starts on the marker's S3 event (EventBridge → the pipeline's "
        "SQS queue → the Asset's watcher in the triggerer), or on the sweep's schedule, which claims any "
        "marker whose event was lost. `request_next_run` (a teardown) asks for one more run while markers "
        "stay pending."
    ),
}


def _ends(tasks: list, which: str) -> list:
    """The tasks of a group with no upstream (``first``) or no downstream (``last``) inside it."""
    neighbours = "upstream_list" if which == "first" else "downstream_list"
    return [task for task in tasks if not any(t in tasks for t in getattr(task, neighbours))]


def _check_counts(pipeline: Pipeline, frame: BatchFrame) -> None:
    uncounted = [layer.name for layer in pipeline.layers if layer.name not in frame.counts]
    if uncounted:
        raise ValueError(
            f"pipeline {pipeline.name} declares layers that no step counts: {', '.join(uncounted)} "
            "(add a count task from etl_toolkit.tasks.audit for each)"
        )
