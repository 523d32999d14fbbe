"""Athena's clients against the local Athena engine (devstack.athena): the Amazon provider's
AthenaOperator (polling and deferred), AthenaSensor and AthenaHook through ``dag.test()``, and
awswrangler's ``read_sql_query`` (the regular path, which reads the result CSV, and the CTAS path,
which writes a parquet table and reads it through its manifest)."""

from __future__ import annotations

import io
import time
import uuid
from contextlib import contextmanager
from datetime import date
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_dag

pytestmark = pytest.mark.e2e

PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}
ROWS = [
    {"shipping_id": 1, "shipping_date": date(2024, 5, 1), "destination_city": "Leeds",
     "shipping_cost": Decimal("10.25"), "shipping_distance": 120.5, "quantity": 3.0},
    {"shipping_id": 2, "shipping_date": date(2024, 5, 2), "destination_city": "York",
     "shipping_cost": Decimal("99.99"), "shipping_distance": 20.0, "quantity": 1.5},
    {"shipping_id": 3, "shipping_date": date(2024, 5, 2), "destination_city": None,
     "shipping_cost": None, "shipping_distance": 7.25, "quantity": 10.0},
]  # fmt: skip
SCHEMA = pa.schema(
    [
        ("shipping_id", pa.int64()),
        ("shipping_date", pa.date32()),
        ("destination_city", pa.string()),
        ("shipping_cost", pa.decimal128(12, 2)),
        ("shipping_distance", pa.float64()),
        ("quantity", pa.float64()),
    ]
)
COLUMNS = [
    {"Name": "shipping_id", "Type": "bigint"},
    {"Name": "shipping_date", "Type": "date"},
    {"Name": "destination_city", "Type": "string"},
    {"Name": "shipping_cost", "Type": "decimal(12,2)"},
    {"Name": "shipping_distance", "Type": "double"},
    {"Name": "quantity", "Type": "double"},
]
TOTALS = (
    'SELECT SUM(shipping_cost) AS "Total_Cost_in_$", SUM(shipping_distance) AS "Total_Distance_in_miles", '
    'SUM(quantity) AS "Total_Fuel_Quantity_in_gal" FROM "{database}"."transformed_data"'
)


@pytest.fixture(scope="module")
def bucket(aws):
    name = f"athena-clients-{uuid.uuid4().hex[:10]}"
    aws("s3").create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return name


@pytest.fixture
def database(aws, bucket):
    """A hyphenated database of the test's own with a ``transformed_data`` table of ROWS."""
    name = f"athena-clients-{uuid.uuid4().hex[:8]}"
    prefix = f"{name}/transformed_data/"
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(ROWS, schema=SCHEMA), buffer)
    aws("s3").put_object(Bucket=bucket, Key=f"{prefix}part-0.parquet", Body=buffer.getvalue())
    glue = aws("glue")
    glue.create_database(DatabaseInput={"Name": name})
    glue.create_table(
        DatabaseName=name,
        TableInput={
            "Name": "transformed_data",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet"},
            "StorageDescriptor": {"Columns": COLUMNS, "Location": f"s3://{bucket}/{prefix}", **PARQUET},
        },
    )
    return name


# -- the Amazon provider ------------------------------------------------------------------------


def test_athena_operator_deferred_operator_sensor_and_hook(stack, aws, airflow_db, dags, bucket, database):
    dag_run, tis = run_dag(
        dags["athena_checks"],
        query=TOTALS.format(database=database),
        database=database,
        output_location=f"s3://{bucket}/airflow/",
    )
    assert {task_id: ti.state for task_id, ti in tis.items()} == {
        "run_query": "success",
        "run_query_deferred": "success",
        "sense_query": "success",
        "read_results": "success",
    }
    query_id = tis["run_query"].xcom_pull(task_ids="run_query")
    deferred_id = tis["run_query_deferred"].xcom_pull(task_ids="run_query_deferred")
    assert query_id != deferred_id
    for execution_id in (query_id, deferred_id):
        execution = aws("athena").get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]
        assert execution["Status"]["State"] == "SUCCEEDED"
        assert execution["QueryExecutionContext"]["Database"] == database
        assert execution["ResultConfiguration"]["OutputLocation"] == f"s3://{bucket}/airflow/{execution_id}.csv"

    results = tis["read_results"].xcom_pull(task_ids="read_results")
    assert results["columns"] == [
        ["Total_Cost_in_$", "decimal"],
        ["Total_Distance_in_miles", "double"],
        ["Total_Fuel_Quantity_in_gal", "double"],
    ]
    assert results["rows"] == [
        ["Total_Cost_in_$", "Total_Distance_in_miles", "Total_Fuel_Quantity_in_gal"],
        ["110.24", "147.75", "14.5"],
    ]


