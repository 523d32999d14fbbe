-- In a pipeline that loads its batches in order: the earliest batch before this one that has
-- not loaded (failed, given up on, or still running). Batch ids sort in the order produced.
SELECT batch_id, status, error
FROM audit.batches
WHERE pipeline = %(pipeline)s AND batch_id < %(batch_id)s AND status <> 'SUCCESS'
ORDER BY batch_id
LIMIT 1;
