"""Runs the SQL files under ``include/sql/<pipeline>/`` against the warehouse.

A file is rendered with Jinja (``StrictUndefined``: a missing template value is an error, not an
empty string) and executed with its values bound by psycopg2 (``%(name)s`` placeholders), never
formatted into the text. Several files run in one transaction, so a load and the count check
that guards it commit together or not at all.
"""

from __future__ import annotations

import json
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