def test_athena_operator_fails_its_task_with_athenas_reason(stack, aws, airflow_db, dags, bucket, database, capfd):
    _, tis = run_dag(
        dags["athena_checks"],
        query="SELECT nope FROM transformed_data",
        database=database,
        output_location=f"s3://{bucket}/airflow/",
    )
    assert tis["run_query"].state == "failed"
    assert tis["run_query_deferred"].state == "failed"
    assert tis["sense_query"].state == "upstream_failed"
    log = capfd.readouterr().out
    assert "Final state of Athena job is FAILED" in log
    assert "COLUMN_NOT_FOUND: line 1:8: Column 'nope' cannot be resolved" in log


# -- awswrangler -----------------------------------------------------------------------------------


@contextmanager
def wrangler_on(stack):
    """awswrangler's endpoints pointed at the stack; restored afterwards."""
    import awswrangler as wr

    names = ("athena_endpoint_url", "s3_endpoint_url", "glue_endpoint_url", "sts_endpoint_url")
    saved = {name: getattr(wr.config, name) for name in names}
    for name in names:
        setattr(wr.config, name, stack["AWS_ENDPOINT_URL"])
    try:
        yield wr
    finally:
        for name, value in saved.items():
            if value is None:
                wr.config.reset(name)
            else:
                setattr(wr.config, name, value)


