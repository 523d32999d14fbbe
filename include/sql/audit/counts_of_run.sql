-- The layers a run has counted for a batch so far, oldest first.
SELECT layer, details, counted_at
FROM audit.layer_counts
WHERE pipeline = %(pipeline)s AND batch_id = %(batch_id)s AND dag_run_id = %(dag_run_id)s
ORDER BY counted_at;
