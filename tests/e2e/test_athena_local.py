"""The local Athena engine (devstack.athena) through plain boto3 on the local stack: queries really
run on DuckDB over the tables the Glue Data Catalog describes and the objects S3 holds.

Each test writes its own objects under a prefix of its own in this module's bucket and catalogs
them in a database of its own (hyphenated, as the shipping pipeline's is), so the tests run alone
and in any order.
"""

from __future__ import annotations

import io
import json
import random
import re
import time
import uuid
from datetime import date, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.e2e

ROLE = "arn:aws:iam::123456789012:role/etl-glue-job-role"
PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}
TOTALS_QUERY = (
    'SELECT SUM(shipping_cost) AS "Total_Cost_in_$", SUM(shipping_distance) AS "Total_Distance_in_miles", '
    'SUM(quantity) AS "Total_Fuel_Quantity_in_gal" FROM "{database}"."transformed_data"'
)
SHIPPING_SCHEMA = pa.schema(
    [
        ("shipping_id", pa.int64()),
        ("shipping_date", pa.date32()),
        ("destination_city", pa.string()),
        ("shipping_cost", pa.decimal128(12, 2)),
        ("shipping_distance", pa.float64()),
        ("quantity", pa.float64()),
        ("product_id", pa.int64()),
    ]
)
SHIPPING_COLUMNS = [
    {"Name": "shipping_id", "Type": "bigint"},
    {"Name": "shipping_date", "Type": "date"},
    {"Name": "destination_city", "Type": "string"},
    {"Name": "shipping_cost", "Type": "decimal(12,2)"},
    {"Name": "shipping_distance", "Type": "double"},
    {"Name": "quantity", "Type": "double"},
    {"Name": "product_id", "Type": "bigint"},
]


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bucket(aws):
    name = f"athena-local-{uuid.uuid4().hex[:10]}"
    aws("s3").create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return name


@pytest.fixture
def prefix():
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def database(aws):
    """A Glue database of the test's own, its name hyphenated (every client must quote it)."""
    name = f"athena-test-{uuid.uuid4().hex[:8]}"
    aws("glue").create_database(DatabaseInput={"Name": name})
    return name


def start(aws, sql: str, bucket: str, database: str | None = None, **kwargs) -> str:
    request = {"QueryString": sql, "ResultConfiguration": {"OutputLocation": f"s3://{bucket}/results/"}, **kwargs}
    if database:
        request["QueryExecutionContext"] = {"Database": database}
    return aws("athena").start_query_execution(**request)["QueryExecutionId"]


