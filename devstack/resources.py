"""The one definition of the AWS resources the local stack provisions.

``make stack``, the docker-compose init service, the demo and the tests all provision from
here, so a bucket or topic named in docs/interfaces.md exists in every local environment and nowhere
is a second list to keep in step. Provisioning is idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from etl_toolkit import environment
from etl_toolkit.contract import BATCH_MARKER_PREFIX

REGION = "eu-west-1"
ACCOUNT_ID = environment.ACCOUNT_ID  # moto's default account

# The names are the toolkit's local environment (the same the deployment template creates for an
# environment named "local"); tests/unit/test_deploy_template.py holds the two lists equal.
LOCAL = environment.validate(environment.LOCAL)

# Each topic has an SQS queue subscribed, named after it with "-inbox", so every published
# message can be read back (docs/interfaces.md, Notifications). The shipping pipeline's catalog
# database keeps the upstream system's name, hyphen included, so every SQL client must quote it.
TOPICS = tuple(LOCAL.topics.values())

# The Glue JDBC connection to the warehouse database (built from the ``warehouse_db`` URL), through
# which crawlers catalog its tables. The NETWORK connection, which puts the Glue jobs reaching a
# database into its VPC, carries no subnet locally: every job reaches every database.
WAREHOUSE_JDBC_CONNECTION = LOCAL.glue_connection("warehouse_jdbc")

# The event start mode (etl_toolkit.tasks.marker_events): each marker-driven pipeline's landing
# bucket sends its events to EventBridge, and a rule on the default bus, named as the queue it
# feeds, sends those of markers to the pipeline's SQS queue (environment.MARKER_QUEUES). The
# deployment template declares the same: tests/unit/test_deploy_template.py holds it to these.
# The queue's default visibility timeout; the trigger sets its own on each receive (the triggerer's
# shared-stream ack timeout + 30 s, etl_toolkit.settings), since a message is deleted only once its
# asset event is stored. One received 5 times without that goes to the queue's dead-letter queue,
# which keeps it 14 days (SQS's maximum).
MARKER_QUEUE_VISIBILITY_TIMEOUT = 360
MARKER_QUEUE_MAX_RECEIVE_COUNT = 5
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600


def marker_rule_pattern(bucket: str) -> dict:
    """The EventBridge pattern of the rule that sends ``bucket``'s markers to its queue: S3's
    "Object Created" (PutObject, CopyObject, POST, CompleteMultipartUpload) under batch-completion/."""
    return {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": BATCH_MARKER_PREFIX}]}},
    }


def dead_letter_queue(queue: str) -> str:
    return f"{queue}{environment.DEAD_LETTER_SUFFIX}"


def marker_queue_policy(queue_arn: str, rule_arn: str) -> dict:
    """The queue's policy: EventBridge may send to it for the one rule that feeds it (AWS requires
    it; moto delivers without it). The template adds a TLS-only Deny, which the emulator's plain
    HTTP endpoint could not meet were it enforced."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "MarkerEventsFromTheRule",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }


def database_secrets(env: environment.Environment = LOCAL) -> dict[str, str]:
    """The Secrets Manager secrets the Glue jobs read their database credentials from, built from
    the Airflow connection of the same purpose: secret id -> connection id."""
    return {
        env.secret("warehouse"): "warehouse_db",
        env.secret("totesys"): "totesys_db",
        env.secret("supplychain"): "supplychain_db",
    }


def provisioned_names(env: environment.Environment = LOCAL) -> dict[str, set[str]]:
    """Every name ``provision`` creates, by kind: what the deployment template must create too.

    ``queues`` are the marker queues and their dead-letter queues (not the topics' inbox queues,
    which stand in locally for the e-mail subscriptions); ``event_rules`` are named as their queues."""
    marker_queues = {env.queue(key) for key in environment.MARKER_QUEUES}
    return {
        "buckets": set(env.buckets.values()),
        "topics": {_topic_name(topic) for topic in env.topics.values()},
        "catalog_databases": set(env.catalog_databases.values()),
        "glue_connections": set(env.glue_connections.values()),
        "secrets": set(database_secrets(env)),
        "roles": {env.glue_role_arn.rsplit("/", 1)[-1]},
        "queues": marker_queues | {dead_letter_queue(queue) for queue in marker_queues},
        "event_rules": marker_queues,
    }


def _topic_name(topic: str) -> str:
    return topic.rsplit(":", 1)[-1]  # a name, or the last part of an ARN


def inbox_queue(topic: str) -> str:
    return f"{topic}-inbox"


def read_inbox(sqs, topic: str) -> list[dict]:
    """Every message waiting in a topic's inbox queue, removed from it: the SNS envelopes, decoded."""
    url = sqs.get_queue_url(QueueName=inbox_queue(topic))["QueueUrl"]
    envelopes = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        for message in batch:
            envelopes.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return envelopes


def topic_arn(topic: str, region: str = REGION, account_id: str = ACCOUNT_ID) -> str:
    return f"arn:aws:sns:{region}:{account_id}:{topic}"


