"""Audit counts taken from the data itself, never from a job's own claim; and the reconcile task.

Layer 4. Each ``count_*`` factory makes a task that counts the claimed batch in one declared
layer, records it in the ledger (``audit.layer_counts``), checks it at once against the layers
counted before it and the marker (``reconcile.check_layer``), and returns it through XCom::

    {"layer": "staging", "counts": {"order_lines": 2417}, "rows": 2417, "details": {...}, "counted_at": "..."}

The frame (``BatchFrame.record_count``) records and checks a count for any task that takes one:
``tasks.warehouse.load_batch`` counts the layers on either side of a load itself, in the load's
own task. The frame registers which task counts which layer, and hands every count to
``reconcile`` as an explicit input, so a renamed task or one inside a TaskGroup is still
compared, and a declared layer that nothing counts fails the DAG's import.

What a count reads is metadata: parquet footers, ``count(*)`` in the warehouse, the one-row
answer of an Athena query over the layer, or the small report of a Glue job that counted a layer
whose count needs the data (the landing layer of an at-least-once stream, where re-delivered
copies must be dropped first; lines of JSON that must be parsed). The one exception is
``count_tables_matching_parquet``, which reads a batch's key columns (totesys' warehouse layer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from airflow.sdk import TriggerRule

from etl_toolkit import environment, ledger, reconcile, s3, sql
from etl_toolkit.settings import AWS_CONN_ID
from etl_toolkit.tasks.frame import BatchFrame, current, step

log = logging.getLogger(__name__)
Count = Callable[[dict[str, Any]], tuple[dict[str, int], dict[str, Any]]]


def _count_task(layer: str, count: Count, *, rows: str | None = None, task_id: str | None = None, **task_kwargs):
    """A task counting ``layer`` with ``count(claim) -> (counts, details)``; ``rows`` names the
    entity whose count is the layer's row count in the ledger (default: all of them together)."""
    frame = current()

    @step(task_id=task_id or f"count_{layer}", **task_kwargs)
    def count_layer(**context) -> dict[str, Any]:
        counts, details = count(frame.claim(context))
        return frame.record_count(context, layer, counts, rows=rows, details=details)

    counted = count_layer()
    frame.register_count(layer, counted.operator)
    return counted


def count_report(layer: str, *, bucket: str, key: str, entities: dict[str, str], rows: str | None = None,
                 details: tuple[str, ...] = (), **task_kwargs):  # fmt: skip
    """Count a layer from the JSON report of a Glue audit job that counted it from the data.

    ``key`` may hold ``{batch_id}``; ``entities``: entity -> the report's field.
    """

    def count(claim):
        where = environment.render(bucket)
        report = s3.read_json(where, key.format(batch_id=claim["batch_id"]))
        if report.get("batch_id") != claim["batch_id"]:
            raise ValueError(f"s3://{where}/{key} reports batch {report.get('batch_id')!r}, not {claim['batch_id']}")
        return {entity: int(report[field]) for entity, field in entities.items()}, {
            name: report[name] for name in details if name in report
        }

    return _count_task(layer, count, rows=rows, **task_kwargs)


def count_parquet(layer: str, *, bucket: str, prefix: str, entity: str, **task_kwargs):
    """Count a parquet layer's batch from footers; ``prefix`` may hold ``{batch_id}``."""

    def count(claim):
        batch_id = claim["batch_id"]
        rows, files = s3.count_parquet_rows(environment.render(bucket), prefix.format(batch_id=batch_id), batch_id)
        return {entity: rows}, {"files": files}

    return _count_task(layer, count, **task_kwargs)


def count_parquet_datasets(layer: str, *, bucket: str, datasets: dict[str, str], **task_kwargs):
    """Count a parquet layer of several datasets from footers: entity -> prefix (may hold ``{batch_id}``).

    The result's ``counts`` has one entry per dataset (0 when it has no object).
    """

    def count(claim):
        counts, files, where = {}, 0, environment.render(bucket)
        hook = s3.s3_hook()
        filesystem = s3.s3_filesystem(hook=hook)
        for entity, prefix in datasets.items():
            batch_id = claim["batch_id"]
            rows, objects = s3.count_parquet_rows(
                where, prefix.format(batch_id=batch_id), batch_id, hook=hook, filesystem=filesystem
            )
            counts[entity], files = rows, files + objects
        return counts, {"files": files}

    return _count_task(layer, count, **task_kwargs)


def count_sql(layer: str, *, file: str, entity: str, **task_kwargs):
    """Count a warehouse layer's batch with ``include/sql/<pipeline>/<file>`` (binds ``batch_id``).

    The query returns one row: its first column is the count of ``entity``; any further columns
    are further counts of the layer, named by their column names (what a load inserted and
    updated, say), recorded and reported with it.
    """
    pipeline = current().pipeline.name

    def count(claim):
        return sql.counts(pipeline, file, entity, {"batch_id": claim["batch_id"]}), {}

    return _count_task(layer, count, rows=entity, **task_kwargs)


