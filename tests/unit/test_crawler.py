"""devstack.crawler: moto's Glue crawlers catalog their S3 targets as AWS Glue's do.

moto runs for real, in server mode on loopback, and is reached over HTTP only.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devstack import crawler

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/etl-glue-job-role"

# The landing layout of docs/interfaces.md (orders): what Firehose writes.
PRODUCT = pa.struct(
    [
        ("product_code", pa.string()),
        ("product_name", pa.string()),
        ("quantity", pa.int32()),
        ("unit_price", pa.decimal128(10, 2)),
    ]
)
ORDERS_SCHEMA = pa.schema(
    [
        ("order_id", pa.string()),
        ("customer_id", pa.string()),
        ("order_ts", pa.timestamp("ms", tz="UTC")),
        ("currency", pa.string()),
        ("products", pa.list_(PRODUCT)),
        ("run_id", pa.string()),
        ("processing_ts", pa.timestamp("ms", tz="UTC")),
    ]
)
ORDERS_COLUMNS = [
    {"Name": "order_id", "Type": "string"},
    {"Name": "customer_id", "Type": "string"},
    {"Name": "order_ts", "Type": "timestamp"},
    {"Name": "currency", "Type": "string"},
    {
        "Name": "products",
        "Type": "array<struct<product_code:string,product_name:string,quantity:int,unit_price:decimal(10,2)>>",
    },
    {"Name": "run_id", "Type": "string"},
    {"Name": "processing_ts", "Type": "timestamp"},
]
ORDERS_PARTITION_KEYS = [{"Name": key, "Type": "string"} for key in ("year", "month", "day", "hour")]


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> str:
    crawler.install()
    return moto_endpoint


@pytest.fixture(scope="module")
def client(endpoint: str) -> Callable[[str], object]:
    def make(service: str):
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return make


@pytest.fixture(scope="module")
def s3(client):
    return client("s3")


@pytest.fixture(scope="module")
def glue(client):
    return client("glue")


@pytest.fixture(scope="module")
def logs(client):
    return client("logs")


def orders_parquet(order_id: str) -> bytes:
    ts = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    row = {
        "order_id": order_id,
        "customer_id": "c-1",
        "order_ts": ts,
        "currency": "GBP",
        "products": [{"product_code": "P1", "product_name": "Pen", "quantity": 2, "unit_price": Decimal("1.50")}],
        "run_id": "batch-1",
        "processing_ts": ts,
    }
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([row], schema=ORDERS_SCHEMA), buffer, compression="snappy")
    return buffer.getvalue()


def put_orders_hour(s3, bucket: str, hour: str, prefix: str = "orders") -> None:
    folder = f"{prefix}/year=2026/month=11/day=25/hour={hour}/"
    s3.put_object(Bucket=bucket, Key=f"{folder}part-0.parquet", Body=orders_parquet(f"o-{hour}"))


def make_bucket(s3, bucket: str) -> None:
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})


def create_crawler(glue, name: str, path: str, database: str, **kwargs) -> None:
    glue.create_crawler(Name=name, Role=ROLE, DatabaseName=database, Targets={"S3Targets": [{"Path": path}]}, **kwargs)


def wait_ready(glue, name: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = glue.get_crawler(Name=name)["Crawler"]
        if found["State"] == "READY":
            return found
        time.sleep(0.05)
    raise AssertionError(f"crawler {name} still {found['State']} after {timeout}s")


def crawl(glue, name: str) -> dict:
    glue.start_crawler(Name=name)
    return wait_ready(glue, name)


def partitions(glue, database: str, table: str) -> list[dict]:
    found = glue.get_partitions(DatabaseName=database, TableName=table)["Partitions"]
    return sorted(found, key=lambda partition: partition["Values"])


def test_hive_partitioned_parquet_becomes_one_table_with_a_partition_per_folder(s3, glue, client):
    make_bucket(s3, "landing-one")
    s3.put_object(Bucket="landing-one", Key="orders/", Body=b"")  # a console-made folder marker
    put_orders_hour(s3, "landing-one", "09")
    put_orders_hour(s3, "landing-one", "10")
    s3.put_object(Bucket="landing-one", Key="orders/year=2026/month=11/day=25/hour=09/_SUCCESS", Body=b"ok")
    s3.put_object(Bucket="landing-one", Key="orders/year=2026/month=11/day=25/hour=10/.part-0.crc", Body=b"x")
    create_crawler(glue, "orders-one", "s3://landing-one/orders", "landing_one")

    state = crawl(glue, "orders-one")

    assert state["LastCrawl"]["Status"] == "SUCCEEDED"
    assert state["LastCrawl"]["LogGroup"] == "/aws-glue/crawlers"
    assert state["LastCrawl"]["LogStream"] == "orders-one"
    [listed] = glue.list_crawls(CrawlerName="orders-one")["Crawls"]
    assert listed["State"] == "COMPLETED"
    assert state["LastCrawl"]["MessagePrefix"] == listed["CrawlId"]
    assert [t["Name"] for t in glue.get_tables(DatabaseName="landing_one")["TableList"]] == ["orders"]
    table = glue.get_table(DatabaseName="landing_one", Name="orders")["Table"]
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["PartitionKeys"] == ORDERS_PARTITION_KEYS
    assert table["Parameters"]["classification"] == "parquet"
    assert table["Parameters"]["recordCount"] == "2"
    descriptor = table["StorageDescriptor"]
    assert descriptor["Columns"] == ORDERS_COLUMNS
    assert descriptor["Location"] == "s3://landing-one/orders/"
    assert descriptor["InputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    assert descriptor["OutputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    assert descriptor["SerdeInfo"]["SerializationLibrary"] == (
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    )
    found = partitions(glue, "landing_one", "orders")
    assert [p["Values"] for p in found] == [["2026", "11", "25", "09"], ["2026", "11", "25", "10"]]
    assert [p["StorageDescriptor"]["Location"] for p in found] == [
        "s3://landing-one/orders/year=2026/month=11/day=25/hour=09/",
        "s3://landing-one/orders/year=2026/month=11/day=25/hour=10/",
    ]
    assert all(p["StorageDescriptor"]["Columns"] == ORDERS_COLUMNS for p in found)
    [metrics] = glue.get_crawler_metrics(CrawlerNameList=["orders-one"])["CrawlerMetricsList"]
    assert (metrics["CrawlerName"], metrics["TablesCreated"], metrics["TablesUpdated"]) == ("orders-one", 1, 0)
    assert metrics["StillEstimating"] is False
    log = client("logs").get_log_events(logGroupName="/aws-glue/crawlers", logStreamName="orders-one")
    messages = [event["message"] for event in log["events"]]
    assert all(message.startswith(f"[{listed['CrawlId']}] ") for message in messages)
    assert any("Created table orders in database landing_one" in message for message in messages)
    assert "Crawler has finished running and is in state READY" in messages[-1]


def test_recrawl_adds_only_the_new_partition_and_changes_nothing_else(s3, glue):
    make_bucket(s3, "landing-two")
    put_orders_hour(s3, "landing-two", "09")
    create_crawler(glue, "orders-two", "s3://landing-two/orders/", "landing_two")
    crawl(glue, "orders-two")
    [first] = partitions(glue, "landing_two", "orders")

    put_orders_hour(s3, "landing-two", "10")
    state = crawl(glue, "orders-two")

    assert state["LastCrawl"]["Status"] == "SUCCEEDED"
    found = partitions(glue, "landing_two", "orders")
    assert [p["Values"][-1] for p in found] == ["09", "10"]
    assert found[0]["CreationTime"] == first["CreationTime"]
    [metrics] = glue.get_crawler_metrics(CrawlerNameList=["orders-two"])["CrawlerMetricsList"]
    assert (metrics["TablesCreated"], metrics["TablesUpdated"]) == (0, 1)  # its recordCount grew

    versions = glue.get_table_versions(DatabaseName="landing_two", TableName="orders")["TableVersions"]
    crawl(glue, "orders-two")

    assert glue.get_table_versions(DatabaseName="landing_two", TableName="orders")["TableVersions"] == versions
    assert partitions(glue, "landing_two", "orders") == found
    [metrics] = glue.get_crawler_metrics(CrawlerNameList=["orders-two"])["CrawlerMetricsList"]
    assert (metrics["TablesCreated"], metrics["TablesUpdated"]) == (0, 0)


def test_table_prefix_is_prepended_to_the_table_name(s3, glue):
    make_bucket(s3, "landing-three")
    put_orders_hour(s3, "landing-three", "09")
    create_crawler(glue, "orders-three", "s3://landing-three/orders/", "landing_three", TablePrefix="staging_")

    crawl(glue, "orders-three")

    assert [t["Name"] for t in glue.get_tables(DatabaseName="landing_three")["TableList"]] == ["staging_orders"]


def test_each_dataset_folder_of_a_target_becomes_its_own_table(s3, glue):
    make_bucket(s3, "raw-four")
    put_orders_hour(s3, "raw-four", "09", prefix="raw/orders")
    csv = b"payment_id,amount,currency,paid,payment_date\n1,10.5,GBP,true,2026-11-25\n2,3.25,EUR,false,2026-11-24\n"
    s3.put_object(Bucket="raw-four", Key="raw/payments/dt=2026-11-25/payments.csv", Body=csv)
    s3.put_object(Bucket="raw-four", Key="raw/payments/dt=2026-11-24/payments.csv", Body=b"not,the,same\n")
    events = b'{"event_id": "e1", "count": 3, "attrs": {"source": "web", "tags": ["a", "b"]}}\n'
    s3.put_object(Bucket="raw-four", Key="raw/events/batch-1", Body=events * 2)  # Firehose: no extension
    glue.create_crawler(
        Name="raw-four",
        Role=ROLE,
        DatabaseName="raw_four",
        Targets={"S3Targets": [{"Path": "s3://raw-four/raw/", "Exclusions": ["payments/dt=2026-11-24/**"]}]},
    )

    state = crawl(glue, "raw-four")

    assert state["LastCrawl"]["Status"] == "SUCCEEDED"
    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName="raw_four")["TableList"]}
    assert sorted(tables) == ["events", "orders", "payments"]
    assert tables["orders"]["StorageDescriptor"]["Columns"] == ORDERS_COLUMNS
    assert tables["orders"]["StorageDescriptor"]["Location"] == "s3://raw-four/raw/orders/"

    payments = tables["payments"]
    assert payments["StorageDescriptor"]["Columns"] == [
        {"Name": "payment_id", "Type": "bigint"},
        {"Name": "amount", "Type": "double"},
        {"Name": "currency", "Type": "string"},
        {"Name": "paid", "Type": "boolean"},
        {"Name": "payment_date", "Type": "date"},
    ]
    assert payments["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    assert payments["StorageDescriptor"]["SerdeInfo"] == {
        "SerializationLibrary": "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
        "Parameters": {"field.delim": ","},
    }
    assert payments["Parameters"]["classification"] == "csv"
    assert payments["Parameters"]["skip.header.line.count"] == "1"
    assert payments["Parameters"]["recordCount"] == "2"
    assert [p["Values"] for p in partitions(glue, "raw_four", "payments")] == [["2026-11-25"]]  # excluded 24th

    event_table = tables["events"]
    assert event_table["StorageDescriptor"]["Columns"] == [
        {"Name": "event_id", "Type": "string"},
        {"Name": "count", "Type": "bigint"},
        {"Name": "attrs", "Type": "struct<source:string,tags:array<string>>"},
    ]
    assert event_table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert event_table["Parameters"]["classification"] == "json"
    assert event_table["PartitionKeys"] == []


def test_airflow_hooks_wait_for_the_crawl_and_find_its_partitions(s3, glue, endpoint, monkeypatch):
    from airflow.providers.amazon.aws.hooks.glue_catalog import GlueCatalogHook
    from airflow.providers.amazon.aws.hooks.glue_crawler import GlueCrawlerHook

    for variable, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(variable, value)
    make_bucket(s3, "landing-five")
    put_orders_hour(s3, "landing-five", "09")
    create_crawler(glue, "orders-five", "s3://landing-five/orders/", "landing_five")
    hook = GlueCrawlerHook(aws_conn_id=None)

    hook.start_crawler("orders-five")

    assert hook.wait_for_crawler_completion("orders-five", poll_interval=1) == "SUCCEEDED"
    catalog = GlueCatalogHook(aws_conn_id=None)
    assert catalog.check_for_partition("landing_five", "orders", "year='2026' AND month='11'")
    assert not catalog.check_for_partition("landing_five", "orders", "year='2026' AND month='12'")


def test_a_corrupt_parquet_object_is_logged_and_skipped_and_the_rest_is_catalogued(s3, glue, logs):
    make_bucket(s3, "landing-six")
    put_orders_hour(s3, "landing-six", "09")
    s3.put_object(Bucket="landing-six", Key="orders/year=2026/hour=10/part-0.parquet", Body=b"not parquet at all")
    create_crawler(glue, "orders-six", "s3://landing-six/orders/", "landing_six")

    state = crawl(glue, "orders-six")

    assert state["LastCrawl"]["Status"] == "SUCCEEDED"
    partitions = glue.get_partitions(DatabaseName="landing_six", TableName="orders")["Partitions"]
    assert [p["Values"][-1] for p in partitions] == ["09"]
    messages = [e["message"] for e in logs.filter_log_events(logGroupName="/aws-glue/crawlers")["events"]]
    assert any("s3://landing-six/orders/year=2026/hour=10/part-0.parquet" in m and "ERROR" in m for m in messages)


def test_a_missing_bucket_fails_the_crawl_naming_the_target(glue):
    create_crawler(glue, "orders-nowhere", "s3://no-such-bucket-here/orders/", "landing_nowhere")

    state = crawl(glue, "orders-nowhere")

    assert state["LastCrawl"]["Status"] == "FAILED"
    assert "s3://no-such-bucket-here/orders/" in state["LastCrawl"]["ErrorMessage"]
    [listed] = glue.list_crawls(CrawlerName="orders-nowhere")["Crawls"]
    assert listed["State"] == "FAILED"


def test_empty_target_succeeds_without_tables(s3, glue):
    make_bucket(s3, "landing-seven")
    create_crawler(glue, "empty-seven", "s3://landing-seven/nothing-yet/", "landing_seven")

    state = crawl(glue, "empty-seven")

    assert state["LastCrawl"]["Status"] == "SUCCEEDED"
    assert glue.get_tables(DatabaseName="landing_seven")["TableList"] == []


def test_stop_crawler_cancels_the_running_crawl_and_a_running_crawler_cannot_start(s3, glue, monkeypatch):
    make_bucket(s3, "landing-eight")
    put_orders_hour(s3, "landing-eight", "09")
    create_crawler(glue, "orders-eight", "s3://landing-eight/orders/", "landing_eight")
    reading, release = threading.Event(), threading.Event()
    infer_schema = crawler._infer_schema

    def slow_infer_schema(*args):
        reading.set()
        release.wait(10)
        return infer_schema(*args)

    monkeypatch.setattr(crawler, "_infer_schema", slow_infer_schema)
    glue.start_crawler(Name="orders-eight")
    assert reading.wait(10)
    assert glue.get_crawler(Name="orders-eight")["Crawler"]["State"] == "RUNNING"
    with pytest.raises(glue.exceptions.CrawlerRunningException):
        glue.start_crawler(Name="orders-eight")

    glue.stop_crawler(Name="orders-eight")

    assert glue.get_crawler(Name="orders-eight")["Crawler"]["State"] == "STOPPING"
    release.set()
    state = wait_ready(glue, "orders-eight")
    assert state["LastCrawl"]["Status"] == "CANCELLED"
    assert glue.list_crawls(CrawlerName="orders-eight")["Crawls"][0]["State"] == "STOPPED"
