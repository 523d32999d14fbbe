"""awsglue for local runs: getResolvedOptions, GlueContext's sources and sinks, Job bookmarks.

One local SparkSession for the module, reading and writing S3 through S3A against an in-process
moto server (the ``moto_endpoint`` fixture); the Data Catalog is moto's, reached with boto3
through ``AWS_ENDPOINT_URL`` as in a job run; PostgreSQL is the stack's embedded server.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "devstack" / "glue_spark"))

from awsglue._local import bookmarks  # noqa: E402
from awsglue._local.unsupported import LocalGlueUnsupported  # noqa: E402
from awsglue.context import GlueContext  # noqa: E402
from awsglue.dynamicframe import DynamicFrame  # noqa: E402
from awsglue.job import Job  # noqa: E402
from awsglue.utils import GlueArgumentError, getResolvedOptions  # noqa: E402

from devstack.stack import free_port  # noqa: E402
from devstack.warehouse import DatabaseUrl, EmbeddedPostgres  # noqa: E402

REGION = "us-east-1"
BUCKET = "glue-local-data"
JARS = ROOT / ".local" / "spark-jars"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws_env(moto_endpoint: str, tmp_path_factory) -> Iterator[str]:
    """The environment a job run gets: the emulator's endpoint, a region, dummy credentials."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
        # AWS_REGION wins over AWS_DEFAULT_REGION: a stack started earlier in the session sets it.
        patch.setenv("AWS_REGION", REGION)
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv(bookmarks.STATE_DIR_ENV, str(tmp_path_factory.mktemp("glue-state")))
        yield moto_endpoint


@pytest.fixture(scope="module")
def s3(aws_env: str):
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="module")
def glue(aws_env: str):
    client = boto3.client("glue", region_name=REGION)
    client.create_database(DatabaseInput={"Name": "lake"})
    return client


@pytest.fixture(scope="module")
def glue_context(aws_env: str) -> Iterator[GlueContext]:
    jars = sorted(JARS.glob("*.jar"))
    assert len(jars) >= 2, f"the S3A jars are missing from {JARS}: `make venv` installs them"
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:  # another module's session, configured without S3A
        active.stop()
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("test_awsglue_context")
        .config("spark.jars", ",".join(str(j) for j in jars))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .config("spark.hadoop.fs.s3a.endpoint", aws_env)
        .config("spark.hadoop.fs.s3a.path.style.access", "true")
        .config("spark.hadoop.fs.s3a.connection.ssl.enabled", "false")
        .config("spark.hadoop.fs.s3a.access.key", "testing")
        .config("spark.hadoop.fs.s3a.secret.key", "testing")
        .config("spark.hadoop.fs.s3a.aws.credentials.provider", "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider")
        .config("spark.hadoop.fs.s3.impl", "org.apache.hadoop.fs.s3a.S3AFileSystem")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    yield GlueContext(spark.sparkContext)
    bookmarks.clear()
    # S3A filesystems are cached by bucket in the JVM, which outlives this session: forget ours
    spark.sparkContext._jvm.org.apache.hadoop.fs.FileSystem.closeAll()
    spark.stop()


def put(s3, key: str, body: bytes | str, **kwargs) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body, **kwargs)


def lines(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def rows(frame, *columns: str) -> list[tuple]:
    df = frame.toDF() if hasattr(frame, "toDF") else frame
    found = [tuple(row[c] for c in columns) for row in df.collect()]
    return sorted(found, key=lambda values: [(value is None, value if value is not None else 0) for value in values])


def types_of(frame) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in frame.toDF().schema.fields}


# -- getResolvedOptions ------------------------------------------------------------------------


def test_resolved_options_are_the_named_arguments_plus_the_reserved_ones():
    argv = ["script.py", "--JOB_NAME", "nightly", "--JOB_RUN_ID", "jr_1", "--day=2024-05-01", "--unrelated", "x"]
    args = getResolvedOptions(argv, ["JOB_NAME", "day"])
    assert args["JOB_NAME"] == "nightly"
    assert args["day"] == "2024-05-01"
    assert args["JOB_RUN_ID"] == "jr_1"
    assert args["job_bookmark_option"] == "job-bookmark-disable"
    assert "unrelated" not in args


def test_a_missing_argument_raises_glue_argument_error():
    with pytest.raises(GlueArgumentError, match="--day"):
        getResolvedOptions(["script.py", "--JOB_NAME", "nightly"], ["JOB_NAME", "day"])