@pytest.fixture
def boto3_session(stack):
    import boto3

    return boto3.Session(
        region_name=stack["AWS_DEFAULT_REGION"], aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def test_awswrangler_read_sql_query_reads_the_result_csv(stack, bucket, database, boto3_session):
    sql = (
        "SELECT shipping_id, shipping_date, destination_city, shipping_cost, shipping_distance, quantity, "
        "quantity > 2 AS bulk FROM transformed_data ORDER BY shipping_id"
    )
    with wrangler_on(stack) as wr:
        frame = wr.athena.read_sql_query(
            sql,
            database=database,
            ctas_approach=False,
            s3_output=f"s3://{bucket}/wrangler/",
            boto3_session=boto3_session,
        )
    assert str(wr.config.athena_endpoint_url) != stack["AWS_ENDPOINT_URL"]
    assert list(frame.columns) == [
        "shipping_id", "shipping_date", "destination_city", "shipping_cost", "shipping_distance", "quantity", "bulk",
    ]  # fmt: skip
    assert {column: str(dtype) for column, dtype in frame.dtypes.items()} == {
        "shipping_id": "Int64",
        "shipping_date": "object",  # datetime.date values, as awswrangler parses Athena's dates
        "destination_city": "string",
        "shipping_cost": "object",  # decimal.Decimal values
        "shipping_distance": "float64",
        "quantity": "float64",
        "bulk": "boolean",
    }
    records = frame.to_dict("records")
    assert [r["shipping_id"] for r in records] == [1, 2, 3]
    assert [r["shipping_date"] for r in records] == [row["shipping_date"] for row in ROWS]
    assert [r["shipping_cost"] for r in records[:2]] == [Decimal("10.25"), Decimal("99.99")]
    assert records[2]["shipping_cost"] is None and pd.isna(records[2]["destination_city"])
    assert [r["shipping_distance"] for r in records] == [120.5, 20.0, 7.25]
    assert [bool(r["bulk"]) for r in records] == [True, False, True]
    assert frame.query_metadata["Status"]["State"] == "SUCCEEDED"


def test_awswrangler_ctas_approach_writes_reads_and_drops_a_parquet_table(stack, aws, bucket, database, boto3_session):
    sql = (
        "SELECT destination_city, SUM(quantity) AS fuel, COUNT(*) AS shipments "
        f'FROM "{database}".transformed_data GROUP BY 1'
    )
    with wrangler_on(stack) as wr:
        frame = wr.athena.read_sql_query(
            sql,
            database=database,
            ctas_approach=True,
            s3_output=f"s3://{bucket}/ctas/",
            keep_files=False,
            boto3_session=boto3_session,
        )
    frame = frame.sort_values("fuel").reset_index(drop=True)
    assert frame.to_dict("list") == {
        "destination_city": ["York", "Leeds", None],
        "fuel": [1.5, 3.0, 10.0],
        "shipments": [1, 1, 1],
    }
    assert str(frame.dtypes["shipments"]) == "Int64"
    # awswrangler dropped its temporary table and deleted the objects the CTAS wrote
    tables = aws("glue").get_tables(DatabaseName=database)["TableList"]
    assert [t["Name"] for t in tables] == ["transformed_data"]
    left = aws("s3").list_objects_v2(Bucket=bucket, Prefix="ctas/").get("Contents", [])
    assert not [o["Key"] for o in left if "temp_table_" in o["Key"] or "manifest" in o["Key"]]


def test_ctas_and_drop_table_as_statements(aws, bucket, database):
    athena = aws("athena")

    def run(sql: str) -> dict:
        query_id = athena.start_query_execution(
            QueryString=sql,
            QueryExecutionContext={"Database": database},
            ResultConfiguration={"OutputLocation": f"s3://{bucket}/ddl/"},
        )["QueryExecutionId"]
        deadline = time.monotonic() + 60
        while (e := athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"])["Status"]["State"] in (
            "QUEUED", "RUNNING",
        ):  # fmt: skip
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return e

    location = f"s3://{bucket}/{database}/leeds/"
    created = run(
        f"CREATE TABLE leeds WITH (external_location = '{location}', format = 'PARQUET') AS "
        "SELECT shipping_id, shipping_cost FROM transformed_data WHERE destination_city = 'Leeds'"
    )
    assert created["Status"]["State"] == "SUCCEEDED", created["Status"]
    assert created["StatementType"] == "DDL"
    table = aws("glue").get_table(DatabaseName=database, Name="leeds")["Table"]
    assert table["StorageDescriptor"]["Columns"] == [
        {"Name": "shipping_id", "Type": "bigint"},
        {"Name": "shipping_cost", "Type": "decimal(12,2)"},
    ]
    manifest = created["Statistics"]["DataManifestLocation"]
    assert manifest.endswith(f"{created['QueryExecutionId']}-manifest.csv")
    again = run(f"CREATE TABLE leeds2 WITH (external_location = '{location}') AS SELECT 1 AS one")
    assert again["Status"]["StateChangeReason"].startswith("HIVE_PATH_ALREADY_EXISTS")

    selected = run("SELECT shipping_id, shipping_cost FROM leeds")
    rows = athena.get_query_results(QueryExecutionId=selected["QueryExecutionId"])["ResultSet"]["Rows"]
    assert [[d.get("VarCharValue") for d in row["Data"]] for row in rows] == [
        ["shipping_id", "shipping_cost"],
        ["1", "10.25"],
    ]
    assert run("DROP TABLE leeds")["Status"]["State"] == "SUCCEEDED"
    assert run("DROP TABLE IF EXISTS leeds")["Status"]["State"] == "SUCCEEDED"
    assert run("DROP TABLE leeds")["Status"]["StateChangeReason"].startswith("TABLE_NOT_FOUND")
    # as on Athena, the data stays where the CTAS wrote it
    assert aws("s3").list_objects_v2(Bucket=bucket, Prefix=f"{database}/leeds/")["KeyCount"] == 1
