-- The batch's audit row, if it was ever claimed.
SELECT status, dag_run_id, finished_at
FROM audit.batches
WHERE pipeline = %(pipeline)s AND batch_id = %(batch_id)s
FOR UPDATE;
