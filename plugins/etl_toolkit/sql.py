"""The warehouse SQL runner: the files under ``include/sql/<pipeline>/``, and COPY from Arrow.

Layer 2 (I/O).

A file is rendered with Jinja (``StrictUndefined``: a missing template value is an error, not an
empty string) and executed with its values bound by the driver (``%(name)s`` placeholders), never
formatted into the text. A file may hold several statements: they run one after the other (the
driver binds values server-side, one statement at a time), and the rows of the last one that
returns rows are the file's result. Several files run in one transaction, so a load and the count
check that guards it commit together or not at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

from etl_toolkit.paths import sql_path
from etl_toolkit.settings import WAREHOUSE_CONN_ID


@cache
def _template(pipeline: str, name: str):
    import jinja2

    path = sql_path(pipeline, name)
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {pipeline}/{name} (looked for {path})")
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(path.read_text())


def render(pipeline: str, name: str, **template_values: Any) -> str:
    return _template(pipeline, name).render(**template_values)


@contextmanager
def transaction(conn_id: str = WAREHOUSE_CONN_ID) -> Iterator[Any]:
    """A cursor inside one transaction: committed on success, rolled back on any error."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    try:
        with conn.cursor() as cursor:
            yield cursor
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def execute(cursor, pipeline: str, name: str, parameters: Mapping[str, Any] | None = None, **template_values):
    """Run one SQL file on ``cursor``, statement by statement; returns the rows of the last
    statement that returns any (None when none does)."""
    rows = None
    for statement in statements(render(pipeline, name, **template_values)):
        cursor.execute(statement, _bindable(parameters or {}))
        if cursor.description:
            rows = cursor.fetchall()
    return rows


def statements(text: str) -> list[str]:
    """The statements of a SQL text (quotes, dollar-quoted bodies and comments understood);
    stretches of comments alone are not statements."""
    import sqlparse

    return [part for part in sqlparse.split(text) if sqlparse.format(part, strip_comments=True).strip()]


def run(pipeline: str, name: str, parameters: Mapping[str, Any] | None = None, *, conn_id=WAREHOUSE_CONN_ID):
    """Run one SQL file in a transaction of its own."""
    with transaction(conn_id) as cursor:
        return execute(cursor, pipeline, name, parameters)


def first_row(
    pipeline: str, name: str, parameters: Mapping[str, Any] | None = None, *, conn_id=WAREHOUSE_CONN_ID
) -> tuple[list[str], tuple]:
    """(column names, values) of the one row a query file returns, in a transaction of its own."""
    with transaction(conn_id) as cursor:
        rows = execute(cursor, pipeline, name, parameters)
        if not rows or len(rows) != 1:
            raise ValueError(f"{pipeline}/{name} must return exactly one row, got {rows!r}")
        return [column[0] for column in cursor.description], rows[0]


def counts(pipeline: str, name: str, entity: str, parameters: Mapping[str, Any] | None = None) -> dict[str, int]:
    """A count query's one row as counts: its first column is the count of ``entity``, any further
    columns further counts, named by their column names (what a load inserted and updated, say)."""
    names, values = first_row(pipeline, name, parameters)
    return {entity: int(values[0]), **{name: int(value) for name, value in zip(names[1:], values[1:], strict=True)}}


def scalar(pipeline: str, name: str, parameters: Mapping[str, Any] | None = None, *, conn_id=WAREHOUSE_CONN_ID):
    rows = run(pipeline, name, parameters, conn_id=conn_id)
    if not rows or len(rows[0]) != 1:
        raise ValueError(f"{pipeline}/{name} must return exactly one value, got {rows!r}")
    return rows[0][0]


def _bindable(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Dicts and lists go to PostgreSQL as JSON (the audit tables keep counts as jsonb)."""
    return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in parameters.items()}


# -- Arrow into the warehouse ---------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def checked_identifiers(names) -> list[str]:
    bad = [name for name in names if not _IDENTIFIER.match(name)]
    if bad:
        raise ValueError(f"refusing column or table names that are not plain identifiers: {bad}")
    return list(names)


def sql_module(cursor):
    """``psycopg.sql`` or ``psycopg2.sql``, whichever driver the hook's connection uses."""
    if type(cursor).__module__.startswith("psycopg2"):
        from psycopg2 import sql
    else:
        from psycopg import sql
    return sql


def copy_csv(cursor, statement: str, data: bytes) -> None:
    """``COPY ... FROM STDIN`` with either driver."""
    if hasattr(cursor, "copy_expert"):  # psycopg2
        import io

        cursor.copy_expert(statement, io.BytesIO(data))
    else:  # psycopg 3
        with cursor.copy(statement) as copy:
            copy.write(data)


def stage_arrow(cursor, schema: str, table: str, rows) -> str:
    """COPY a pyarrow table into a temporary ``staged_<table>`` shaped like ``<schema>.<table>``'s
    columns of the same names (dropped at commit); returns the temporary table's name."""
    import io

    import pyarrow.csv as pacsv

    sql = sql_module(cursor)
    columns = checked_identifiers(rows.column_names)
    staged = f"staged_{checked_identifiers([table])[0]}"
    # Composed statements go to the cursor as text: some cursor wrappers cannot take them.
    cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(staged)).as_string(cursor))
    cursor.execute(
        sql.SQL("CREATE TEMP TABLE {staged} ON COMMIT DROP AS SELECT {columns} FROM {target} WITH NO DATA")
        .format(
            staged=sql.Identifier(staged),
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            target=sql.Identifier(schema, table),
        )
        .as_string(cursor)
    )
    if rows.num_rows:
        buffer = io.BytesIO()
        # Strings are quoted and nulls are bare empty fields, so PostgreSQL tells '' from NULL.
        pacsv.write_csv(rows, buffer, pacsv.WriteOptions(include_header=False))
        copy = sql.SQL("COPY {staged} ({columns}) FROM STDIN WITH (FORMAT csv)").format(
            staged=sql.Identifier(staged), columns=sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        copy_csv(cursor, copy.as_string(cursor), buffer.getvalue())
    return staged


def keys_match(sql, columns: list[str]):
    """``t.<c> = s.<c> AND ...``: a target row ``t`` and a staged row ``s`` with the same key."""
    return sql.SQL(" AND ").join(sql.SQL("t.{c} = s.{c}").format(c=sql.Identifier(c)) for c in columns)
