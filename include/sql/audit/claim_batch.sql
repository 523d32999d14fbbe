-- Claim a batch for this DAG run. A rerun overwrites the batch's own row.
INSERT INTO audit.batches AS b
    (pipeline, batch_id, status, marker_key, expected_counts, dag_run_id, claimed_at)
VALUES
    (%(pipeline)s, %(batch_id)s, 'RUNNING', %(marker_key)s, %(expected_counts)s, %(dag_run_id)s, %(now)s)
ON CONFLICT (pipeline, batch_id) DO UPDATE SET
    status = 'RUNNING',
    marker_key = EXCLUDED.marker_key,
    expected_counts = EXCLUDED.expected_counts,
    dag_run_id = EXCLUDED.dag_run_id,
    claimed_at = EXCLUDED.claimed_at,
    finished_at = NULL,
    error = NULL;
