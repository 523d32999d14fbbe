"""The event start mode's trigger on a real SQS API (moto), driven by Airflow's own shared-stream
manager the way the triggerer drives it: a message is deleted only once the asset event made from
it is stored; one whose event never was comes back; a key that is not a marker starts nothing.

The provider's ``SqsSensorTrigger`` (behind ``MessageQueueTrigger(scheme="sqs")``) is shown here
to delete what it receives before its event leaves the trigger: why the project has its own."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from airflow.triggers.shared_stream import SharedStreamManager

from etl_toolkit import environment
from etl_toolkit.contract import InvalidMarker
from etl_toolkit.tasks import marker_events
from etl_toolkit.tasks.marker_events import MarkerEventTrigger, marker_of_event

REGION = "eu-west-1"
QUEUE_KEY = "orders_markers"
LANDING = environment.LOCAL["buckets"]["orders_landing"]


def s3_event(key: str, bucket: str = LANDING) -> str:
    """An EventBridge "Object Created" event as S3 sends it, the body an SQS target receives."""
    return json.dumps({
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-11-30T10:00:00Z", "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 2}, "reason": "PutObject"},
    })  # fmt: skip


@pytest.fixture
def queue(moto_endpoint, monkeypatch):
    """A fresh marker queue under the environment's name, the aws_default connection on moto, and
    a short visibility timeout so that a message a dead triggerer held comes back within the test."""
    import boto3

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": moto_endpoint, "region_name": REGION},
    }))  # fmt: skip
    name = f"markers-{uuid.uuid4().hex[:8]}"
    names = {**environment.LOCAL, "name": "unit", "queues": {**environment.LOCAL["queues"], QUEUE_KEY: name}}
    monkeypatch.setattr(environment, "current", lambda: environment.validate(names))
    monkeypatch.setattr(marker_events, "MARKER_QUEUE_VISIBILITY_SECONDS", 5)
    monkeypatch.setattr(marker_events, "MARKER_QUEUE_WAIT_SECONDS", 1)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return sqs, url


def counts(sqs, url) -> tuple[int, int]:
    """(visible, in flight) messages of the queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


class Triggerer:
    """What the triggerer does with a shared-stream trigger: subscribe it, take its events, and
    confirm each one once it is "stored" (here: when the test says so)."""

    def __init__(self, trigger_id: int = 1):
        self.manager = SharedStreamManager(ack_timeout=30)
        self.trigger = MarkerEventTrigger(queue=QUEUE_KEY)
        self.trigger_id = trigger_id
        self.key = self.trigger.shared_stream_key()
        stream = self.manager.subscribe(trigger_id=trigger_id, trigger=self.trigger, key=self.key)
        self.events = self.trigger.filter_shared_stream(stream)

    async def next_event(self, timeout: float = 20):
        """The next trigger event and its persist-confirmation number."""
        event = await asyncio.wait_for(anext(self.events), timeout)
        return event, self.manager.bind_pending_event(trigger_id=self.trigger_id, key=self.key)

    async def store_and_stop(self, seq: int, deleted) -> None:
        """The event is stored; the trigger moves on to the next message. Until ``deleted()``."""
        self.manager.confirm_persisted([seq])
        pending = asyncio.ensure_future(anext(self.events))
        await _until(deleted)
        pending.cancel()
        await self.crash()

    async def crash(self):
        """The triggerer dies: its stream stops with nothing confirmed."""
        await self.manager.stop_all()


async def _until(condition, timeout: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.2)


def test_a_marker_event_names_its_batch_and_is_deleted_only_once_its_event_is_stored(queue):
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=s3_event("batch-completion/b-001.json"))

    async def scenario():
        triggerer = Triggerer()
        event, seq = await triggerer.next_event()
        assert event.payload["batch_id"] == "b-001"
        assert event.payload["key"] == "batch-completion/b-001.json" and event.payload["bucket"] == LANDING
        assert seq is not None  # the event gates the message's deletion (ack mode)
        await asyncio.sleep(1)
        assert counts(sqs, url) == (0, 1)  # received, held invisible, not deleted: not stored yet
        await triggerer.store_and_stop(seq, deleted=lambda: counts(sqs, url) == (0, 0))

    asyncio.run(scenario())


def test_an_event_a_dead_triggerer_never_stored_comes_back_and_fires_again(queue):
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=s3_event("batch-completion/b-002.json"))

    async def scenario():
        first = Triggerer()
        event, _ = await first.next_event()
        assert event.payload["batch_id"] == "b-002"
        await first.crash()  # between receiving and storing
        assert counts(sqs, url) == (0, 1)
        second = Triggerer(trigger_id=2)  # the restarted triggerer
        again, seq = await second.next_event()  # once the visibility timeout passes
        assert again.payload["batch_id"] == "b-002" and again.payload["receive_count"] == 2
        await second.store_and_stop(seq, deleted=lambda: counts(sqs, url) == (0, 0))

    asyncio.run(scenario())


def test_an_event_for_a_key_that_is_not_a_marker_starts_nothing_and_is_dropped(queue, capsys):
    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=s3_event("batch-completion/notes.txt"))
    sqs.send_message(QueueUrl=url, MessageBody=s3_event("batch-completion/b-003.json"))

    async def scenario():
        triggerer = Triggerer()
        event, seq = await triggerer.next_event()  # the marker's, the other one fired nothing
        assert event.payload["batch_id"] == "b-003"
        await triggerer.store_and_stop(seq, deleted=lambda: counts(sqs, url) == (0, 0))

    asyncio.run(scenario())
    logged = capsys.readouterr().out  # the trigger's log (the triggerer's, on a real deployment)
    assert "Ignored an event" in logged and "batch-completion/notes.txt" in logged and "starts no run" in logged


def test_the_providers_sqs_trigger_deletes_messages_before_its_event_leaves(queue):
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

    sqs, url = queue
    sqs.send_message(QueueUrl=url, MessageBody=s3_event("batch-completion/b-004.json"))

    async def scenario():
        trigger = SqsSensorTrigger(sqs_queue=url, aws_conn_id="aws_default", wait_time_seconds=1)
        async with await trigger.hook.get_async_conn() as client:
            received = await trigger.poke(client)  # what run() does before it yields the event
        assert len(received) == 1
        # Gone before the event was even yielded: a triggerer dying now would lose the marker.
        assert counts(sqs, url) == (0, 0)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "not an S3 Object Created event"),
        (json.dumps({"detail": {"bucket": {"name": LANDING}}}), "not an S3 Object Created event"),
        (s3_event("batch-completion/sub/b.json"), "batch-completion/sub/b.json"),
        (s3_event("orders/part-0.parquet"), "orders/part-0.parquet"),
    ],
)
def test_an_event_that_names_no_marker_is_refused_with_the_reason(body, reason):
    with pytest.raises(InvalidMarker, match=reason.replace(".", r"\.")):
        marker_of_event(body)


def test_the_trigger_serializes_to_what_the_triggerer_rebuilds_it_from():
    trigger = MarkerEventTrigger(queue=QUEUE_KEY)
    classpath, kwargs = trigger.serialize()
    assert classpath == "etl_toolkit.tasks.marker_events.MarkerEventTrigger"
    rebuilt = MarkerEventTrigger(**kwargs)
    assert rebuilt.shared_stream_key() == trigger.shared_stream_key()
