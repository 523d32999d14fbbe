"""Completion markers: sense them, validate them, claim a batch exactly once, set it aside.

Upstream writes ``s3://<landing>/batch-completion/<batch_id>.json`` after a batch's last data
object (CONTRACTS.md). A DAG run:

1. waits for any key under ``batch-completion/`` with a deferrable ``S3KeySensor`` (the wait
   happens in the triggerer and holds no worker slot), unless the run was started for a given
   batch from the UI;
2. claims the oldest valid marker (or the requested batch): keys that are not
   ``<batch_id>.json`` are moved to ``batch-archive/rejected/`` with the reason and never
   processed; the marker body is parsed and checked; the claim is recorded in
   ``audit.batches``, where a batch that already loaded is reported as a no-op unless the run
   asks to reprocess;
3. at the end moves the marker to ``batch-archive/loaded/`` (or, on failure, the failure
   notifier moves it to ``batch-archive/failed/`` with the reason), so the sensor never sees the
   same marker twice and writing it again runs the batch again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.amazon.aws.triggers.s3 import S3KeyTrigger
from airflow.sdk import TriggerRule, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout, AirflowSkipException
from airflow.triggers.base import TriggerEvent

from etl_toolkit.config import AWS_CONN_ID, BATCH_ID_PATTERN, BATCH_MARKER_PREFIX, MARKER_POKE_SECONDS

ARCHIVE_PREFIX = "batch-archive/"
_MARKER_KEY = re.compile(rf"^{re.escape(BATCH_MARKER_PREFIX)}(?P<batch_id>{BATCH_ID_PATTERN})\.json$")
_BATCH_ID = re.compile(rf"^{BATCH_ID_PATTERN}$")
_log = logging.getLogger(__name__)

# The claimed batch, for operators' templated arguments (e.g. a Glue job's script_args).
BATCH_ID = "{{ ti.xcom_pull(task_ids='claim_batch')['batch_id'] }}"
STARTED_AT = "{{ ti.xcom_pull(task_ids='claim_batch')['started_at'] or '' }}"
COMPLETED_AT = "{{ ti.xcom_pull(task_ids='claim_batch')['completed_at'] or '' }}"


class InvalidMarker(ValueError):
    """A marker that breaks the contract; the message names the marker and the reason."""


@dataclass(frozen=True)
class Marker:
    batch_id: str
    key: str
    started_at: str | None = None
    completed_at: str | None = None
    expected_counts: dict[str, int] = field(default_factory=dict)

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)


def marker_key(batch_id: str) -> str:
    if not _BATCH_ID.match(batch_id or ""):
        raise InvalidMarker(f"batch id {batch_id!r} does not match {BATCH_ID_PATTERN}")
    return f"{BATCH_MARKER_PREFIX}{batch_id}.json"


def batch_id_from_key(key: str) -> str:
    match = _MARKER_KEY.match(key)
    if not match:
        raise InvalidMarker(
            f"marker key {key!r} is not {BATCH_MARKER_PREFIX}<batch_id>.json with a batch id "
            f"matching {BATCH_ID_PATTERN}"
        )
    return match["batch_id"]


def parse_marker(key: str, body: bytes | str) -> Marker:
    """Validate a marker against the contract; raise InvalidMarker naming the key and the reason."""
    batch_id = batch_id_from_key(key)
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if not text.strip():
        return Marker(batch_id=batch_id, key=key)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidMarker(f"marker {key} (batch {batch_id}) is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidMarker(f"marker {key} (batch {batch_id}) must be a JSON object, got {type(data).__name__}")
    if "batch_id" in data and data["batch_id"] != batch_id:
        raise InvalidMarker(f"marker {key} says batch_id {data['batch_id']!r} but its file name says {batch_id!r}")
    for stamp in ("started_at", "completed_at"):
        if data.get(stamp) is not None:
            _parse_timestamp(key, stamp, data[stamp])
    counts = data.get("expected_counts") or {}
    if not isinstance(counts, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()
    ):
        raise InvalidMarker(f"marker {key} (batch {batch_id}): expected_counts must map names to non-negative integers")
    return Marker(batch_id, key, data.get("started_at"), data.get("completed_at"), dict(counts))


def _parse_timestamp(key: str, name: str, value: Any) -> datetime:
    try:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidMarker(f"marker {key}: {name} {value!r} is not an ISO-8601 timestamp") from None
    if stamp.tzinfo is None:
        raise InvalidMarker(f"marker {key}: {name} {value!r} has no time zone (UTC expected)")
    return stamp.astimezone(UTC)


class MarkerOrQueuedRunTrigger(S3KeyTrigger):
    """Fires when a key appears under ``batch-completion/``, or when a run of the same DAG is queued.

    A continuous DAG runs one run at a time, so a run started from the UI or the API (for a given
    batch, say) would queue behind the run that is waiting for the next marker, for as long as no
    marker comes. This trigger notices such a queued run at its next poke and ends the wait, so the
    waiting run makes way and the queued one starts within a poke interval.
    """

    def __init__(self, *, dag_id: str, give_up_at: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.dag_id = dag_id
        # The scheduler times a deferred task out by itself, but dag.test() runs the trigger inline
        # with no timeout: the trigger keeps the deadline too, so a quiet day ends the same in both.
        self.give_up_at = give_up_at

    def serialize(self) -> tuple[str, dict[str, Any]]:
        _, kwargs = super().serialize()
        # S3KeyTrigger serializes its extra hook arguments under "hook_params"; spread them back.
        kwargs = {**kwargs.pop("hook_params", {}), **kwargs, "dag_id": self.dag_id, "give_up_at": self.give_up_at}
        return f"{__name__}.{type(self).__name__}", kwargs

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            async with await self.hook.get_async_conn() as client:
                while True:
                    if await self.hook.check_key_async(
                        client, self.bucket_name, self.bucket_key, self.wildcard_match, self.use_regex
                    ):
                        yield TriggerEvent({"status": "success"})
                        return
                    queued = await self._queued_runs()
                    if queued:
                        yield TriggerEvent({"status": "make_way", "queued_runs": queued})
                        return
                    if self.give_up_at and datetime.now(UTC) >= datetime.fromisoformat(self.give_up_at):
                        yield TriggerEvent({"status": "timeout"})
                        return
                    self.log.info("No marker and no queued run. Sleeping for %s seconds", self.poke_interval)
                    await asyncio.sleep(self.poke_interval)
        except Exception as error:  # surfaces in the task as a failure that names the bucket
            yield TriggerEvent({"status": "error", "message": f"{type(error).__name__}: {error}"})

    async def _queued_runs(self) -> int:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
        from asgiref.sync import sync_to_async

        try:
            return await sync_to_async(RuntimeTaskInstance.get_dr_count)(dag_id=self.dag_id, states=["queued"])
        except Exception as error:  # not being able to look is no reason to stop waiting for markers
            self.log.warning("Could not count queued runs of %s (%s); waiting for markers only.", self.dag_id, error)
            return 0


class BatchMarkerSensor(S3KeySensor):
    """Waits (deferred, in the triggerer) for any key under ``batch-completion/``.

    A run started for a given batch (``params.batch_id``) does not wait: the claim task finds
    that batch's marker wherever it is. A waiting run ends *skipped* when its ``timeout`` passes
    with no marker (a quiet day is not a failure) or when another run of the DAG is queued (it
    makes way, see ``MarkerOrQueuedRunTrigger``); any other error, S3 unreachable or access denied
    say, fails the task, so it is notified instead of passing for a quiet day.
    """

    def __init__(self, *, bucket_name: str, aws_conn_id: str = AWS_CONN_ID, **kwargs):
        kwargs.setdefault("deferrable", True)
        kwargs.setdefault("poke_interval", MARKER_POKE_SECONDS)
        kwargs.setdefault("timeout", 24 * 60 * 60)
        super().__init__(
            bucket_name=bucket_name,
            bucket_key=f"{BATCH_MARKER_PREFIX}*",
            wildcard_match=True,
            aws_conn_id=aws_conn_id,
            **kwargs,
        )

    def execute(self, context):
        batch_id = (context.get("params") or {}).get("batch_id")
        if batch_id:
            self.log.info("Run started for batch %s: not waiting for a new marker.", batch_id)
            return None
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        self.defer(
            timeout=timedelta(seconds=self.timeout),
            trigger=MarkerOrQueuedRunTrigger(
                dag_id=context["dag"].dag_id,
                bucket_name=self.bucket_name,
                bucket_key=self.bucket_key,
                wildcard_match=True,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
                poke_interval=self.poke_interval,
                give_up_at=(datetime.now(UTC) + timedelta(seconds=self.timeout)).isoformat(),
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context, event: dict[str, Any]) -> None:
        where = f"s3://{self.bucket_name}/{BATCH_MARKER_PREFIX}"
        if event.get("status") == "make_way":
            raise AirflowSkipException(
                f"{event.get('queued_runs')} queued run(s) of {context['dag'].dag_id} (started from the UI or "
                f"the API): this run stops waiting for {where} and ends skipped so they can start"
            )
        if event.get("status") == "timeout":
            raise self._quiet_day()
        if event.get("status") == "error":
            raise AirflowException(f"waiting for a marker under {where} failed: {event.get('message')}")

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context):
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout as error:  # the scheduler timed the deferral out
            raise self._quiet_day() from error

    def _quiet_day(self) -> AirflowSkipException:
        """Only the timeout is a quiet day: the run ends skipped, and the next run waits again."""
        return AirflowSkipException(
            f"no marker under s3://{self.bucket_name}/{BATCH_MARKER_PREFIX} within {self.timeout:.0f} s: "
            "this run ends skipped and the next run waits again"
        )


class MarkerStore:
    """The landing bucket's markers and their archive, through the Amazon provider's S3Hook."""

    def __init__(self, bucket: str, aws_conn_id: str = AWS_CONN_ID):
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        self.bucket = bucket
        self.s3 = S3Hook(aws_conn_id=aws_conn_id)

    def pending(self) -> list[dict[str, Any]]:
        """Keys under batch-completion/, oldest first (ties by key, so the order is stable)."""
        client = self.s3.get_conn()
        objects: list[dict[str, Any]] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=BATCH_MARKER_PREFIX):
            objects += page.get("Contents", [])
        return sorted(objects, key=lambda o: (o["LastModified"], o["Key"]))

    def read(self, key: str) -> bytes:
        return self.s3.get_conn().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def find(self, batch_id: str) -> str | None:
        """Where a batch's marker is now: pending, or set aside after a failure or a load."""
        for key in (
            marker_key(batch_id),
            f"{ARCHIVE_PREFIX}failed/{batch_id}.json",
            f"{ARCHIVE_PREFIX}loaded/{batch_id}.json",
        ):
            if self.s3.check_for_key(key, bucket_name=self.bucket):
                return key
        return None

    def set_aside(self, key: str, outcome: str, reason: dict[str, Any] | None = None) -> str:
        """Move a marker to batch-archive/<outcome>/, with the reason in a sibling .reason.json."""
        name = key.rsplit("/", 1)[-1]
        target = f"{ARCHIVE_PREFIX}{outcome}/{name}"
        client = self.s3.get_conn()
        if key != target:
            client.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": key})
            client.delete_object(Bucket=self.bucket, Key=key)
        if reason is not None:
            client.put_object(
                Bucket=self.bucket,
                Key=f"{target.removesuffix('.json')}.reason.json",
                Body=json.dumps(reason, indent=2, default=str).encode(),
                ContentType="application/json",
            )
        return target


