"""Great Expectations schema checks of a layer, from its parquet footers or its CSV headers.

Layer 4. A suite lives in ``include/quality/<pipeline>/<name>.json``; a check task reads the
footers of the batch's files (never a data page, see ``etl_toolkit.schema_checks``), or the first
bytes of its CSV objects, and fails at once, without retries, when they break the suite: the same
files would break it again.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from etl_toolkit import s3, schema_checks
from etl_toolkit.tasks.frame import current, step


def _check(suite: schema_checks.SchemaSuite, footers: list, batch_id: str) -> dict[str, Any]:
    try:
        return schema_checks.check_footers(footers, suite, batch_id=batch_id)
    except schema_checks.SchemaCheckFailed as error:
        raise AirflowFailException(str(error)) from None


def check_objects_in_report(suite: str, *, bucket: str, report_bucket: str, report_key: str, **task_kwargs):
    """Task ``check_<suite>_schema``: the objects a Glue audit job's report names as the batch's
    (its ``objects`` list; ``report_key`` may hold ``{batch_id}``), from their footers."""
    frame = current()
    checked = schema_checks.load_suite(frame.pipeline.name, suite)

    @step(task_id=f"check_{suite}_schema", **task_kwargs)
    def check_schema(bucket: str, report_bucket: str, **context) -> dict[str, Any]:
        batch_id = frame.claim(context)["batch_id"]
        hook = s3.s3_hook()
        report = s3.read_json(report_bucket, report_key.format(batch_id=batch_id), hook=hook)
        footers = s3.parquet_footers(bucket, report["objects"], batch_id, hook=hook)
        return _check(checked, footers, batch_id)

    return check_schema(bucket=bucket, report_bucket=report_bucket)  # templated arguments: rendered per run


def check_parquet(suite: str, *, bucket: str, prefix: str, **task_kwargs):
    """Task ``check_<suite>_schema``: every parquet object under ``prefix`` (may hold ``{batch_id}``)."""
    frame = current()
    checked = schema_checks.load_suite(frame.pipeline.name, suite)

    @step(task_id=f"check_{suite}_schema", **task_kwargs)
    def check_schema(bucket: str, **context) -> dict[str, Any]:
        batch_id = frame.claim(context)["batch_id"]
        hook = s3.s3_hook()
        keys = s3.data_objects(bucket, prefix.format(batch_id=batch_id), hook=hook)
        return _check(checked, s3.parquet_footers(bucket, keys, batch_id, hook=hook), batch_id)

    return check_schema(bucket=bucket)


def check_parquet_datasets(layer: str, *, bucket: str, datasets: dict[str, str], **task_kwargs):
    """Task ``check_<layer>_schema``: each dataset of a layer against its own suite.

    ``datasets`` maps an entity to its prefix (may hold ``{batch_id}``); the suite of an entity is
    ``include/quality/<pipeline>/<layer>_<entity>.json``. The first dataset that breaks its suite
    fails the task; the result has one entry per entity.
    """
    frame = current()
    suites = {entity: schema_checks.load_suite(frame.pipeline.name, f"{layer}_{entity}") for entity in datasets}

    @step(task_id=f"check_{layer}_schema", **task_kwargs)
    def check_schema(bucket: str, **context) -> dict[str, Any]:
        batch_id = frame.claim(context)["batch_id"]
        hook = s3.s3_hook()
        filesystem = s3.s3_filesystem(hook=hook)
        results = {}
        for entity, prefix in datasets.items():
            keys = s3.data_objects(bucket, prefix.format(batch_id=batch_id), hook=hook)
            footers = s3.parquet_footers(bucket, keys, batch_id, hook=hook, filesystem=filesystem)
            result = _check(suites[entity], footers, batch_id)
            results[entity] = {"rows": result["rows"], "evaluated": result["evaluated"]}
        return {"batch_id": batch_id, "success": True, "datasets": results}

    return check_schema(bucket=bucket)


CSV_SAMPLE_BYTES = 64 * 1024  # the header and a few hundred rows: enough to tell a broken feed


def check_csv_objects(suite: str, *, bucket: str, prefix: str, **task_kwargs):
    """Task ``check_<suite>_schema``: the batch's CSV objects, from the first bytes of each.

    The batch's objects are the marker's ``objects``, else every ``.csv`` under ``prefix``.
    """
    frame = current()
    checked = schema_checks.load_suite(frame.pipeline.name, suite)

    @step(task_id=f"check_{suite}_schema", **task_kwargs)
    def check_schema(bucket: str, **context) -> dict[str, Any]:
        claim = frame.claim(context)
        hook = s3.s3_hook()
        keys = claim.get("objects")
        if keys is None:
            keys = [key for key in s3.data_objects(bucket, prefix, hook=hook) if key.endswith(".csv")]
        missing = [key for key in keys if not hook.check_for_key(key, bucket_name=bucket)]
        if missing:
            raise AirflowFailException(
                f"batch {claim['batch_id']}: the marker names {len(missing)} object(s) that do not exist in "
                f"s3://{bucket}/: {', '.join(missing[:10])}"
            )
        samples = {}
        for key in keys:
            data, complete = s3.read_head(bucket, key, CSV_SAMPLE_BYTES, hook=hook)
            samples[key] = schema_checks.csv_sample(data, complete=complete)
        try:
            return schema_checks.check_csv_samples(samples, checked, batch_id=claim["batch_id"])
        except schema_checks.SchemaCheckFailed as error:
            raise AirflowFailException(str(error)) from None

    return check_schema(bucket=bucket)