def test_reserved_arguments():
    argv = ["script.py", "--job-bookmark-option", "job-bookmark-enable", "--TempDir", "s3://tmp/"]
    args = getResolvedOptions(argv, ["TempDir"])
    assert args["job_bookmark_option"] == "job-bookmark-enable"
    assert args["TempDir"] == args["RedshiftTempDir"] == "s3://tmp/"
    legacy = getResolvedOptions(["script.py", "--continuation-option", "continuation-readonly"], [])
    assert legacy["job_bookmark_option"] == "job-bookmark-pause"
    for reserved in ("JOB_RUN_ID", "job-bookmark-option", "encryption-type"):
        with pytest.raises(RuntimeError, match="Using reserved arguments"):
            getResolvedOptions(["script.py"], [reserved])
    with pytest.raises(GlueArgumentError):
        getResolvedOptions(["script.py", "--job-bookmark-option", "sometimes"], [])


# -- S3 sources ----------------------------------------------------------------------------------


def test_json_lines_and_multiline_json(glue_context, s3):
    put(s3, "json/lines/a.json", lines({"id": 1, "name": "a", "price": 1.5}, {"id": 2, "name": "b", "price": 2}))
    put(s3, "json/multi/a.json", json.dumps([{"id": 3, "big": 2**40}, {"id": 4, "big": 1}], indent=2))
    frame = glue_context.create_dynamic_frame.from_options(
        connection_type="s3", connection_options={"paths": [f"s3://{BUCKET}/json/lines/"]}, format="json"
    )
    assert types_of(frame) == {"id": "int", "name": "string", "price": "double"}
    assert rows(frame, "id", "name", "price") == [(1, "a", 1.5), (2, "b", 2.0)]
    multi = glue_context.create_dynamic_frame.from_options(
        "s3", {"paths": [f"s3://{BUCKET}/json/multi/a.json"]}, format="json", format_options={"multiline": True}
    )
    assert types_of(multi) == {"big": "bigint", "id": "int"}
    assert rows(multi, "id", "big") == [(3, 2**40), (4, 1)]


def test_csv_with_header_separator_and_quote_char(glue_context, s3):
    put(s3, "csv/pipes.csv", "id|name|amount\n1|'a|b'|2.5\n2|'c'|3\n")
    put(s3, "csv/plain.csv", "ann,paris\nbob,rome\n")
    frame = glue_context.create_dynamic_frame.from_options(
        "s3", {"paths": [f"s3://{BUCKET}/csv/pipes.csv"]}, "csv",
        {"withHeader": True, "separator": "|", "quoteChar": "'"},
    )  # fmt: skip
    assert types_of(frame) == {"id": "bigint", "name": "string", "amount": "double"}
    assert rows(frame, "id", "name", "amount") == [(1, "a|b", 2.5), (2, "c", 3.0)]
    headerless = glue_context.create_dynamic_frame.from_options(
        "s3", {"paths": [f"s3://{BUCKET}/csv/plain.csv"]}, "csv"
    )
    assert rows(headerless, "col0", "col1") == [("ann", "paris"), ("bob", "rome")]


def test_parquet(glue_context, s3):
    put(s3, "parquet/a.parquet", parquet_bytes(pa.table({"id": pa.array([1, 2], pa.int64()), "v": ["x", "y"]})))
    put(s3, "parquet/_SUCCESS", "")
    frame = glue_context.create_dynamic_frame.from_options(
        "s3", {"paths": [f"s3://{BUCKET}/parquet/"]}, format="glueparquet"
    )
    assert types_of(frame) == {"id": "bigint", "v": "string"}
    assert rows(frame, "id", "v") == [(1, "x"), (2, "y")]


def test_recurse_reads_hive_partitions_as_columns(glue_context, s3):
    put(s3, "events/year=2024/month=01/a.json", lines({"id": 1}, {"id": 2}))
    put(s3, "events/year=2024/month=02/b.json", lines({"id": 3}))
    put(s3, "events/year=2025/month=01/c.json", lines({"id": 4}))
    put(s3, "events/year=2025/month=01/skip.txt", "not json")
    options = {"paths": [f"s3://{BUCKET}/events/"], "recurse": True, "exclusions": '["**.txt"]'}
    frame = glue_context.create_dynamic_frame.from_options("s3", options, format="json")
    assert types_of(frame) == {"id": "int", "year": "string", "month": "string"}
    assert rows(frame, "id", "year", "month") == [(1, "2024", "01"), (2, "2024", "01"), (3, "2024", "02"),
                                                  (4, "2025", "01")]  # fmt: skip
    filtered = glue_context.create_dynamic_frame.from_options(
        "s3", options, format="json", push_down_predicate="year = '2025' or month = '02'"
    )
    assert rows(filtered, "id") == [(3,), (4,)]
    flat = glue_context.create_dynamic_frame.from_options("s3", {"paths": [f"s3://{BUCKET}/events/"]}, "json")
    assert flat.count() == 0  # without recurse only the objects directly in the folder are read


