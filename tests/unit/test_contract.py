"""Completion markers: the contract's rules for keys and bodies."""

import json

import pytest

from etl_toolkit.contract import InvalidMarker, batch_id_from_key, marker_key, parse_marker

GOOD = {
    "batch_id": "b-2026.11.25_01",
    "started_at": "2026-11-25T08:00:00Z",
    "completed_at": "2026-11-25T09:30:00+00:00",
    "expected_counts": {"orders": 10, "order_lines": 27},
}


def test_a_marker_that_follows_the_contract_parses():
    marker = parse_marker("batch-completion/b-2026.11.25_01.json", json.dumps(GOOD).encode())
    assert marker.batch_id == "b-2026.11.25_01"
    assert marker.expected_counts == {"orders": 10, "order_lines": 27}
    assert marker.started_at == GOOD["started_at"]


@pytest.mark.parametrize("body", [b"", b"   ", b"{}"])
def test_an_empty_body_is_a_marker_without_expectations(body):
    marker = parse_marker("batch-completion/b1.json", body)
    assert (marker.batch_id, marker.expected_counts) == ("b1", {})


def test_a_body_that_is_not_json_names_the_marker():
    with pytest.raises(InvalidMarker, match=r"batch-completion/b1\.json .*not valid JSON"):
        parse_marker("batch-completion/b1.json", b"{not json")


def test_a_batch_id_that_differs_from_the_file_name_is_refused():
    with pytest.raises(InvalidMarker, match="says batch_id 'other' but its file name says 'b1'"):
        parse_marker("batch-completion/b1.json", json.dumps({"batch_id": "other"}))


@pytest.mark.parametrize(
    "key",
    [
        "batch-completion/has space.json",
        "batch-completion/b1.txt",
        "batch-completion/nested/b1.json",
        "batch-completion/" + "x" * 129 + ".json",
        "batch-completion/.json",
    ],
)
def test_keys_that_are_not_batch_id_dot_json_are_rejected(key):
    with pytest.raises(InvalidMarker, match="is not batch-completion/<batch_id>.json"):
        batch_id_from_key(key)


@pytest.mark.parametrize("counts", [{"orders": -1}, {"orders": "10"}, {"orders": 1.5}, {"orders": True}, ["orders"]])
def test_expected_counts_must_be_non_negative_integers(counts):
    with pytest.raises(InvalidMarker, match="expected_counts"):
        parse_marker("batch-completion/b1.json", json.dumps({"expected_counts": counts}))


def test_timestamps_must_be_iso_8601_with_a_time_zone():
    with pytest.raises(InvalidMarker, match="no time zone"):
        parse_marker("batch-completion/b1.json", json.dumps({"started_at": "2026-11-25T08:00:00"}))
    with pytest.raises(InvalidMarker, match="not an ISO-8601"):
        parse_marker("batch-completion/b1.json", json.dumps({"completed_at": "yesterday"}))


def test_marker_key_refuses_a_batch_id_outside_the_pattern():
    assert marker_key("b1") == "batch-completion/b1.json"
    with pytest.raises(InvalidMarker):
        marker_key("../etc/passwd")
