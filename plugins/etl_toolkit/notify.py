"""SNS notifications: a success summary at the end of a batch, a failure message from any task.

Every message follows CONTRACTS.md: published with ``MessageStructure="json"``, the ``default``
entry a JSON object (status, pipeline, dag_id, dag_run_id, batch_id, counts; a failure adds
task_id, try_number, error, log_url), the ``email`` entry the same facts as readable text, and the
subject ``<STATUS> <pipeline> <batch_id>`` (at most 100 characters).

Failures go through ``BatchFailureNotifier``, the provider's ``SnsNotifier`` attached to every
task through ``default_args`` (DAG-level failure callbacks have open problems on Airflow 3.1+,
apache/airflow#63374). After publishing, it sets the batch's marker aside with the reason and
marks the batch FAILED in ``audit.batches``, so a failed batch never blocks the ones behind it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

from etl_toolkit import config

SUBJECT_LIMIT = 100


def build_message(status: str, pipeline: str, facts: dict[str, Any]) -> tuple[str, str]:
    """(subject, message) for ``sns.publish(..., MessageStructure="json")``."""
    body = {"status": status, "pipeline": pipeline, **facts}
    subject = f"{status} {pipeline} {facts.get('batch_id') or '-'}"[:SUBJECT_LIMIT]
    return subject, json.dumps({"default": json.dumps(body, default=str), "email": _readable(body)})


def _readable(body: dict[str, Any]) -> str:
    lines = [f"{body['status']}: pipeline {body['pipeline']}, batch {body.get('batch_id') or '-'}", ""]
    for name, value in body.items():
        if name in ("status", "pipeline", "batch_id", "counts", "counts_table", "error"):
            continue
        lines.append(f"{name}: {value}")
    if body.get("counts"):
        lines += ["", "counts by layer:"]
        lines += [f"  {layer}: {counts}" for layer, counts in body["counts"].items()]
    if body.get("counts_table"):
        lines += ["", body["counts_table"]]
    if body.get("error"):
        lines += ["", "error:", str(body["error"])]
    return "\n".join(lines)


def topic_arn(hook, name_or_arn: str) -> str:
    """A topic named in config (name or ARN) as an ARN in the connection's account and region."""
    if name_or_arn.startswith("arn:"):
        return name_or_arn
    sts = hook.get_session().client("sts", endpoint_url=hook.conn_config.endpoint_url)
    identity = sts.get_caller_identity()
    partition = identity["Arn"].split(":")[1]
    return f"arn:{partition}:sns:{hook.conn_region_name}:{identity['Account']}:{name_or_arn}"


def publish(hook, topic: str, subject: str, message: str) -> str:
    response = hook.get_conn().publish(
        TopicArn=topic_arn(hook, topic), Subject=subject, Message=message, MessageStructure="json"
    )
    return response["MessageId"]


def batch_facts(context: dict[str, Any]) -> dict[str, Any]:
    """What every message says about the run: ids, the batch and the counts as far as it got."""
    from etl_toolkit.reconcile import CLAIM_TASK_ID, earlier_counts

    ti = context["ti"]
    claim = ti.xcom_pull(task_ids=CLAIM_TASK_ID) or {}
    batch_id = (
        claim.get("batch_id")
        or ti.xcom_pull(task_ids=CLAIM_TASK_ID, key="batch_id")
        or (context.get("params") or {}).get("batch_id")
    )
    counts = {r["layer"]: r["counts"] for r in earlier_counts(ti, context["dag"])}
    return {"dag_id": ti.dag_id, "dag_run_id": context["run_id"], "batch_id": batch_id, "counts": counts}


