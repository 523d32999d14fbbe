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




# -- totesys: the source, the warehouse, and a clean slate per test module ---------------------------

TOTESYS_BUCKETS = ("totesys-ingestion", "totesys-processed")


@pytest.fixture(scope="module")
def source_conn(stack):
    """The totesys source database, as the application's role."""
    from devstack.sample_data import totesys

    conn = totesys.connect(stack["AIRFLOW_CONN_TOTESYS_DB"])
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def sql(warehouse_dsn):
    """Runs one statement on the warehouse; the rows when it returns any."""

    def query(statement: str, *parameters):
        with psycopg2.connect(warehouse_dsn) as conn, conn.cursor() as cursor:
            cursor.execute(statement, parameters)
            return cursor.fetchall() if cursor.description else None

    return query


@pytest.fixture(scope="module")
def no_totesys(stack, aws, airflow_db, sql):
    """No trace of totesys in S3 or the warehouse: each module's batches start from nothing."""
    s3 = aws("s3")
    for bucket in TOTESYS_BUCKETS:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
    sql("DROP SCHEMA IF EXISTS totesys CASCADE")
    if sql("SELECT 1 FROM information_schema.tables WHERE table_schema = 'audit' AND table_name = 'batches'"):
        sql("DELETE FROM audit.layer_counts WHERE pipeline = 'totesys'")
        sql("DELETE FROM audit.batches WHERE pipeline = 'totesys'")
