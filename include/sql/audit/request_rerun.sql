-- The batch's marker was written again while it ran: the next claim loads the batch again.
UPDATE audit.batches
SET rerun_requested = true
WHERE pipeline = %(pipeline)s AND batch_id = %(batch_id)s;
