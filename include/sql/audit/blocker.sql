-- In a pipeline that loads its batches in order: the earliest batch before this one that has
-- not loaded (failed, given up on, or still running). Batch ids sort in the order produced,
-- compared by code point (COLLATE "C"), as the claim sorts them.
SELECT batch_id, status, error
FROM audit.batches
WHERE pipeline = %(pipeline)s AND batch_id COLLATE "C" < %(batch_id)s COLLATE "C" AND status <> 'SUCCESS'
ORDER BY batch_id COLLATE "C"
LIMIT 1;
