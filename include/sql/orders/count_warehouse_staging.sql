-- Rows of the batch in the warehouse staging table.
SELECT count(*) AS row_count
FROM orders.stg_order_lines
WHERE run_id = %(batch_id)s;
