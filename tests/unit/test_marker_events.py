"""The event start mode's chain on the local stack: a marker written to a landing bucket reaches its
pipeline's SQS queue as the EventBridge event AWS sends, once, and nothing else does.

The emulator (devstack.emulator, moto with the project's patches) is provisioned by
``devstack.resources.provision``, as ``make stack`` does; the tests then only write to S3 and read
SQS, as upstream and the triggerer would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime

import boto3
import pytest

from devstack import resources
from devstack.emulator import Emulator
from devstack.stack import _EndpointSession
from etl_toolkit import environment

REGION = resources.REGION
ENV = resources.LOCAL
PIPELINES = sorted(environment.MARKER_QUEUES)  # queue keys: orders_markers, ...


@pytest.fixture(scope="module")
def session() -> Iterator[_EndpointSession]:
    emulator = Emulator("127.0.0.1", 0)
    endpoint = emulator.start()
    try:
        boto_session = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
        provisioned = _EndpointSession(boto_session, endpoint)
        resources.provision(provisioned, {})
        yield provisioned
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def s3(session):
    return session.client("s3")


@pytest.fixture(scope="module")
def sqs(session):
    return session.client("sqs")


@pytest.fixture(scope="module")
def events(session):
    return session.client("events")


def queue_url(sqs, name: str) -> str:
    return sqs.get_queue_url(QueueName=name)["QueueUrl"]


def attributes(sqs, name: str) -> dict[str, str]:
    return sqs.get_queue_attributes(QueueUrl=queue_url(sqs, name), AttributeNames=["All"])["Attributes"]


@pytest.fixture
def queues(sqs) -> dict[str, str]:
    """Every marker queue and dead-letter queue emptied for the test: queue key -> URL."""
    for name in resources.provisioned_names()["queues"]:
        received(sqs, queue_url(sqs, name))  # not PurgeQueue: once a minute per queue
    return {key: queue_url(sqs, ENV.queue(key)) for key in PIPELINES}


def received(sqs, url: str) -> list[dict]:
    """Every message waiting in the queue, deleted from it: their bodies, decoded."""
    bodies = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        for message in batch:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def all_received(sqs, queues: dict[str, str]) -> dict[str, list[dict]]:
    return {key: received(sqs, url) for key, url in queues.items()}


def landing(key: str) -> str:
    return ENV.bucket(environment.MARKER_QUEUES[key])


# -- what provision creates ------------------------------------------------------------------------


@pytest.mark.parametrize("key", PIPELINES)
def test_each_pipeline_has_its_queue_dead_letter_queue_rule_and_policy(key, s3, sqs, events):
    name = ENV.queue(key)
    queue, dead_letter = attributes(sqs, name), attributes(sqs, resources.dead_letter_queue(name))
    assert resources.dead_letter_queue(name) == f"{name}-dlq"
    assert int(queue["VisibilityTimeout"]) == resources.MARKER_QUEUE_VISIBILITY_TIMEOUT == 360
    assert json.loads(queue["RedrivePolicy"]) == {"deadLetterTargetArn": dead_letter["QueueArn"], "maxReceiveCount": 5}
    assert int(dead_letter["MessageRetentionPeriod"]) == 14 * 24 * 3600
    assert "RedrivePolicy" not in dead_letter

    rule = events.describe_rule(Name=name)
    assert rule["State"] == "ENABLED" and rule["EventBusName"] == "default"
    assert json.loads(rule["EventPattern"]) == resources.marker_rule_pattern(landing(key))
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [landing(key)]}, "object": {"key": [{"prefix": "batch-completion/"}]}},
    }
    (target,) = events.list_targets_by_rule(Rule=name)["Targets"]
    assert target["Arn"] == queue["QueueArn"] and "InputTransformer" not in target and "Input" not in target

    (statement,) = json.loads(queue["Policy"])["Statement"]
    assert statement == {
        "Sid": "MarkerEventsFromTheRule",
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue["QueueArn"],
        "Condition": {"ArnEquals": {"aws:SourceArn": rule["Arn"]}},
    }
    configuration = s3.get_bucket_notification_configuration(Bucket=landing(key))
    assert configuration["EventBridgeConfiguration"] == {}


def test_provisioned_names_are_what_exists(sqs, events):
    names = resources.provisioned_names()
    assert names["event_rules"] == set(ENV.queues.values()) == set(environment.LOCAL["queues"].values())
    dead_letter = {f"{queue}{environment.DEAD_LETTER_SUFFIX}" for queue in ENV.queues.values()}
    assert names["queues"] == names["event_rules"] | dead_letter
    existing = {url.rsplit("/", 1)[-1] for url in sqs.list_queues()["QueueUrls"]}
    assert names["queues"] <= existing
    assert names["event_rules"] <= {rule["Name"] for rule in events.list_rules()["Rules"]}


def test_provisioning_again_puts_back_what_drifted_and_keeps_other_notifications(session, s3, sqs, events):
    key = "orders_markers"
    name, bucket = ENV.queue(key), landing(key)
    other = sqs.create_queue(QueueName=f"other-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    other_arn = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    kept = {"QueueArn": other_arn, "Events": ["s3:ObjectRemoved:*"]}
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [kept]})
    sqs.set_queue_attributes(QueueUrl=queue_url(sqs, name), Attributes={"VisibilityTimeout": "30"})
    events.put_rule(Name=name, EventPattern=json.dumps({"source": ["aws.s3"]}), State="DISABLED")
    try:
        resources.provision(session, {})
        resources.provision(session, {})  # twice: nothing fails on what exists

        configuration = s3.get_bucket_notification_configuration(Bucket=bucket)
        assert configuration["EventBridgeConfiguration"] == {}
        (queue_configuration,) = configuration["QueueConfigurations"]
        assert {k: queue_configuration[k] for k in kept} == kept
        assert attributes(sqs, name)["VisibilityTimeout"] == "360"
        rule = events.describe_rule(Name=name)
        assert rule["State"] == "ENABLED"
        assert json.loads(rule["EventPattern"]) == resources.marker_rule_pattern(bucket)
        assert len(events.list_targets_by_rule(Rule=name)["Targets"]) == 1
    finally:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        sqs.delete_queue(QueueUrl=other)


# -- what reaches the queues -----------------------------------------------------------------------


@pytest.mark.parametrize("key", PIPELINES)
def test_a_marker_reaches_its_pipelines_queue_once_as_the_eventbridge_event(key, s3, sqs, queues):
    bucket = landing(key)
    put = s3.put_object(Bucket=bucket, Key="batch-completion/b1.json", Body=b'{"batch_id": "b1"}')

    delivered = all_received(sqs, queues)

    assert {k: len(v) for k, v in delivered.items()} == {k: int(k == key) for k in PIPELINES}
    (event,) = delivered[key]
    assert event["source"] == "aws.s3" and event["detail-type"] == "Object Created"
    assert event["detail"]["bucket"]["name"] == bucket
    assert event["detail"]["object"]["key"] == "batch-completion/b1.json"
    assert event["detail"]["object"]["etag"] == put["ETag"].strip('"')
    assert event["detail"]["object"]["size"] == len(b'{"batch_id": "b1"}')
    assert event["detail"]["reason"] == "PutObject"
    assert event["account"] == environment.ACCOUNT_ID and event["region"] == REGION
    assert event["resources"] == [f"arn:aws:s3:::{bucket}"]
    assert uuid.UUID(event["id"]).version == 4
    datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")  # ISO-8601, as EventBridge writes it


@pytest.mark.parametrize(
    ("where", "object_key"),
    [
        ("landing", "orders/x.parquet"),  # data, not a marker
        ("landing", "batch-archive/loaded/b1.json"),  # a marker archived (copied out of batch-completion/)
        ("landing", "batch-completion-old/b1.json"),  # the prefix is the folder, slash included
        ("staging", "batch-completion/b1.json"),  # a marker's key in a bucket that is no pipeline's landing
    ],
)
def test_nothing_else_reaches_a_queue(where, object_key, s3, sqs, queues):
    bucket = landing("orders_markers") if where == "landing" else ENV.bucket("orders_staging")
    s3.put_object(Bucket=bucket, Key=object_key, Body=b"{}")
    assert all_received(sqs, queues) == dict.fromkeys(PIPELINES, [])


def test_a_marker_released_by_copy_is_delivered(s3, sqs, queues):
    bucket = landing("shipping_markers")
    s3.put_object(Bucket=bucket, Key="batch-archive/failed/b2.json", Body=b'{"batch_id": "b2"}')
    source = {"Bucket": bucket, "Key": "batch-archive/failed/b2.json"}
    s3.copy_object(Bucket=bucket, Key="batch-completion/b2.json", CopySource=source)
    delivered = all_received(sqs, queues)
    (event,) = delivered["shipping_markers"]
    assert event["detail"]["object"]["key"] == "batch-completion/b2.json"
    assert event["detail"]["reason"] == "CopyObject"
    assert sum(map(len, delivered.values())) == 1


def test_each_event_has_its_own_id(s3, sqs, queues):
    bucket = landing("ecommerce_markers")
    for _ in range(2):  # the same marker written twice: two events
        s3.put_object(Bucket=bucket, Key="batch-completion/b3.json", Body=b"{}")
    first, second = all_received(sqs, queues)["ecommerce_markers"]
    assert first["id"] != second["id"]
    assert first["detail"]["object"]["sequencer"] < second["detail"]["object"]["sequencer"]


def test_a_disabled_rule_delivers_nothing(s3, sqs, events, queues):
    name = ENV.queue("totesys_markers")
    events.disable_rule(Name=name)
    try:
        s3.put_object(Bucket=landing("totesys_markers"), Key="batch-completion/b4.json", Body=b"{}")
        assert all_received(sqs, queues) == dict.fromkeys(PIPELINES, [])
    finally:
        events.enable_rule(Name=name)
    s3.put_object(Bucket=landing("totesys_markers"), Key="batch-completion/b4.json", Body=b"{}")
    assert len(all_received(sqs, queues)["totesys_markers"]) == 1


def test_a_message_received_too_often_moves_to_the_dead_letter_queue(s3, sqs, queues):
    s3.put_object(Bucket=landing("orders_markers"), Key="batch-completion/b5.json", Body=b"{}")
    url = queues["orders_markers"]
    for _ in range(resources.MARKER_QUEUE_MAX_RECEIVE_COUNT):  # received, never deleted
        (message,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=0)["Messages"]
    assert not sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages")
    (dead,) = received(sqs, queue_url(sqs, resources.dead_letter_queue(ENV.queue("orders_markers"))))
    assert dead["detail"]["object"]["key"] == "batch-completion/b5.json"
    assert dead["id"] == json.loads(message["Body"])["id"]
