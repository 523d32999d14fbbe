"""Sensing, claiming and archiving a batch: the frame every marker-driven DAG shares.

Layer 4. A run:

1. waits for any key under ``batch-completion/`` with a deferrable ``S3KeySensor`` (the wait
   happens in the triggerer and holds no worker slot), unless it was started for a given batch;
2. claims the oldest valid marker (or the requested batch) in the audit ledger, exactly once:
   keys that are not ``<batch_id>.json`` are set aside as rejected; a marker that breaks the
   contract is set aside as failed and fails the run; a batch already loaded is a no-op unless
   the run asks to reprocess; a batch held by a live run is left to it; a batch claimed
   ``max_attempts`` times without finishing is given up on (set aside, announced) and the next
   marker is taken;
3. at the end (``tasks.notify``) the marker is set aside as loaded, unless it was written again
   while the batch ran: then it stays pending and the batch runs again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.amazon.aws.triggers.s3 import S3KeyTrigger
from airflow.sdk import AssetAlias, TriggerRule, task
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout, AirflowSkipException
from airflow.triggers.base import TriggerEvent

from etl_toolkit import environment, ledger, messages, sns
from etl_toolkit.contract import (
    BATCH_MARKER_PREFIX,
    FAILED,
    HELD,
    REJECTED,
    BatchHeld,
    ClaimRefused,
    HolderUnknown,
    InvalidMarker,
    batch_id_from_key,
    marker_key,
    parse_marker,
)
from etl_toolkit.markers import MarkerStore
from etl_toolkit.settings import (
    AWS_CONN_ID,
    MARKER_POKE_SECONDS,
    MAX_ATTEMPTS,
)
from etl_toolkit.tasks.frame import CLAIM_KEY, BatchFrame, step

_log = logging.getLogger(__name__)


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


# -- claiming ------------------------------------------------------------------------------------------


def _holder_alive(dag_id: str):
    def alive(run_id: str) -> bool:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        try:
            return RuntimeTaskInstance.get_dr_count(dag_id=dag_id, run_ids=[run_id], states=["queued", "running"]) > 0
        except Exception as error:  # never read "cannot tell" as "dead": a second run would take a live batch
            raise HolderUnknown(f"cannot tell whether run {run_id} of {dag_id} still runs: {error}") from error

    return alive


def _candidates(store: MarkerStore, requested: str | None, by_batch_id: bool = False) -> list[str]:
    """The markers this run may take, in order: the requested batch's (wherever it is), or the
    pending ones, oldest first (or in batch-id order). A pending key that is not
    ``<batch_id>.json`` is set aside."""
    if requested:
        key = store.find(requested)
        if key is None:
            raise InvalidMarker(
                f"batch {requested}: no marker at {marker_key(requested)} nor in the archive", batch_id=requested
            )
        return [key]
    keys = []
    for obj in store.pending():
        try:
            batch_id_from_key(obj["Key"])
        except InvalidMarker as error:
            # Never processed, never silently dropped: it stays readable beside its reason.
            _log.warning("Rejected %s: %s", obj["Key"], error)
            store.set_aside(obj["Key"], REJECTED, {"key": obj["Key"], "error": str(error)})
            continue
        keys.append(obj["Key"])
    return sorted(keys, key=batch_id_from_key) if by_batch_id else keys


def claim(pipeline, context, *, aws_conn_id: str = AWS_CONN_ID) -> dict[str, Any]:
    """Take one batch for this run; see the module's docstring for the rules."""
    from botocore.exceptions import ClientError

    params, run_id, dag_id = context["params"], context["run_id"], context["dag"].dag_id
    requested, reprocess = params.get("batch_id"), bool(params.get("reprocess"))
    store = MarkerStore(environment.render(pipeline.landing_bucket), aws_conn_id)
    for key in _candidates(store, requested, by_batch_id=pipeline.in_order):
        batch_id = requested or batch_id_from_key(key)
        try:
            body, version = store.read(key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "NoSuchKey":
                raise
            _log.info("Marker %s went away before it could be read (another run took it): next one.", key)
            continue
        try:
            marker = parse_marker(marker_key(batch_id), body)
        except InvalidMarker as error:
            # Set aside, so the batches behind it run; the failure notifier then announces it. A broken
            # rewrite of a loaded (or running) batch's marker is rejected instead: the batch stays as it is.
            recorded = ledger.record_failure(pipeline.name, batch_id, run_id, key, str(error))
            store.set_aside(key, FAILED if recorded else REJECTED,
                            {"batch_id": batch_id, "key": key, "error": str(error), "dag_run_id": run_id})  # fmt: skip
            raise
        try:
            decision = ledger.claim(
                pipeline.name,
                batch_id,
                run_id=run_id,
                marker_key=key,
                marker_version=version,
                expected_counts=marker.expected_counts,
                requested=bool(requested),
                reprocess=reprocess,
                holder_alive=_holder_alive(dag_id),
                max_attempts=pipeline.max_attempts or MAX_ATTEMPTS,
                in_order=pipeline.in_order,
                held_before=[held for held in store.held() if held < batch_id] if pipeline.in_order else [],
            )
        except HolderUnknown as error:  # retried: by then the holder's state can be told
            raise HolderUnknown(f"batch {batch_id}: {error}; not taking it while its holder may be alive") from error
        except ClaimRefused as error:
            message = f"batch {batch_id}: {error}"
            if requested:
                raise ClaimRefused(message) from None
            # One batch at a time per pipeline: a run that lost the race for the oldest batch waits
            # for the next marker rather than starting a newer batch beside it.
            raise AirflowSkipException(f"lost the race for {message}") from None
        if decision.action == "give-up":
            _give_up(pipeline, store, key, batch_id, decision.reason, context)
            continue
        if decision.action == "hold":
            # Out of the pending markers, so waiting runs wait for new ones; back when the earlier one loads.
            message = (f"pipeline {pipeline.name} is held: it loads batches in order, and batch {batch_id} is "
                       f"{decision.reason}. It runs by itself once that batch loads.")  # fmt: skip
            store.set_aside(key, HELD, {"batch_id": batch_id, "error": message, "dag_run_id": run_id})
            raise BatchHeld(message, batch_id=batch_id)
        already_loaded = decision.action == "no-op"
        if already_loaded:
            _log.info("Batch %s was already loaded (audit status SUCCESS): this run changes nothing.", batch_id)
        else:
            _log.info("Claimed batch %s from %s: attempt %d (%s).", batch_id, key, decision.attempts, decision.reason)
        return {
            **marker.to_xcom(),
            "key": key,
            "version": version,
            "already_loaded": already_loaded,
            "reprocess": reprocess,
            "attempt": decision.attempts,
        }
    raise AirflowSkipException(_nothing_to_claim(store, context))


def announced_batches(context) -> list[str]:
    """The batches the marker events that started this run name (event start mode), in order."""
    batches = []
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            payload = (event.extra or {}).get("payload") or {}
            if payload.get("batch_id"):
                batches.append(payload["batch_id"])
    return batches


def _nothing_to_claim(store: MarkerStore, context) -> str:
    where = f"s3://{store.bucket}/{BATCH_MARKER_PREFIX}"
    announced = announced_batches(context)
    if announced:
        named = ", ".join(sorted(set(announced)))
        return (f"this run's marker event(s) name batch {named}, but no marker is pending under {where} any "
                "more (a duplicate or redelivered event: an earlier run claimed the batch): nothing to do")  # fmt: skip
    return f"no valid marker under {where}"


def _give_up(pipeline, store: MarkerStore, key: str, batch_id: str, reason: str, context) -> None:
    """Set a batch that keeps failing aside, then announce it; the claim goes on to the next one."""
    ti = context["ti"]
    facts = {
        "dag_id": ti.dag_id,
        "dag_run_id": context["run_id"],
        "batch_id": batch_id,
        "counts": {},
        "task_id": ti.task_id,
        "try_number": ti.try_number,
        "error": f"batch {batch_id} {reason}: set aside as failed"
        + (
            ", and the batches behind it are held until it loads"
            if pipeline.in_order
            else ", so the batches behind it run"
        ),
        "log_url": ti.log_url,
    }
    store.set_aside(key, FAILED, {**facts, "failed_at": datetime.now(UTC).isoformat()})
    _log.error("Gave up on batch %s: %s; its marker is now in the failed archive.", batch_id, reason)
    subject, message = messages.build_message(messages.FAILURE, pipeline.name, facts)
    topic = environment.failure_topic()
    try:
        sns.publish(sns.sns_hook(), topic, subject, message)
    except Exception:  # the batch is set aside already; a retry would find nothing left to announce
        _log.error("COULD NOT PUBLISH %r to %s; batch %s is set aside regardless", subject, topic, batch_id,
                   exc_info=True)  # fmt: skip


def claim_batch(frame: BatchFrame, *, task_id: str = "claim_batch"):
    """Task: take one batch (see ``claim``) and leave the claim in the XCom ``claim``.

    It also says which tasks follow: all of them for a new batch; for a batch that already loaded
    (a no-op claim) only the archive and the finishing steps, not the load (``frame.load_task_ids``).
    """
    pipeline = frame.pipeline

    @task.branch(task_id=task_id)
    def claim_batch(**context) -> list[str]:
        announced = announced_batches(context)
        if announced:
            _log.info("Started by the marker event(s) of batch %s.", ", ".join(announced))
        result = claim(pipeline, context)
        context["ti"].xcom_push(key=CLAIM_KEY, value=result)
        following = set(context["task"].downstream_task_ids)
        if result["already_loaded"]:
            following -= frame.load_task_ids
        return sorted(following)

    result = claim_batch()
    frame.claim_task_id = result.operator.task_id
    return result


def request_next_run(frame: BatchFrame, *, aws_conn_id: str = AWS_CONN_ID):
    """Task ``request_next_run`` (event start mode): the run's teardown, whatever became of it.

    A run consumes every marker event queued since the run before, so a burst of markers starts
    fewer runs than it has batches. While valid markers are still pending when a run ends, this
    task asks for one more run: an asset event on the markers' Asset (through an alias, so that no
    event is sent when nothing is pending), which the scheduler turns into the next run. A run
    that claimed nothing (skipped) asks for none: the sweep takes over from there. As a teardown
    it does not change the run's state."""
    pipeline, asset = frame.pipeline, frame.marker_asset
    alias = AssetAlias(f"{pipeline.name}_next_run")

    @step(task_id="request_next_run", outlets=[alias], on_failure_callback=[])
    def request_next_run(**context) -> int:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = RuntimeTaskInstance.get_task_states(
            dag_id=context["dag"].dag_id, task_ids=[frame.claim_task_id], run_ids=[context["run_id"]]
        )
        claim_state = states.get(context["run_id"], {}).get(frame.claim_task_id)
        if claim_state not in ("success", "failed"):
            _log.info("The claim ended %s: no batch was taken, so no next run is requested.", claim_state)
            return 0
        store = MarkerStore(environment.render(pipeline.landing_bucket), aws_conn_id)
        pending = [obj["Key"] for obj in store.pending() if _is_marker(obj["Key"])]
        if pending:
            _log.info("%d marker(s) still pending (%s ...): requesting the next run.", len(pending), pending[0])
            context["outlet_events"][alias].add(asset, extra={"requested_by": context["run_id"]})
        return len(pending)

    operator = request_next_run().operator
    operator.as_teardown()
    operator.trigger_rule = TriggerRule.ALL_DONE  # no setup task: after everything, however it ended
    return operator


def _is_marker(key: str) -> bool:
    try:
        batch_id_from_key(key)
    except InvalidMarker:
        return False
    return True


def wait_for_marker(frame: BatchFrame, **kwargs) -> BatchMarkerSensor:
    return BatchMarkerSensor(task_id="wait_for_marker", bucket_name=frame.pipeline.landing_bucket, **kwargs)
