"""S3 events through EventBridge as AWS sends them, inside moto's server.

moto 5.2.5 already carries the chain the event start mode relies on: a bucket whose notification
configuration has ``EventBridgeConfiguration`` sends its events to EventBridge
(``moto/s3/notifications.py``, on PutObject, POST, CopyObject and CompleteMultipartUpload alike),
and a rule whose pattern matches sends the event, whole, to its SQS target, with ``time`` written
as ISO-8601 (``moto/events/models.py``). What it lacks, and ``install()`` adds:

- every S3 event carries one and the same ``id`` (the documentation's example): AWS draws a UUID
  per event, and a consumer that tells events apart by it would drop all but the first;
- a rule whose State is DISABLED still delivers (S3's events and PutEvents alike);
- S3's events go to the rules of every event bus: AWS sends them to the default bus only;
- the event's detail differs from AWS's (docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html):
  ``object.eTag`` for ``object.etag``; ``reason`` "ObjectCreated" for the API that created the object
  (PutObject, POST Object, CopyObject, CompleteMultipartUpload); one fixed ``sequencer``,
  ``request-id`` and ``requester`` (AWS: a sequencer that grows with each event, the bucket
  owner's account); ``version-id`` "null" in an unversioned bucket (AWS leaves it out);
- GetBucketNotificationConfiguration leaves ``EventBridgeConfiguration`` out of its answer, so a
  bucket that sends its events to EventBridge cannot be told from one that does not.

Everything else (pattern matching, targets, SQS delivery) is moto's own.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import unix_time
from moto.events.models import Rule
from moto.s3 import notifications
from moto.s3.responses import S3Response

_log = logging.getLogger(__name__)

_moto_send_to_targets = Rule.send_to_targets
_moto_get_bucket_notification = S3Response.get_bucket_notification
# AWS's sequencer is a hexadecimal string that grows with each event of a key.
_SEQUENCE = itertools.count(time.time_ns())
_REASONS = {
    notifications.S3NotificationEvent.OBJECT_CREATED_PUT_EVENT: "PutObject",
    notifications.S3NotificationEvent.OBJECT_CREATED_POST_EVENT: "POST Object",
    notifications.S3NotificationEvent.OBJECT_CREATED_COPY_EVENT: "CopyObject",
    notifications.S3NotificationEvent.OBJECT_CREATED_COMPLETE_MULTIPART_UPLOAD_EVENT: "CompleteMultipartUpload",
    notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_EVENT: "DeleteObject",
    notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_MARKER_CREATED_EVENT: "DeleteObject",
}


def install() -> None:
    """Patch moto as described above. Idempotent: it only (re)assigns module and class attributes.

    Call it in the process that runs moto's server, before the server handles an S3 request."""
    notifications._send_event_bridge_message = _send_event_bridge_message
    Rule.send_to_targets = _send_to_targets_unless_disabled
    # moto dispatches GET ?notification to this S3Response method
    S3Response.get_bucket_notification = _get_bucket_notification


def _send_to_targets_unless_disabled(self: Rule, original_event: Any, transform_input: bool = True) -> None:
    if self.state == "DISABLED":
        return
    _moto_send_to_targets(self, original_event, transform_input)


def s3_event(account_id: str, bucket: Any, event_name: str, key: Any) -> dict[str, Any]:
    """The EventBridge event AWS sends for ``event_name`` on ``key`` (moto's bucket and key)."""
    obj: dict[str, Any] = {"key": key.name, "size": key.size, "etag": key.etag.replace('"', "")}
    if bucket.is_versioned and key.version_id and key.version_id != "null":
        obj["version-id"] = key.version_id
    obj["sequencer"] = f"{next(_SEQUENCE):016X}"
    detail: dict[str, Any] = {
        "version": "0",
        "bucket": {"name": bucket.name},
        "object": obj,
        "request-id": uuid.uuid4().hex[:16].upper(),
        "requester": account_id,
        "source-ip-address": "127.0.0.1",
    }
    if event_name in _REASONS:
        detail["reason"] = _REASONS[event_name]
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": notifications._detail_type(event_name),
        "source": "aws.s3",
        "account": account_id,
        # moto's internal form, a unix time: its targets write it as ISO-8601, as AWS does
        "time": unix_time(),
        "region": bucket.region_name,
        "resources": [bucket.arn],
        "detail": detail,
    }


def _send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
    # Asynchronous on AWS: whatever fails here must not fail the S3 request that caused it.
    try:
        from moto.events.models import events_backends

        event = s3_event(account_id, bucket, event_name, key)
        default_bus = events_backends[account_id][bucket.region_name].event_buses.get("default")
        for rule in list(default_bus.rules.values()) if default_bus else []:
            rule.send_to_targets(event, transform_input=False)
    except Exception:
        _log.exception("EventBridge did not get the event %s of s3://%s/%s", event_name, bucket.name, key.name)


def _get_bucket_notification(self: S3Response) -> Any:
    """moto's answer, with ``EventBridgeConfiguration`` when the bucket has it."""
    configuration = self.backend.get_bucket_notification_configuration(self.bucket_name)
    if configuration is None or configuration.event_bridge is None:
        return _moto_get_bucket_notification(self)

    def build(item: Any, arn_key: str) -> dict[str, Any]:
        config: dict[str, Any] = {"Id": item.id, arn_key: item.arn, "Events": item.events}
        if item.filters:
            config["Filter"] = {"Key": {"FilterRules": item.filters["S3Key"]["FilterRule"]}}
        return config

    result = {
        "TopicConfigurations": [build(topic, "TopicArn") for topic in configuration.topic],
        "QueueConfigurations": [build(queue, "QueueArn") for queue in configuration.queue],
        "LambdaFunctionConfigurations": [build(f, "LambdaFunctionArn") for f in configuration.cloud_function],
        "EventBridgeConfiguration": {},
    }
    self.data["Action"] = "GetBucketNotificationConfiguration"
    return self.serialized(ActionResult(result))
