"""The orders Glue scripts and warehouse SQL: pure transforms, then the real scripts as
processes against a moto server and an embedded PostgreSQL.

Every test that touches S3 uses buckets of its own, so tests share one emulator without
resetting it; every warehouse test gets a database of its own.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devstack.sample_data.orders import LANDING_SCHEMA, write_orders_batch

# Run again under AWS Glue 5.0's versions by `make test-glue5`: imports no Airflow.
pytestmark = pytest.mark.glue5

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "include" / "glue_scripts" / "orders"
LANDING_TO_STAGING = SCRIPTS / "orders_landing_to_staging.py"
STAGING_TO_WAREHOUSE = SCRIPTS / "orders_staging_to_warehouse_staging.py"
SQL = ROOT / "include" / "sql" / "orders"
REGION = "eu-west-1"
STARTED_AT = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
PASSWORD = "pw-never-printed-7f3a"
UTC_TS = pa.timestamp("ms", tz="UTC")


def load_module(path: Path):
    """Glue scripts are files, not a package: import one by path."""
    name = f"glue_script_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The scripts import their shared module as Glue ships it (--extra-py-files): from sys.path.
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
import orders_batch  # noqa: E402

l2s = load_module(LANDING_TO_STAGING)
s2w = load_module(STAGING_TO_WAREHOUSE)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def products(*lines: tuple[str, str, int, str]) -> list[dict]:
    return [
        {"product_code": c, "product_name": n, "quantity": q, "unit_price": Decimal(p)} for c, n, q, p in lines
    ]


def landing_table(rows: list[dict]) -> pa.Table:
    defaults = {"customer_id": "CUST-1", "order_ts": ts("2026-11-25 07:59:00"), "currency": "EUR", "run_id": "B1"}
    return pa.Table.from_pylist([{**defaults, **row} for row in rows], schema=LANDING_SCHEMA)


# --- pure transforms -----------------------------------------------------------------------


def test_dedupe_keeps_the_latest_processing_ts_and_counts_the_dropped_copies():
    orders = landing_table(
        [
            {"order_id": "a", "processing_ts": ts("2026-11-25 08:00:00"), "currency": "EUR"},
            {"order_id": "b", "processing_ts": ts("2026-11-25 08:01:00")},
            {"order_id": "a", "processing_ts": ts("2026-11-25 09:30:00"), "currency": "GBP"},
            {"order_id": "a", "processing_ts": ts("2026-11-25 08:30:00"), "currency": "USD"},
            {"order_id": "c", "processing_ts": None},
            {"order_id": "c", "processing_ts": ts("2026-11-25 08:02:00"), "currency": "JPY"},
        ]
    )

    kept, dropped = orders_batch.dedupe_orders(orders)

    assert dropped == 3
    assert sorted((r["order_id"], r["currency"]) for r in kept.to_pylist()) == [
        ("a", "GBP"),
        ("b", "EUR"),
        ("c", "JPY"),  # a null processing_ts loses
    ]


def test_dedupe_breaks_ties_by_the_later_object_then_the_later_row():
    same = ts("2026-11-25 08:00:00")
    keys = pa.table(
        {
            "order_id": ["x", "x", "x", "y", "y"],
            "processing_ts": pa.array([same] * 5, UTC_TS),
            "file_index": pa.array([0, 2, 1, 3, 3], pa.int32()),
            "row_index": pa.array([9, 4, 7, 1, 5], pa.int64()),
        }
    )

    winners, dropped = orders_batch.select_latest_copies(keys)

    assert dropped == 3
    assert winners.to_pylist() == [
        {"file_index": 2, "row_index": 4},
        {"file_index": 3, "row_index": 5},
    ]
    assert orders_batch.select_latest_copies(keys.slice(0, 0))[1] == 0


def test_explode_numbers_lines_from_one_and_gives_no_lines_for_null_or_empty_products():
    orders = landing_table(
        [
            {"order_id": "o1", "processing_ts": ts("2026-11-25 08:00:00"), "products": products(
                ("P1", "Café crème", 2, "3.50"), ("P2", "東京 tea", 1, "12.00"), ("P3", "Überzug", 3, "0.99"))},
            {"order_id": "o2", "processing_ts": ts("2026-11-25 08:00:01"), "products": None},
            {"order_id": "o3", "processing_ts": ts("2026-11-25 08:00:02"), "products": []},
            {"order_id": "o4", "processing_ts": ts("2026-11-25 08:00:03"), "products": products(
                ("P9", "Gift card", 1, "50.00"))},
        ]
    )

    # a slice has non-zero list offsets: line numbers must still start at 1 per order
    lines = l2s.explode_products(orders.slice(0, 4).to_batches()[0].slice(0))

    assert lines.schema == l2s.STAGING_SCHEMA
    assert "run_id" not in lines.column_names
    assert [(r["order_id"], r["line_number"], r["product_name"]) for r in lines.to_pylist()] == [
        ("o1", 1, "Café crème"),
        ("o1", 2, "東京 tea"),
        ("o1", 3, "Überzug"),
        ("o4", 1, "Gift card"),
    ]
    assert lines.to_pylist()[0]["unit_price"] == Decimal("3.50")
    assert l2s.explode_products(orders.slice(1, 2)).num_rows == 0
    tail = l2s.explode_products(orders.slice(3, 1)).to_pylist()
    assert [(r["order_id"], r["line_number"]) for r in tail] == [("o4", 1)]


def test_order_versions_keep_every_order_with_its_processing_ts_even_without_products():
    orders = landing_table(
        [
            {"order_id": "o1", "processing_ts": ts("2026-11-25 08:00:00"), "products": products(
                ("P1", "a", 1, "1.00"), ("P2", "b", 2, "2.00"))},
            {"order_id": "o2", "processing_ts": ts("2026-11-25 08:00:01"), "products": None},
            {"order_id": "o3", "processing_ts": None, "products": []},
        ]
    )
    naive_ns = pa.array([datetime(2026, 11, 25, 9, 0, 0, 123456)] * 3, pa.timestamp("ns"))
    drifted = orders.set_column(orders.schema.get_field_index("processing_ts"), "processing_ts", naive_ns)

    versions = l2s.order_versions(orders.to_batches()[0])

    assert versions.schema == l2s.VERSIONS_SCHEMA
    assert versions.to_pylist() == [
        {"order_id": "o1", "processing_ts": ts("2026-11-25 08:00:00")},
        {"order_id": "o2", "processing_ts": ts("2026-11-25 08:00:01")},  # no lines, still delivered
        {"order_id": "o3", "processing_ts": None},
    ]
    assert l2s.order_versions(drifted).column("processing_ts").to_pylist() == [
        datetime(2026, 11, 25, 9, 0, 0, 123000, tzinfo=UTC)
    ] * 3
    assert l2s.order_versions(orders.slice(0, 0)).num_rows == 0


def test_explode_conforms_nanosecond_and_naive_timestamps_to_utc_milliseconds():
    orders = landing_table(
        [{"order_id": "o1", "processing_ts": ts("2026-11-25 08:00:00"), "products": products(("P", "N", 1, "1.00"))}]
    )
    naive_ns = pa.array([datetime(2026, 11, 25, 7, 0, 0, 123456)], pa.timestamp("ns"))
    orders = orders.set_column(2, pa.field("order_ts", naive_ns.type), naive_ns)

    line = l2s.explode_products(orders).to_pylist()[0]

    assert line["order_ts"] == datetime(2026, 11, 25, 7, 0, 0, 123000, tzinfo=UTC)


def test_batch_keys_keep_only_the_batch_rows_with_their_position_in_the_object():
    batch = pa.RecordBatch.from_pydict(
        {
            "order_id": ["a", "b", "c", "d"],
            "processing_ts": pa.array([ts("2026-11-25 08:00:00")] * 4, UTC_TS),
            "run_id": ["B1", "B0", None, "B1"],
        }
    )

    keys = orders_batch.batch_keys(batch, "B1", file_index=4, first_row=100)

    assert keys.column("order_id").to_pylist() == ["a", "d"]
    assert keys.column("row_index").to_pylist() == [100, 103]
    assert keys.column("file_index").to_pylist() == [4, 4]
    assert orders_batch.batch_keys(batch, "B9", 0, 0) is None


def test_hour_prefixes_run_from_the_start_hour_to_the_completion_hour_inclusive():
    assert orders_batch.hour_prefixes("orders/", ts("2026-12-31 22:40:00"), ts("2027-01-01 00:00:00")) == [
        "orders/year=2026/month=12/day=31/hour=22/",
        "orders/year=2026/month=12/day=31/hour=23/",
        "orders/year=2027/month=01/day=01/hour=00/",
    ]
    started = orders_batch.parse_utc("2026-11-25T10:30:00+02:00")
    completed = orders_batch.parse_utc("2026-11-25T08:59:59Z")
    assert orders_batch.hour_prefixes("/orders", started, completed) == ["orders/year=2026/month=11/day=25/hour=08/"]
    with pytest.raises(ValueError):
        orders_batch.hour_prefixes("orders/", ts("2026-11-25 09:00:00"), ts("2026-11-25 08:00:00"))


def test_options_are_resolved_like_glue_and_extra_arguments_are_ignored():
    argv = ["script.py", "--JOB_NAME", "x", "--batch_id", "B1", "--TempDir", "s3://t/", "--enable-metrics",
            "true", "--landing_bucket=lb", "--JOB_RUN_ID", "jr_9"]
    assert l2s.resolve_options(argv, ["batch_id", "landing_bucket"]) == {"batch_id": "B1", "landing_bucket": "lb"}
    assert l2s.optional_option(argv, "JOB_RUN_ID") == "jr_9"
    with pytest.raises(SystemExit):
        l2s.resolve_options(["script.py", "--batch_id", "B1"], ["batch_id", "landing_bucket"])


def test_the_load_sends_the_staging_columns_as_the_table_types_then_the_run_id():
    lines = l2s.explode_products(landing_table([{
        "order_id": "o1", "customer_id": None, "processing_ts": ts("2026-11-25 08:00:00"),
        "products": products(("P1", "", 2, "3.50"), ("P2", 'say "hi", ok', 1, "1.00"))}]))
    types = {"order_id": pa.string(), "line_number": pa.int32(), "customer_id": pa.string(),
             "order_ts": pa.timestamp("us", tz="UTC"), "currency": pa.string(), "product_code": pa.string(),
             "product_name": pa.string(), "quantity": pa.int32(), "unit_price": pa.decimal128(10, 2),
             "processing_ts": pa.timestamp("us", tz="UTC"), "run_id": pa.string()}  # fmt: skip

    sent = s2w.arrow_postgres.conform(lines.to_batches()[0], s2w.STAGING_COLUMNS, types, {"run_id": "B1"})

    assert sent.schema.names == [*s2w.STAGING_COLUMNS, "run_id"]
    assert [field.type for field in sent.schema] == list(types.values())
    first = sent.to_pylist()[0]
    assert first["customer_id"] is None and first["product_name"] == "" and first["run_id"] == "B1"
    assert first["unit_price"] == Decimal("3.50") and first["order_ts"] == ts("2026-11-25 07:59:00")
    assert sent.column("product_name").to_pylist() == ["", 'say "hi", ok']


def test_warehouse_secret_gives_connection_options_without_echoing_it():
    secret = json.dumps({"host": "h", "port": "6543", "dbname": "d", "username": "u", "password": PASSWORD})
    assert s2w.connection_options(secret)["port"] == 6543
    with pytest.raises(ValueError) as error:
        s2w.connection_options(json.dumps({"host": "h", "password": PASSWORD}))
    assert PASSWORD not in str(error.value) and "dbname" in str(error.value)
    with pytest.raises(ValueError) as error:
        s2w.connection_options(PASSWORD)
    assert PASSWORD not in str(error.value)


# --- the scripts, for real -----------------------------------------------------------------


@pytest.fixture(scope="module")
def aws(moto_endpoint):
    endpoint = moto_endpoint
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
    )
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return {
        "env": env,
        "s3": session.client("s3", endpoint_url=endpoint),
        "secrets": session.client("secretsmanager", endpoint_url=endpoint),
    }


def new_bucket(aws, purpose: str) -> str:
    name = f"orders-{purpose}-{uuid.uuid4().hex[:12]}"
    aws["s3"].create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


def run(aws, script: Path, job_run_id: str = "jr_1", **arguments: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(script), "--JOB_NAME", script.stem, "--JOB_RUN_ID", job_run_id]
    for name, value in arguments.items():
        argv += [f"--{name}", value]
    argv += ["--TempDir", "s3://ignored/tmp/", "--enable-metrics", "true"]  # Glue's extras
    return subprocess.run(argv, env=aws["env"], capture_output=True, text=True, timeout=120)


def summary(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def landing_to_staging(aws, landing: str, staging: str, batch_id: str, marker: dict, job_run_id: str = "jr_1"):
    return run(aws, LANDING_TO_STAGING, job_run_id, batch_id=batch_id, landing_bucket=landing,
               landing_prefix="orders/", staging_bucket=staging, staging_prefix="orders/",
               started_at=marker["started_at"], completed_at=marker["completed_at"])


def objects(aws, bucket: str, prefix: str) -> dict[str, bytes]:
    s3 = aws["s3"]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for page in pages for o in page.get("Contents", [])}


def read_parquet(blobs: dict[str, bytes]) -> pa.Table:
    tables = [pq.read_table(io.BytesIO(blob)) for _, blob in sorted(blobs.items())]
    return pa.concat_tables(tables) if tables else pa.table({})


def sorted_rows(table: pa.Table) -> list[tuple]:
    return sorted(tuple(row.values()) for row in table.to_pylist())


@pytest.fixture(scope="module")
def landed(aws):
    """One generated batch beside another batch's rows in the same hours, with one object
    renamed to a name without an extension (Firehose names are not promised)."""
    bucket = new_bucket(aws, "landing")
    marker = write_orders_batch(aws["s3"], bucket, "B1", orders=1500, started_at=STARTED_AT, duplicate_rate=0.08)
    write_orders_batch(aws["s3"], bucket, "B0", orders=300, started_at=STARTED_AT, write_marker=False)
    s3 = aws["s3"]
    first = sorted(objects(aws, bucket, "orders/year=2026/month=11/day=25/hour=09/"))[0]
    s3.copy_object(Bucket=bucket, Key=first.rsplit("/", 1)[0] + "/no-extension-object",
                   CopySource={"Bucket": bucket, "Key": first})
    s3.delete_object(Bucket=bucket, Key=first)
    return {"bucket": bucket, "marker": marker}


def latest_copies(aws, landed) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for row in read_parquet(objects(aws, landed["bucket"], "orders/")).to_pylist():
        kept = latest.get(row["order_id"])
        if row["run_id"] == "B1" and (kept is None or row["processing_ts"] > kept["processing_ts"]):
            latest[row["order_id"]] = row
    return latest


def expected_versions(aws, landed) -> list[tuple]:
    return sorted((o["order_id"], o["processing_ts"]) for o in latest_copies(aws, landed).values())


def expected_lines(aws, landed) -> list[tuple]:
    """The staging rows worked out independently of the script, in plain Python."""
    latest = latest_copies(aws, landed)
    return sorted(
        (o["order_id"], n, o["customer_id"], o["order_ts"], o["currency"], p["product_code"], p["product_name"],
         p["quantity"], p["unit_price"], o["processing_ts"])
        for o in latest.values() for n, p in enumerate(o["products"] or [], start=1)
    )


@pytest.fixture(scope="module")
def staged(aws, landed):
    """The generated batch run through orders_landing_to_staging once (job run jr_1)."""
    staging = new_bucket(aws, "staging")
    result = landing_to_staging(aws, landed["bucket"], staging, "B1", landed["marker"])
    return {"bucket": staging, "result": result, "summary": summary(result),
            "objects": objects(aws, staging, "orders/"), "versions": objects(aws, staging, "order_versions/")}


def test_landing_to_staging_writes_one_row_per_line_of_the_latest_copies(aws, landed, staged):
    marker, done, written = landed["marker"], staged["summary"], staged["objects"]

    lines = read_parquet(written)
    assert done["lines_written"] == lines.num_rows == marker["expected_counts"]["order_lines"]
    assert done["orders"] == marker["expected_counts"]["orders"]
    assert done["duplicates_dropped"] == done["orders_read"] - done["orders"] > 0
    assert all(k.startswith("orders/run_id=B1/part-jr_1-") and k.endswith(".snappy.parquet") for k in written)
    assert pq.read_schema(io.BytesIO(next(iter(written.values())))).equals(l2s.STAGING_SCHEMA)
    assert sorted_rows(lines) == expected_lines(aws, landed)
    assert "pass 1:" in staged["result"].stdout
    # every order the batch delivers, lines or not, with its winning copy's processing_ts
    versions = read_parquet(staged["versions"])
    assert all(k.startswith("order_versions/run_id=B1/part-jr_1-") for k in staged["versions"])
    assert versions.schema.equals(l2s.VERSIONS_SCHEMA)
    assert done["versions_written"] == versions.num_rows == marker["expected_counts"]["orders"]
    assert sorted_rows(versions) == expected_versions(aws, landed)


def test_rerun_of_a_batch_replaces_the_partition_with_the_same_content(aws, landed, staged):
    staging, first = staged["bucket"], staged["objects"]
    # what a crashed earlier attempt could have left behind
    aws["s3"].put_object(Bucket=staging, Key="orders/run_id=B1/part-jr_0-00000.snappy.parquet",
                         Body=next(iter(first.values())))

    again = summary(landing_to_staging(aws, landed["bucket"], staging, "B1", landed["marker"], job_run_id="jr_2"))

    second = objects(aws, staging, "orders/")
    assert all("part-jr_2-" in key for key in second), list(second)
    assert again["objects_removed"] == len(first) + 1 + len(staged["versions"])
    assert sorted(second.values()) == sorted(first.values())  # byte for byte
    versions = objects(aws, staging, "order_versions/")
    assert all("part-jr_2-" in key for key in versions), list(versions)
    assert sorted(versions.values()) == sorted(staged["versions"].values())
    assert again["lines_written"] == landed["marker"]["expected_counts"]["order_lines"]


def test_an_empty_batch_succeeds_writes_nothing_and_clears_a_stale_partition(aws, landed):
    staging = new_bucket(aws, "staging")
    aws["s3"].put_object(Bucket=staging, Key="orders/run_id=B-EMPTY/part-old-00000.snappy.parquet", Body=b"old")
    aws["s3"].put_object(Bucket=staging, Key="order_versions/run_id=B-EMPTY/part-old-00000.snappy.parquet", Body=b"")

    done = summary(landing_to_staging(aws, landed["bucket"], staging, "B-EMPTY", landed["marker"]))

    assert (done["orders_read"], done["duplicates_dropped"], done["lines_written"]) == (0, 0, 0)
    assert (done["versions_written"], done["objects_removed"]) == (0, 2)
    assert objects(aws, staging, "") == {}


def test_a_corrupt_landing_object_fails_naming_the_object_and_the_batch(aws, landed):
    landing, staging = new_bucket(aws, "landing"), new_bucket(aws, "staging")
    marker = write_orders_batch(aws["s3"], landing, "B1", orders=200, started_at=STARTED_AT)
    corrupt = "orders/year=2026/month=11/day=25/hour=09/orders-firehose-1-2026-11-25-09-13-00-corrupt"
    aws["s3"].put_object(Bucket=landing, Key=corrupt, Body=b"PAR1 this is not parquet")
    aws["s3"].put_object(Bucket=staging, Key="orders/run_id=B1/part-good-00000.snappy.parquet", Body=b"good")

    result = landing_to_staging(aws, landing, staging, "B1", marker)

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"s3://{landing}/{corrupt}" in last_line and "batch B1" in last_line
    assert list(objects(aws, staging, "")) == ["orders/run_id=B1/part-good-00000.snappy.parquet"]


# --- the warehouse -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    import pgserver
    from psycopg2.extensions import parse_dsn

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield {"server": server, "dsn": parse_dsn(server.get_uri())}
    server.cleanup()


@pytest.fixture
def warehouse(postgres, aws):
    """A database of its own, and a Secrets Manager secret pointing at it."""
    import psycopg2

    name = f"wh_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(**postgres["dsn"])
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    secret_id = f"etl/warehouse-{name}"
    aws["secrets"].create_secret(Name=secret_id, SecretString=json.dumps({
        "host": postgres["dsn"]["host"], "port": int(postgres["dsn"].get("port", 5432)), "dbname": name,
        "username": postgres["dsn"]["user"], "password": PASSWORD}))
    connection = psycopg2.connect(**{**postgres["dsn"], "dbname": name})
    yield {"secret_id": secret_id, "connection": connection}
    connection.close()
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def run_sql(connection, *files: str, **params) -> list[tuple] | None:
    """Run SQL files in one transaction the way the toolkit does; the last one's rows."""
    rows = None
    with connection, connection.cursor() as cursor:
        for name in files:
            cursor.execute((SQL / name).read_text(), params or None)
            rows = cursor.fetchall() if cursor.description else None
    return rows


