"""The totesys Glue scripts: the extract's allow-list, windows, watermarks, marker and COPY, then
the extract run as a real process against a moto server and an embedded PostgreSQL; the remodel's
pure functions.

Every extract run uses a bucket and a source database of its own, so tests share one emulator
and one PostgreSQL without resetting them.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# Run again under AWS Glue 5.0's versions by `make test-glue5`: imports no Airflow.
pytestmark = pytest.mark.glue5

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "include" / "glue_scripts" / "totesys"
QUALITY = ROOT / "include" / "quality" / "totesys"
EXTRACT = SCRIPTS / "totesys_extract.py"
REGION = "eu-west-1"


def load_module(path: Path):
    """Glue scripts are files, not a package: import one by path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


extract = load_module(EXTRACT)
remodel = load_module(SCRIPTS / "totesys_remodel.py")

T0 = datetime(2026, 11, 20, 9, 30, 0, 123456)
T1 = datetime(2026, 11, 21, 14, 5, 7, 1)


# -- the allow-list ---------------------------------------------------------------------------------


def test_no_configured_tables_means_all_eleven():
    assert extract.allowed_tables("") == list(extract.TABLES)
    assert extract.allowed_tables(None) == list(extract.TABLES)
    assert len(extract.TABLES) == 11


def test_configured_tables_are_kept_in_order_once():
    assert extract.allowed_tables("staff, payment,staff") == ["staff", "payment"]
    assert extract.allowed_tables(["currency"]) == ["currency"]


@pytest.mark.parametrize(
    "name", ["staff; DROP TABLE staff", "pg_shadow", "Staff", 'staff"--', "information_schema.tables"]
)
def test_a_table_name_off_the_allow_list_is_refused_with_the_names_that_are_allowed(name):
    with pytest.raises(extract.RefusedTableName, match="refused table name") as error:
        extract.allowed_tables(f"currency,{name}")
    assert name in str(error.value) and "sales_order" in str(error.value)


def test_the_extract_refuses_a_bad_table_before_reading_the_secret_or_connecting(monkeypatch):
    def must_not_run(*_):
        raise AssertionError("the secret was read for a refused table list")

    monkeypatch.setattr(extract, "read_secret", must_not_run)
    argv = ["job", "--batch_id", "b1", "--tables", "staff; DROP TABLE staff", "--source_secret_id", "etl/totesys",
            "--ingestion_bucket", "totesys-ingestion"]  # fmt: skip
    with pytest.raises(extract.RefusedTableName):
        extract.main(argv)


# -- the SELECT and the COPY ------------------------------------------------------------------------

WINDOW = {"from": "2026-11-20T09:30:00.123456", "to": "2026-11-21T14:05:07.000001"}


def test_the_select_names_only_allow_listed_identifiers_and_binds_both_bounds_as_timestamps():
    statement, parameters = extract.select_statement("staff", WINDOW)
    assert statement.startswith('SELECT "staff_id", "first_name", "last_name", "department_id", "email_address", ')
    assert 'FROM "staff" WHERE "last_updated" > %(from)s AND "last_updated" <= %(to)s ORDER BY' in statement
    assert parameters == {"from": T0, "to": T1}
    assert "2026" not in statement


def test_a_first_window_has_only_an_upper_bound():
    statement, parameters = extract.select_statement("transaction", {"from": None, "to": WINDOW["to"]})
    assert 'FROM "transaction" WHERE "last_updated" <= %(to)s ORDER BY "last_updated", "transaction_id"' in statement
    assert parameters == {"to": T1}


def test_without_a_window_the_select_takes_every_row():
    statement, parameters = extract.select_statement("transaction", None)
    assert "WHERE" not in statement and parameters == {}


@pytest.mark.parametrize("bound", ["2026-11-20'::timestamp; DROP TABLE staff; --", "yesterday", 20261120, "now()"])
def test_a_window_bound_that_is_not_a_timestamp_is_refused_before_any_sql(bound):
    with pytest.raises(ValueError, match="is not a timestamp"):
        extract.select_statement("staff", {"from": bound, "to": WINDOW["to"]})
    with pytest.raises(ValueError, match="is not a timestamp"):
        extract.select_statement("staff", {"from": None, "to": bound})


def test_select_statement_refuses_an_unknown_table():
    with pytest.raises(extract.RefusedTableName):
        extract.select_statement("staff; DROP TABLE staff", None)