def wait(aws, query_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        execution = aws("athena").get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        if execution["Status"]["State"] not in ("QUEUED", "RUNNING"):
            return execution
        assert time.monotonic() < deadline, f"query {query_id} still {execution['Status']['State']}"
        time.sleep(0.05)


def run(aws, sql: str, bucket: str, database: str | None = None, **kwargs) -> tuple[str, dict]:
    query_id = start(aws, sql, bucket, database, **kwargs)
    return query_id, wait(aws, query_id)


def rows_of(aws, query_id: str, page_size: int = 1000) -> tuple[list[dict], list[list[str | None]]]:
    """(ColumnInfo, every row with the header first), NULL as None, read page by page."""
    pages = (
        aws("athena")
        .get_paginator("get_query_results")
        .paginate(QueryExecutionId=query_id, PaginationConfig={"PageSize": page_size})
    )
    columns, rows = [], []
    for page in pages:
        columns = page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
        rows += [[datum.get("VarCharValue") for datum in row["Data"]] for row in page["ResultSet"]["Rows"]]
    return columns, rows


def query(aws, sql: str, bucket: str, database: str | None = None) -> list[list[str | None]]:
    """The data rows (no header) of a query that must succeed."""
    query_id, execution = run(aws, sql, bucket, database)
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"]
    return rows_of(aws, query_id)[1][1:]


def failure(aws, sql: str, bucket: str, database: str | None = None) -> dict:
    _, execution = run(aws, sql, bucket, database)
    assert execution["Status"]["State"] == "FAILED", execution["Status"]
    return execution["Status"]


def parse_csv_line(line: str) -> list[str | None]:
    """One line of Athena's result CSV: a quoted field is a value (quotes doubled), an empty one NULL."""
    fields = re.findall(r'(?:^|,)("(?:[^"]|"")*"|)', line)
    return [field[1:-1].replace('""', '"') if field else None for field in fields]


def put_parquet(aws, bucket: str, key: str, table: pa.Table) -> int:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    aws("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    return len(buffer.getvalue())


def shipping_rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    cities = ["Leeds", "Manchester", "London", "Bristol", "York"]
    return [
        {
            "shipping_id": seed * 1_000_000 + i,
            "shipping_date": date(2024, 1, 1) + timedelta(days=rng.randrange(365)),
            "destination_city": rng.choice(cities),
            "shipping_cost": Decimal(rng.randrange(100, 1_000_000)) / 100,
            "shipping_distance": rng.uniform(1, 3000),
            "quantity": rng.uniform(0.5, 400),
            "product_id": rng.randrange(1, 50),
        }
        for i in range(count)
    ]


def shipping_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SHIPPING_SCHEMA)


def crawl(aws, name: str, database: str, path: str) -> None:
    glue = aws("glue")
    glue.create_crawler(Name=name, Role=ROLE, DatabaseName=database, Targets={"S3Targets": [{"Path": path}]})
    glue.start_crawler(Name=name)
    deadline = time.monotonic() + 60
    while (crawler := glue.get_crawler(Name=name)["Crawler"])["State"] != "READY" or "LastCrawl" not in crawler:
        assert time.monotonic() < deadline, crawler
        time.sleep(0.2)
    assert crawler["LastCrawl"]["Status"] == "SUCCEEDED", crawler["LastCrawl"]


def create_table(aws, database: str, name: str, location: str, columns: list[dict], keys: list[dict] = ()) -> None:
    aws("glue").create_table(
        DatabaseName=database,
        TableInput={
            "Name": name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet"},
            "PartitionKeys": list(keys),
            "StorageDescriptor": {"Columns": columns, "Location": location, **PARQUET},
        },
    )


def add_partition(aws, database: str, table: str, values: list[str], location: str) -> None:
    aws("glue").create_partition(
        DatabaseName=database,
        TableName=table,
        PartitionInput={"Values": values, "StorageDescriptor": {"Location": location, **PARQUET}},
    )


def expected_totals(rows: list[dict]) -> tuple[Decimal, float, float]:
    return (
        sum(r["shipping_cost"] for r in rows),
        sum(r["shipping_distance"] for r in rows),
        sum(r["quantity"] for r in rows),
    )


def assert_totals(result: list[list[str | None]], rows: list[dict]) -> None:
    [[cost, distance, quantity]] = result
    want_cost, want_distance, want_quantity = expected_totals(rows)
    assert Decimal(cost) == want_cost
    assert float(distance) == pytest.approx(want_distance, rel=1e-12)
    assert float(quantity) == pytest.approx(want_quantity, rel=1e-12)


# -- the shipping totals, on a crawled table and on a table created directly ---------------------


def test_the_shipping_totals_query_sums_a_table_the_crawler_catalogued(aws, bucket, prefix, database):
    rows = shipping_rows(300, seed=1)
    put_parquet(aws, bucket, f"{prefix}/transformed_data/part-0.parquet", shipping_table(rows[:120]))
    put_parquet(aws, bucket, f"{prefix}/transformed_data/part-1.parquet", shipping_table(rows[120:]))
    crawl(aws, f"{database}-crawler", database, f"s3://{bucket}/{prefix}/transformed_data/")

    columns = aws("glue").get_table(DatabaseName=database, Name="transformed_data")["Table"]["StorageDescriptor"]
    assert {"Name": "shipping_cost", "Type": "decimal(12,2)"} in columns["Columns"]

    query_id, execution = run(aws, TOTALS_QUERY.format(database=database), bucket)
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"]
    info, result = rows_of(aws, query_id)
    assert result[0] == ["Total_Cost_in_$", "Total_Distance_in_miles", "Total_Fuel_Quantity_in_gal"]
    assert [(c["Name"], c["Type"]) for c in info] == [
        ("Total_Cost_in_$", "decimal"),
        ("Total_Distance_in_miles", "double"),
        ("Total_Fuel_Quantity_in_gal", "double"),
    ]
    assert (info[0]["Precision"], info[0]["Scale"]) == (38, 2)
    assert_totals(result[1:], rows)


def test_the_shipping_totals_query_sums_a_table_created_with_create_table(aws, bucket, prefix, database):
    rows = shipping_rows(250, seed=2)
    put_parquet(aws, bucket, f"{prefix}/data/a.parquet", shipping_table(rows))
    create_table(aws, database, "transformed_data", f"s3://{bucket}/{prefix}/data/", SHIPPING_COLUMNS)
    assert_totals(query(aws, TOTALS_QUERY.format(database=database), bucket), rows)
    # the database may come from the context instead, and the catalog may be named
    unqualified = TOTALS_QUERY.format(database=database).replace(f'"{database}".', "")
    assert_totals(query(aws, unqualified, bucket, database), rows)
    qualified = TOTALS_QUERY.format(database=database).replace(f'"{database}"', f'awsdatacatalog."{database}"')
    assert_totals(query(aws, qualified, bucket), rows)


def test_catalog_types_are_applied_to_what_the_objects_hold(aws, bucket, prefix, database):
    """int32 in the file, bigint in the catalog; a column the object lacks is NULL; names match
    whatever their case."""
    data = pa.table({"ID": pa.array([1, 2], pa.int32()), "Amount": pa.array([1.5, 2.25])})
    put_parquet(aws, bucket, f"{prefix}/mixed/a.parquet", data)
    columns = [
        {"Name": "id", "Type": "bigint"},
        {"Name": "amount", "Type": "decimal(12,2)"},
        {"Name": "missing", "Type": "string"},
    ]
    create_table(aws, database, "mixed", f"s3://{bucket}/{prefix}/mixed/", columns)
    query_id, _ = run(aws, "SELECT id, amount, missing FROM mixed ORDER BY id", bucket, database)
    info, result = rows_of(aws, query_id)
    assert [(c["Type"], c["Precision"], c["Scale"]) for c in info][:2] == [("bigint", 19, 0), ("decimal", 12, 2)]
    assert result[1:] == [["1", "1.50", None], ["2", "2.25", None]]


def test_csv_and_json_tables_as_the_crawler_catalogues_them(aws, bucket, prefix, database):
    s3 = aws("s3")
    s3.put_object(
        Bucket=bucket, Key=f"{prefix}/csv/orders/a.csv", Body=b"order_id,amount,city\n1,10.5,Leeds\n2,4.5,York\n"
    )
    s3.put_object(Bucket=bucket, Key=f"{prefix}/csv/orders/b.csv", Body=b"order_id,amount,city\n3,1.0,Leeds\n")
    s3.put_object(
        Bucket=bucket,
        Key=f"{prefix}/json/events/a.json",
        Body=b'{"event_id": 1, "kind": "click", "tags": ["a", "b"]}\n{"event_id": 2, "kind": "view", "tags": []}\n',
    )
    crawl(aws, f"{database}-csv", database, f"s3://{bucket}/{prefix}/csv/")
    crawl(aws, f"{database}-json", database, f"s3://{bucket}/{prefix}/json/")
    assert query(
        aws, "SELECT city, SUM(amount), COUNT(*) FROM orders GROUP BY city ORDER BY city", bucket, database
    ) == [
        ["Leeds", "11.5", "2"],
        ["York", "4.5", "1"],
    ]
    assert query(aws, "SELECT event_id, kind, cardinality(tags) FROM events ORDER BY event_id", bucket, database) == [
        ["1", "click", "2"],
        ["2", "view", "0"],
    ]


# -- functions, arrays and structs -------------------------------------------------------------


@pytest.fixture
def orders_table(aws, bucket, prefix, database):
    """A table of nested orders: arrays, an array of structs, a struct, a map, dates, decimals."""
    item = pa.struct([("sku", pa.string()), ("qty", pa.int32()), ("price", pa.decimal128(12, 2))])
    data = pa.table(
        {
            "order_id": pa.array([1, 2, 3, 4], pa.int64()),
            "customer": pa.array(["ann", "bob", "ann", None]),
            "tags": pa.array([["new", "gift"], ["repeat"], [], None], pa.list_(pa.string())),
            "items": pa.array(
                [
                    [
                        {"sku": "A", "qty": 2, "price": Decimal("1.50")},
                        {"sku": "B", "qty": 1, "price": Decimal("10.00")},
                    ],
                    [{"sku": "A", "qty": 5, "price": Decimal("1.50")}],
                    [],
                    [{"sku": "C", "qty": 1, "price": Decimal("99.99")}],
                ],
                pa.list_(item),
            ),
            "address": pa.array(
                [
                    {"city": "Leeds", "zip": "LS1"},
                    {"city": "York", "zip": "YO1"},
                    {"city": "Leeds", "zip": "LS2"},
                    None,
                ],
                pa.struct([("city", pa.string()), ("zip", pa.string())]),
            ),
            "attributes": pa.array([[("colour", "red")], [], [("size", "L")], None], pa.map_(pa.string(), pa.string())),
            "ordered_at": pa.array(["2024-03-01T10:15:30Z", "2024-03-02T11:00:00Z", "not a time", None]),
            "order_day": pa.array(["2024/03/01", "2024/03/02", "2024/03/03", None]),
            "amount": pa.array(
                [Decimal("13.00"), Decimal("7.50"), Decimal("0.00"), Decimal("99.99")], pa.decimal128(12, 2)
            ),
        }
    )
    put_parquet(aws, bucket, f"{prefix}/orders/a.parquet", data)
    columns = [
        {"Name": "order_id", "Type": "bigint"},
        {"Name": "customer", "Type": "string"},
        {"Name": "tags", "Type": "array<string>"},
        {"Name": "items", "Type": "array<struct<sku:string,qty:int,price:decimal(12,2)>>"},
        {"Name": "address", "Type": "struct<city:string,zip:string>"},
        {"Name": "attributes", "Type": "map<string,string>"},
        {"Name": "ordered_at", "Type": "string"},
        {"Name": "order_day", "Type": "string"},
        {"Name": "amount", "Type": "decimal(12,2)"},
    ]
    create_table(aws, database, "orders", f"s3://{bucket}/{prefix}/orders/", columns)
    return database


def test_element_at_and_cardinality_on_arrays_and_maps(aws, bucket, orders_table):
    sql = (
        "SELECT order_id, element_at(tags, 1), element_at(tags, 5), cardinality(tags), "
        "element_at(attributes, 'colour'), cardinality(attributes) FROM orders ORDER BY order_id"
    )
    assert query(aws, sql, bucket, orders_table) == [
        ["1", "new", None, "2", "red", "1"],
        ["2", "repeat", None, "1", None, "0"],
        ["3", None, None, "0", None, "1"],
        ["4", None, None, None, None, None],
    ]


def test_date_parse_from_iso8601_timestamp_cast_and_try_cast(aws, bucket, orders_table):
    sql = (
        "SELECT order_id, date_parse(order_day, '%Y/%m/%d'), CAST(date_parse(order_day, '%Y/%m/%d') AS date), "
        "try_cast(CAST(order_id AS varchar) AS integer), CAST(amount AS double), CAST(order_id AS varchar), "
        "try_cast(customer AS integer) FROM orders WHERE order_id <= 2 ORDER BY order_id"
    )
    query_id, execution = run(aws, sql, bucket, orders_table)
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"]
    info, result = rows_of(aws, query_id)
    assert [c["Type"] for c in info] == ["bigint", "timestamp", "date", "integer", "double", "varchar", "integer"]
    assert result[1:] == [
        ["1", "2024-03-01 00:00:00.000", "2024-03-01", "1", "13.0", "1", None],
        ["2", "2024-03-02 00:00:00.000", "2024-03-02", "2", "7.5", "2", None],
    ]
    iso = query(aws, "SELECT from_iso8601_timestamp(ordered_at) FROM orders WHERE order_id = 1", bucket, orders_table)
    assert iso == [["2024-03-01 10:15:30.000 UTC"]]
    not_a_time = "SELECT try_cast(ordered_at AS timestamp), try_cast('1.5x' AS double) FROM orders WHERE order_id = 3"
    assert query(aws, not_a_time, bucket, orders_table) == [[None, None]]


def test_unnest_of_arrays_and_of_arrays_of_rows(aws, bucket, orders_table):
    tags = "SELECT order_id, tag FROM orders CROSS JOIN UNNEST(tags) AS t(tag) ORDER BY order_id, tag"
    assert query(aws, tags, bucket, orders_table) == [["1", "gift"], ["1", "new"], ["2", "repeat"]]
    items = (
        "SELECT sku, SUM(qty) AS units, SUM(qty * price) AS revenue FROM orders "
        "CROSS JOIN UNNEST(items) AS i(sku, qty, price) GROUP BY sku ORDER BY sku"
    )
    assert query(aws, items, bucket, orders_table) == [["A", "7", "10.50"], ["B", "1", "10.00"], ["C", "1", "99.99"]]
    rows = "SELECT item.sku FROM orders CROSS JOIN UNNEST(items) AS t(item) WHERE item.qty > 1 ORDER BY 1"
    assert query(aws, rows, bucket, orders_table) == [["A"], ["A"]]
    struct = "SELECT address.city, COUNT(*) FROM orders WHERE address IS NOT NULL GROUP BY address.city ORDER BY 1"
    assert query(aws, struct, bucket, orders_table) == [["Leeds", "2"], ["York", "1"]]


def test_aggregates_group_by_order_by_limit_and_approx_distinct(aws, bucket, orders_table):
    sql = (
        "SELECT customer, COUNT(*) AS orders, SUM(amount) AS total, AVG(order_id) AS mean_id, "
        "approx_distinct(order_id) AS distinct_orders FROM orders GROUP BY customer ORDER BY total DESC LIMIT 2"
    )
    query_id, _ = run(aws, sql, bucket, orders_table)
    info, result = rows_of(aws, query_id)
    assert [c["Type"] for c in info] == ["varchar", "bigint", "decimal", "double", "bigint"]
    assert result == [
        ["customer", "orders", "total", "mean_id", "distinct_orders"],
        [None, "1", "99.99", "4.0", "1"],
        ["ann", "2", "13.00", "2.0", "2"],
    ]


def test_column_types_and_values_as_athena_returns_them(aws, bucket, database):
    sql = (
        "SELECT 'x' AS v, CAST(1 AS bigint) AS b, CAST(2 AS integer) AS i, 12345678.9E0 AS d, "
        "CAST(1.5 AS decimal(10,3)) AS dec, DATE '2024-02-29' AS dt, TIMESTAMP '2024-02-29 01:02:03.456' AS ts, "
        "true AS flag, ARRAY[1, 2] AS arr, CAST(ROW(1, 'a') AS ROW(n integer, s varchar)) AS r, "
        "MAP(ARRAY['k'], ARRAY[1]) AS m, NULL AS nothing, '' AS empty"
    )
    query_id, _ = run(aws, sql, bucket, database)
    info, result = rows_of(aws, query_id)
    assert [c["Type"] for c in info] == [
        "varchar", "bigint", "integer", "double", "decimal", "date", "timestamp",
        "boolean", "array", "row", "map", "unknown", "varchar",
    ]  # fmt: skip
    assert (info[4]["Precision"], info[4]["Scale"]) == (10, 3)
    assert result[1] == [
        "x", "1", "2", "1.23456789E7", "1.500", "2024-02-29", "2024-02-29 01:02:03.456",
        "true", "[1, 2]", "{n=1, s=a}", "{k=1}", None, "",
    ]  # fmt: skip
    # NULL is an empty Datum, an empty string a Datum with an empty VarCharValue
    page = aws("athena").get_query_results(QueryExecutionId=query_id)
    assert page["ResultSet"]["Rows"][1]["Data"][11] == {}
    assert page["ResultSet"]["Rows"][1]["Data"][12] == {"VarCharValue": ""}


def test_execution_parameters_fill_the_placeholders(aws, bucket, orders_table):
    query_id = start(
        aws, "SELECT order_id FROM orders WHERE customer = ? AND amount > ? ORDER BY 1", bucket, orders_table,
        ExecutionParameters=["'ann'", "1"],
    )  # fmt: skip
    assert wait(aws, query_id)["Status"]["State"] == "SUCCEEDED"
    assert rows_of(aws, query_id)[1][1:] == [["1"]]


# -- errors --------------------------------------------------------------------------------------


def test_a_missing_table_fails_with_table_not_found(aws, bucket, database):
    status = failure(aws, "SELECT *\nFROM  nowhere", bucket, database)
    reason = f"TABLE_NOT_FOUND: line 2:7: Table 'awsdatacatalog.{database}.nowhere' does not exist"
    assert status["StateChangeReason"] == reason
    assert status["AthenaError"] == {"ErrorCategory": 2, "ErrorType": 1301, "Retryable": False, "ErrorMessage": reason}
    with pytest.raises(ClientError) as raised:
        run_id = start(aws, "SELECT * FROM nowhere", bucket, database)
        wait(aws, run_id)
        aws("athena").get_query_results(QueryExecutionId=run_id)
    assert raised.value.response["Error"]["Code"] == "InvalidRequestException"


def test_a_missing_column_fails_with_column_not_found(aws, bucket, orders_table):
    status = failure(aws, "SELECT order_id, nope FROM orders", bucket, orders_table)
    assert status["StateChangeReason"] == (
        "COLUMN_NOT_FOUND: line 1:18: Column 'nope' cannot be resolved or requester is not authorized to access "
        "requested resources"
    )
    assert (status["AthenaError"]["ErrorCategory"], status["AthenaError"]["ErrorType"]) == (2, 1006)


def test_a_syntax_error_an_unknown_schema_and_an_unsupported_statement(aws, bucket, database):
    assert failure(aws, "SELECT * FORM orders", bucket, database)["StateChangeReason"].startswith(
        "SYNTAX_ERROR: line 1:"
    )
    missing = failure(aws, 'SELECT * FROM "no-such-db".orders', bucket, database)
    assert missing["StateChangeReason"] == "SCHEMA_NOT_FOUND: line 1:15: Schema 'no-such-db' does not exist"
    unsupported = failure(aws, "INSERT INTO orders VALUES (1)", bucket, database)
    assert unsupported["StateChangeReason"].startswith("NOT_SUPPORTED: INSERT")
    assert unsupported["AthenaError"]["ErrorType"] == 1200


def test_without_an_output_location_the_query_is_refused(aws, database):
    with pytest.raises(ClientError) as raised:
        aws("athena").start_query_execution(QueryString="SELECT 1", QueryExecutionContext={"Database": database})
    error = raised.value.response["Error"]
    assert error["Code"] == "InvalidRequestException"
    assert "No output location provided" in error["Message"]


def test_the_workgroup_output_location_is_used_when_the_request_has_none(aws, bucket):
    workgroup = f"wg-{uuid.uuid4().hex[:8]}"
    aws("athena").create_work_group(
        Name=workgroup, Configuration={"ResultConfiguration": {"OutputLocation": f"s3://{bucket}/{workgroup}/"}}
    )
    query_id = aws("athena").start_query_execution(QueryString="SELECT 42 AS answer", WorkGroup=workgroup)[
        "QueryExecutionId"
    ]
    execution = wait(aws, query_id)
    assert execution["ResultConfiguration"]["OutputLocation"] == f"s3://{bucket}/{workgroup}/{query_id}.csv"
    body = aws("s3").get_object(Bucket=bucket, Key=f"{workgroup}/{query_id}.csv")["Body"].read()
    assert body == b'"answer"\n"42"\n'
    assert aws("athena").list_query_executions(WorkGroup=workgroup)["QueryExecutionIds"] == [query_id]


# -- results: pages, CSV, statistics, pruning -----------------------------------------------------


def test_results_are_paged_with_max_results_and_next_token(aws, bucket, prefix, database):
    rows = shipping_rows(2500, seed=3)
    put_parquet(aws, bucket, f"{prefix}/paged/a.parquet", shipping_table(rows))
    create_table(aws, database, "paged", f"s3://{bucket}/{prefix}/paged/", SHIPPING_COLUMNS)
    query_id, _ = run(aws, "SELECT shipping_id, destination_city FROM paged ORDER BY shipping_id", bucket, database)

    athena, sizes, data, token = aws("athena"), [], [], None
    while True:
        page = athena.get_query_results(
            QueryExecutionId=query_id, MaxResults=1000, **({"NextToken": token} if token else {})
        )
        sizes.append(len(page["ResultSet"]["Rows"]))
        data += [[d.get("VarCharValue") for d in row["Data"]] for row in page["ResultSet"]["Rows"]]
        if not (token := page.get("NextToken")):
            break
    assert sizes == [1000, 1000, 501]  # the header row is the first page's first row
    assert data[0] == ["shipping_id", "destination_city"]
    assert data[1:] == [
        [str(r["shipping_id"]), r["destination_city"]] for r in sorted(rows, key=lambda r: r["shipping_id"])
    ]
    with pytest.raises(ClientError):
        athena.get_query_results(QueryExecutionId=query_id, MaxResults=1001)


def test_the_result_csv_and_its_metadata_are_written_to_the_output_location(aws, bucket, orders_table):
    query_id, execution = run(
        aws, "SELECT order_id, customer, amount, tags, '' AS blank, 'say \"hi\"' AS quoted FROM orders ORDER BY 1",
        bucket, orders_table,
    )  # fmt: skip
    location = execution["ResultConfiguration"]["OutputLocation"]
    assert location == f"s3://{bucket}/results/{query_id}.csv"
    body = aws("s3").get_object(Bucket=bucket, Key=f"results/{query_id}.csv")["Body"].read().decode()
    lines = body.splitlines()
    assert lines[0] == '"order_id","customer","amount","tags","blank","quoted"'
    assert lines[4] == '"4",,"99.99",,"","say ""hi"""'  # NULL is empty, every value quoted
    info, rows = rows_of(aws, query_id)
    assert [parse_csv_line(line) for line in lines] == rows
    metadata = json.loads(aws("s3").get_object(Bucket=bucket, Key=f"results/{query_id}.csv.metadata")["Body"].read())
    assert metadata["ColumnInfo"] == info


def test_statistics_and_partition_pruning(aws, bucket, prefix, database):
    sizes = {}
    for seed, batch in enumerate(("b1", "b2", "b3"), start=10):
        rows = shipping_rows(200, seed=seed)
        sizes[batch] = sum(
            put_parquet(
                aws, bucket, f"{prefix}/normalized/batch_id={batch}/part-{n}.parquet", shipping_table(rows[n::2])
            )
            for n in range(2)
        )
    crawl(aws, f"{database}-normalized", database, f"s3://{bucket}/{prefix}/normalized/")
    partitions = aws("glue").get_partitions(DatabaseName=database, TableName="normalized")["Partitions"]
    assert sorted(p["Values"][0] for p in partitions) == ["b1", "b2", "b3"]

    one = "SELECT COUNT(*), batch_id FROM normalized WHERE batch_id = 'b2' AND quantity > 0 GROUP BY batch_id"
    query_id, execution = run(aws, one, bucket, database)
    assert rows_of(aws, query_id)[1][1:] == [["200", "b2"]]
    statistics = execution["Statistics"]
    assert statistics["DataScannedInBytes"] == sizes["b2"]
    assert statistics["TotalExecutionTimeInMillis"] >= statistics["EngineExecutionTimeInMillis"] >= 0
    assert statistics["QueryQueueTimeInMillis"] >= 0

    two = "SELECT COUNT(*) FROM normalized WHERE batch_id IN ('b1', 'b3')"
    query_id, execution = run(aws, two, bucket, database)
    assert rows_of(aws, query_id)[1][1:] == [["400"]]
    assert execution["Statistics"]["DataScannedInBytes"] == sizes["b1"] + sizes["b3"]

    everything = "SELECT COUNT(*) FROM normalized WHERE quantity > 0 OR batch_id = 'b1'"
    _, execution = run(aws, everything, bucket, database)
    assert execution["Statistics"]["DataScannedInBytes"] == sum(sizes.values())


def test_stop_query_execution_cancels_a_long_query(aws, bucket):
    sql = "SELECT count(*) FROM UNNEST(sequence(1, 100000)) a(x) CROSS JOIN UNNEST(sequence(1, 100000)) b(y)"
    started = time.monotonic()
    query_id = start(aws, sql, bucket)
    assert time.monotonic() - started < 5  # StartQueryExecution returns at once
    deadline = time.monotonic() + 30
    while (
        aws("athena").get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]["State"] != "RUNNING"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    assert (
        aws("athena").get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]["State"] == "RUNNING"
    )
    aws("athena").stop_query_execution(QueryExecutionId=query_id)
    stopped = time.monotonic()
    execution = wait(aws, query_id, timeout=30)
    assert execution["Status"]["State"] == "CANCELLED"
    assert time.monotonic() - stopped < 10
    assert "AthenaError" not in execution["Status"]


