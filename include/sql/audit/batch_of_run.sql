-- The batch a DAG run holds, if any (a run that found its batch already loaded holds none).
SELECT batch_id, marker_key, marker_version, status
FROM audit.batches
WHERE pipeline = %(pipeline)s AND dag_run_id = %(dag_run_id)s
ORDER BY claimed_at DESC
LIMIT 1;