# -- windows, watermarks and the marker ---------------------------------------------------------------

CLOCK = datetime(2026, 11, 22, 12, 0, 0, 250000)


def test_a_window_runs_from_the_watermark_to_the_source_clock_minus_the_lag():
    windows = extract.plan_windows(["staff", "payment"], {"staff": "2026-11-22T11:00:00.000000"}, CLOCK, 300)
    assert windows == {
        "staff": {"from": "2026-11-22T11:00:00.000000", "to": "2026-11-22T11:55:00.250000"},
        "payment": {"from": None, "to": "2026-11-22T11:55:00.250000"},  # no watermark: from the beginning
    }
    assert extract.plan_windows(["staff"], {}, CLOCK, 0)["staff"]["to"] == "2026-11-22T12:00:00.250000"


def test_a_watermark_already_past_the_lagged_clock_gives_an_empty_window_not_a_backward_one():
    ahead = "2026-11-22T11:58:00.000000"  # a batch made with a shorter lag
    assert extract.plan_windows(["staff"], {"staff": ahead}, CLOCK, 300) == {"staff": {"from": ahead, "to": ahead}}


def test_a_recorded_window_wins_over_the_current_watermarks():
    recorded = {"windows": {"staff": {"from": None, "to": "2026-11-22T11:00:00.000000"}}}
    planned = extract.plan_windows(["staff"], {"staff": "2026-11-22T11:30:00.000000"}, CLOCK, 300)

    assert extract.batch_windows(recorded, planned, ["staff"], "b1") == recorded["windows"]
    assert extract.batch_windows(None, planned, ["staff"], "b1") == planned


def test_a_recorded_window_for_other_tables_or_with_a_bad_bound_is_a_conflict():
    recorded = {"windows": {"staff": {"from": None, "to": "2026-11-22T11:00:00.000000"}}}
    with pytest.raises(extract.BatchConflict, match=r"covers tables \['staff'\], but this run extracts"):
        extract.batch_windows(recorded, {}, ["staff", "payment"], "b1")
    backwards = {"windows": {"staff": {"from": "2026-11-22T11:00:00.000001", "to": "2026-11-22T11:00:00.000000"}}}
    with pytest.raises(extract.BatchConflict, match="ends before it starts"):
        extract.batch_windows(backwards, {}, ["staff"], "b1")
    with pytest.raises(ValueError, match="is not a timestamp"):
        extract.batch_windows({"windows": {"staff": {"from": None, "to": "now"}}}, {}, ["staff"], "b1")


def test_a_batch_is_complete_once_its_marker_carries_its_recorded_window():
    windows = {"staff": {"from": None, "to": "2026-11-22T11:00:00.000000"}}
    assert not extract.batch_is_complete(None, {"windows": windows}, "b1")
    assert extract.batch_is_complete({"windows": windows}, {"windows": windows}, "b1")
    assert extract.batch_is_complete({"expected_counts": {}}, None, "b1")  # written before windows were recorded
    with pytest.raises(extract.BatchConflict, match="never rewritten"):
        extract.batch_is_complete({"windows": {}}, {"windows": windows}, "b1")


def test_watermarks_move_only_to_each_windows_end_and_never_back():
    current = {"staff": "2026-11-20T09:30:00.000000", "payment": "2026-11-21T00:00:00.000000", "design": "x"}
    windows = {
        "staff": {"from": "2026-11-20T09:30:00.000000", "to": "2026-11-21T10:00:00.000000"},
        "payment": {"from": None, "to": "2026-11-20T00:00:00.000000"},  # an older batch, run late
        "currency": {"from": None, "to": "2026-11-21T10:00:00.000000"},  # no rows, still covered
    }
    assert extract.advance_watermarks(current, windows) == {
        "staff": "2026-11-21T10:00:00.000000",
        "payment": "2026-11-21T00:00:00.000000",
        "design": "x",  # not in the batch
        "currency": "2026-11-21T10:00:00.000000",
    }
    assert current["staff"] == "2026-11-20T09:30:00.000000"  # the input is not changed


def test_watermarks_keep_every_microsecond_and_sort_as_text_as_they_do_as_time():
    assert extract.format_watermark(T0) == "2026-11-20T09:30:00.123456"
    assert extract.format_watermark(datetime(2026, 11, 20, 9, 30)) == "2026-11-20T09:30:00.000000"
    assert (extract.format_watermark(T0) < extract.format_watermark(T1)) == (T0 < T1)


