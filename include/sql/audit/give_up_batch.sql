-- A batch claimed too many times without finishing: set aside as FAILED, so the ones behind it run.
UPDATE audit.batches
SET status = 'FAILED', finished_at = %(now)s, error = %(error)s
WHERE pipeline = %(pipeline)s AND batch_id = %(batch_id)s;
