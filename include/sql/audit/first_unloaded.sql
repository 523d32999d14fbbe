-- In a pipeline that loads its batches in order: its earliest batch that has not loaded, if any.
SELECT batch_id
FROM audit.batches
WHERE pipeline = %(pipeline)s AND status <> 'SUCCESS'
ORDER BY batch_id COLLATE "C"
LIMIT 1;
