-- Staging to final, step 3 of 5 (after record_order_versions.sql, same transaction): fresh statistics for the
-- tables the next steps join on the batch's run_id. Statistics gathered before the batch arrived
-- know no row of it, so the planner would estimate one row and join the batch's lines to its
-- versions with a nested loop: quadratic in the batch (seconds at 2,000 orders, hours at a
-- million). ANALYZE samples a bounded number of rows and sees this transaction's own inserts.
ANALYZE orders.stg_order_lines, orders.stg_order_versions, orders.order_versions;
