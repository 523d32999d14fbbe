-- Staging to final, step 1 of 2 (run in one transaction with insert_final_lines.sql):
-- remove every final line of the orders the batch delivers, so an order delivered again with
-- fewer lines loses the lines it no longer has. Rerunning the batch deletes its own lines and
-- step 2 puts them back: same final state. The last batch loaded wins for an order.
DELETE FROM orders.fact_order_lines AS f
USING (
    SELECT DISTINCT order_id
    FROM orders.stg_order_lines
    WHERE run_id = %(batch_id)s
) AS delivered
WHERE f.order_id = delivered.order_id;