@pytest.mark.parametrize(("given", "seconds"), [(None, 300.0), ("", 300.0), ("0", 0.0), ("3", 3.0), ("2.5", 2.5)])
def test_the_commit_lag_defaults_to_five_minutes(given, seconds):
    assert extract.commit_lag(given) == seconds


@pytest.mark.parametrize("given", ["-1", "five minutes", "1e9", "nan"])
def test_a_commit_lag_that_is_not_a_sensible_number_of_seconds_is_refused(given):
    with pytest.raises(ValueError, match="--commit_lag_seconds"):
        extract.commit_lag(given)


def test_the_marker_follows_the_contract_and_carries_the_windows():
    windows = {"staff": {"from": None, "to": "2026-11-21T10:00:00.000000"}}
    body = extract.marker_body("totesys-1", T0.astimezone(), T1.astimezone(), {"staff": 2}, windows)
    assert body["windows"] == windows
    # The toolkit's contract imports Airflow, which the Glue 5.0 venv (make test-glue5) has not.
    pytest.importorskip("airflow", reason="the toolkit's contract needs Airflow: checked in .venv")
    from etl_toolkit.contract import parse_marker

    marker = parse_marker("batch-completion/totesys-1.json", json.dumps(body))
    assert marker.expected_counts == {"staff": 2}


def test_connection_options_from_the_secret_never_echo_it():
    options = extract.connection_options(
        json.dumps({"host": "h", "port": 5433, "dbname": "totesys", "username": "totesys_app", "password": "s3cr3t"})
    )
    assert options["user"] == "totesys_app" and options["password"] == "s3cr3t" and options["port"] == 5433
    assert options["client_encoding"] == "UTF8"
    with pytest.raises(ValueError) as error:
        extract.connection_options('{"host": "h", "dbname": "d", "password": "s3cr3t"}')
    assert "username" in str(error.value) and "s3cr3t" not in str(error.value)
    with pytest.raises(ValueError) as error:
        extract.connection_options("password=s3cr3t")
    assert "s3cr3t" not in str(error.value)


def test_the_landing_suites_declare_exactly_the_extracts_schema():
    for table in extract.TABLES:
        suite = json.loads((QUALITY / f"landing_{table}.json").read_text())
        declared = [(c["name"], c["type"]) for c in suite["columns"]]
        assert declared == [(f.name, str(f.type)) for f in extract.schema(table)], table
        assert remodel.source_schema(table).names == extract.schema(table).names


# -- the extract, for real: a moto server and an embedded PostgreSQL ---------------------------------


@pytest.fixture(scope="module")
def aws(moto_endpoint):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=moto_endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION=REGION, AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return {"env": env, "endpoint": moto_endpoint, "s3": session.client("s3", endpoint_url=moto_endpoint),
            "secrets": session.client("secretsmanager", endpoint_url=moto_endpoint)}  # fmt: skip


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    import pgserver
    from psycopg2.extensions import parse_dsn

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield parse_dsn(server.get_uri())
    server.cleanup()


@pytest.fixture
def source(postgres, aws):
    """A totesys source of its own (the simulator's schema, no rows), its secret and a bucket."""
    import psycopg2

    from devstack.sample_data import totesys

    name = f"src_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(**postgres)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    connection = psycopg2.connect(**{**postgres, "dbname": name})
    with connection, connection.cursor() as cursor:
        cursor.execute(totesys.DDL)
    secret_id = f"etl/totesys-{name}"
    aws["secrets"].create_secret(Name=secret_id, SecretString=json.dumps({
        "host": postgres["host"], "port": int(postgres.get("port", 5432)), "dbname": name,
        "username": postgres["user"], "password": "unused-by-local-trust"}))  # fmt: skip
    bucket = f"totesys-ingestion-{name.replace('_', '-')}"
    aws["s3"].create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    yield {"name": name, "secret_id": secret_id, "bucket": bucket, "connection": connection, "admin": admin}
    connection.close()
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def sql(source, statement: str, *parameters):
    with source["connection"], source["connection"].cursor() as cursor:
        cursor.execute(statement, parameters or None)
        return cursor.fetchall() if cursor.description else None


