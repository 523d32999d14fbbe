-- Close a batch's audit row with its outcome, if this run still holds it (the caller checks
-- that exactly one row changed: none means another run took the batch over).
UPDATE audit.batches
SET status = %(status)s, finished_at = %(now)s, error = %(error)s
WHERE pipeline = %(pipeline)s AND batch_id = %(batch_id)s AND dag_run_id = %(dag_run_id)s;
