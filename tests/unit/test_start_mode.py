"""How a pipeline's runs start: Airflow's ``[etl] start_mode``, one pipeline's own option first."""

from __future__ import annotations

import pytest

from etl_toolkit.settings import CONFIG_OPTIONS, start_mode


def test_the_sensor_mode_is_the_default(monkeypatch):
    monkeypatch.delenv("AIRFLOW__ETL__START_MODE", raising=False)
    monkeypatch.delenv("AIRFLOW__ETL__ORDERS_START_MODE", raising=False)
    assert start_mode("orders") == "sensor"


def test_one_pipelines_option_wins_over_the_sections(monkeypatch):
    monkeypatch.setenv("AIRFLOW__ETL__START_MODE", "event")
    monkeypatch.setenv("AIRFLOW__ETL__SHIPPING_START_MODE", "sensor")
    assert start_mode("shipping") == "sensor"
    assert start_mode("orders") == "event"


def test_a_mode_that_does_not_exist_fails_naming_the_option(monkeypatch):
    monkeypatch.setenv("AIRFLOW__ETL__ORDERS_START_MODE", "events")
    with pytest.raises(ValueError, match=r"\[etl\] start_mode for orders must be one of .*'events'"):
        start_mode("orders")


def test_every_pipeline_with_a_marker_queue_has_its_own_option():
    from etl_toolkit import environment

    pipelines = {queue.removesuffix("_markers") for queue in environment.MARKER_QUEUES}
    assert {f"{pipeline}_start_mode" for pipeline in pipelines} <= set(CONFIG_OPTIONS)