def count_athena(layer: str, *, query, entity: str, publish_as: str = "metrics", **task_kwargs):
    """Count a layer from the one-row result of an Athena query task (``query``: the operator,
    whose XCom is the query execution id): its column ``entity`` is the count.

    Every column of the row is published with the SUCCESS message as ``publish_as``, beside the
    ``query_execution_id``: the query's answer is what the batch reports. The result is read from
    Athena (``GetQueryResults``), a few bytes: the query did the reading.
    """
    query_task_id = query.task_id

    def count(claim):
        from airflow.providers.amazon.aws.hooks.athena import AthenaHook
        from airflow.sdk import get_current_context

        execution_id = get_current_context()["ti"].xcom_pull(task_ids=query_task_id)
        if not execution_id:
            raise RuntimeError(f"batch {claim['batch_id']}: task {query_task_id} returned no query execution id")
        result = AthenaHook(aws_conn_id=AWS_CONN_ID).get_query_results(execution_id)
        if result is None:
            raise RuntimeError(f"batch {claim['batch_id']}: Athena query {execution_id} has no result")
        row = athena_rows(result)
        if len(row) != 1:
            raise ValueError(f"batch {claim['batch_id']}: Athena query {execution_id} returned {len(row)} rows, not 1")
        values = row[0]
        if entity not in values:
            raise ValueError(f"batch {claim['batch_id']}: Athena query {execution_id} has no column {entity!r}")
        return {entity: int(values[entity])}, {"published": {publish_as: values, "query_execution_id": execution_id}}

    return _count_task(layer, count, rows=entity, **task_kwargs)


def athena_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a SELECT's ``GetQueryResults`` page as dicts, typed by Athena's column types
    (integers as int, decimal and floating point as float, anything else as text; NULL as None)."""
    columns = result["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
    rows = result["ResultSet"]["Rows"][1:]  # the first row of a SELECT's results is its header
    typed = []
    for row in rows:
        values = {}
        for column, datum in zip(columns, row["Data"], strict=True):
            text = datum.get("VarCharValue")
            values[column["Name"]] = None if text is None else _athena_value(column["Type"], text)
        typed.append(values)
    return typed


def _athena_value(athena_type: str, text: str) -> Any:
    if athena_type in ("tinyint", "smallint", "integer", "bigint"):
        return int(text)
    if athena_type in ("decimal", "double", "float", "real"):
        return float(text)
    return text


def count_tables_matching_parquet(
    layer: str, *, bucket: str, datasets: dict[str, str], keys: dict[str, tuple[str, ...]], schema: str, **task_kwargs
):
    """Count, per warehouse table ``<schema>.<entity>``, the rows whose key is one of the batch's
    parquet rows (``datasets``: entity -> prefix with ``{batch_id}``; ``keys``: entity -> key columns).

    This is the warehouse layer counted from the data: every row of the batch that the load put
    (or found) in its table, whichever batch first brought it. It reads the batch's key columns.
    """

    def count(claim):
        import pyarrow as pa
        import pyarrow.parquet as pq

        counts, where = {}, environment.render(bucket)
        hook = s3.s3_hook()
        filesystem = s3.s3_filesystem(hook=hook)
        with sql.transaction() as cursor:
            for entity, prefix in datasets.items():
                columns, batch_id = list(keys[entity]), claim["batch_id"]
                objects = s3.data_objects(where, prefix.format(batch_id=batch_id), hook=hook)
                tables = [pq.read_table(f"{where}/{key}", columns=columns, filesystem=filesystem) for key in objects]
                if not tables or not sum(t.num_rows for t in tables):
                    counts[entity] = 0
                    continue
                staged = sql.stage_arrow(cursor, schema, entity, pa.concat_tables(tables))
                module = sql.sql_module(cursor)
                cursor.execute(
                    module.SQL(
                        "SELECT count(*) FROM {target} AS t WHERE EXISTS (SELECT 1 FROM {staged} AS s WHERE {on})"
                    )
                    .format(
                        target=module.Identifier(schema, entity),
                        staged=module.Identifier(staged),
                        on=sql.keys_match(module, columns),
                    )
                    .as_string(cursor)
                )
                counts[entity] = cursor.fetchone()[0]
        return counts, {}

    return _count_task(layer, count, **task_kwargs)


def reconcile_batch(frame: BatchFrame, counted: dict[str, Any]):
    """Task ``reconcile``: every declared layer against the others and the marker; then the batch
    is SUCCESS in the ledger. ``counted``: layer -> the count task's output (an XComArg)."""
    pipeline = frame.pipeline

    @step(task_id="reconcile", trigger_rule=TriggerRule.ALL_SUCCESS)
    def reconcile_counts(counted: dict[str, Any], **context) -> dict[str, Any]:
        claim = frame.claim(context)
        summary = reconcile.reconcile_all(pipeline, counted, claim)
        log.info("Batch %s reconciles:\n%s", claim["batch_id"], summary["table"])
        ledger.close(pipeline.name, claim["batch_id"], context["run_id"], ledger.SUCCESS)
        return summary

    return reconcile_counts(counted)
