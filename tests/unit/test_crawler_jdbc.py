"""devstack.crawler: JDBC targets catalog PostgreSQL tables as AWS Glue's crawlers do, through the
Glue connection that devstack.resources provisions.

moto runs for real, in server mode on loopback, and is reached over HTTP only; PostgreSQL is the
embedded server of the stack (devstack.warehouse), with its passwords checked.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import psycopg2
import pytest

from devstack import crawler, resources
from devstack.stack import _EndpointSession, free_port
from devstack.warehouse import DatabaseUrl, EmbeddedPostgres
from tests.unit.test_crawler import REGION, ROLE, crawl

CONNECTION = resources.WAREHOUSE_JDBC_CONNECTION

FACT_TRANSACTIONS_COLUMNS = [
    {"Name": "transaction_id", "Type": "string"},
    {"Name": "customer_id", "Type": "string"},
    {"Name": "total_price", "Type": "decimal(12,2)"},
    {"Name": "transaction_date", "Type": "date"},
    {"Name": "loaded_at", "Type": "timestamp"},
    {"Name": "quantity", "Type": "int"},
]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Iterator[DatabaseUrl]:
    """The stack's embedded PostgreSQL with the e-commerce schema; the warehouse database's URL."""
    postgres = EmbeddedPostgres(tmp_path_factory.mktemp("warehouse"), free_port())
    postgres.start()
    url = postgres.url("warehouse")
    try:
        execute(
            url,
            """
            CREATE SCHEMA ecommerce;
            CREATE TABLE ecommerce.fact_transactions (
                transaction_id text PRIMARY KEY,
                customer_id text,
                total_price numeric(12, 2),
                transaction_date date,
                loaded_at timestamptz,
                quantity integer
            );
            CREATE TABLE ecommerce.dim_customer (
                customer_id varchar(40) PRIMARY KEY,
                email char(120),
                loyalty_points bigint,
                age smallint,
                is_active boolean,
                score double precision,
                ratio real,
                balance numeric,
                profile jsonb,
                attributes json,
                signed_up timestamp,
                external_id uuid
            );
            -- what a LIKE pattern's _ would match in place of fact_transactions: never catalogued
            CREATE TABLE ecommerce.factxtransactions (id integer);
            CREATE TABLE ecommerce.staging_load (id integer);
            CREATE SCHEMA other;
            CREATE TABLE other.fact_transactions (id integer);
            CREATE SCHEMA evolving;
            CREATE TABLE evolving.events (event_id bigint);
            """,
        )
        yield url
    finally:
        postgres.stop()


@pytest.fixture(scope="module")
def endpoint(moto_endpoint: str) -> str:
    crawler.install()
    return moto_endpoint


@pytest.fixture(scope="module")
def session(endpoint: str) -> _EndpointSession:
    """What ``make stack`` provisions through: a boto3 session whose clients reach the emulator."""
    boto_session = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    return _EndpointSession(boto_session, endpoint)


@pytest.fixture(scope="module")
def glue(session, warehouse: DatabaseUrl):
    resources.provision(session, {"warehouse_db": warehouse.uri()})
    return session.client("glue")


def execute(url: DatabaseUrl, statements: str) -> None:
    with psycopg2.connect(url.uri()) as connection, connection.cursor() as cursor:
        cursor.execute(statements)
    connection.close()


def create_jdbc_crawler(glue, name: str, path: str, connection: str = CONNECTION, **kwargs) -> None:
    target = {"ConnectionName": connection, "Path": path}
    if exclusions := kwargs.pop("exclusions", None):
        target["Exclusions"] = exclusions
    glue.create_crawler(
        Name=name, Role=ROLE, DatabaseName=name.replace("-", "_"), Targets={"JdbcTargets": [target]}, **kwargs
    )


def table_names(glue, database: str) -> list[str]:
    return sorted(table["Name"] for table in glue.get_tables(DatabaseName=database)["TableList"])


def metrics(glue, name: str) -> tuple[int, int]:
    [found] = glue.get_crawler_metrics(CrawlerNameList=[name])["CrawlerMetricsList"]
    return found["TablesCreated"], found["TablesUpdated"]


def test_one_table_is_catalogued_with_its_columns_in_order_and_an_unchanged_recrawl_is_a_no_op(glue):
    create_jdbc_crawler(glue, "jdbc-one", "warehouse/ecommerce/fact_transactions")

    state = crawl(glue, "jdbc-one")

    assert state["LastCrawl"]["Status"] == "SUCCEEDED", state["LastCrawl"].get("ErrorMessage")
    assert table_names(glue, "jdbc_one") == ["warehouse_ecommerce_fact_transactions"]
    table = glue.get_table(DatabaseName="jdbc_one", Name="warehouse_ecommerce_fact_transactions")["Table"]
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["PartitionKeys"] == []
    assert table["Parameters"] == {
        "classification": "postgresql",
        "connectionName": CONNECTION,
        "typeOfData": "table",
        "compressionType": "none",
        "UPDATED_BY_CRAWLER": "jdbc-one",
    }
    descriptor = table["StorageDescriptor"]
    assert descriptor["Columns"] == FACT_TRANSACTIONS_COLUMNS
    assert descriptor["Location"] == "warehouse.ecommerce.fact_transactions"
    assert descriptor["Parameters"]["classification"] == "postgresql"
    partitions = glue.get_partitions(DatabaseName="jdbc_one", TableName="warehouse_ecommerce_fact_transactions")
    assert partitions["Partitions"] == []
    assert metrics(glue, "jdbc-one") == (1, 0)

    versions = glue.get_table_versions(DatabaseName="jdbc_one", TableName="warehouse_ecommerce_fact_transactions")
    state = crawl(glue, "jdbc-one")

    assert state["LastCrawl"]["Status"] == "SUCCEEDED"
    again = glue.get_table_versions(DatabaseName="jdbc_one", TableName="warehouse_ecommerce_fact_transactions")
    assert again["TableVersions"] == versions["TableVersions"]
    assert metrics(glue, "jdbc-one") == (0, 0)


def test_a_wildcard_catalogs_every_table_of_the_schema_but_the_excluded_ones(glue):
    create_jdbc_crawler(
        glue, "jdbc-schema", "warehouse/ecommerce/%", TablePrefix="pg_", exclusions=["staging_*", "factx*"]
    )

    state = crawl(glue, "jdbc-schema")

    assert state["LastCrawl"]["Status"] == "SUCCEEDED", state["LastCrawl"].get("ErrorMessage")
    assert table_names(glue, "jdbc_schema") == [
        "pg_warehouse_ecommerce_dim_customer",
        "pg_warehouse_ecommerce_fact_transactions",
    ]
    fact = glue.get_table(DatabaseName="jdbc_schema", Name="pg_warehouse_ecommerce_fact_transactions")["Table"]
    assert fact["StorageDescriptor"]["Columns"] == FACT_TRANSACTIONS_COLUMNS
    customer = glue.get_table(DatabaseName="jdbc_schema", Name="pg_warehouse_ecommerce_dim_customer")["Table"]
    assert customer["StorageDescriptor"]["Location"] == "warehouse.ecommerce.dim_customer"
    assert customer["StorageDescriptor"]["Columns"] == [
        {"Name": "customer_id", "Type": "string"},
        {"Name": "email", "Type": "string"},
        {"Name": "loyalty_points", "Type": "bigint"},
        {"Name": "age", "Type": "smallint"},
        {"Name": "is_active", "Type": "boolean"},
        {"Name": "score", "Type": "double"},
        {"Name": "ratio", "Type": "float"},
        {"Name": "balance", "Type": "decimal(38,18)"},
        {"Name": "profile", "Type": "string"},
        {"Name": "attributes", "Type": "string"},
        {"Name": "signed_up", "Type": "timestamp"},
        {"Name": "external_id", "Type": "string"},
    ]


def test_an_underscore_in_the_path_is_literal_not_a_like_wildcard(glue):
    create_jdbc_crawler(glue, "jdbc-literal", "warehouse/%/fact_transactions")

    crawl(glue, "jdbc-literal")

    # other.fact_transactions is found by the schema wildcard; factxtransactions is not
    assert table_names(glue, "jdbc_literal") == [
        "warehouse_ecommerce_fact_transactions",
        "warehouse_other_fact_transactions",
    ]


def test_a_recrawl_after_a_column_is_added_updates_the_table_in_place(glue, warehouse):
    create_jdbc_crawler(glue, "jdbc-evolving", "warehouse/evolving/events")
    crawl(glue, "jdbc-evolving")
    execute(warehouse, "ALTER TABLE evolving.events ADD COLUMN note text")

    state = crawl(glue, "jdbc-evolving")

    assert state["LastCrawl"]["Status"] == "SUCCEEDED"
    table = glue.get_table(DatabaseName="jdbc_evolving", Name="warehouse_evolving_events")["Table"]
    assert table["StorageDescriptor"]["Columns"] == [
        {"Name": "event_id", "Type": "bigint"},
        {"Name": "note", "Type": "string"},
    ]
    assert metrics(glue, "jdbc-evolving") == (0, 1)
    assert table_names(glue, "jdbc_evolving") == ["warehouse_evolving_events"]


def test_a_connection_whose_credentials_are_in_a_secret_is_crawled(glue, warehouse):
    # provision() wrote the warehouse's RDS-style secret etl/warehouse beside the connection
    glue.create_connection(
        ConnectionInput={
            "Name": "warehouse-by-secret",
            "ConnectionType": "JDBC",
            "ConnectionProperties": {
                "JDBC_CONNECTION_URL": f"jdbc:postgresql://{warehouse.host}:{warehouse.port}/warehouse",
                "SECRET_ID": "etl/warehouse",
            },
        }
    )
    create_jdbc_crawler(glue, "jdbc-secret", "warehouse/ecommerce/fact_transactions", "warehouse-by-secret")

    state = crawl(glue, "jdbc-secret")

    assert state["LastCrawl"]["Status"] == "SUCCEEDED", state["LastCrawl"].get("ErrorMessage")
    table = glue.get_table(DatabaseName="jdbc_secret", Name="warehouse_ecommerce_fact_transactions")["Table"]
    assert table["Parameters"]["connectionName"] == "warehouse-by-secret"


def test_one_crawler_catalogs_its_s3_and_its_jdbc_targets(glue, session):
    s3 = session.client("s3")
    s3.create_bucket(Bucket="jdbc-mixed", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket="jdbc-mixed", Key="returns/returns.csv", Body=b"return_id,amount\n1,2.5\n")
    glue.create_crawler(
        Name="jdbc-mixed",
        Role=ROLE,
        DatabaseName="jdbc_mixed",
        Targets={
            "S3Targets": [{"Path": "s3://jdbc-mixed/returns/"}],
            "JdbcTargets": [{"ConnectionName": CONNECTION, "Path": "warehouse/ecommerce/fact_transactions"}],
        },
    )

    state = crawl(glue, "jdbc-mixed")

    assert state["LastCrawl"]["Status"] == "SUCCEEDED", state["LastCrawl"].get("ErrorMessage")
    assert table_names(glue, "jdbc_mixed") == ["returns", "warehouse_ecommerce_fact_transactions"]
    returns = glue.get_table(DatabaseName="jdbc_mixed", Name="returns")["Table"]
    assert returns["Parameters"]["classification"] == "csv"


def test_a_missing_connection_fails_the_crawl_naming_it(glue):
    create_jdbc_crawler(glue, "jdbc-missing", "warehouse/ecommerce/%", "no-such-connection")

    state = crawl(glue, "jdbc-missing")

    assert state["LastCrawl"]["Status"] == "FAILED"
    message = state["LastCrawl"]["ErrorMessage"]
    assert "no-such-connection" in message and "not found" in message
    assert "warehouse/ecommerce/%" in message
    [listed] = glue.list_crawls(CrawlerName="jdbc-missing")["Crawls"]
    assert listed["State"] == "FAILED"
    with pytest.raises(glue.exceptions.EntityNotFoundException):  # a failed crawl writes nothing
        glue.get_database(Name="jdbc_missing")


def test_a_wrong_password_fails_the_crawl_naming_the_connection_and_not_the_password(glue, warehouse):
    glue.create_connection(
        ConnectionInput={
            "Name": "warehouse-wrong-password",
            "ConnectionType": "JDBC",
            "ConnectionProperties": {
                "JDBC_CONNECTION_URL": f"jdbc:postgresql://{warehouse.host}:{warehouse.port}/warehouse",
                "USERNAME": warehouse.user,
                "PASSWORD": "not-the-password-4711",
            },
        }
    )
    create_jdbc_crawler(glue, "jdbc-wrong-password", "warehouse/ecommerce/%", "warehouse-wrong-password")

    state = crawl(glue, "jdbc-wrong-password")

    assert state["LastCrawl"]["Status"] == "FAILED"
    message = state["LastCrawl"]["ErrorMessage"]
    assert "warehouse-wrong-password" in message
    assert "password authentication failed" in message
    assert "not-the-password-4711" not in message and warehouse.password not in message


def test_a_refused_connection_fails_the_crawl_naming_the_connection(glue):
    glue.create_connection(
        ConnectionInput={
            "Name": "warehouse-nobody-home",
            "ConnectionType": "JDBC",
            "ConnectionProperties": {
                "JDBC_CONNECTION_URL": f"jdbc:postgresql://127.0.0.1:{free_port()}/warehouse",
                "USERNAME": "etl_warehouse",
                "PASSWORD": "secret-4712",
            },
        }
    )
    create_jdbc_crawler(glue, "jdbc-refused", "warehouse/ecommerce/%", "warehouse-nobody-home")

    state = crawl(glue, "jdbc-refused")

    assert state["LastCrawl"]["Status"] == "FAILED"
    message = state["LastCrawl"]["ErrorMessage"]
    assert "warehouse-nobody-home" in message and "refused" in message
    assert "secret-4712" not in message


def test_a_connection_that_is_not_jdbc_fails_the_crawl(glue):
    glue.create_connection(
        ConnectionInput={"Name": "just-a-network", "ConnectionType": "NETWORK", "ConnectionProperties": {}}
    )
    create_jdbc_crawler(glue, "jdbc-network", "warehouse/ecommerce/%", "just-a-network")

    state = crawl(glue, "jdbc-network")

    assert state["LastCrawl"]["Status"] == "FAILED"
    message = state["LastCrawl"]["ErrorMessage"]
    assert "just-a-network" in message and "NETWORK, not JDBC" in message


def test_a_path_that_matches_no_table_fails_the_crawl_naming_the_path(glue):
    create_jdbc_crawler(glue, "jdbc-nothing", "warehouse/ecommerce/no_such_table")

    state = crawl(glue, "jdbc-nothing")

    assert state["LastCrawl"]["Status"] == "FAILED"
    message = state["LastCrawl"]["ErrorMessage"]
    assert "warehouse/ecommerce/no_such_table" in message and CONNECTION in message
    assert "matches no table" in message


def test_provision_creates_the_connection_and_buckets_and_is_idempotent(session, warehouse, glue):
    # the glue fixture has provisioned once already
    resources.provision(session, {"warehouse_db": warehouse.uri()})

    connection = glue.get_connection(Name=CONNECTION)["Connection"]
    assert connection["ConnectionProperties"] == {
        "JDBC_CONNECTION_URL": f"jdbc:postgresql://127.0.0.1:{warehouse.port}/warehouse",
        "USERNAME": warehouse.user,
        "PASSWORD": warehouse.password,
    }
    assert [c["Name"] for c in glue.get_connections()["ConnectionList"]].count(CONNECTION) == 1
    buckets = {bucket["Name"] for bucket in session.client("s3").list_buckets()["Buckets"]}
    assert {"ecommerce-raw", "ecommerce-archive"} <= buckets

    moved = DatabaseUrl("127.0.0.1", warehouse.port + 1, "warehouse", warehouse.user, "another-password")
    resources.provision(session, {"warehouse_db": moved.uri()})

    properties = glue.get_connection(Name=CONNECTION)["Connection"]["ConnectionProperties"]
    assert properties["JDBC_CONNECTION_URL"] == f"jdbc:postgresql://127.0.0.1:{warehouse.port + 1}/warehouse"
    assert properties["PASSWORD"] == "another-password"

    resources.provision(session, {"warehouse_db": warehouse.uri()})  # as the other tests found it
    properties = glue.get_connection(Name=CONNECTION)["Connection"]["ConnectionProperties"]
    assert properties["PASSWORD"] == warehouse.password
