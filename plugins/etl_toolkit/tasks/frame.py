"""The batch that the tasks of a marker-driven DAG work on.

``etl_toolkit.pipeline.marker_dag`` creates a ``BatchFrame`` for each DAG and makes it current
while the DAG file's steps are built, so that the task factories find the pipeline's declaration
and the claim task without any task-id convention: the frame holds the claim operator's real id
(a TaskGroup or a rename changes nothing) and registers which task counts which layer.

``step`` is the ``@task`` the factories make their Python steps with.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import task

from etl_toolkit import ledger, reconcile
from etl_toolkit.contract import Pipeline
from etl_toolkit.task_cache import once_per_try

# The XCom the claim task leaves the run's claim under (its return value says which tasks follow).
CLAIM_KEY = "claim"
# The DAG macro templates read the claim through: {{ batch_claim(ti) }} (marker_dag registers it).
CLAIM_MACRO = "batch_claim"

_current: ContextVar[BatchFrame | None] = ContextVar("etl_toolkit_batch_frame", default=None)


def step(**kwargs: Any):
    """``@task`` for the toolkit's steps: a step's result is one XCom, ``return_value``.

    Airflow infers ``multiple_outputs`` from a ``dict`` return annotation and would then push each
    key as an XCom of its own as well: one execution-API write per key (ten for a schema check),
    on every task, that nothing reads. A step whose keys are read says ``multiple_outputs=True``.
    """
    kwargs.setdefault("multiple_outputs", False)
    return task(**kwargs)


class BatchFrame:
    def __init__(self, pipeline: Pipeline, dag=None, *, marker_asset=None):
        self.pipeline = pipeline
        self.dag = dag
        # The event start mode's Asset (etl_toolkit.tasks.marker_events), None in the sensor mode.
        self.marker_asset = marker_asset
        self.claim_task_id: str | None = None
        self.load_task_ids: set[str] = set()  # the steps a batch that already loaded skips
        self.counts: dict[str, Any] = {}  # layer name -> its count (the XComArg of the task that takes it)
        self.finishing_task_ids: set[str] = set()  # steps that run once the batch reconciles

    # -- while the DAG is built ----------------------------------------------------------------------

    @contextmanager
    def active(self) -> Iterator[BatchFrame]:
        token = _current.set(self)
        try:
            yield self
        finally:
            _current.reset(token)

    def register_count(self, layer: str, operator, *, key: str | None = None) -> None:
        """``operator`` counts ``layer`` (``record_count``) and returns the result, or pushes it
        under the XCom ``key`` when it counts more than one layer."""
        self.pipeline.layer(layer)  # a layer the pipeline does not declare fails the DAG's import
        if layer in self.counts:
            raise ValueError(
                f"pipeline {self.pipeline.name}: layer {layer} is counted twice "
                f"({self.counts[layer].operator.task_id} and {operator.task_id})"
            )
        self.counts[layer] = operator.output[key] if key else operator.output

    @contextmanager
    def after_reconcile(self) -> Iterator[None]:
        """Steps built inside run after ``reconcile``, before the marker is archived: what must
        only happen to a batch that reconciled (moving its objects to an archive, say). They run
        again when an already-loaded batch is claimed, so they must be idempotent and use the
        trigger rule ``none_failed_min_one_success`` (reconcile is skipped then)."""
        before = set(self.dag.task_ids)
        yield
        self.finishing_task_ids |= set(self.dag.task_ids) - before

    # -- templates for operators' arguments ----------------------------------------------------------

    def _claim_template(self) -> str:
        return f"({CLAIM_MACRO}(ti) or {{}})"

    def _field(self, name: str, default: str = "") -> str:
        return f"{{{{ {self._claim_template()}.get('{name}') or '{default}' }}}}"

    @property
    def batch_id(self) -> str:
        """The claimed batch's id, as a template for an operator's templated argument."""
        return self._field("batch_id")

    @property
    def started_at(self) -> str:
        return self._field("started_at")

    @property
    def completed_at(self) -> str:
        return self._field("completed_at")

    def expected_count(self, entity: str) -> str:
        """The marker's expected count of ``entity``, or an empty text when it gives none."""
        return f"{{{{ ({self._claim_template()}.get('expected_counts') or {{}}).get('{entity}', '') }}}}"

    @property
    def objects(self) -> str:
        """The marker's ``objects`` as JSON text: a list of keys, or ``null`` when it names none."""
        return f"{{{{ {self._claim_template()}.get('objects') | tojson }}}}"

    # -- while a task runs ----------------------------------------------------------------------------

    def record_count(self, context, layer: str, counts: dict[str, int], *, rows: str | None = None,
                     details: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
        """A layer's audit count, taken from the data by the calling task: recorded in the ledger,
        then checked at once against the layers counted before it and the marker (raises
        ``CountMismatch``). ``rows`` names the entity whose count is the layer's row count
        (default: all of them together). Returns the count as ``reconcile`` takes it::

            {"layer": "staging", "counts": {"order_lines": 2417}, "rows": 2417, "details": {...}, "counted_at": "..."}
        """
        claim = self.claim(context)
        result = {
            "layer": layer,
            "counts": counts,
            "rows": counts[rows] if rows else sum(counts.values()),
            "details": details or {},
            "counted_at": datetime.now(UTC).isoformat(),
        }
        # Recorded before the check, so the failure notification shows the count that failed it.
        ledger.record_layer(self.pipeline.name, claim["batch_id"], context["run_id"], result)
        before = {earlier.name for earlier in self.pipeline.layers_before(layer)}
        earlier = [r for r in ledger.counts_of_run(self.pipeline.name, claim["batch_id"], context["run_id"])
                   if r["layer"] in before]  # fmt: skip
        reconcile.check_layer(self.pipeline, result, earlier, claim)
        return result

    def pulled_claim(self, ti) -> dict[str, Any] | None:
        """The claim task's XCom (None if it claimed nothing), pulled once per task try: a task's
        templates and its code share one pull (``etl_toolkit.task_cache``). The ``batch_claim``
        macro of the templates."""
        return once_per_try("claim", lambda: ti.xcom_pull(task_ids=self.claim_task_id, key=CLAIM_KEY))

    def claim(self, context) -> dict[str, Any]:
        """The claim of this run (batch id, marker, expected counts ...)."""
        claim = self.pulled_claim(context["ti"])
        if not claim:
            raise RuntimeError(f"no claim of {self.pipeline.name} in this run (task {self.claim_task_id})")
        return claim


def current() -> BatchFrame:
    frame = _current.get()
    if frame is None:
        raise RuntimeError(
            "this task works on the claimed batch: build it inside a DAG made with etl_toolkit.pipeline.marker_dag"
        )
    return frame
