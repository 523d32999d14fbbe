-- Close a batch's audit row with its outcome, if this run still holds it (the caller checks
-- that exactly one row changed: none means another run took the batch over). A run can only
-- fail a batch it is running: a late failure callback never turns a loaded batch into FAILED.
UPDATE audit.batches
SET status = %(status)s, finished_at = %(now)s, error = %(error)s
WHERE pipeline = %(pipeline)s AND batch_id = %(batch_id)s AND dag_run_id = %(dag_run_id)s
  AND (%(status)s <> 'FAILED' OR status = 'RUNNING');