def test_list_query_executions_and_client_request_tokens(aws, bucket):
    token = uuid.uuid4().hex
    first = start(aws, "SELECT 1", bucket, ClientRequestToken=token)
    assert start(aws, "SELECT 1", bucket, ClientRequestToken=token) == first  # idempotent
    second = start(aws, "SELECT 2", bucket)
    wait(aws, first), wait(aws, second)
    listed = aws("athena").list_query_executions()["QueryExecutionIds"]
    assert listed.index(second) < listed.index(first)  # newest first, primary workgroup by default
    assert aws("athena").list_query_executions(WorkGroup="primary", MaxResults=1)["QueryExecutionIds"] == [listed[0]]
    batch = aws("athena").batch_get_query_execution(QueryExecutionIds=[first, second])["QueryExecutions"]
    assert {e["QueryExecutionId"] for e in batch} == {first, second}


def test_get_work_group_primary(aws):
    workgroup = aws("athena").get_work_group(WorkGroup="primary")["WorkGroup"]
    assert workgroup["Name"] == "primary" and workgroup["State"] == "ENABLED"
    assert workgroup["Configuration"]["EngineVersion"]["EffectiveEngineVersion"] == "Athena engine version 3"
    with pytest.raises(ClientError) as raised:
        aws("athena").get_work_group(WorkGroup="no-such-workgroup")
    assert raised.value.response["Error"]["Code"] == "InvalidRequestException"


