-- Whether this run still holds the batch (a cleared old run whose batch another run has since
-- claimed must not load or count it). Locks the row until the caller's transaction ends.
SELECT status
FROM audit.batches
WHERE pipeline = %(pipeline)s AND batch_id = %(batch_id)s AND dag_run_id = %(dag_run_id)s
FOR SHARE;
