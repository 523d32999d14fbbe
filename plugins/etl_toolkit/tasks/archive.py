"""Moving a batch's data objects out of the landing bucket once the batch has loaded.

Layer 4. Which objects, and as what (size, ETag), is what the batch's own job recorded when it
read them, returned by ``include/sql/<pipeline>/<objects_sql>``: never a new listing, which would
take in objects that arrived since and were not loaded.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from airflow.sdk import TriggerRule

from etl_toolkit import s3, sql
from etl_toolkit.tasks.frame import current, step

log = logging.getLogger(__name__)


def archive_objects(*, source_bucket: str, archive_bucket: str, objects_sql: str, task_id: str = "archive_objects"):
    """Task: move each object of the batch to the same key in ``archive_bucket`` (copied, checked,
    then deleted; see ``s3.archive_object``). A run that died half way converges when run again:
    no object is lost, none is archived twice and none is left behind."""
    frame = current()
    pipeline = frame.pipeline.name

    # Also after a skipped reconcile: an already-loaded batch is claimed again, and whatever an
    # earlier run left unarchived is moved now (the step is idempotent).
    @step(task_id=task_id, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def archive(source_bucket: str, archive_bucket: str, **context) -> dict[str, Any]:
        batch_id = frame.claim(context)["batch_id"]
        with sql.transaction() as cursor:
            objects = sql.execute(cursor, pipeline, objects_sql, {"batch_id": batch_id}) or []
        client = s3.s3_hook().get_conn()
        outcomes: Counter[str] = Counter()
        failures = []
        for number, (key, size, etag) in enumerate(objects, 1):
            try:  # one object that cannot move must not keep the others from moving
                outcome = s3.archive_object(
                    client, source_bucket, key, archive_bucket, size=size, etag=etag, batch_id=batch_id
                )
            except s3.ArchiveError as error:
                failures.append(str(error))
                outcome = "left in place"
            outcomes[outcome] += 1
            log.info("%d/%d s3://%s/%s: %s", number, len(objects), source_bucket, key, outcome)
        if failures:
            raise s3.ArchiveError(f"{len(failures)} of {len(objects)} objects not archived: " + "; ".join(failures[:5]))
        return {"batch_id": batch_id, "objects": len(objects), "archive_bucket": archive_bucket, **outcomes}

    return archive(source_bucket=source_bucket, archive_bucket=archive_bucket)  # templated: rendered per run
