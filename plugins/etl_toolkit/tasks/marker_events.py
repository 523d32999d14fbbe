"""The event start mode: a pipeline's runs start on the marker's S3 event, not on a poll.

Layer 4. On AWS the landing bucket sends ``Object Created`` events to EventBridge; a rule with
the pattern (source ``aws.s3``, detail-type ``Object Created``, the bucket, key prefix
``batch-completion/``) sends them to the pipeline's SQS queue (``environment`` section
``queues``; a dead-letter queue beside it). The DAG is scheduled on an Asset whose
``AssetWatcher`` runs ``MarkerEventTrigger`` in the triggerer: each marker's event becomes an
asset event naming the batch, and the scheduler queues a run for it.

Nothing is lost between the queue and the run. The provider's ``SqsSensorTrigger`` (which
``MessageQueueTrigger(scheme="sqs")`` uses) deletes the messages it receives *before* its event
is stored: a triggerer that dies in between loses them. This trigger runs instead in the
triggerer's shared stream in ack mode (``airflow.triggers.shared_stream``): the message stays in
the queue, invisible, until the triggerer has confirmed that the asset event derived from it is in
the metadata database; only then is it deleted. A triggerer that dies before that leaves the
message to come back once its visibility timeout passes. An event whose asset event could not be
stored is made visible again at once; an event for a key that is not a marker is logged and
deleted (it can never start a run). A message that keeps failing ends in the dead-letter queue,
and the marker it announced is still found by the sweep (the DAG's time schedule).

Runs claim through the same ledger as the sensor mode, so a duplicate or redelivered event
costs at most a run that says it had nothing to do.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer, reject_shared_stream_event

from etl_toolkit import environment
from etl_toolkit.contract import InvalidMarker, batch_id_from_key
from etl_toolkit.settings import AWS_CONN_ID, MARKER_QUEUE_VISIBILITY_SECONDS, MARKER_QUEUE_WAIT_SECONDS

_log = logging.getLogger(__name__)

# SQS's limit for one receive and one delete batch.
_SQS_BATCH = 10


def marker_of_event(body: str) -> dict[str, Any]:
    """The marker an EventBridge ``Object Created`` event (an SQS message's body) announces.

    Raises ``InvalidMarker`` when the event is not S3's or its key is not
    ``batch-completion/<batch_id>.json`` (the reason names the key)."""
    try:
        event = json.loads(body)
        bucket, key = event["detail"]["bucket"]["name"], event["detail"]["object"]["key"]
    except (ValueError, KeyError, TypeError) as error:
        reason = f"{type(error).__name__}: {error}"
        raise InvalidMarker(f"not an S3 Object Created event ({reason}): {body[:200]!r}") from None
    batch_id = batch_id_from_key(key)  # raises InvalidMarker naming the key
    return {"batch_id": batch_id, "bucket": bucket, "key": key, "event_time": str(event.get("time", ""))}


class MarkerQueueProducer(SharedStreamProducer):
    """Reads a marker queue for the triggerer's shared stream; deletes a message only once every
    trigger that received it has had its asset event stored (or refused it as not a marker)."""

    def __init__(self, *, queue: str, aws_conn_id: str | None, region_name: str | None = None):
        self.queue = queue
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self._exits = contextlib.AsyncExitStack()
        self._client = None
        self._queue_url: str | None = None

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook
        from asgiref.sync import sync_to_async

        # The queue's name is the environment's (the Variable): read where the trigger runs.
        name = (await sync_to_async(environment.current)()).queue(self.queue)
        hook = SqsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        # Entered here and left in aclose(), not in this generator: the triggerer still advances
        # (deletes) what was stored after the stream has stopped.
        self._client = await self._exits.enter_async_context(await hook.get_async_conn())
        self._queue_url = (await self._client.get_queue_url(QueueName=name))["QueueUrl"]
        _log.info("Reading marker events from %s", self._queue_url)
        while True:
            answer = await self._client.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=_SQS_BATCH,
                # Long polling: the receive returns as soon as a message arrives.
                WaitTimeSeconds=MARKER_QUEUE_WAIT_SECONDS,
                # Longer than the shared stream's ack timeout: the message cannot come back while
                # its event is still on its way to the database.
                VisibilityTimeout=MARKER_QUEUE_VISIBILITY_SECONDS,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
            for message in answer.get("Messages", []):
                raw = {
                    "body": message["Body"],
                    "message_id": message["MessageId"],
                    "receive_count": int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                }
                yield raw, message["ReceiptHandle"]

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        done = [item.broker_payload for item in batch if item.outcome.rejected or item.outcome.is_clean]
        again = [item.broker_payload for item in batch if not (item.outcome.rejected or item.outcome.is_clean)]
        # A failed entry is logged, not raised: raising would end the stream for every trigger, and
        # a message not deleted only comes back as an event whose run finds nothing to do.
        await self._each_batch("delete_message_batch", done, {})
        # Not stored (or nobody was listening): visible again now, not after the timeout.
        await self._each_batch("change_message_visibility_batch", again, {"VisibilityTimeout": 0})
        if again:
            _log.warning("%d marker event(s) were not stored as asset events: back in the queue", len(again))

    async def _each_batch(self, call: str, receipts: list[str], extra: dict[str, Any]) -> None:
        for start in range(0, len(receipts), _SQS_BATCH):
            # Ids by position: SQS may hand one message out twice, and Ids must differ in a batch.
            entries = [{"Id": str(n), "ReceiptHandle": receipt, **extra}
                       for n, receipt in enumerate(receipts[start : start + _SQS_BATCH])]  # fmt: skip
            answer = await getattr(self._client, call)(QueueUrl=self._queue_url, Entries=entries)
            for failed in answer.get("Failed", []):
                _log.error("%s on %s failed for an entry: %s", call, self._queue_url, failed)

    async def aclose(self) -> None:
        await self._exits.aclose()
        self._client = None


class MarkerEventTrigger(BaseEventTrigger):
    """An AssetWatcher's trigger: one event per batch-completion marker announced on ``queue``
    (a key of the environment's ``queues``). The event's payload names the batch."""

    def __init__(self, *, queue: str, aws_conn_id: str | None = AWS_CONN_ID, region_name: str | None = None):
        super().__init__()
        self.queue = queue
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{__name__}.{type(self).__name__}",
            {"queue": self.queue, "aws_conn_id": self.aws_conn_id, "region_name": self.region_name},
        )

    def shared_stream_key(self) -> tuple[str, ...]:
        # Sharing is what puts the trigger in ack mode; one reader per queue and connection.
        return ("etl-marker-queue", self.queue, str(self.aws_conn_id), str(self.region_name))

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> MarkerQueueProducer:
        return MarkerQueueProducer(
            queue=kwargs["queue"], aws_conn_id=kwargs.get("aws_conn_id"), region_name=kwargs.get("region_name")
        )

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        async for raw in shared_stream:
            try:
                marker = marker_of_event(raw["body"])
            except InvalidMarker as error:
                self.log.warning("Ignored an event on queue %s: %s (it starts no run)", self.queue, error)
                reject_shared_stream_event()
                continue
            self.log.info(
                "Marker event for batch %s (s3://%s/%s, delivery %d of message %s)",
                marker["batch_id"], marker["bucket"], marker["key"], raw["receive_count"], raw["message_id"],
            )  # fmt: skip
            yield TriggerEvent({**marker, "message_id": raw["message_id"], "receive_count": raw["receive_count"]})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The triggerer always runs a trigger with a shared-stream key through filter_shared_stream.
        raise RuntimeError(f"{type(self).__name__} runs only through the triggerer's shared stream (ack mode)")
        yield  # pragma: no cover - an async generator


def marker_asset(pipeline: str):
    """The Asset a pipeline's DAG is scheduled on in the event mode: the pipeline's markers, watched
    through its queue (``<pipeline>_markers`` in the environment's ``queues``)."""
    from airflow.sdk import Asset, AssetWatcher

    queue = f"{pipeline}_markers"
    if queue not in environment.MARKER_QUEUES:
        known = sorted(environment.MARKER_QUEUES)
        raise KeyError(f"pipeline {pipeline} has no marker queue: the environment knows {known}")
    return Asset(
        name=f"{pipeline}_batch_markers",
        uri=environment.asset_uri(environment.MARKER_QUEUES[queue], "batch-completion/"),
        watchers=[AssetWatcher(name=f"{pipeline}_marker_queue", trigger=MarkerEventTrigger(queue=queue))],
    )


def sweep_schedule(asset, minutes: float):
    """The event mode's schedule: a run for each marker event, and a sweep every ``minutes`` that
    claims any pending marker whose event was lost (queue purged, rule disabled for a while)."""
    from datetime import timedelta

    from airflow.sdk import AssetOrTimeSchedule, DeltaTriggerTimetable

    return AssetOrTimeSchedule(timetable=DeltaTriggerTimetable(timedelta(minutes=minutes)), assets=asset)
