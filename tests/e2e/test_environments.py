"""A pipeline runs end to end in another environment sharing the account with the local one.

The environment ``qa`` is provisioned on the local stack beside ``local`` (every name its own) and
named by the Variable ``etl_environment``: the orders pipeline then loads a batch with qa's
buckets, Glue jobs and crawlers, catalog database, secret, network connection and topics, and
touches none of the local environment's.
"""

from __future__ import annotations

import json

import boto3
import pytest

from devstack import resources
from devstack.sample_data.orders import write_orders_batch
from etl_toolkit import environment
from tests.conftest import run_dag


def qa_environment() -> dict:
    local = environment.LOCAL
    named = {section: {key: f"qa-{value}".replace("/", "-") for key, value in local[section].items()}
             for section in environment.NAME_SECTIONS}  # fmt: skip
    named["catalog_databases"]["etl"] = "qa_etl_catalog"
    return {**named, "name": "qa", "glue_role_arn": local["glue_role_arn"].replace("role/", "role/qa-"),
            "warehouse_database": local["warehouse_database"]}  # the same database: qa shares the warehouse


def _url(connection_json: str) -> str:
    conn = json.loads(connection_json)
    return f"postgresql://{conn['login']}:{conn['password']}@{conn['host']}:{conn['port']}/{conn['schema']}"


@pytest.fixture(scope="module")
def qa(stack):
    data = qa_environment()
    session = boto3.Session(region_name=stack["AWS_DEFAULT_REGION"])
    urls = {conn_id: _url(stack[f"AIRFLOW_CONN_{conn_id.upper()}"]) for conn_id in ("warehouse_db", "totesys_db")}
    resources.provision(session, urls, environment.validate(data))
    return data


def objects(aws, bucket: str, prefix: str = "") -> list[str]:
    pages = aws("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def test_the_orders_pipeline_runs_in_another_environment_with_its_names_only(
    qa, aws, orders_dag, inbox, warehouse, batch_start, monkeypatch
):
    landing, staging = qa["buckets"]["orders_landing"], qa["buckets"]["orders_staging"]
    write_orders_batch(aws("s3"), landing, "env-qa-1", orders=25, seed=61, started_at=batch_start)
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ENVIRONMENT", json.dumps(qa))

    dag_run, tis = run_dag(orders_dag)

    assert dag_run.state == "success", {t: ti.state for t, ti in tis.items()}
    [success] = inbox(f"{qa['topics']['success']}-inbox")
    assert success["subject"] == "SUCCESS orders env-qa-1"
    assert inbox("etl-success-inbox") == []
    # The data went through qa's buckets, and the marker to qa's archive.
    assert objects(aws, staging, "orders/run_id=env-qa-1/")
    assert objects(aws, landing, "batch-archive/loaded/env-qa-1.json")
    assert not objects(aws, environment.LOCAL["buckets"]["orders_staging"], "orders/run_id=env-qa-1/")
    assert warehouse("SELECT count(*) FROM orders.fact_order_lines WHERE run_id = %s", "env-qa-1")[0][0] > 0

    glue = aws("glue")
    loader = glue.get_job(JobName="qa-orders_staging_to_warehouse_staging")["Job"]
    assert loader["Role"] == qa["glue_role_arn"]
    assert loader["Connections"] == {"Connections": [qa["glue_connections"]["network"]]}
    wheels = loader["DefaultArguments"]["--additional-python-modules"].split(",")
    for wheel in wheels:
        assert wheel.startswith(f"s3://{qa['buckets']['glue_artifacts']}/") and wheel.endswith(".whl")
        assert objects(aws, qa["buckets"]["glue_artifacts"], wheel.split("/", 3)[3])
    assert any("adbc_driver_postgresql" in wheel for wheel in wheels)
    assert "Connections" not in glue.get_job(JobName="qa-orders_landing_to_staging")["Job"]
    crawler = glue.get_crawler(Name="qa-orders-landing-area-crawler")["Crawler"]
    assert crawler["DatabaseName"] == "qa_etl_catalog"
    assert glue.get_tables(DatabaseName="qa_etl_catalog")["TableList"]