def next_marker_key(store: MarkerStore, requested_batch_id: str | None, log) -> str | None:
    """The marker this run takes: the requested batch's (wherever it is), or the oldest pending one.

    Every pending key that is not ``<batch_id>.json`` is rejected on the way.
    """
    if requested_batch_id:
        key = store.find(requested_batch_id)
        if key is None:
            raise InvalidMarker(
                f"batch {requested_batch_id}: no marker at {marker_key(requested_batch_id)} nor in {ARCHIVE_PREFIX}"
            )
        return key
    chosen = None
    for obj in store.pending():
        key = obj["Key"]
        try:
            batch_id_from_key(key)
        except InvalidMarker as error:
            # Never processed, never silently dropped: it stays readable beside its reason.
            log.warning("Rejected %s: %s", key, error)
            store.set_aside(key, "rejected", {"key": key, "error": str(error)})
            continue
        chosen = chosen or key
    return chosen


class BatchInProgress(AirflowFailException):
    """Another DAG run holds the batch; this run leaves it (and its marker) alone."""


def _claim(pipeline: str, bucket: str, context) -> dict[str, Any]:
    from etl_toolkit import warehouse

    ti, params = context["ti"], context["params"]
    requested, reprocess = params.get("batch_id"), bool(params.get("reprocess"))
    store = MarkerStore(bucket)
    try:
        key = next_marker_key(store, requested, _log)
    except InvalidMarker as error:  # a batch asked for that has no marker: retrying won't help
        raise AirflowFailException(str(error)) from None
    if key is None:
        raise AirflowSkipException(f"no valid marker under s3://{bucket}/{BATCH_MARKER_PREFIX}")
    batch_id = requested or batch_id_from_key(key)
    # Pushed before the body is read, so a failure notification can name and set aside this marker.
    ti.xcom_push(key="marker_key", value=key)
    ti.xcom_push(key="batch_id", value=batch_id)
    try:
        marker = parse_marker(marker_key(batch_id), store.read(key))
    except InvalidMarker as error:
        raise AirflowFailException(str(error)) from None

    with warehouse.transaction() as cursor:
        warehouse.execute(cursor, "audit", "create_tables.sql")
        previous = warehouse.execute(cursor, "audit", "get_batch.sql", {"pipeline": pipeline, "batch_id": batch_id})
        status, holder = (previous[0][0], previous[0][1]) if previous else (None, None)
        already_loaded = status == "SUCCESS" and not reprocess
        if status == "RUNNING" and holder != context["run_id"] and _is_active(context["dag"].dag_id, holder):
            raise BatchInProgress(f"batch {batch_id} is being loaded by run {holder}; leaving it to that run")
        if not already_loaded:
            warehouse.execute(
                cursor,
                "audit",
                "claim_batch.sql",
                {
                    "pipeline": pipeline,
                    "batch_id": batch_id,
                    "marker_key": key,
                    "expected_counts": marker.expected_counts,
                    "dag_run_id": context["run_id"],
                    "now": datetime.now(UTC).isoformat(),
                },
            )
    if already_loaded:
        _log.info("Batch %s was already loaded (audit status SUCCESS): this run changes nothing.", batch_id)
    return {**marker.to_xcom(), "key": key, "already_loaded": already_loaded, "reprocess": reprocess}