def test_show_tables_and_databases(aws, bucket, orders_table):
    query_id, execution = run(aws, f'SHOW TABLES IN "{orders_table}"', bucket)
    assert execution["Status"]["State"] == "SUCCEEDED"
    assert rows_of(aws, query_id)[1] == [["orders"]]  # no header row for SHOW
    query_id, _ = run(aws, "SHOW DATABASES", bucket)
    assert [orders_table] in rows_of(aws, query_id)[1]


def test_the_engine_logs_ids_states_and_timings_never_values(caplog):
    """An in-process emulator: the log of a query that returns a value holds its id, not the value."""
    import logging

    import boto3

    from devstack.emulator import Emulator

    secret = f"person-{uuid.uuid4().hex}"
    emulator = Emulator("127.0.0.1", 0)
    endpoint = emulator.start()
    try:
        session = boto3.Session(region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
        s3, athena = session.client("s3", endpoint_url=endpoint), session.client("athena", endpoint_url=endpoint)
        s3.create_bucket(Bucket="logs-check", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        with caplog.at_level(logging.DEBUG, logger="devstack.athena"):
            ids = []
            for sql in (f"SELECT '{secret}' AS name", f"SELECT CAST('{secret}' AS integer)"):
                query_id = athena.start_query_execution(
                    QueryString=sql, ResultConfiguration={"OutputLocation": "s3://logs-check/out/"}
                )["QueryExecutionId"]
                deadline = time.monotonic() + 30
                while athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]["State"] in (
                    "QUEUED", "RUNNING",
                ):  # fmt: skip
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                ids.append(query_id)
    finally:
        emulator.stop()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert all(f"athena query {query_id} " in text for query_id in ids)
    assert "SUCCEEDED" in text and "FAILED (INVALID_CAST_ARGUMENT)" in text
    assert secret not in caplog.text