def load(aws, warehouse, staging: str, batch_id: str) -> subprocess.CompletedProcess:
    return run(aws, STAGING_TO_WAREHOUSE, batch_id=batch_id, staging_bucket=staging, staging_prefix="orders/",
               warehouse_secret_id=warehouse["secret_id"])


FINAL = ("lock_final_table.sql", "record_order_versions.sql", "delete_replaced_orders.sql", "insert_final_lines.sql")
LOADED_AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def final_table(connection) -> list[tuple]:
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT * FROM orders.fact_order_lines ORDER BY order_id, line_number")
        return cursor.fetchall()


def test_final_sql_computes_line_amount_and_the_utc_order_date(warehouse):
    connection = warehouse["connection"]
    run_sql(connection, "create_tables.sql")
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO orders.stg_order_lines VALUES "
            "('o1', 1, 'c', '2026-11-25 23:30:00-02', 'EUR', 'P1', 'Café crème', 3, 19.99, now(), 'B1'),"
            "('o1', 2, 'c', '2026-11-25 23:30:00-02', 'EUR', 'P2', 'x', 7, 0.01, now(), 'B1'),"
            "('o2', 1, 'c', NULL, 'JPY', 'P3', 'y', NULL, 1500.00, now(), 'B1')"
        )
        cursor.execute("INSERT INTO orders.stg_order_versions VALUES ('o1', now(), 'B1'), ('o2', now(), 'B1')")

    run_sql(connection, *FINAL, batch_id="B1", loaded_at=LOADED_AT)

    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT order_id, line_number, order_date::text, line_amount, currency, loaded_at"
                       " FROM orders.fact_order_lines ORDER BY 1, 2")
        assert cursor.fetchall() == [
            ("o1", 1, "2026-11-26", Decimal("59.97"), "EUR", LOADED_AT),
            ("o1", 2, "2026-11-26", Decimal("0.07"), "EUR", LOADED_AT),
            ("o2", 1, None, None, "JPY", LOADED_AT),
        ]
    assert run_sql(connection, "count_final.sql", batch_id="B1") == [(3,)]


