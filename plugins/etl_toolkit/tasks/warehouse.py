"""The warehouse steps of a pipeline: its DDL, and the SQL files that load a batch.

Layer 4. SQL lives in ``include/sql/<pipeline>/``; ``etl_toolkit.sql`` runs it.
"""

from __future__ import annotations

from typing import Any

from etl_toolkit import ledger, s3, sql
from etl_toolkit.contract import CountMismatch
from etl_toolkit.tasks.frame import current, step


def create_tables(files: tuple[str, ...] = ("create_tables.sql",)):
    """Task ``create_warehouse_tables``: the pipeline's schema and tables (idempotent DDL)."""
    pipeline = current().pipeline.name

    @step(task_id="create_warehouse_tables")
    def create_warehouse_tables() -> None:
        with sql.transaction() as cursor:
            for name in files:
                sql.execute(cursor, pipeline, name)

    return create_warehouse_tables()


def _batch_parameters(claim: dict[str, Any], context) -> dict[str, Any]:
    """What every batch SQL file may bind: ``batch_id``; ``loaded_at``, the run's logical time (a
    rerun writes the same values); ``completed_at``, the version of the batch's rows, for loads
    where a newer batch wins: when the marker says the batch was complete, else when the marker
    was written (its LastModified, part of the claimed version ``<etag>@<last modified>``), never
    the run's own time, which would make an old batch run again today look newest."""
    loaded_at = context["dag_run"].run_after.isoformat()
    written = (claim.get("version") or "").partition("@")[2]
    return {
        "batch_id": claim["batch_id"],
        "loaded_at": loaded_at,
        "completed_at": claim.get("completed_at") or written or loaded_at,
    }


def run_batch_sql(*, task_id: str, files: list[str], **task_kwargs):
    """Run ``include/sql/<pipeline>/<files>`` for the claimed batch in one transaction, as its
    holder (binds ``batch_id``, ``loaded_at``, ``completed_at``): set-based work on a batch the
    database already holds."""
    frame = current()
    pipeline = frame.pipeline.name

    @step(task_id=task_id, **task_kwargs)
    def run_files(**context) -> dict[str, Any]:
        claim = frame.claim(context)
        with sql.transaction() as cursor:
            ledger.check_holder(cursor, pipeline, claim["batch_id"], context["run_id"])
            for name in files:
                sql.execute(cursor, pipeline, name, _batch_parameters(claim, context))
        return {"batch_id": claim["batch_id"], "files": files}

    return run_files()


def load_batch(
    *,
    task_id: str,
    files: list[str],
    count_sql: str,
    must_equal: tuple[str, str],
    parameters: dict[str, str] | None = None,
    counts_before: dict[str, str] | None = None,
    counted_as: str | None = None,
    **task_kwargs,
):
    """Run ``files`` for the batch and count the result in one transaction.

    The count must equal the count this run took of ``must_equal`` (layer, entity), or the
    transaction rolls back: the final table never holds a batch that does not reconcile. Binds
    ``batch_id``, ``loaded_at`` and ``completed_at`` (see ``_batch_parameters``), and
    ``parameters``, whose values may be templates (``{{ var.value.get(...) }}``), rendered when
    the task runs.

    The task can be the audit count of the layers on either side of the load, one task instead
    of three on the way to the end of the run: ``counts_before`` (layer -> a count query, as
    ``audit.count_sql`` takes) counts, records and checks those layers before the load starts,
    and ``counted_as`` records the load's own count, taken in its transaction, as that layer's.
    """
    frame = current()
    pipeline = frame.pipeline.name
    layer, entity = must_equal
    frame.pipeline.layer(layer)
    counts_before = dict(counts_before or {})

    @step(task_id=task_id, multiple_outputs=bool(counts_before or counted_as), **task_kwargs)
    def load(extra: dict[str, str], **context) -> dict[str, Any]:
        claim = frame.claim(context)
        batch_id = claim["batch_id"]
        audits = {}
        for audited, file in counts_before.items():
            counts = sql.counts(pipeline, file, entity, {"batch_id": batch_id})
            audits[audited] = frame.record_count(context, audited, counts, rows=entity)
        counted = {r["layer"]: r["counts"] for r in ledger.counts_of_run(pipeline, batch_id, context["run_id"])}
        if entity not in counted.get(layer, {}):
            raise CountMismatch(f"batch {batch_id}: this run has no {layer} count of {entity} to check the load with")
        expected = counted[layer][entity]
        bound = {**extra, **_batch_parameters(claim, context)}
        with sql.transaction() as cursor:
            ledger.check_holder(cursor, pipeline, batch_id, context["run_id"])
            for name in files:
                sql.execute(cursor, pipeline, name, bound)
            loaded = sql.execute(cursor, pipeline, count_sql, {"batch_id": batch_id})[0][0]
            if loaded != expected:
                raise CountMismatch(
                    f"batch {batch_id}: the load would leave {loaded} {entity} in the final table, "
                    f"{layer} has {expected}; rolled back"
                )
        if counted_as:
            audits[counted_as] = frame.record_count(context, counted_as, {entity: loaded}, rows=entity)
        return {"batch_id": batch_id, entity: loaded, **audits}

    loaded = load(dict(parameters or {}))
    for audited in [*counts_before, *([counted_as] if counted_as else [])]:
        frame.register_count(audited, loaded.operator, key=audited)
    return loaded


def load_parquet_tables(
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
    frame = current()
    pipeline = frame.pipeline.name

    @step(task_id=task_id, **task_kwargs)
    def load(bucket: str, **context) -> dict[str, Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        batch_id = frame.claim(context)["batch_id"]
        parameters = {"batch_id": batch_id, "loaded_at": context["dag_run"].run_after.isoformat()}
        loaded: dict[str, int] = {}
        hook = s3.s3_hook()
        filesystem = s3.s3_filesystem(hook=hook)
        with sql.transaction() as cursor:
            ledger.check_holder(cursor, pipeline, batch_id, context["run_id"])
            for entity, prefix in datasets.items():
                objects = s3.data_objects(bucket, prefix.format(batch_id=batch_id), hook=hook)
                tables = [pq.read_table(f"{bucket}/{key}", filesystem=filesystem) for key in objects]
                rows = pa.concat_tables(tables) if tables else None
                if rows is None or rows.num_rows == 0:
                    loaded[entity] = 0
                    continue
                staged, module = sql.stage_arrow(cursor, schema, entity, rows), sql.sql_module(cursor)
                columns, key = sql.checked_identifiers(rows.column_names), sql.checked_identifiers(keys[entity])
                sql.execute(cursor, pipeline, files[entity], parameters,
                            table=f"{schema}.{entity}", staged=staged, columns=columns, keys=key)  # fmt: skip
                cursor.execute(
                    module.SQL("SELECT count(*) FROM {staged} AS s WHERE NOT EXISTS "
                               "(SELECT 1 FROM {target} AS t WHERE {on})").format(
                        staged=module.Identifier(staged),
                        target=module.Identifier(schema, entity),
                        on=sql.keys_match(module, key),
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

    return load(bucket=bucket)  # templated: rendered per run