def test_a_field_with_numbers_and_strings_is_a_choice(glue_context, s3):
    put(s3, "choice/a.json", lines({"id": 1, "price": 10, "flag": True}, {"id": 2, "price": "n/a", "flag": "y"}))
    put(s3, "choice/b.json", lines({"id": 3, "price": 12, "flag": False}, {"id": 4, "price": "7"}))
    put(s3, "choice/c.csv", "id,amount\n1,5\n2,unknown\n3,2.5\n")
    frame = glue_context.create_dynamic_frame.from_options("s3", {"paths": [f"s3://{BUCKET}/choice/"],
                                                                  "exclusions": '["**.csv"]'}, "json")  # fmt: skip
    fields = {f.name: f.dataType for f in frame.schema()}
    assert fields["id"].typeName() == "int"
    assert fields["price"].typeName() == "choice" and set(fields["price"].choices) == {"int", "string"}
    assert fields["flag"].typeName() == "choice" and set(fields["flag"].choices) == {"boolean", "string"}
    resolved = frame.resolveChoice(specs=[("price", "cast:int")])
    assert rows(resolved, "id", "price") == [(1, 10), (2, None), (3, 12), (4, 7)]
    csv = glue_context.create_dynamic_frame.from_options(
        "s3", {"paths": [f"s3://{BUCKET}/choice/c.csv"]}, "csv", {"withHeader": True}
    )
    amount = {f.name: f.dataType for f in csv.schema()}["amount"]
    assert amount.typeName() == "choice" and set(amount.choices) == {"long", "double", "string"}


# -- S3 sinks and the catalog --------------------------------------------------------------------


def test_write_parquet_with_partition_keys_then_read_back(glue_context, s3):
    df = glue_context.spark_session.createDataFrame([(1, "eu", 2.0), (2, "us", 3.5), (3, "eu", 1.0)],
                                                    "id long, region string, amount double")  # fmt: skip
    frame = DynamicFrame.fromDF(df, glue_context, "sales")
    glue_context.write_dynamic_frame.from_options(
        frame=frame, connection_type="s3", format="parquet",
        connection_options={"path": f"s3://{BUCKET}/out/sales/", "partitionKeys": ["region"]},
        format_options={"compression": "gzip"},
    )  # fmt: skip
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="out/sales/")["Contents"]]
    assert {k.split("/")[2] for k in keys} == {"region=eu", "region=us"}
    assert all(k.endswith(".gz.parquet") for k in keys)  # and no _SUCCESS marker
    back = glue_context.create_dynamic_frame.from_options(
        "s3", {"paths": [f"s3://{BUCKET}/out/sales/"], "recurse": True}, "parquet"
    )
    assert rows(back, "id", "region", "amount") == [(1, "eu", 2.0), (2, "us", 3.5), (3, "eu", 1.0)]


