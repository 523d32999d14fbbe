"""The totesys source simulator's pure parts: the connection it reads and the tables it owns."""

from __future__ import annotations

import json
import re

from devstack.sample_data import totesys
from tests.unit.test_totesys_glue_scripts import extract


def test_the_connection_is_read_from_the_airflow_connection_in_json_or_uri_form():
    conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": 5433, "schema": "totesys", "login": "totesys_app",
            "password": "p@ss word"}  # fmt: skip
    expected = {"host": "127.0.0.1", "port": 5433, "dbname": "totesys", "user": "totesys_app", "password": "p@ss word"}
    assert totesys._connect_kwargs(json.dumps(conn)) == expected
    assert totesys._connect_kwargs("postgresql://totesys_app:p%40ss%20word@127.0.0.1:5433/totesys") == expected


def test_the_source_has_the_eleven_tables_and_exactly_the_columns_the_extract_allows():
    assert set(totesys.TABLES) == set(extract.TABLES)
    for table, columns in extract.TABLES.items():
        body = re.search(rf"CREATE TABLE {table} \((.*?)\);", totesys.DDL, re.S)[1]
        declared = [line.split()[0] for line in re.split(r",\s*(?![^()]*\))", body) if line.split()]
        declared = [name for name in declared if name not in ("CHECK",)]
        assert declared == [name for name, _ in columns], table