def run_extract(aws, source, batch_id: str, tables: str = "", lag: str = "0") -> subprocess.CompletedProcess:
    argv = [sys.executable, str(EXTRACT), "--JOB_NAME", "totesys_extract", "--JOB_RUN_ID", f"jr_{uuid.uuid4().hex}",
            "--batch_id", batch_id, "--tables", tables, "--source_secret_id", source["secret_id"],
            "--ingestion_bucket", source["bucket"], "--commit_lag_seconds", lag,
            "--TempDir", "s3://ignored/tmp/", "--enable-metrics", "true"]  # fmt: skip
    return subprocess.run(argv, env=aws["env"], capture_output=True, text=True, timeout=120)


def summary(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def objects(aws, bucket: str, prefix: str = "") -> dict[str, bytes]:
    s3 = aws["s3"]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for page in pages for o in page.get("Contents", [])}  # fmt: skip


def landed(aws, source, batch_id: str, table: str) -> pa.Table:
    body = aws["s3"].get_object(Bucket=source["bucket"], Key=f"batches/{batch_id}/{table}.parquet")["Body"].read()
    return pq.read_table(io.BytesIO(body))


def seed_references(source) -> None:
    """The rows every order refers to: one currency, address, department, design, staff, counterparty."""
    sql(source, "INSERT INTO currency (currency_code) VALUES ('GBP')")
    sql(source, "INSERT INTO address (address_line_1, city, postal_code, country, phone) "
                "VALUES ('1 Road', 'Leeds', 'LS1', 'UK', '0113')")  # fmt: skip
    sql(source, "INSERT INTO department (department_name, location) VALUES ('Sales', 'Leeds')")
    sql(source, "INSERT INTO design (design_name, file_location, file_name) VALUES ('Wooden', '/w', 'w.json')")
    sql(source, "INSERT INTO staff (first_name, last_name, department_id, email_address) "
                "VALUES ('Ana', 'Glover', 1, 'ana@terrifictotes.com')")  # fmt: skip
    sql(source, "INSERT INTO counterparty (counterparty_legal_name, legal_address_id) VALUES ('Fahey and Sons', 1)")


TRICKY_TEXT = ["", None, 'say "hi", ok', "line one\nline two\r\nthree", "Zoë Ó Súilleabháin, 日本, ÆØÅ",
               "\\N", "NULL", "C:\\temp\\new", " padded ", "a,b,,c", '"', "'; DROP TABLE staff; --"]  # fmt: skip


def test_tricky_values_land_exactly_as_the_source_holds_them_in_the_allow_list_schema(aws, source):
    seed_references(source)
    for n, text in enumerate(TRICKY_TEXT):
        sql(source, "INSERT INTO address (address_line_1, address_line_2, district, city, postal_code, country, "
                    "phone, created_at) VALUES (%s, %s, %s, 'Leeds', 'LS1', 'UK', '0113', %s)",
            f"{n} Road", text, text if n % 2 else None, datetime(2026, 1, 1) + timedelta(microseconds=n))  # fmt: skip
    for units, price in [(1, "2.5"), (2, "12345678.99"), (3, "0.01"), (4, "0")]:
        sql(source, "INSERT INTO sales_order (design_id, staff_id, counterparty_id, units_sold, unit_price, "
                    "currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id, created_at) "
                    "VALUES (1, 1, 1, %s, %s, 1, '2026-12-01', '2026-12-15', 1, '2026-11-20 09:30:00')",
            units, Decimal(price))  # fmt: skip
    sql(source, "INSERT INTO payment_type (payment_type_name) VALUES ('SALES_RECEIPT')")
    sql(source, "INSERT INTO transaction (transaction_type, sales_order_id) VALUES ('SALE', 1)")
    for paid, amount, stamp in [(True, "1234567890.12", "2026-11-20 09:30:00.000001"),
                                (False, "-0.50", "2026-11-20 09:30:59.999999")]:  # fmt: skip
        sql(source, "INSERT INTO payment (transaction_id, counterparty_id, payment_amount, currency_id, "
                    "payment_type_id, paid, payment_date, company_ac_number, counterparty_ac_number, created_at) "
                    "VALUES (1, 1, %s, 1, 1, %s, '2026-12-15', 12345678, -1, %s)",
            Decimal(amount), paid, stamp)  # fmt: skip

    done = summary(run_extract(aws, source, "tricky-1", tables="address,sales_order,payment"))

    for table in ("address", "sales_order", "payment"):
        landed_rows = landed(aws, source, "tricky-1", table)
        assert landed_rows.schema == extract.schema(table), table
        key = extract.TABLES[table][0][0]
        columns = ", ".join(landed_rows.column_names)
        expected = sql(source, f"SELECT {columns} FROM {table} ORDER BY {key}")  # the same rows, as psycopg2 reads them
        assert sorted(tuple(row.values()) for row in landed_rows.to_pylist()) == expected, table
        assert done["expected_counts"][table] == len(expected)
    addresses = {row["address_line_1"]: row for row in landed(aws, source, "tricky-1", "address").to_pylist()}
    assert addresses["0 Road"]["address_line_2"] == "" and addresses["1 Road"]["address_line_2"] is None
    assert addresses["3 Road"]["address_line_2"] == "line one\nline two\r\nthree"
    assert addresses["5 Road"]["address_line_2"] == "\\N" and addresses["6 Road"]["address_line_2"] == "NULL"
    prices = sorted(row["unit_price"] for row in landed(aws, source, "tricky-1", "sales_order").to_pylist())
    assert prices == [Decimal("0.00"), Decimal("0.01"), Decimal("2.50"), Decimal("12345678.99")]
    payments = [(r["paid"], r["payment_amount"], r["created_at"], r["payment_date"])
                for r in landed(aws, source, "tricky-1", "payment").to_pylist()]  # fmt: skip
    assert sorted(payments) == [
        (False, Decimal("-0.50"), datetime(2026, 11, 20, 9, 30, 59, 999999), "2026-12-15"),
        (True, Decimal("1234567890.12"), datetime(2026, 11, 20, 9, 30, 0, 1), "2026-12-15"),
    ]


