-- Staging to final, step 4 of 5 (after analyze_batch.sql, same transaction): remove
-- every final line of the orders the batch delivers and now owns (its version is the loaded
-- one), so an order delivered again with fewer lines, or none, loses the lines it no longer
-- has. An order whose loaded version is newer than the batch's keeps its lines. Rerunning the
-- batch deletes its own lines and step 5 puts them back: same final state.
DELETE FROM orders.fact_order_lines AS f
USING orders.stg_order_versions AS s
JOIN orders.order_versions AS v ON v.order_id = s.order_id AND v.run_id = s.run_id
WHERE s.run_id = %(batch_id)s
  AND f.order_id = s.order_id;
