-- The batch's audit row, if it was ever claimed (locked until the claim commits).
SELECT status, dag_run_id, attempts, marker_version, rerun_requested
FROM audit.batches
WHERE pipeline = %(pipeline)s AND batch_id = %(batch_id)s
FOR UPDATE;