def test_get_sink_with_enable_update_catalog_creates_the_table_and_partitions(glue_context, s3, glue):
    df = glue_context.spark_session.createDataFrame(
        [(1, "a", "2024-01-01"), (2, "b", "2024-01-02"), (3, "c", "2024-01-02")], "id int, name string, day string"
    )
    frame = DynamicFrame.fromDF(df, glue_context, "daily")
    sink = glue_context.getSink(
        connection_type="s3", path=f"s3://{BUCKET}/lake/daily/", enableUpdateCatalog=True,
        updateBehavior="UPDATE_IN_DATABASE", partitionKeys=["day"],
    )  # fmt: skip
    sink.setFormat("glueparquet")
    sink.setCatalogInfo(catalogDatabase="lake", catalogTableName="daily")
    sink.writeFrame(frame)
    table = glue.get_table(DatabaseName="lake", Name="daily")["Table"]
    assert table["Parameters"]["classification"] == "parquet"
    assert table["StorageDescriptor"]["Columns"] == [{"Name": "id", "Type": "int"}, {"Name": "name", "Type": "string"}]
    assert table["PartitionKeys"] == [{"Name": "day", "Type": "string"}]
    partitions = glue.get_partitions(DatabaseName="lake", TableName="daily")["Partitions"]
    assert sorted(p["Values"][0] for p in partitions) == ["2024-01-01", "2024-01-02"]
    assert {p["StorageDescriptor"]["Location"] for p in partitions} == {
        f"s3://{BUCKET}/lake/daily/day=2024-01-01/",
        f"s3://{BUCKET}/lake/daily/day=2024-01-02/",
    }
    # a second write with a new column and a new partition updates both
    more = glue_context.spark_session.createDataFrame([(4, "d", 1.5, "2024-01-03")],
                                                      "id int, name string, score double, day string")  # fmt: skip
    sink.writeFrame(DynamicFrame.fromDF(more, glue_context, "daily"))
    columns = glue.get_table(DatabaseName="lake", Name="daily")["Table"]["StorageDescriptor"]["Columns"]
    assert [c["Name"] for c in columns] == ["id", "name", "score"]
    assert len(glue.get_partitions(DatabaseName="lake", TableName="daily")["Partitions"]) == 3
    # writing through the catalog: the table's location, format and partition keys
    last = glue_context.spark_session.createDataFrame([(5, "e", 2.5, "2024-01-04")],
                                                      "id int, name string, score double, day string")  # fmt: skip
    glue_context.write_dynamic_frame.from_catalog(
        frame=DynamicFrame.fromDF(last, glue_context, "last"), database="lake", table_name="daily",
        additional_options={"enableUpdateCatalog": True, "updateBehavior": "LOG"},
    )  # fmt: skip
    assert len(glue.get_partitions(DatabaseName="lake", TableName="daily")["Partitions"]) == 4
    back = glue_context.create_dynamic_frame.from_catalog(database="lake", table_name="daily", transformation_ctx="d")
    assert rows(back, "id", "day") == [(1, "2024-01-01"), (2, "2024-01-02"), (3, "2024-01-02"), (4, "2024-01-03"),
                                       (5, "2024-01-04")]  # fmt: skip


def test_from_catalog_push_down_predicate_reads_only_matching_partitions(glue_context, s3, glue):
    location = f"s3://{BUCKET}/lake/orders/"
    glue.create_table(
        DatabaseName="lake",
        TableInput={
            "Name": "orders",
            "Parameters": {"classification": "json"},
            "PartitionKeys": [{"Name": "year", "Type": "int"}, {"Name": "month", "Type": "string"}],
            "StorageDescriptor": {"Columns": [{"Name": "id", "Type": "bigint"}], "Location": location},
        },
    )
    for year, month, body in [(2023, "12", lines({"id": 1})), (2024, "01", lines({"id": 2})),
                              (2024, "02", lines({"id": 3}, {"id": 4})), (2022, "01", "{not json at all")]:  # fmt: skip
        put(s3, f"lake/orders/year={year}/month={month}/part-0.json", body)
        glue.create_partition(
            DatabaseName="lake", TableName="orders",
            PartitionInput={"Values": [str(year), month],
                            "StorageDescriptor": {"Location": f"{location}year={year}/month={month}/"}},
        )  # fmt: skip
    frame = glue_context.create_dynamic_frame.from_catalog(
        database="lake", table_name="orders", push_down_predicate="year >= 2024", transformation_ctx="orders"
    )
    df = frame.toDF()
    files = {row[0] for row in df.selectExpr("input_file_name()").distinct().collect()}
    assert len(files) == 2  # the 2023 and the malformed 2022 partitions were never read
    assert types_of(frame) == {"id": "int", "year": "int", "month": "string"}
    assert rows(frame, "id", "year", "month") == [(2, 2024, "01"), (3, 2024, "02"), (4, 2024, "02")]
    data_frame = glue_context.create_data_frame.from_catalog(
        database="lake", table_name="orders", additional_options={"catalogPartitionPredicate": "month = '12'"}
    )
    assert [tuple(r) for r in data_frame.collect()] == [(1, 2023, "12")]


# -- job bookmarks -------------------------------------------------------------------------------


def bookmarked_read(glue_context, option: str, job_name: str = "bookmarked") -> list[tuple]:
    job = Job(glue_context)
    args = getResolvedOptions(["script.py", "--JOB_NAME", job_name, "--job-bookmark-option", option], ["JOB_NAME"])
    job.init(args["JOB_NAME"], args)
    frame = glue_context.create_dynamic_frame.from_options(
        "s3", {"paths": [f"s3://{BUCKET}/incoming/"], "recurse": True}, "json", transformation_ctx="incoming"
    )
    seen = rows(frame, "id")
    job.commit()
    return seen


