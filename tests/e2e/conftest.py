"""Fixtures the end-to-end tests share: the pipelines' DAGs, the SNS inboxes, the warehouse."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from devstack.resources import read_inbox

_days = iter(range(1, 400))


@pytest.fixture
def batch_start():
    """A day of its own for each test's hour partitions."""
    return datetime(2025, 1, 1, 8, tzinfo=UTC) + timedelta(days=next(_days))


@pytest.fixture
def orders_dag(dags, airflow_db, stack):
    return dags["orders_pipeline"]


@pytest.fixture
def inbox(aws):
    """Reads (and empties) an SNS inbox queue; both are emptied before each test."""

    def read(queue: str) -> list[dict]:
        topic = queue.removesuffix("-inbox")
        return [
            {"subject": envelope.get("Subject"), **json.loads(envelope["Message"])}
            for envelope in read_inbox(aws("sqs"), topic)
        ]

    read("etl-success-inbox")
    read("etl-failure-inbox")
    return read


@pytest.fixture
def warehouse(warehouse_dsn):
    def query(sql: str, *parameters):
        with psycopg2.connect(warehouse_dsn) as conn, conn.cursor() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchall()

    return query