def provision(session, database_urls: Mapping[str, str], env: environment.Environment = LOCAL) -> None:
    """Create every bucket, topic, inbox queue, role, secret and Glue connection of the environment
    (the local one unless told) that does not exist yet; a secret or connection that exists is
    updated to the database URL given. The marker queues, their rules and the landing buckets'
    EventBridge notifications are put as ``marker_events`` says, whether or not they exist.

    ``session`` is a boto3 Session whose clients reach the emulator (``AWS_ENDPOINT_URL``);
    ``database_urls`` maps a connection id (``warehouse_db``, ``totesys_db``) to its URL.
    """
    names = provisioned_names(env)
    s3 = session.client("s3")
    for bucket in sorted(names["buckets"]):
        try:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": session.region_name})
        except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            pass

    sns, sqs = session.client("sns"), session.client("sqs")
    for topic in sorted(names["topics"]):
        arn = sns.create_topic(Name=topic)["TopicArn"]
        queue_url = sqs.create_queue(QueueName=inbox_queue(topic))["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        subscribed = {s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]}
        if queue_arn not in subscribed:
            sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)

    marker_events(session, env)

    iam = session.client("iam")
    try:
        iam.create_role(
            RoleName=next(iter(names["roles"])),
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "glue.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )
    except iam.exceptions.EntityAlreadyExistsException:
        pass

    secrets = session.client("secretsmanager")
    for secret_id, conn_id in database_secrets(env).items():
        if conn_id not in database_urls:
            continue
        value = json.dumps(_secret_from_url(database_urls[conn_id]))
        try:
            secrets.create_secret(Name=secret_id, SecretString=value)
        except secrets.exceptions.ResourceExistsException:
            secrets.put_secret_value(SecretId=secret_id, SecretString=value)

    glue = session.client("glue")
    for database in sorted(names["catalog_databases"]):
        try:
            glue.create_database(DatabaseInput={"Name": database})
        except glue.exceptions.AlreadyExistsException:
            pass

    if "warehouse_db" in database_urls:
        _put_jdbc_connection(glue, env.glue_connection("warehouse_jdbc"), database_urls["warehouse_db"])
    try:
        glue.create_connection(
            ConnectionInput={
                "Name": env.glue_connection("network"),
                "ConnectionType": "NETWORK",
                "ConnectionProperties": {},
            }
        )
    except glue.exceptions.AlreadyExistsException:
        pass


def marker_events(session, env: environment.Environment = LOCAL) -> None:
    """For each marker queue of ``environment.MARKER_QUEUES``: the queue (with its redrive to its
    dead-letter queue), the EventBridge rule that feeds it, the queue's policy for that rule, and
    EventBridge notifications on the landing bucket. Idempotent: what exists is set again as here
    (a changed attribute or pattern is put back), and a bucket's other notifications are kept."""
    s3, sqs, events = session.client("s3"), session.client("sqs"), session.client("events")
    for key, bucket_key in sorted(environment.MARKER_QUEUES.items()):
        queue, bucket = env.queue(key), env.bucket(bucket_key)
        _, dead_letter_arn = _put_queue(
            sqs, dead_letter_queue(queue), {"MessageRetentionPeriod": str(DEAD_LETTER_RETENTION_SECONDS)}
        )
        redrive = {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": MARKER_QUEUE_MAX_RECEIVE_COUNT}
        queue_url, queue_arn = _put_queue(
            sqs,
            queue,
            {"VisibilityTimeout": str(MARKER_QUEUE_VISIBILITY_TIMEOUT), "RedrivePolicy": json.dumps(redrive)},
        )
        rule_arn = events.put_rule(  # creates or updates the rule of this name on the default bus
            Name=queue,
            EventPattern=json.dumps(marker_rule_pattern(bucket)),
            State="ENABLED",
            Description=f"batch-completion markers of s3://{bucket} to the SQS queue {queue}",
        )["RuleArn"]
        events.put_targets(Rule=queue, Targets=[{"Id": "marker-queue", "Arn": queue_arn}])
        policy = json.dumps(marker_queue_policy(queue_arn, rule_arn))
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": policy})
        _enable_event_bridge(s3, bucket)


def _put_queue(sqs, name: str, attributes: dict[str, str]) -> tuple[str, str]:
    """Create the queue, or take the existing one, and set ``attributes`` on it: its URL and ARN."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]  # no attributes: an existing queue's URL as it is
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _enable_event_bridge(s3, bucket: str) -> None:
    """Turn on the bucket's EventBridge notifications, keeping its other notification settings."""
    configuration = s3.get_bucket_notification_configuration(Bucket=bucket)
    configuration.pop("ResponseMetadata", None)
    if "EventBridgeConfiguration" not in configuration:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={**configuration, "EventBridgeConfiguration": {}}
        )


def _put_jdbc_connection(glue, name: str, url: str) -> None:
    """Create the Glue JDBC connection to the database of ``url``, or re-point it there."""
    secret = _secret_from_url(url)
    connection_input = {
        "Name": name,
        "ConnectionType": "JDBC",
        "ConnectionProperties": {
            "JDBC_CONNECTION_URL": f"jdbc:postgresql://{secret['host']}:{secret['port']}/{secret['dbname']}",
            "USERNAME": secret["username"],
            "PASSWORD": secret["password"],
        },
    }
    try:
        glue.create_connection(ConnectionInput=connection_input)
    except glue.exceptions.AlreadyExistsException:
        glue.update_connection(Name=name, ConnectionInput=connection_input)


def _secret_from_url(url: str) -> dict:
    """The RDS-style secret shape: host, port, dbname, username, password."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    return {
        "engine": "postgres",
        "host": parts.hostname,
        "port": parts.port or 5432,
        "dbname": parts.path.lstrip("/"),
        "username": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
    }