def test_the_window_ends_at_the_sources_own_clock_minus_the_lag_in_the_sources_zone(aws, postgres, source):
    import psycopg2

    # 14 hours ahead of UTC: a window that ended at the worker's clock would miss every row.
    source["admin"].cursor().execute(f"ALTER DATABASE {source['name']} SET timezone = 'Pacific/Kiritimati'")
    source["connection"].close()
    source["connection"] = psycopg2.connect(**{**postgres, "dbname": source["name"]})
    seed_references(source)
    [(before,)] = sql(source, "SELECT localtimestamp")

    trailing = summary(run_extract(aws, source, "clock-1", tables="staff", lag="30"))

    [(after,)] = sql(source, "SELECT localtimestamp")
    recorded = json.loads(objects(aws, source["bucket"], "batches/clock-1/")["batches/clock-1/_window.json"])
    end = datetime.fromisoformat(recorded["windows"]["staff"]["to"])
    assert before - timedelta(seconds=30) <= end <= after - timedelta(seconds=30)
    assert recorded["commit_lag_seconds"] == 30
    assert trailing["watermarks"]["staff"] == recorded["windows"]["staff"]["to"]
    assert trailing["expected_counts"]["staff"] == 0  # stamped within the lag: left to a later batch
    assert summary(run_extract(aws, source, "clock-2", tables="staff"))["expected_counts"]["staff"] == 1


def test_a_complete_batch_run_again_rewrites_nothing_and_the_next_batch_carries_the_changes(aws, source):
    seed_references(source)
    first = summary(run_extract(aws, source, "b-1"))
    written = objects(aws, source["bucket"])
    sql(source, "UPDATE staff SET email_address = 'new@terrifictotes.com', last_updated = now() WHERE staff_id = 1")

    again = run_extract(aws, source, "b-1")  # the same batch id and arguments, as a retry runs it

    assert summary(again)["already_complete"] is True
    assert "batch b-1 is already complete" in again.stdout
    assert objects(aws, source["bucket"]) == written  # files, window, marker, watermarks: byte for byte
    assert summary(again)["expected_counts"] == first["expected_counts"]
    following = summary(run_extract(aws, source, "b-2"))
    assert following["expected_counts"] == {**dict.fromkeys(extract.TABLES, 0), "staff": 1}
    assert landed(aws, source, "b-2", "staff").to_pylist()[0]["email_address"] == "new@terrifictotes.com"


