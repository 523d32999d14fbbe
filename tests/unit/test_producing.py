"""Producing batches: allow-listed names and batch ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from etl_toolkit.contract import batch_id_from_key, marker_key
from etl_toolkit.tasks import producing


def test_a_configured_name_off_the_allow_list_fails_the_run_at_once():
    with pytest.raises(producing.RefusedName, match="staff; DROP TABLE staff"):
        producing.allowed_names(["staff; DROP TABLE staff"], ("staff", "payment"))
    with pytest.raises(producing.RefusedName):
        producing.allowed_names("staff,pg_shadow", ("staff", "payment"))


def test_no_configured_names_means_all_of_the_allow_list():
    assert producing.allowed_names(None, ("staff", "payment")) == ["staff", "payment"]
    assert producing.allowed_names("", ("staff", "payment")) == ["staff", "payment"]
    assert producing.allowed_names(" payment ,staff", ("staff", "payment")) == ["payment", "staff"]


def test_a_new_batch_id_is_the_runs_time_and_a_valid_marker_name():
    batch_id = producing.new_batch_id("totesys", datetime(2026, 11, 25, 3, 4, 5, 6789, tzinfo=UTC))
    assert batch_id == "totesys-20261125T030405.006789"
    assert batch_id_from_key(marker_key(batch_id)) == batch_id
