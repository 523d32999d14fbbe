"""Runs the SQL files under ``include/sql/<pipeline>/`` against the warehouse.

A file is rendered with Jinja (``StrictUndefined``: a missing template value is an error, not an
empty string) and executed with its values bound by psycopg2 (``%(name)s`` placeholders), never
formatted into the text. Several files run in one transaction, so a load and the count check
that guards it commit together or not at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

from etl_toolkit.config import WAREHOUSE_CONN_ID
from etl_toolkit.paths import sql_path


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
    """Run one SQL file on ``cursor``; returns the fetched rows when the statement returns any."""
    cursor.execute(render(pipeline, name, **template_values), _bindable(parameters or {}))
    return cursor.fetchall() if cursor.description else None


def run(pipeline: str, name: str, parameters: Mapping[str, Any] | None = None, *, conn_id=WAREHOUSE_CONN_ID):
    """Run one SQL file in a transaction of its own."""
    with transaction(conn_id) as cursor:
        return execute(cursor, pipeline, name, parameters)


def scalar(pipeline: str, name: str, parameters: Mapping[str, Any] | None = None, *, conn_id=WAREHOUSE_CONN_ID):
    rows = run(pipeline, name, parameters, conn_id=conn_id)
    if not rows or len(rows[0]) != 1:
        raise ValueError(f"{pipeline}/{name} must return exactly one value, got {rows!r}")
    return rows[0][0]


def _bindable(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Dicts and lists go to PostgreSQL as JSON (the audit tables keep counts as jsonb)."""
    return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in parameters.items()}


# -- tasks ------------------------------------------------------------------------------------


def create_tables(pipeline: str, files: tuple[str, ...] = ("create_tables.sql",)):
    """Task ``create_warehouse_tables``: the audit schema and the pipeline's tables (idempotent DDL)."""
    from airflow.sdk import task

    @task(task_id="create_warehouse_tables")
    def create_warehouse_tables() -> None:
        with transaction() as cursor:
            execute(cursor, "audit", "create_tables.sql")
            for name in files:
                execute(cursor, pipeline, name)

    return create_warehouse_tables()


def load_batch(pipeline: str, *, task_id: str, files: list[str], count_sql: str, entity: str, **task_kwargs):
    """Run ``files`` for the batch and count the result in one transaction.

    The count must equal the landing layer's ``entity`` count or the transaction rolls back:
    the final table never holds a batch that does not reconcile. Binds ``batch_id`` and
    ``loaded_at`` (the run's logical time, so a rerun writes the same values).
    """
    from airflow.sdk import task

    @task(task_id=task_id, **task_kwargs)
    def load(**context) -> dict[str, Any]:
        from etl_toolkit.reconcile import CLAIM_TASK_ID, LANDING, CountMismatch

        ti = context["ti"]
        claim = ti.xcom_pull(task_ids=CLAIM_TASK_ID)
        landing = ti.xcom_pull(task_ids=f"count_{LANDING}")
        expected = landing["counts"][entity]
        parameters = {"batch_id": claim["batch_id"], "loaded_at": context["dag_run"].run_after.isoformat()}
        with transaction() as cursor:
            for name in files:
                execute(cursor, pipeline, name, parameters)
            loaded = execute(cursor, pipeline, count_sql, {"batch_id": claim["batch_id"]})[0][0]
            if loaded != expected:
                raise CountMismatch(
                    f"batch {claim['batch_id']}: the load would leave {loaded} {entity} in the final table, "
                    f"landing has {expected}; rolled back"
                )
        return {"batch_id": claim["batch_id"], entity: loaded}

    return load()


# -- parquet into the warehouse ----------------------------------------------------------------------

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _checked_identifiers(names) -> list[str]:
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
    columns = _checked_identifiers(rows.column_names)
    staged = f"staged_{_checked_identifiers([table])[0]}"
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


def load_parquet_tables(
    pipeline: str,
    *,
    task_id: str,
    bucket: str,
    datasets: dict[str, str],
    keys: dict[str, tuple[str, ...]],
    schema: str,
    files: dict[str, str],
    **task_kwargs,
):
    """Load a batch's parquet datasets into ``<schema>.<entity>`` tables, all in one transaction.

    For each entity, in the order given (dimensions before the facts that refer to them): the
    batch's rows (``datasets``: entity -> prefix with ``{batch_id}``) are staged in a temporary
    table, ``include/sql/<pipeline>/<files[entity]>`` moves them into the table (rendered with
    ``table``, ``staged``, ``columns`` and ``keys``; binds ``batch_id`` and ``loaded_at``), and
    every staged row must then be found in the table by its key, or the whole load rolls back.
    Returns the rows staged per entity.
    """
    from airflow.sdk import task

    @task(task_id=task_id, **task_kwargs)
    def load(**context) -> dict[str, Any]:
        from etl_toolkit.audit import read_parquet_dataset, s3_filesystem, s3_hook
        from etl_toolkit.reconcile import CLAIM_TASK_ID, CountMismatch

        batch_id = context["ti"].xcom_pull(task_ids=CLAIM_TASK_ID)["batch_id"]
        parameters = {"batch_id": batch_id, "loaded_at": context["dag_run"].run_after.isoformat()}
        loaded: dict[str, int] = {}
        hook = s3_hook()
        filesystem = s3_filesystem(hook=hook)
        with transaction() as cursor:
            for entity, prefix in datasets.items():
                rows = read_parquet_dataset(
                    bucket, prefix.format(batch_id=batch_id), batch_id, hook=hook, filesystem=filesystem
                )
                if rows is None or rows.num_rows == 0:
                    loaded[entity] = 0
                    continue
                staged, sql = stage_arrow(cursor, schema, entity, rows), sql_module(cursor)
                columns, key = _checked_identifiers(rows.column_names), _checked_identifiers(keys[entity])
                execute(cursor, pipeline, files[entity], parameters,
                        table=f"{schema}.{entity}", staged=staged, columns=columns, keys=key)  # fmt: skip
                cursor.execute(
                    sql.SQL("SELECT count(*) FROM {staged} AS s WHERE NOT EXISTS "
                            "(SELECT 1 FROM {target} AS t WHERE {on})").format(
                        staged=sql.Identifier(staged),
                        target=sql.Identifier(schema, entity),
                        on=keys_match(sql, key),
                    ).as_string(cursor)
                )  # fmt: skip
                missing = cursor.fetchone()[0]
                if missing:
                    raise CountMismatch(
                        f"batch {batch_id}: {missing} of {rows.num_rows} rows of {entity} are not in "
                        f"{schema}.{entity} after the load; rolled back"
                    )
                loaded[entity] = rows.num_rows
        return {"batch_id": batch_id, "loaded": loaded}

    return load()
