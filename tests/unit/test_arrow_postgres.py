"""arrow_postgres (include/glue_scripts/common/), the Glue scripts' Arrow <-> PostgreSQL path, against a
real PostgreSQL (pgserver): types round-trip exactly, a load is part of the caller's transaction
(an error mid-load leaves the table as it was), and batches are conformed to the table's types."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

# Run again under AWS Glue 5.0's versions by `make test-glue5`: imports no Airflow.
pytestmark = pytest.mark.glue5

SHARED = Path(__file__).resolve().parents[2] / "include" / "glue_scripts" / "common"
if str(SHARED) not in sys.path:  # as Glue ships it (--extra-py-files): a module on sys.path
    sys.path.insert(0, str(SHARED))
import arrow_postgres  # noqa: E402

TABLE_SQL = """
CREATE TABLE {table} (
    id          int            NOT NULL,
    big         bigint,
    small       smallint,
    price       numeric(12,4),
    any_number  numeric,
    ratio       double precision,
    flag        boolean,
    label       text,
    code        varchar(20),
    day         date,
    at          timestamptz,
    local_at    timestamp,
    run_id      text           NOT NULL,
    loaded_at   timestamptz    NOT NULL DEFAULT now()
)
"""
COLUMNS = "id, big, small, price, any_number, ratio, flag, label, code, day, at, local_at, run_id"

TEXTS = [
    'quote " double',
    "quote ' single",
    "line\nbreak\r\nand tab\t",
    "back\\slash, comma; semicolon",
    "Smørrebrød — ünïcödé 東京 🚀",
    "",  # empty, not null
    None,
    "\\N",  # COPY text format's null marker, as a value
]
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),  # int64 into an int column: conformed
        ("big", pa.int64()),
        ("small", pa.int16()),
        ("price", pa.decimal128(12, 4)),
        ("any_number", pa.decimal128(38, 10)),
        ("ratio", pa.float64()),
        ("flag", pa.bool_()),
        ("label", pa.string()),
        ("code", pa.large_string()),
        ("day", pa.date32()),
        ("at", pa.timestamp("ms", tz="UTC")),
        ("local_at", pa.timestamp("us")),
    ]
)


def rows(n: int = len(TEXTS)) -> list[dict]:
    base = datetime(2026, 11, 25, 8, 30, 15, 123000, tzinfo=UTC)
    out = []
    for i in range(n):
        null = i % 4 == 3
        out.append({
            "id": i,
            "big": None if null else 2**62 + i if i % 2 else -(2**62) - i,
            "small": None if null else -32768 + i,
            "price": None if null else Decimal("-99999999.9999") if i == 0 else Decimal(f"{i}.0105"),
            "any_number": None if null else Decimal("1234567890123456789012345678.0123456789") * (-1) ** i,
            "ratio": None if null else 1 / (i + 3),
            "flag": None if null else bool(i % 2),
            "label": TEXTS[i % len(TEXTS)],
            "code": None if null else f"C-{i}",
            "day": None if null else (base + timedelta(days=i)).date(),
            "at": None if null else base + timedelta(hours=i),
            "local_at": None if null else (base + timedelta(minutes=i, microseconds=7)).replace(tzinfo=None),
        })  # fmt: skip
    return out


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def db(postgres):
    """A database of its own: (psycopg2 connection for checks, psycopg2-style options for arrow_postgres)."""
    import psycopg2
    from psycopg2.extensions import parse_dsn

    dsn = parse_dsn(postgres.get_uri())
    name = f"ap_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(**dsn)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    check = psycopg2.connect(**{**dsn, "dbname": name})
    check.autocommit = True
    with check.cursor() as cursor:
        cursor.execute("CREATE SCHEMA wh")
        cursor.execute(TABLE_SQL.format(table="wh.t"))
    options = {**dsn, "dbname": name, "application_name": "test_arrow_postgres", "connect_timeout": 10}
    yield check, options
    check.close()
    admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def table_rows(check) -> list[tuple]:
    with check.cursor() as cursor:
        cursor.execute(f"SELECT {COLUMNS} FROM wh.t ORDER BY id")
        return cursor.fetchall()


def expected(data: list[dict], run_id: str) -> list[tuple]:
    return [tuple(row.values()) + (run_id,) for row in data]


def test_every_type_round_trips_exactly_through_load_and_read_query(db):
    check, options = db
    data = rows(40)
    table = pa.Table.from_pylist(data, schema=SCHEMA)
    connection = arrow_postgres.connect(options)
    try:
        with connection.cursor() as cursor:
            loaded = arrow_postgres.load(cursor, "wh.t", table.to_batches(max_chunksize=7), constants={"run_id": "R1"})
        connection.commit()
        assert loaded == 40
        assert table_rows(check) == expected(data, "R1")  # as psycopg2 reads them back

        with connection.cursor() as cursor:
            reader = arrow_postgres.read_query(cursor, f"SELECT {COLUMNS} FROM wh.t WHERE id >= $1 ORDER BY id", [0])
            back = reader.read_all()
        connection.commit()
    finally:
        connection.close()
    assert back.column("label").to_pylist() == [row["label"] for row in data]
    # ADBC reads numeric as its exact decimal text (numeric has no fixed Arrow precision)
    assert [None if v is None else Decimal(v) for v in back.column("price").to_pylist()] == [
        row["price"] for row in data
    ]
    assert back.column("at").to_pylist() == [row["at"] for row in data]
    assert back.column("id").to_pylist() == list(range(40))


def test_timestamps_in_another_zone_are_the_same_instants(db):
    check, options = db
    paris = timezone(timedelta(hours=1))
    at = datetime(2026, 11, 25, 9, 0, 0, 500, tzinfo=paris)
    batch = pa.record_batch({"id": [1], "at": pa.array([at], pa.timestamp("us", tz="Europe/Paris"))})
    connection = arrow_postgres.connect(options)
    try:
        with connection.cursor() as cursor:
            arrow_postgres.load(cursor, "wh.t", [batch], constants={"run_id": "R1"})
        connection.commit()
    finally:
        connection.close()
    with check.cursor() as cursor:
        cursor.execute("SELECT at FROM wh.t")
        assert cursor.fetchone()[0] == at


def test_an_error_mid_load_rolls_back_the_whole_transaction(db):
    check, options = db
    connection = arrow_postgres.connect(options)
    try:
        with connection.cursor() as cursor:
            arrow_postgres.load(cursor, "wh.t", [pa.Table.from_pylist(rows(5), schema=SCHEMA).to_batches()[0]],
                                constants={"run_id": "OLD"})  # fmt: skip
        connection.commit()
    finally:
        connection.close()
    before = table_rows(check)
    assert len(before) == 5

    def batches():
        yield pa.Table.from_pylist(rows(8), schema=SCHEMA).to_batches()[0]
        yield pa.Table.from_pylist(rows(3), schema=SCHEMA).to_batches()[0]
        raise OSError("the staging object vanished")

    connection = arrow_postgres.connect(options)
    try:
        with pytest.raises(OSError, match="vanished"):
            try:
                with connection.cursor() as cursor:
                    cursor.execute("DELETE FROM wh.t WHERE run_id = $1", ("OLD",))
                    arrow_postgres.load(cursor, "wh.t", batches(), constants={"run_id": "NEW"})
                connection.commit()
            except BaseException:
                connection.rollback()
                raise
    finally:
        connection.close()
    assert table_rows(check) == before


def test_a_value_the_column_cannot_hold_fails_the_load_instead_of_being_rounded(db):
    check, options = db
    batch = pa.record_batch({"id": [1], "price": pa.array([Decimal("1.00005")], pa.decimal128(12, 5))})
    connection = arrow_postgres.connect(options)
    try:
        with connection.cursor() as cursor, pytest.raises(pa.ArrowInvalid):
            arrow_postgres.load(cursor, "wh.t", [batch], constants={"run_id": "R1"})
        connection.rollback()
    finally:
        connection.close()
    assert table_rows(check) == []


def test_no_batches_or_empty_ones_load_nothing(db):
    check, options = db
    empty = pa.RecordBatch.from_pylist([], schema=SCHEMA)
    connection = arrow_postgres.connect(options)
    try:
        with connection.cursor() as cursor:
            assert arrow_postgres.load(cursor, "wh.t", [], constants={"run_id": "R1"}) == 0
            assert arrow_postgres.load(cursor, "wh.t", [empty, empty], constants={"run_id": "R1"}) == 0
        connection.commit()
    finally:
        connection.close()
    assert table_rows(check) == []


def test_table_schema_maps_the_columns_to_what_binary_copy_expects(db):
    _, options = db
    connection = arrow_postgres.connect(options)
    try:
        with connection.cursor() as cursor:
            types = arrow_postgres.table_schema(cursor, "wh.t")
        connection.rollback()
    finally:
        connection.close()
    assert types == {
        "id": pa.int32(), "big": pa.int64(), "small": pa.int16(), "price": pa.decimal128(12, 4),
        "any_number": None, "ratio": pa.float64(), "flag": pa.bool_(), "label": pa.string(),
        "code": pa.string(), "day": pa.date32(), "at": pa.timestamp("us", tz="UTC"),
        "local_at": pa.timestamp("us"), "run_id": pa.string(), "loaded_at": pa.timestamp("us", tz="UTC"),
    }  # fmt: skip


def test_the_uri_encodes_every_option_and_a_bad_password_is_not_echoed(db):
    _, options = db
    secret = "p@ss:w/rd?&=% never-echoed"
    options_ = {"host": "/tmp/a b", "port": 5433, "dbname": "d", "user": "u", "password": secret}
    uri = arrow_postgres.connection_uri(options_)
    assert uri.startswith("postgresql://?host=%2Ftmp%2Fa%20b&port=5433&dbname=d&user=u&password=")
    assert secret not in uri and "client_encoding=UTF8" in uri
    with pytest.raises(Exception) as error:  # noqa: PT011 - whatever the driver raises
        arrow_postgres.connect({**options, "host": "127.0.0.1", "port": 1, "password": secret}).close()
    assert secret not in str(error.value)