def test_bookmarks_skip_what_the_last_committed_run_read(glue_context, s3):
    put(s3, "incoming/a.json", lines({"id": 1}, {"id": 2}))
    assert bookmarked_read(glue_context, "job-bookmark-enable") == [(1,), (2,)]
    first = json.loads(bookmarks.bookmark_file("bookmarked").read_text())
    etag = s3.head_object(Bucket=BUCKET, Key="incoming/a.json")["ETag"].strip('"')
    assert (first["JobName"], first["Run"], first["PreviousRunId"]) == ("bookmarked", 1, None)
    assert json.loads(first["JobBookmark"]) == {"incoming": {"objects": {f"s3://{BUCKET}/incoming/a.json": etag}}}
    put(s3, "incoming/day=2/b.json", lines({"id": 3}))
    assert bookmarked_read(glue_context, "job-bookmark-enable") == [(3,)]
    second = json.loads(bookmarks.bookmark_file("bookmarked").read_text())
    assert (second["Run"], second["Version"], second["PreviousRunId"]) == (2, 2, first["RunId"])
    assert len(json.loads(second["JobBookmark"])["incoming"]["objects"]) == 2

    # pause: reads from the committed state and records nothing; disable: ignores it
    put(s3, "incoming/c.json", lines({"id": 5}))
    assert bookmarked_read(glue_context, "job-bookmark-pause") == [(5,)]
    assert bookmarked_read(glue_context, "job-bookmark-pause") == [(5,)]
    assert json.loads(bookmarks.bookmark_file("bookmarked").read_text()) == second
    assert bookmarked_read(glue_context, "job-bookmark-disable") == [(1,), (2,), (3,), (5,)]
    assert json.loads(bookmarks.bookmark_file("bookmarked").read_text()) == second


# -- housekeeping, logging, unsupported ----------------------------------------------------------


def test_purge_s3_path(glue_context, s3):
    put(s3, "purge/a.json", "{}")
    put(s3, "purge/deep/b.json", "{}")
    put(s3, "purge/cold.json", "{}", StorageClass="GLACIER")
    glue_context.purge_s3_path(f"s3://{BUCKET}/purge/", {"retentionPeriod": 1})
    assert len(s3.list_objects_v2(Bucket=BUCKET, Prefix="purge/")["Contents"]) == 3  # all newer than an hour
    glue_context.purge_s3_path(
        f"s3://{BUCKET}/purge/",
        {"retentionPeriod": 0, "excludeStorageClasses": ["GLACIER"], "manifestFilePath": f"s3://{BUCKET}/manifest/"},
    )
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="purge/")["Contents"]] == ["purge/cold.json"]
    success = s3.get_object(Bucket=BUCKET, Key="manifest/Success.csv")["Body"].read().decode().split()
    assert sorted(success) == [f"s3://{BUCKET}/purge/a.json", f"s3://{BUCKET}/purge/deep/b.json"]


def test_purge_table_empties_the_partitions_the_predicate_keeps(glue_context, s3, glue):
    location = f"s3://{BUCKET}/lake/trash/"
    glue.create_table(
        DatabaseName="lake",
        TableInput={"Name": "trash", "PartitionKeys": [{"Name": "day", "Type": "string"}],
                    "StorageDescriptor": {"Columns": [{"Name": "id", "Type": "int"}], "Location": location}},
    )  # fmt: skip
    for day in ("1", "2"):
        put(s3, f"lake/trash/day={day}/a.json", "{}")
        glue.create_partition(
            DatabaseName="lake", TableName="trash",
            PartitionInput={"Values": [day], "StorageDescriptor": {"Location": f"{location}day={day}/"}},
        )  # fmt: skip
    glue_context.purge_table("lake", "trash", {"retentionPeriod": 0, "partitionPredicate": "day = '1'"})
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="lake/trash/")["Contents"]] == [
        "lake/trash/day=2/a.json"
    ]
    assert [p["Values"] for p in glue.get_partitions(DatabaseName="lake", TableName="trash")["Partitions"]] == [["2"]]


def test_logger_writes_to_stderr(glue_context, capsys):
    logger = glue_context.get_logger()
    logger.info("starting")
    logger.warn("careful")
    logger.error("broken")
    err = capsys.readouterr().err
    assert "INFO [main] glue.GlueLogger: starting" in err
    assert "WARN" in err and "careful" in err and "ERROR" in err and "broken" in err


