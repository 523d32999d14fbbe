"""The notification contract: subject, JSON default entry, readable email entry."""

import json

from etl_toolkit.notify import build_message


def test_a_failure_message_carries_every_field_of_the_contract():
    facts = {
        "dag_id": "orders_pipeline",
        "dag_run_id": "manual__1",
        "batch_id": "b1",
        "counts": {"landing": {"order_lines": 27}},
        "task_id": "count_staging",
        "try_number": 1,
        "error": "CountMismatch: staging has 25 order_lines, landing has 27",
        "log_url": "http://localhost:8080/log",
    }
    subject, message = build_message("FAILURE", "orders", facts)
    assert subject == "FAILURE orders b1"
    structure = json.loads(message)
    body = json.loads(structure["default"])
    assert body == {"status": "FAILURE", "pipeline": "orders", **facts}
    assert "staging has 25 order_lines" in structure["email"]
    assert "landing: {'order_lines': 27}" in structure["email"]


def test_the_subject_is_cut_to_100_characters():
    subject, _ = build_message("SUCCESS", "orders", {"batch_id": "x" * 128, "counts": {}})
    assert len(subject) == 100 and subject.startswith("SUCCESS orders xxx")


def test_a_run_without_a_batch_says_so_in_the_subject():
    subject, message = build_message("FAILURE", "orders", {"batch_id": None, "counts": {}})
    assert subject == "FAILURE orders -"
    assert json.loads(json.loads(message)["default"])["batch_id"] is None


def test_the_failure_notifier_closes_the_batch_even_when_its_marker_is_already_gone(
    moto_endpoint, monkeypatch, capfd
):
    """A task after ``archive_marker`` fails: the marker has moved on, and setting it aside must
    not stop the notifier from marking the batch FAILED in the audit table."""
    import boto3

    from etl_toolkit import reconcile
    from etl_toolkit.notify import BatchFailureNotifier

    for variable, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_DEFAULT_REGION": "eu-west-2",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "extra": {"endpoint_url": moto_endpoint}}),
    }.items():
        monkeypatch.setenv(variable, value)
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(
        Bucket="landing", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
    )
    closed = []
    monkeypatch.setattr(reconcile, "close_batch", lambda *args: closed.append(args))

    class TaskInstance:
        def xcom_pull(self, task_ids, key="return_value"):
            return "batch-completion/b1.json" if key == "marker_key" else None

    notifier = BatchFailureNotifier(pipeline="orders", landing_bucket="landing")
    facts = {"batch_id": "b1", "error": "RuntimeError: boom"}
    notifier._set_batch_aside({"ti": TaskInstance(), "run_id": "manual__1"}, facts, RuntimeError("boom"))

    assert closed == [("orders", "b1", "manual__1", "FAILED", "RuntimeError: boom")]
    assert "Could not set s3://landing/batch-completion/b1.json aside" in "".join(capfd.readouterr())