def test_a_batch_run_again_after_it_failed_extracts_its_recorded_window_not_the_current_watermarks(aws, source):
    seed_references(source)
    sql(source, "ALTER TABLE staff RENAME COLUMN email_address TO email")  # the application's release broke a table
    failed = run_extract(aws, source, "w-1")
    assert failed.returncode != 0 and "extracting table staff failed" in failed.stderr.strip().splitlines()[-1]
    recorded = json.loads(objects(aws, source["bucket"], "batches/w-1/_window.json")["batches/w-1/_window.json"])
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=source["bucket"], Prefix="batch-completion/")
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=source["bucket"], Prefix="watermarks.json")
    sql(source, "ALTER TABLE staff RENAME COLUMN email TO email_address")
    newer = summary(run_extract(aws, source, "w-2"))  # a later batch moves every watermark past w-1's window
    assert newer["expected_counts"]["staff"] == 1

    rerun = summary(run_extract(aws, source, "w-1"))

    marker = json.loads(objects(aws, source["bucket"], "batch-completion/w-1.json")["batch-completion/w-1.json"])
    assert marker["windows"] == recorded["windows"]
    assert rerun["expected_counts"] == newer["expected_counts"]  # the rows of its own window, not an empty one
    assert rerun["watermarks"] == newer["watermarks"]  # and no watermark moved back


def test_a_rerun_naming_other_tables_than_its_recorded_window_is_refused_without_writing(aws, source):
    seed_references(source)
    sql(source, "ALTER TABLE design RENAME COLUMN file_name TO file")
    assert run_extract(aws, source, "t-1", tables="staff,design").returncode != 0  # the window is recorded
    sql(source, "ALTER TABLE design RENAME COLUMN file TO file_name")
    before = objects(aws, source["bucket"])

    result = run_extract(aws, source, "t-1", tables="staff")

    assert result.returncode != 0
    assert "covers tables ['design', 'staff'], but this run extracts ['staff']" in result.stderr
    assert objects(aws, source["bucket"]) == before


# -- the remodel ------------------------------------------------------------------------------------


def rows(table: str, *records: dict) -> pa.Table:
    schema = remodel.source_schema(table)
    full = [{"created_at": T0, "last_updated": T0, **record} for record in records]
    return pa.Table.from_pylist(full, schema=schema)


def empty_batch() -> dict[str, pa.Table]:
    return {table: remodel.source_schema(table).empty_table() for table in remodel.SOURCE}


def sales_order(sales_order_id: int, last_updated: datetime, units: int) -> dict:
    return {
        "sales_order_id": sales_order_id, "design_id": 1, "staff_id": 1, "counterparty_id": 1, "units_sold": units,
        "unit_price": Decimal("2.50"), "currency_id": 1, "agreed_delivery_date": date(2026, 12, 1),
        "agreed_payment_date": date(2026, 12, 15), "agreed_delivery_location_id": 1, "last_updated": last_updated,
    }  # fmt: skip


def first_batch() -> dict[str, pa.Table]:
    batch = empty_batch()
    batch["department"] = rows("department", {"department_id": 1, "department_name": "Sales", "location": "Leeds"})
    batch["staff"] = rows("staff", {"staff_id": 1, "first_name": "Zoë", "last_name": "Ó Súilleabháin",
                                    "department_id": 1, "email_address": "zoe@terrifictotes.com"})  # fmt: skip
    batch["address"] = rows("address", {"address_id": 1, "address_line_1": "1 Road", "city": "Leeds",
                                        "postal_code": "LS1", "country": "UK", "phone": "0113"})  # fmt: skip
    batch["counterparty"] = rows("counterparty", {"counterparty_id": 1, "counterparty_legal_name": "Fahey and Sons",
                                                  "legal_address_id": 1})  # fmt: skip
    batch["currency"] = rows(
        "currency", {"currency_id": 1, "currency_code": "GBP"}, {"currency_id": 2, "currency_code": "XXX"}
    )
    batch["sales_order"] = rows("sales_order", sales_order(1, T0, 10))
    return batch