def test_load_and_final_sql_replace_a_batch_and_a_redelivered_order_loses_its_old_lines(
    aws, landed, staged, warehouse
):
    connection = warehouse["connection"]
    expected = landed["marker"]["expected_counts"]["order_lines"]
    staging = staged["bucket"]
    run_sql(connection, "create_tables.sql")
    run_sql(connection, "create_tables.sql")  # idempotent

    # load twice: the second replaces the first
    first, second = load(aws, warehouse, staging, "B1"), load(aws, warehouse, staging, "B1")
    assert summary(first)["rows_loaded"] == expected and summary(first)["rows_deleted"] == 0
    orders = landed["marker"]["expected_counts"]["orders"]
    assert summary(second) == {"batch_id": "B1", "table": "orders.stg_order_lines",
                               "rows_deleted": expected, "rows_loaded": expected,
                               "versions_table": "orders.stg_order_versions",
                               "versions_deleted": orders, "versions_loaded": orders}
    assert PASSWORD not in first.stdout + first.stderr + second.stdout + second.stderr
    assert run_sql(connection, "count_warehouse_staging.sql", batch_id="B1") == [(expected,)]
    with connection, connection.cursor() as cursor:  # COPY kept every value as staging had it
        cursor.execute("SELECT order_id, line_number, customer_id, order_ts, currency, product_code, product_name,"
                       " quantity, unit_price, processing_ts FROM orders.stg_order_lines")
        assert sorted(cursor.fetchall()) == expected_lines(aws, landed)
        cursor.execute("SELECT order_id, processing_ts FROM orders.stg_order_versions WHERE run_id = 'B1'")
        assert sorted(cursor.fetchall()) == expected_versions(aws, landed)

    run_sql(connection, *FINAL, batch_id="B1", loaded_at=LOADED_AT)
    assert run_sql(connection, "count_final.sql", batch_id="B1") == [(expected,)]
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM orders.fact_order_lines WHERE line_amount <> quantity * unit_price"
                       " OR order_date <> (order_ts AT TIME ZONE 'UTC')::date")
        assert cursor.fetchone() == (0,)
    before = final_table(connection)
    run_sql(connection, *FINAL, batch_id="B1", loaded_at=LOADED_AT)
    assert final_table(connection) == before  # a rerun is a no-op

    # batch B2 re-delivers an order of B1 that had several lines, now with one, twice
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT order_id, count(*) FROM orders.fact_order_lines GROUP BY 1 HAVING count(*) >= 2"
                       " ORDER BY 1 LIMIT 1")
        order_id, old_lines = cursor.fetchone()
    again = {"order_id": order_id, "run_id": "B2", "products": products(("P7", "", 4, "2.25"))}
    b2 = landing_table([
        {**again, "processing_ts": ts("2026-11-26 10:05:00")},
        {**again, "processing_ts": ts("2026-11-26 10:01:00"), "products": None},
        {"order_id": "new-order", "run_id": "B2", "customer_id": None, "processing_ts": ts("2026-11-26 10:02:00"),
         "products": products(("P8", "Smørrebrød", 1, "9.99"))},
    ])
    sink = io.BytesIO()
    pq.write_table(b2, sink, compression="snappy")
    aws["s3"].put_object(Bucket=landed["bucket"], Body=sink.getvalue(),
                         Key="orders/year=2026/month=11/day=26/hour=10/orders-firehose-1-2026-11-26-10-05-00-b2")
    b2_marker = {"started_at": "2026-11-26T10:00:00Z", "completed_at": "2026-11-26T10:30:00Z"}
    assert summary(landing_to_staging(aws, landed["bucket"], staging, "B2", b2_marker))["lines_written"] == 2
    assert summary(load(aws, warehouse, staging, "B2"))["rows_loaded"] == 2

    run_sql(connection, *FINAL, batch_id="B2", loaded_at=LOADED_AT + timedelta(hours=1))

    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT order_id, line_number, customer_id, product_name, line_amount, run_id"
                       " FROM orders.fact_order_lines WHERE order_id IN (%s, 'new-order') ORDER BY 4", [order_id])
        assert cursor.fetchall() == [
            (order_id, 1, "CUST-1", "", Decimal("9.00"), "B2"),  # '' stayed '', not NULL
            ("new-order", 1, None, "Smørrebrød", Decimal("9.99"), "B2"),
        ]
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM orders.fact_order_lines WHERE run_id = 'B1'")
        assert cursor.fetchone() == (expected - old_lines,)
    # B1 still accounts for every line it delivered: those of the order B2 superseded too
    assert run_sql(connection, "count_final.sql", batch_id="B1") == [(expected,)]
    assert run_sql(connection, "count_final.sql", batch_id="B2") == [(2,)]
    after = final_table(connection)
    run_sql(connection, *FINAL, batch_id="B2", loaded_at=LOADED_AT + timedelta(hours=1))
    assert final_table(connection) == after


