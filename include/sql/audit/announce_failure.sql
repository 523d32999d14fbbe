-- This run announces its failure, once per time it was (re)started: a row back means no task of
-- the run has published its FAILURE since (``announced`` is the run id and its clear number);
-- none, that one already did. The caller holds the batch's lock (lock_batch.sql), so tasks that
-- fail side by side ask one after the other and only the first is answered with a row.
UPDATE audit.batches
SET failure_announced_by = %(announced)s
WHERE pipeline = %(pipeline)s AND batch_id = %(batch_id)s AND dag_run_id = %(dag_run_id)s
  AND failure_announced_by IS DISTINCT FROM %(announced)s
RETURNING batch_id;