def _is_active(dag_id: str, run_id: str | None) -> bool:
    if not run_id:
        return False
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    try:
        return RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=run_id) in ("queued", "running")
    except Exception:  # the run was deleted: nothing holds the batch any more
        return False


# -- the tasks a pipeline strings together -------------------------------------------------------


def wait_for_marker(bucket: str, **kwargs) -> BatchMarkerSensor:
    return BatchMarkerSensor(task_id="wait_for_marker", bucket_name=bucket, **kwargs)


def claim_batch(pipeline: str, bucket: str):
    """Task ``claim_batch``: take one marker, validate it, claim the batch in ``audit.batches``."""

    @task(task_id="claim_batch")
    def claim_batch(**context) -> dict[str, Any]:
        return _claim(pipeline, bucket, context)

    return claim_batch()


def skip_if_already_loaded():
    """Task ``is_new_batch``: a batch that already loaded skips the load; the summary still runs."""

    @task.short_circuit(task_id="is_new_batch", ignore_downstream_trigger_rules=False)
    def is_new_batch(**context) -> bool:
        return not context["ti"].xcom_pull(task_ids="claim_batch")["already_loaded"]

    return is_new_batch()


def archive_marker(bucket: str):
    """Task ``archive_marker``: the batch is done; its marker moves to batch-archive/loaded/.

    Downstream of ``claim_batch`` as well as of the last load task, so that a batch that was
    already loaded (load skipped, claim succeeded) is archived too, while a run whose sensor
    found nothing (everything skipped) is not.
    """

    @task(task_id="archive_marker", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def archive_marker(**context) -> str:
        claim = context["ti"].xcom_pull(task_ids="claim_batch")
        return MarkerStore(bucket).set_aside(claim["key"], "loaded")

    return archive_marker()


# -- producing batches (a DAG that extracts from a source and writes the marker) ------------------


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
    if not _BATCH_ID.match(batch_id):
        raise InvalidMarker(f"batch id {batch_id!r} does not match {BATCH_ID_PATTERN}")
    return batch_id


def plan_batch(
    prefix: str, *, allowed: tuple[str, ...], names_param: str = "tables", names_variable: str | None = None
):
    """Task ``plan_batch``: the batch a producing run writes, and the allow-listed names it covers.

    The names come from the run's ``names_param``, else the Airflow Variable ``names_variable``
    (comma-separated), else all of ``allowed``; one name off the list fails the run at once.
    """

    @task(task_id="plan_batch")
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
