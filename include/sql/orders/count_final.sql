-- Final lines whose last load was the batch.
SELECT count(*) AS row_count
FROM orders.fact_order_lines
WHERE run_id = %(batch_id)s;
