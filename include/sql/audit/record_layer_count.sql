-- One layer's counted rows for a batch; a rerun overwrites its own row.
INSERT INTO audit.layer_counts (pipeline, batch_id, layer, row_count, details, dag_run_id, counted_at)
VALUES (%(pipeline)s, %(batch_id)s, %(layer)s, %(row_count)s, %(details)s, %(dag_run_id)s, %(now)s)
ON CONFLICT (pipeline, batch_id, layer) DO UPDATE SET
    row_count = EXCLUDED.row_count,
    details = EXCLUDED.details,
    dag_run_id = EXCLUDED.dag_run_id,
    counted_at = EXCLUDED.counted_at;