def test_a_first_batch_becomes_every_warehouse_table_with_its_schema():
    tables, state = remodel.remodel(first_batch(), {})
    assert list(tables) == list(remodel.WAREHOUSE)
    for name, table in tables.items():
        assert table.schema == remodel.warehouse_schema(name), name
    [staff] = tables["dim_staff"].to_pylist()
    assert staff == {"staff_id": 1, "first_name": "Zoë", "last_name": "Ó Súilleabháin", "department_name": "Sales",
                     "location": "Leeds", "email_address": "zoe@terrifictotes.com",
                     "source_last_updated": T0, "department_last_updated": T0}  # fmt: skip
    [counterparty] = tables["dim_counterparty"].to_pylist()
    assert counterparty["counterparty_legal_city"] == "Leeds"
    assert counterparty["counterparty_legal_phone_number"] == "0113"
    assert tables["dim_currency"].to_pylist() == [
        {"currency_id": 1, "currency_code": "GBP", "currency_name": "British Pound", "source_last_updated": T0},
        {"currency_id": 2, "currency_code": "XXX", "currency_name": None, "source_last_updated": T0},
    ]
    [fact] = tables["fact_sales_order"].to_pylist()
    assert fact["sales_staff_id"] == 1 and fact["units_sold"] == 10
    assert (fact["created_date"], fact["created_time"]) == (date(2026, 11, 20), time(9, 30, 0, 123456))
    assert (fact["last_updated_date"], fact["last_updated_time"]) == (date(2026, 11, 20), time(9, 30, 0, 123456))
    assert state["staff"].num_rows == 1 and state["department"].num_rows == 1


def test_dim_date_covers_every_date_a_fact_refers_to_once():
    tables, _ = remodel.remodel(first_batch(), {})
    dates = {row["date_id"]: row for row in tables["dim_date"].to_pylist()}
    assert set(dates) == {date(2026, 11, 20), date(2026, 12, 1), date(2026, 12, 15)}
    assert dates[date(2026, 12, 1)] == {"date_id": date(2026, 12, 1), "year": 2026, "month": 12, "day": 1,
                                        "day_of_week": 2, "day_name": "Tuesday", "month_name": "December",
                                        "quarter": 4}  # fmt: skip


def test_facts_keep_one_row_per_version_and_a_version_seen_twice_is_one_row():
    batch = empty_batch()
    batch["sales_order"] = rows("sales_order", sales_order(1, T0, 10), sales_order(1, T1, 12), sales_order(1, T1, 12))
    tables, _ = remodel.remodel(batch, {})
    versions = sorted((r["last_updated_date"], r["units_sold"]) for r in tables["fact_sales_order"].to_pylist())
    assert versions == [(date(2026, 11, 20), 10), (date(2026, 11, 21), 12)]


def test_a_changed_department_re_emits_its_staff_from_the_state():
    _, state = remodel.remodel(first_batch(), {})
    batch = empty_batch()
    batch["department"] = rows("department", {"department_id": 1, "department_name": "Sales & Marketing",
                                              "location": "York", "last_updated": T1})  # fmt: skip

    tables, new_state = remodel.remodel(batch, state)

    assert tables["dim_staff"].to_pylist()[0]["department_name"] == "Sales & Marketing"
    assert tables["dim_staff"].to_pylist()[0]["location"] == "York"
    assert tables["fact_sales_order"].num_rows == 0 and tables["dim_date"].num_rows == 0
    assert new_state["department"].to_pylist()[0]["location"] == "York"


def test_a_changed_address_re_emits_its_counterparties_and_the_location():
    _, state = remodel.remodel(first_batch(), {})
    batch = empty_batch()
    batch["address"] = rows("address", {"address_id": 1, "address_line_1": "2 Street", "city": "York",
                                        "postal_code": "YO1", "country": "UK", "phone": "01904",
                                        "last_updated": T1})  # fmt: skip
    tables, _ = remodel.remodel(batch, state)
    assert tables["dim_counterparty"].to_pylist()[0]["counterparty_legal_city"] == "York"
    assert tables["dim_location"].to_pylist()[0]["location_id"] == 1


def test_the_state_keeps_the_latest_version_whatever_order_batches_come_in():
    newer = rows("staff", {"staff_id": 1, "first_name": "A", "last_name": "B", "department_id": 1,
                           "email_address": "new@x", "last_updated": T1})  # fmt: skip
    older = rows("staff", {"staff_id": 1, "first_name": "A", "last_name": "B", "department_id": 1,
                           "email_address": "old@x", "last_updated": T0})  # fmt: skip
    assert remodel.merge_state(newer, older, "staff_id").to_pylist()[0]["email_address"] == "new@x"
    assert remodel.merge_state(older, newer, "staff_id").to_pylist()[0]["email_address"] == "new@x"


def test_an_empty_batch_remodels_into_empty_tables():
    tables, state = remodel.remodel(empty_batch(), {})
    assert {name: t.num_rows for name, t in tables.items()} == dict.fromkeys(remodel.WAREHOUSE, 0)
    assert all(t.num_rows == 0 for t in state.values())