def test_what_is_not_implemented_says_so(glue_context):
    with pytest.raises(LocalGlueUnsupported, match=r"^awsglue GlueContext.forEachBatch is not supported by local"):
        glue_context.forEachBatch(None, None, {})
    with pytest.raises(LocalGlueUnsupported, match="awsglue Job.something is not supported by local Glue runs yet"):
        Job(glue_context).something()
    with pytest.raises(NotImplementedError, match="DynamicFrameReader.from_options.format='avro'"):
        glue_context.create_dynamic_frame.from_options("s3", {"paths": [f"s3://{BUCKET}/json/"]}, format="avro")
    with pytest.raises(LocalGlueUnsupported, match="connection_type='mongodb'"):
        glue_context.create_dynamic_frame.from_options("mongodb", {})
    assert not hasattr(glue_context, "_no_such_private_attribute")


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Iterator[DatabaseUrl]:
    postgres = EmbeddedPostgres(tmp_path_factory.mktemp("pg"), free_port())
    postgres.start()
    url = postgres.url("warehouse")
    try:
        with psycopg2.connect(url.uri()) as connection, connection.cursor() as cursor:
            cursor.execute(
                """
                CREATE SCHEMA shop;
                CREATE TABLE shop.customers (id integer PRIMARY KEY, name text, balance numeric(12, 2),
                                             vip boolean, joined date, profile jsonb);
                INSERT INTO shop.customers VALUES
                    (1, 'Ann', 10.50, true, '2024-01-02', '{"tier": "gold"}'),
                    (2, NULL, NULL, false, NULL, NULL);
                """
            )
        connection.close()
        yield url
    finally:
        postgres.stop()


def test_postgresql_reads_and_writes(glue_context, glue, warehouse: DatabaseUrl):
    jdbc_url = f"jdbc:postgresql://{warehouse.host}:{warehouse.port}/{warehouse.database}"
    frame = glue_context.create_dynamic_frame.from_options(
        connection_type="postgresql",
        connection_options={"url": jdbc_url, "user": warehouse.user, "password": warehouse.password,
                            "dbtable": "shop.customers"},
    )  # fmt: skip
    assert types_of(frame) == {"id": "int", "name": "string", "balance": "decimal(12,2)", "vip": "boolean",
                               "joined": "date", "profile": "string"}  # fmt: skip
    assert rows(frame, "id", "name", "profile") == [(1, "Ann", '{"tier": "gold"}'), (2, None, None)]

    glue.create_connection(
        ConnectionInput={
            "Name": "warehouse",
            "ConnectionType": "JDBC",
            "ConnectionProperties": {"JDBC_CONNECTION_URL": jdbc_url, "USERNAME": warehouse.user,
                                     "PASSWORD": warehouse.password},
        }
    )  # fmt: skip
    note = 'it\'s, "quoted"\nover two lines'
    copy = frame.toDF().where("id = 1").selectExpr("id", "name", "balance").withColumn("note", F.lit(note))
    written = DynamicFrame.fromDF(copy, glue_context, "copy")
    glue_context.write_dynamic_frame.from_jdbc_conf(
        frame=written, catalog_connection="warehouse",
        connection_options={"dbtable": "shop.customers_copy", "database": warehouse.database},
    )  # fmt: skip
    with psycopg2.connect(warehouse.uri()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id, name, balance::text, note FROM shop.customers_copy")
        assert cursor.fetchall() == [(1, "Ann", "10.50", note)]
    connection.close()
    assert glue_context.extract_jdbc_conf("warehouse")["fullUrl"] == jdbc_url
    options = {"useConnectionProperties": "true", "connectionName": "warehouse", "dbtable": "shop.customers_copy"}
    through_connection = glue_context.create_data_frame.from_options("postgresql", options)
    assert [tuple(r) for r in through_connection.select("id", "note").collect()] == [(1, note)]

    # a table a JDBC crawler catalogued reads through its connection
    glue.create_table(
        DatabaseName="lake",
        TableInput={
            "Name": "warehouse_shop_customers",
            "Parameters": {"classification": "postgresql", "connectionName": "warehouse"},
            "StorageDescriptor": {"Columns": [{"Name": "id", "Type": "int"}],
                                  "Location": f"{warehouse.database}.shop.customers"},
        },
    )  # fmt: skip
    catalogued = glue_context.create_dynamic_frame.from_catalog(database="lake", table_name="warehouse_shop_customers")
    assert rows(catalogued, "id", "vip") == [(1, True), (2, False)]
