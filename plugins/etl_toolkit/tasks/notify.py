"""The end of a batch: its marker set aside, then the outcome published to SNS. ``notify_success``
sets the marker aside as loaded and publishes the SUCCESS summary; any failed task, the FAILURE.

Layer 4. Failures go through ``BatchFailureNotifier``, the provider's ``SnsNotifier`` attached to
every task through ``default_args`` (DAG-level failure callbacks have open problems on Airflow
3.1+). It first sets the run's batch aside - the ledger to FAILED, then the marker to the failed
archive with its reason - and only then publishes, so a publish that fails (logged as an error
and raised) never leaves the batch claimed. If the warehouse cannot be reached, the batch stays
claimed by a run that has ended: the next claim takes it over and counts an attempt, and after
``max_attempts`` gives up on it, so it cannot hold the batches behind it for good.

One FAILURE per run: when tasks of a run fail side by side (a layer's audits run beside the
next job), the first to fail sets the batch aside and publishes; the others log their error and
publish nothing more. A run cleared in the UI announces its next failure again.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from airflow.providers.amazon.aws.notifications.sns import SnsNotifier
from airflow.sdk import TriggerRule

from etl_toolkit import environment, ledger, messages, sns
from etl_toolkit.contract import ARCHIVE_PREFIX, FAILED, LOADED, ClaimRefused, HolderUnknown, Pipeline, marker_key
from etl_toolkit.markers import MarkerStore
from etl_toolkit.settings import AWS_CONN_ID
from etl_toolkit.tasks.frame import BatchFrame, step

log = logging.getLogger(__name__)


class BatchFailureNotifier(SnsNotifier):
    """Sets the failed run's batch aside, then publishes the FAILURE message.

    ``pipeline``: the pipeline's name; ``landing_bucket``: where its markers are (a name or an
    ``environment.bucket`` template; None for a DAG that holds no batch, such as one that produces
    batches). The topic is the environment's failure topic, found even when the environment's
    Variable is broken (``environment.failure_topic``): that error is announced too.
    """

    def __init__(self, *, pipeline: str, landing_bucket: str | None = None, **kwargs: Any):
        kwargs.setdefault("aws_conn_id", AWS_CONN_ID)
        # The topic and the message are found in notify(), when the failure is known.
        super().__init__(target_arn=environment.LOCAL["topics"]["failure"], message="", **kwargs)
        self.pipeline = pipeline
        self.landing_bucket = landing_bucket

    def notify(self, context):
        self.target_arn = environment.failure_topic()
        ti, run_id = context["ti"], context["run_id"]
        error = context.get("exception")
        held = self._held_batch(run_id)
        if held and not self._first_failure(held, run_id, context):
            log.warning("Task %s failed too (%s): run %s has already set batch %s aside and announced its failure; "
                        "not published again", ti.task_id, error, run_id, held["batch_id"])  # fmt: skip
            return
        batch_id = (
            (held or {}).get("batch_id")
            or getattr(error, "batch_id", None)
            or (context.get("params") or {}).get("batch_id")
        )
        facts: dict[str, Any] = {
            "dag_id": ti.dag_id,
            "dag_run_id": run_id,
            "batch_id": batch_id,
            "counts": self._counts(batch_id, run_id),
            "task_id": ti.task_id,
            "try_number": ti.try_number,
            "error": f"{type(error).__name__}: {error}" if error else "unknown error",
            "log_url": ti.log_url,
        }
        if held and held["status"] == ledger.RUNNING and not isinstance(error, ClaimRefused | HolderUnknown):
            facts["set_aside"] = self._set_aside(held, facts)
        subject, message = messages.build_message(messages.FAILURE, self.pipeline, facts)
        try:
            message_id = sns.publish(self.hook, self.target_arn, subject, message)
        except Exception:
            log.error("COULD NOT PUBLISH the failure notification %r to %s; the batch is set aside regardless",
                      subject, self.target_arn, exc_info=True)  # fmt: skip
            raise
        log.info("Published %s (message %s)", subject, message_id)

    def _held_batch(self, run_id: str) -> dict[str, Any] | None:
        if not self.landing_bucket:
            return None
        try:
            return ledger.batch_of_run(self.pipeline, run_id)
        except Exception:  # the warehouse unreachable: still announce the failure
            log.exception("Could not read which batch run %s holds", run_id)
            return None

    def _first_failure(self, held: dict[str, Any], run_id: str, context) -> bool:
        clear_number = getattr(context.get("dag_run"), "clear_number", None) or 0
        try:
            return ledger.first_failure_of_run(self.pipeline, held["batch_id"], run_id, clear_number)
        except Exception:  # the warehouse unreachable: better twice than never
            log.exception("Could not tell whether run %s has announced a failure already; announcing this one", run_id)
            return True

    def _counts(self, batch_id: str | None, run_id: str) -> dict[str, Any]:
        if not (batch_id and self.landing_bucket):
            return {}
        try:
            return {r["layer"]: r["counts"] for r in ledger.counts_of_run(self.pipeline, batch_id, run_id)}
        except Exception:
            log.exception("Could not read the counts of batch %s", batch_id)
            return {}

    def _set_aside(self, held: dict[str, Any], facts: dict[str, Any]) -> str:
        """The ledger to FAILED first, then the marker to the failed archive (unless it was written
        again: then it stays pending and runs again). Should the marker not move, the next claim
        finds the batch FAILED with its marker still pending, and counts an attempt.

        A failed reprocess of a batch that had loaded (its marker came from the loaded archive)
        leaves the batch loaded: the load is one transaction, so the warehouse is as it was."""
        batch_id, run_id = held["batch_id"], facts["dag_run_id"]
        if (held.get("marker_key") or "").startswith(f"{ARCHIVE_PREFIX}{LOADED}/"):
            try:
                ledger.close(self.pipeline, batch_id, run_id, ledger.SUCCESS, f"reprocess failed: {facts['error']}")
                return "a reprocess failed; the batch stays loaded and its marker where it was"
            except Exception:
                log.exception("Could not record that the reprocess of batch %s failed", batch_id)
                return "the batch stays claimed"
        try:
            ledger.close(self.pipeline, batch_id, run_id, ledger.FAILED, facts["error"])
        except Exception:
            log.exception("Could not record batch %s as FAILED; it stays claimed until a claim finds its run "
                          "ended (an attempt is counted)", batch_id)  # fmt: skip
        try:
            store = MarkerStore(environment.render(self.landing_bucket), self.aws_conn_id)
            reason = {**facts, "failed_at": datetime.now(UTC).isoformat()}
            moved = store.archive_if_unchanged(batch_id, held.get("marker_version"), outcome=FAILED, reason=reason)
            outcome = f"marker kept pending: {moved['reason']}" if "kept" in moved else f"marker at {moved['archived']}"
            log.info("Batch %s set aside: %s", batch_id, outcome)
        except Exception:
            log.exception("Could not set the marker of batch %s (%s) aside", batch_id, marker_key(batch_id))
            outcome = "the marker could not be set aside"
        return outcome


def publish_success(frame: BatchFrame, summary, *, aws_conn_id: str = AWS_CONN_ID):
    """Task ``notify_success``: the batch is done. Its marker is set aside as loaded, then the SUCCESS
    summary (counts, durations) is published: the mirror of the failure notifier, which sets the
    batch aside as failed before it publishes, so a published outcome is always a settled one.

    A marker written again while the batch ran is kept pending, the ledger asks the next claim to
    load the batch again, and the message says so. In a pipeline that loads in order, the held
    batches that may go on now are released. It runs after a no-op too (the load skipped, the claim
    succeeded): a batch that already loaded gets a message saying that the run changed nothing; a
    run that claimed no batch publishes nothing. Run again (a retry), it finds the marker already
    set aside and publishes the same summary.

    ``summary``: the reconcile task's output.
    """
    pipeline = frame.pipeline

    @step(task_id="notify_success", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def notify_success(summary: dict[str, Any] | None, **context) -> dict[str, Any]:
        claim = frame.claim(context)
        marker = _set_aside_as_loaded(pipeline, claim, aws_conn_id)
        ran = ledger.counts_of_run(pipeline.name, claim["batch_id"], context["run_id"])
        facts: dict[str, Any] = {
            "dag_id": context["ti"].dag_id,
            "dag_run_id": context["run_id"],
            "batch_id": claim["batch_id"],
            "counts": {r["layer"]: r["counts"] for r in ran},
            "durations_seconds": durations(context["dag_run"].start_date, ran),
        }
        for published in (r["published"] for r in ran):  # what a count carries to the message (metrics ...)
            for name, value in published.items():
                facts.setdefault(name, value)
        if claim.get("already_loaded"):
            facts["note"] = f"batch {claim['batch_id']} was already loaded: nothing changed (no-op)"
        else:
            facts["counts_table"] = (summary or {}).get("table")
        if "kept" in marker:
            facts["marker_kept"] = f"{marker['kept']} kept pending ({marker['reason']}): the batch runs again"
        subject, message = messages.build_message(messages.SUCCESS, pipeline.name, facts)
        topic = environment.current().topic("success")
        message_id = sns.publish(sns.sns_hook(), topic, subject, message)
        published = json.loads(json.loads(message)["default"])
        return {"subject": subject, "message_id": message_id, **published, "marker": marker}

    return notify_success(summary)


def _set_aside_as_loaded(pipeline: Pipeline, claim: dict[str, Any], aws_conn_id: str) -> dict[str, Any]:
    """The claimed batch's marker to the loaded archive, unless it was written again meanwhile."""
    store = MarkerStore(environment.render(pipeline.landing_bucket), aws_conn_id)
    outcome = store.archive_if_unchanged(claim["batch_id"], claim.get("version"))
    if "kept" in outcome:
        ledger.request_rerun(pipeline.name, claim["batch_id"])
        log.warning("Kept %s pending: %s. The batch runs again next.", outcome["kept"], outcome["reason"])
    else:
        log.info("Batch %s: marker set aside at %s", claim["batch_id"], outcome["archived"])
    if pipeline.in_order:
        # Only the held batches before the earliest one that still has not loaded may go on.
        released = store.release_held(before=ledger.first_unloaded(pipeline.name))
        if released:
            log.info("Batch %s loaded: released the batches it held, in order: %s", claim["batch_id"], released)
        outcome["released"] = released
    return outcome


def durations(started: datetime | None, counted: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds of the whole run, and spent on each layer (from the previous count to its own)."""
    now = datetime.now(UTC)
    result = {"run": round((now - started).total_seconds(), 1)} if started else {}
    previous = started
    for row in counted:
        stamp = datetime.fromisoformat(row["counted_at"])
        if previous:
            result[row["layer"]] = round((stamp - previous).total_seconds(), 1)
        previous = stamp
    return result
