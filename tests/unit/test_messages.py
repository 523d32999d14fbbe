"""The notification contract: subject, JSON default entry, readable email entry."""

import json

from etl_toolkit.messages import build_message


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