class BatchFailureNotifier(SnsNotifier):
    """Publishes the FAILURE message for a failed task, then sets its batch aside."""

    def __init__(self, *, pipeline: str, landing_bucket: str | None = None, **kwargs: Any):
        kwargs.setdefault("aws_conn_id", config.AWS_CONN_ID)
        super().__init__(
            target_arn=config.FAILURE_TOPIC,
            message="",  # built from the context in notify()
            **kwargs,
        )
        self.pipeline = pipeline
        self.landing_bucket = landing_bucket

    def notify(self, context):
        ti = context["ti"]
        error = context.get("exception")
        facts = batch_facts(context)
        facts.update(
            task_id=ti.task_id,
            try_number=ti.try_number,
            error=f"{type(error).__name__}: {error}" if error else "unknown error",
            log_url=ti.log_url,
        )
        subject, message = build_message("FAILURE", self.pipeline, facts)
        message_id = publish(self.hook, self.target_arn, subject, message)
        self.log.info("Published %s (message %s)", subject, message_id)
        self._set_batch_aside(context, facts, error)

    def _set_batch_aside(self, context, facts: dict[str, Any], error: BaseException | None) -> None:
        from etl_toolkit.batches import BatchInProgress, MarkerStore
        from etl_toolkit.reconcile import CLAIM_TASK_ID, close_batch

        if isinstance(error, BatchInProgress):
            return  # another run owns this batch and its marker
        marker_key = context["ti"].xcom_pull(task_ids=CLAIM_TASK_ID, key="marker_key")
        if marker_key and self.landing_bucket:
            reason = {**facts, "failed_at": datetime.now(UTC).isoformat()}
            try:
                target = MarkerStore(self.landing_bucket, self.aws_conn_id).set_aside(marker_key, "failed", reason)
                self.log.info("Set the marker aside at s3://%s/%s", self.landing_bucket, target)
            except Exception:
                # Gone already (archive_marker ran before a later task failed, or someone moved it):
                # nothing is pending to block later batches. The batch is still closed as FAILED.
                self.log.exception("Could not set s3://%s/%s aside", self.landing_bucket, marker_key)
        if facts.get("batch_id"):
            close_batch(self.pipeline, facts["batch_id"], context["run_id"], "FAILED", facts["error"])


def publish_success(pipeline: str):
    """Task ``notify_success``: the SUCCESS summary (counts, durations) once the batch is done.

    It runs for a batch that was already loaded too (the load tasks were skipped): the message
    then says that the run changed nothing. A run that claimed no batch (its sensor ended skipped)
    publishes nothing.
    """
    from airflow.sdk import TriggerRule, Variable, task

    @task(task_id="notify_success", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def notify_success(**context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.sns import SnsHook

        from etl_toolkit.reconcile import CLAIM_TASK_ID

        ti = context["ti"]
        claim = ti.xcom_pull(task_ids=CLAIM_TASK_ID) or {}
        facts = batch_facts(context)
        facts["durations_seconds"] = durations(context)
        if claim.get("already_loaded"):
            facts["note"] = f"batch {facts['batch_id']} was already loaded: nothing changed (no-op)"
        else:
            summary = ti.xcom_pull(task_ids="reconcile") or {}
            facts["counts_table"] = summary.get("table")
        subject, message = build_message("SUCCESS", pipeline, facts)
        topic = Variable.get("etl_success_topic", default="etl-success")
        message_id = publish(SnsHook(aws_conn_id=config.AWS_CONN_ID), topic, subject, message)
        return {"subject": subject, "message_id": message_id, **json.loads(json.loads(message)["default"])}

    return notify_success()


def durations(context) -> dict[str, float]:
    """Seconds from the run's start to the claim, and spent on each layer (between its counts)."""
    started = context["dag_run"].start_date
    now = datetime.now(UTC)
    result = {"run": round((now - started).total_seconds(), 1)} if started else {}
    previous = started
    for layer, counted_at in _counted_at(context).items():
        stamp = datetime.fromisoformat(counted_at)
        if previous:
            result[layer] = round((stamp - previous).total_seconds(), 1)
        previous = stamp
    return result


def _counted_at(context) -> dict[str, str]:
    from etl_toolkit.reconcile import earlier_counts

    return {r["layer"]: r["counted_at"] for r in earlier_counts(context["ti"], context["dag"])}
