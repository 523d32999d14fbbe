-- Claim a batch for this DAG run. A rerun overwrites the batch's own row.
INSERT INTO audit.batches AS b
    (pipeline, batch_id, status, marker_key, marker_version, expected_counts, dag_run_id, claimed_at, attempts)
VALUES
    (%(pipeline)s, %(batch_id)s, 'RUNNING', %(marker_key)s, %(marker_version)s, %(expected_counts)s,
     %(dag_run_id)s, %(now)s, %(attempts)s)
ON CONFLICT (pipeline, batch_id) DO UPDATE SET
    status = 'RUNNING',
    marker_key = EXCLUDED.marker_key,
    marker_version = EXCLUDED.marker_version,
    expected_counts = EXCLUDED.expected_counts,
    dag_run_id = EXCLUDED.dag_run_id,
    claimed_at = EXCLUDED.claimed_at,
    attempts = EXCLUDED.attempts,
    rerun_requested = false,
    finished_at = NULL,
    error = NULL;
