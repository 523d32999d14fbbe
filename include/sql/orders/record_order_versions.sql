-- Staging to final, step 2 of 5 (same transaction): for each order the batch delivers
-- (orders.stg_order_versions, which includes orders with no products), the batch's copy becomes
-- the loaded version unless the loaded one is newer: an order's lines are replaced only by a
-- copy at least as new, by processing_ts (the version stamp of docs/interfaces.md; NULL is the oldest).
-- The result is the state of applying the batches in processing order, whatever order they are
-- loaded or reprocessed in. An equal stamp wins, so rerunning a batch keeps its own orders; of
-- two batches holding the same version of an order, the one loaded last owns it.
-- Steps 4 and 5 then replace the lines of exactly the orders whose version is now the batch's.
INSERT INTO orders.order_versions AS v (order_id, processing_ts, run_id, loaded_at)
SELECT s.order_id, s.processing_ts, s.run_id, %(loaded_at)s
FROM orders.stg_order_versions AS s
WHERE s.run_id = %(batch_id)s
ON CONFLICT (order_id) DO UPDATE SET
    processing_ts = EXCLUDED.processing_ts,
    run_id = EXCLUDED.run_id,
    loaded_at = EXCLUDED.loaded_at
WHERE coalesce(EXCLUDED.processing_ts, '-infinity') >= coalesce(v.processing_ts, '-infinity');