def stage(connection, batch_id: str, orders: dict[str, tuple[datetime | None, int]]) -> None:
    """Warehouse staging of a batch as the load job leaves it: order id -> (processing_ts, lines)."""
    with connection, connection.cursor() as cursor:
        for order_id, (processing_ts, lines) in orders.items():
            cursor.execute("INSERT INTO orders.stg_order_versions VALUES (%s, %s, %s)",
                           (order_id, processing_ts, batch_id))
            for number in range(1, lines + 1):
                cursor.execute(
                    "INSERT INTO orders.stg_order_lines VALUES (%s, %s, 'c', now(), 'EUR', %s, 'n', 1, 1.00, %s, %s)",
                    (order_id, number, f"{batch_id}-P{number}", processing_ts, batch_id),
                )


def lines_by_order(connection) -> dict[str, tuple[int, str]]:
    """order id -> (lines, batch) in the final table."""
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT order_id, count(*), min(run_id) FROM orders.fact_order_lines GROUP BY 1")
        return {order_id: (lines, run_id) for order_id, lines, run_id in cursor.fetchall()}


def test_final_sql_applies_batches_in_processing_order_whatever_order_they_load_in(warehouse):
    connection = warehouse["connection"]
    run_sql(connection, "create_tables.sql")
    t1, t2 = ts("2026-11-25 08:00:00"), ts("2026-11-25 09:00:00")
    stage(connection, "OLD", {"kept": (t1, 2), "shrunk": (t1, 3), "emptied": (t1, 2), "nulled": (None, 2)})
    stage(connection, "NEW", {"shrunk": (t2, 1), "emptied": (t2, 0), "nulled": (t1, 0), "fresh": (t2, 1)})

    run_sql(connection, *FINAL, batch_id="OLD", loaded_at=LOADED_AT)
    run_sql(connection, *FINAL, batch_id="NEW", loaded_at=LOADED_AT)
    in_order = final_table(connection)
    # an order delivered again with no products loses every line; fewer lines, the old ones
    assert lines_by_order(connection) == {"kept": (2, "OLD"), "shrunk": (1, "NEW"), "fresh": (1, "NEW")}

    # reprocessing the older batch brings none of its older versions back
    run_sql(connection, *FINAL, batch_id="OLD", loaded_at=LOADED_AT)
    assert final_table(connection) == in_order
    # a rerun of the newer batch changes nothing either
    run_sql(connection, *FINAL, batch_id="NEW", loaded_at=LOADED_AT)
    assert final_table(connection) == in_order
    # every line of each batch is accounted for: loaded, or superseded by a version at least as new
    assert run_sql(connection, "count_final.sql", batch_id="OLD") == [(9,)]
    assert run_sql(connection, "count_final.sql", batch_id="NEW") == [(2,)]
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT order_id, processing_ts, run_id FROM orders.order_versions ORDER BY 1")
        assert cursor.fetchall() == [("emptied", t2, "NEW"), ("fresh", t2, "NEW"), ("kept", t1, "OLD"),
                                     ("nulled", t1, "NEW"), ("shrunk", t2, "NEW")]  # fmt: skip


