-- A batch whose marker breaks the contract: FAILED, with the reason. A batch that already loaded,
-- or that a run holds, keeps its row: a broken rewrite of its marker changes neither. Returns a
-- row when the batch was recorded FAILED, none when its row was kept.
INSERT INTO audit.batches AS b
    (pipeline, batch_id, status, marker_key, expected_counts, dag_run_id, claimed_at, finished_at, error)
VALUES
    (%(pipeline)s, %(batch_id)s, 'FAILED', %(marker_key)s, '{}'::jsonb, %(dag_run_id)s, %(now)s, %(now)s, %(error)s)
ON CONFLICT (pipeline, batch_id) DO UPDATE SET
    marker_key = EXCLUDED.marker_key,
    dag_run_id = EXCLUDED.dag_run_id,
    finished_at = EXCLUDED.finished_at,
    error = EXCLUDED.error
WHERE b.status = 'FAILED'
RETURNING status;
