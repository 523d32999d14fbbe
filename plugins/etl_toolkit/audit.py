"""Audit counts taken from the data itself, never from a job's own claim.

Each ``count_*`` factory makes a task ``count_<layer>`` that counts the batch's rows in one
layer, writes them to ``audit.layer_counts``, compares them with the landing layer and the
marker's ``expected_counts`` (``reconcile.check_layer``) and returns them through XCom::

    {"layer": "staging", "counts": {"order_lines": 2417}, "details": {...}, "counted_at": "..."}

- parquet layers are counted from the files' footers (no data pages are read);
- the landing layer of an at-least-once stream is counted after dropping re-delivered copies
  (the latest copy of each key wins), as the downstream jobs will, and reports what it dropped;
- warehouse layers are counted with the pipeline's ``count_*.sql`` files.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import task

from etl_toolkit import reconcile, warehouse
from etl_toolkit.config import AWS_CONN_ID

# -- counting ---------------------------------------------------------------------------------


def s3_hook(aws_conn_id: str = AWS_CONN_ID):
    """The provider's S3Hook. A task that lists or reads many prefixes builds one and passes it
    on: each new hook resolves the connection and builds a boto3 client again (~0.1 s)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id)


def s3_filesystem(aws_conn_id: str = AWS_CONN_ID, hook=None):
    """A pyarrow S3 filesystem with the connection's credentials and endpoint.

    pyarrow does not read ``AWS_ENDPOINT_URL`` by itself, so the endpoint (the connection's
    ``endpoint_url``, else the standard variable) is passed as ``endpoint_override``.
    """
    import os

    from pyarrow import fs

    hook = hook or s3_hook(aws_conn_id)
    credentials = hook.get_credentials()
    endpoint = hook.conn_config.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {
        "access_key": credentials.access_key,
        "secret_key": credentials.secret_key,
        "session_token": credentials.token,
        "region": hook.conn_region_name or os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    if endpoint:
        scheme, _, address = endpoint.partition("://")
        options.update(endpoint_override=address, scheme=scheme)
    return fs.S3FileSystem(**options)


def data_objects(bucket: str, prefix: str, aws_conn_id: str = AWS_CONN_ID, hook=None) -> list[str]:
    """Keys under a prefix that hold data: Glue and Spark skip names starting with '_' or '.'."""
    keys = (hook or s3_hook(aws_conn_id)).list_keys(bucket_name=bucket, prefix=prefix) or []
    return sorted(k for k in keys if not k.rsplit("/", 1)[-1].startswith(("_", ".")) and not k.endswith("/"))


def _open_parquet(filesystem, bucket: str, key: str, batch_id: str):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(filesystem.open_input_file(f"{bucket}/{key}"))
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise ValueError(f"batch {batch_id}: s3://{bucket}/{key} is not a readable parquet file: {error}") from error


def count_parquet_rows(
    bucket: str, prefix: str, batch_id: str, aws_conn_id: str = AWS_CONN_ID, *, hook=None, filesystem=None
) -> tuple[int, int]:
    """(rows, files) under the prefix, from the parquet footers."""
    hook = hook or s3_hook(aws_conn_id)
    filesystem = filesystem or s3_filesystem(hook=hook)
    keys = data_objects(bucket, prefix, hook=hook)
    rows = sum(_open_parquet(filesystem, bucket, key, batch_id).metadata.num_rows for key in keys)
    return rows, len(keys)


def hour_partitions(prefix: str, started_at: str | None, completed_at: str | None) -> list[str]:
    """The ``year=/month=/day=/hour=`` prefixes a batch's files can sit in (all of ``prefix`` if unbounded)."""
    if not started_at or not completed_at:
        return [prefix]
    start = datetime.fromisoformat(started_at.replace("Z", "+00:00")).astimezone(UTC)
    end = datetime.fromisoformat(completed_at.replace("Z", "+00:00")).astimezone(UTC)
    hour, prefixes = start.replace(minute=0, second=0, microsecond=0), []
    while hour <= end:
        prefixes.append(f"{prefix}year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}/")
        hour += timedelta(hours=1)
    return prefixes


def count_latest_list_items(
    bucket: str,
    prefixes: list[str],
    *,
    batch_id: str,
    batch_column: str,
    key: str,
    latest_by: str,
    list_column: str,
    aws_conn_id: str = AWS_CONN_ID,
) -> dict[str, int]:
    """Records and list items of a batch after at-least-once duplicates are dropped.

    The Athena way would be ``sum(cardinality(list_column))`` over the deduplicated rows; here
    each file contributes only (key, latest_by, item count) for the batch's rows, so memory is
    bounded by the batch's keys, not its data.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    hook = s3_hook(aws_conn_id)
    filesystem = s3_filesystem(hook=hook)
    parts = []
    for prefix in prefixes:
        for object_key in data_objects(bucket, prefix, hook=hook):
            parquet = _open_parquet(filesystem, bucket, object_key, batch_id)
            for batch in parquet.iter_batches(columns=[key, latest_by, batch_column, list_column]):
                mine = batch.filter(pc.equal(batch[batch_column], batch_id))
                if mine.num_rows:
                    items = pc.fill_null(pc.list_value_length(mine[list_column]), 0)
                    parts.append(pa.table({"key": mine[key], "ts": mine[latest_by], "items": items}))
    if not parts:
        return {"records": 0, "items": 0, "duplicates_dropped": 0}
    rows = pa.concat_tables(parts)
    # Latest copy of each key wins: sort by key, then newest first, and keep each key's first row.
    rows = rows.take(pc.sort_indices(rows, sort_keys=[("key", "ascending"), ("ts", "descending")]))
    keys = rows["key"].combine_chunks()
    is_first_of_key = pc.not_equal(keys[1:], keys[:-1]) if len(keys) > 1 else pa.array([], pa.bool_())
    keep = pa.concat_arrays([pa.array([True]), is_first_of_key])
    latest = rows.filter(keep)
    return {
        "records": latest.num_rows,
        "items": int(pc.sum(latest["items"]).as_py() or 0),
        "duplicates_dropped": rows.num_rows - latest.num_rows,
    }


# -- tasks ------------------------------------------------------------------------------------


def _layer_count_task(pipeline: str, layer: str, count: Callable[[dict[str, Any]], tuple[dict, dict]], **task_kwargs):
    @task(task_id=f"count_{layer}", **task_kwargs)
    def count_layer(**context) -> dict[str, Any]:
        ti = context["ti"]
        claim = ti.xcom_pull(task_ids=reconcile.CLAIM_TASK_ID)
        counts, details = count(claim)
        result = {
            "layer": layer,
            "counts": counts,
            "details": details,
            "counted_at": datetime.now(UTC).isoformat(),
        }
        record_layer(pipeline, claim["batch_id"], result, context["run_id"])
        # Pushed before the check, so a failure notification can show the count that failed it.
        ti.xcom_push(key=reconcile.LAYER_COUNTS_KEY, value=result)
        earlier = reconcile.earlier_counts(ti, context["dag"], layer)
        landing = next((r for r in earlier if r["layer"] == reconcile.LANDING), None)
        reconcile.check_layer(result, claim, landing, earlier)
        return result

    return count_layer()


def record_layer(
    pipeline: str, batch_id: str, result: dict[str, Any], dag_run_id: str, row_count: int | None = None
) -> None:
    """One audit row for the layer; ``row_count`` defaults to the layer's first (primary) count."""
    if row_count is None:
        row_count = next(iter(result["counts"].values()), 0)
    warehouse.run(
        "audit",
        "record_layer_count.sql",
        {
            "pipeline": pipeline,
            "batch_id": batch_id,
            "layer": result["layer"],
            "row_count": row_count,
            "details": {"counts": result["counts"], **result["details"]},
            "dag_run_id": dag_run_id,
            "now": result["counted_at"],
        },
    )


def count_landing_stream(
    pipeline: str,
    *,
    bucket: str,
    prefix: str,
    key: str,
    latest_by: str,
    list_column: str,
    records_name: str,
    items_name: str,
    batch_column: str = "run_id",
    **task_kwargs,
):
    """Count an at-least-once stream's batch in its hour partitions: distinct records and list items."""

    def count(claim):
        prefixes = hour_partitions(prefix, claim.get("started_at"), claim.get("completed_at"))
        figures = count_latest_list_items(
            bucket,
            prefixes,
            batch_id=claim["batch_id"],
            batch_column=batch_column,
            key=key,
            latest_by=latest_by,
            list_column=list_column,
        )
        counts = {records_name: figures["records"], items_name: figures["items"]}
        return counts, {"duplicates_dropped": figures["duplicates_dropped"], "partitions": len(prefixes)}

    return _layer_count_task(pipeline, reconcile.LANDING, count, **task_kwargs)


def count_parquet(pipeline: str, layer: str, *, bucket: str, prefix: str, entity: str, **task_kwargs):
    """Count a parquet layer's batch from footers; ``prefix`` may contain ``{batch_id}``."""

    def count(claim):
        rows, files = count_parquet_rows(bucket, prefix.format(batch_id=claim["batch_id"]), claim["batch_id"])
        return {entity: rows}, {"files": files}

    return _layer_count_task(pipeline, layer, count, **task_kwargs)


def count_table(pipeline: str, layer: str, *, sql: str, entity: str, **task_kwargs):
    """Count a warehouse layer's batch with ``include/sql/<pipeline>/<sql>`` (binds ``batch_id``)."""

    def count(claim):
        return {entity: int(warehouse.scalar(pipeline, sql, {"batch_id": claim["batch_id"]}))}, {}

    return _layer_count_task(pipeline, layer, count, **task_kwargs)


# -- layers of many tables (a batch of source tables, a star schema) -----------------------------


def _layer_count_task_with_rules(pipeline: str, layer: str, count, rules: dict | None, **task_kwargs):
    """``_layer_count_task``, plus ``reconcile.check_layer_rules`` for entities named differently
    from landing's (``rules``: entity -> (earlier layer, entity) it must equal)."""

    @task(task_id=f"count_{layer}", **task_kwargs)
    def count_layer(**context) -> dict[str, Any]:
        ti = context["ti"]
        claim = ti.xcom_pull(task_ids=reconcile.CLAIM_TASK_ID)
        counts, details = count(claim)
        result = {"layer": layer, "counts": counts, "details": details, "counted_at": datetime.now(UTC).isoformat()}
        # Many tables of one layer: its row count is their rows together (each is in ``details``).
        record_layer(pipeline, claim["batch_id"], result, context["run_id"], row_count=sum(counts.values()))
        ti.xcom_push(key=reconcile.LAYER_COUNTS_KEY, value=result)
        earlier = reconcile.earlier_counts(ti, context["dag"], layer)
        landing = next((r for r in earlier if r["layer"] == reconcile.LANDING), None)
        reconcile.check_layer(result, claim, landing, earlier)
        reconcile.check_layer_rules(result, claim, earlier, rules or {})
        return result

    return count_layer()


def count_parquet_datasets(
    pipeline: str, layer: str, *, bucket: str, datasets: dict[str, str], rules: dict | None = None, **task_kwargs
):
    """Count a parquet layer of several datasets from footers: entity -> prefix (may hold ``{batch_id}``).

    The result's ``counts`` has one entry per dataset (0 when it has no object).
    """

    def count(claim):
        counts, files = {}, 0
        hook = s3_hook()
        filesystem = s3_filesystem(hook=hook)
        for entity, prefix in datasets.items():
            batch_id = claim["batch_id"]
            rows, objects = count_parquet_rows(
                bucket, prefix.format(batch_id=batch_id), batch_id, hook=hook, filesystem=filesystem
            )
            counts[entity], files = rows, files + objects
        return counts, {"files": files}

    return _layer_count_task_with_rules(pipeline, layer, count, rules, **task_kwargs)


def read_parquet_dataset(
    bucket: str, prefix: str, batch_id: str, columns: list[str] | None = None, *, hook=None, filesystem=None
):
    """Every data object under a prefix as one pyarrow table (None when there is none)."""
    import pyarrow as pa

    hook = hook or s3_hook()
    filesystem = filesystem or s3_filesystem(hook=hook)
    tables = [
        _open_parquet(filesystem, bucket, key, batch_id).read(columns=columns)
        for key in data_objects(bucket, prefix, hook=hook)
    ]
    return pa.concat_tables(tables) if tables else None


def count_tables_matching_parquet(
    pipeline: str,
    layer: str,
    *,
    bucket: str,
    datasets: dict[str, str],
    keys: dict[str, tuple[str, ...]],
    schema: str,
    rules: dict | None = None,
    **task_kwargs,
):
    """Count, per warehouse table ``<schema>.<entity>``, the rows whose key is one of the batch's
    parquet rows (``datasets``: entity -> prefix with ``{batch_id}``; ``keys``: entity -> key columns).

    This is the warehouse layer counted from the data: every row of the batch that the load put
    (or found) in its table, whichever batch first brought it.
    """

    def count(claim):
        counts = {}
        hook = s3_hook()
        filesystem = s3_filesystem(hook=hook)
        with warehouse.transaction() as cursor:
            for entity, prefix in datasets.items():
                columns, batch_id = list(keys[entity]), claim["batch_id"]
                rows = read_parquet_dataset(
                    bucket, prefix.format(batch_id=batch_id), batch_id, columns, hook=hook, filesystem=filesystem
                )
                if rows is None or rows.num_rows == 0:
                    counts[entity] = 0
                    continue
                staged, sql = warehouse.stage_arrow(cursor, schema, entity, rows), warehouse.sql_module(cursor)
                cursor.execute(
                    sql.SQL("SELECT count(*) FROM {target} AS t WHERE EXISTS (SELECT 1 FROM {staged} AS s WHERE {on})")
                    .format(
                        target=sql.Identifier(schema, entity),
                        staged=sql.Identifier(staged),
                        on=warehouse.keys_match(sql, columns),
                    )
                    .as_string(cursor)
                )
                counts[entity] = cursor.fetchone()[0]
        return counts, {}

    return _layer_count_task_with_rules(pipeline, layer, count, rules, **task_kwargs)