def test_final_sql_loaded_newest_first_ends_in_the_same_state(warehouse):
    connection = warehouse["connection"]
    run_sql(connection, "create_tables.sql")
    t1, t2 = ts("2026-11-25 08:00:00"), ts("2026-11-25 09:00:00")
    stage(connection, "OLD", {"kept": (t1, 2), "shrunk": (t1, 3), "emptied": (t1, 2)})
    stage(connection, "NEW", {"shrunk": (t2, 1), "emptied": (t2, 0)})

    run_sql(connection, *FINAL, batch_id="NEW", loaded_at=LOADED_AT)
    run_sql(connection, *FINAL, batch_id="OLD", loaded_at=LOADED_AT)

    assert lines_by_order(connection) == {"kept": (2, "OLD"), "shrunk": (1, "NEW")}
    assert run_sql(connection, "count_final.sql", batch_id="OLD") == [(7,)]


def test_create_tables_records_the_versions_a_warehouse_loaded_before_they_were_kept(warehouse):
    connection = warehouse["connection"]
    run_sql(connection, "create_tables.sql")
    t1, t2 = ts("2026-11-25 08:00:00"), ts("2026-11-25 09:00:00")
    stage(connection, "OLD", {"shrunk": (t1, 3), "kept": (t1, 1)})
    stage(connection, "NEW", {"shrunk": (t2, 1)})
    run_sql(connection, *FINAL, batch_id="OLD", loaded_at=LOADED_AT)
    run_sql(connection, *FINAL, batch_id="NEW", loaded_at=LOADED_AT)
    before = final_table(connection)
    with connection, connection.cursor() as cursor:  # as the earlier version of the load left it
        cursor.execute("TRUNCATE orders.order_versions")

    run_sql(connection, "create_tables.sql")
    run_sql(connection, *FINAL, batch_id="OLD", loaded_at=LOADED_AT)

    assert final_table(connection) == before
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT order_id, processing_ts, run_id FROM orders.order_versions ORDER BY 1")
        assert cursor.fetchall() == [("kept", t1, "OLD"), ("shrunk", t2, "NEW")]


def test_loading_an_empty_staging_partition_succeeds_with_zero_rows(aws, warehouse):
    run_sql(warehouse["connection"], "create_tables.sql")
    staging = new_bucket(aws, "staging")

    result = load(aws, warehouse, staging, "B-EMPTY")

    assert summary(result)["rows_loaded"] == 0
    assert run_sql(warehouse["connection"], "count_warehouse_staging.sql", batch_id="B-EMPTY") == [(0,)]
