"""Publishing to SNS through the Amazon provider's hook.

Layer 2 (I/O).
"""

from __future__ import annotations

from etl_toolkit.settings import AWS_CONN_ID


def sns_hook(aws_conn_id: str = AWS_CONN_ID):
    from airflow.providers.amazon.aws.hooks.sns import SnsHook

    return SnsHook(aws_conn_id=aws_conn_id)


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
