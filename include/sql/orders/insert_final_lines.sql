-- Staging to final, step 5 of 5 (after delete_replaced_orders.sql, same transaction): the
-- batch's lines of the orders it owns (orders.order_versions names the batch: no newer version
-- is loaded), enriched with the order's UTC date and the line amount. The upsert keeps a lone
-- rerun of this step idempotent too.
INSERT INTO orders.fact_order_lines AS f (
    order_id, line_number, customer_id, order_ts, order_date, currency,
    product_code, product_name, quantity, unit_price, line_amount, run_id, loaded_at
)
SELECT
    s.order_id,
    s.line_number,
    s.customer_id,
    s.order_ts,
    (s.order_ts AT TIME ZONE 'UTC')::date,
    s.currency,
    s.product_code,
    s.product_name,
    s.quantity,
    s.unit_price,
    (s.quantity * s.unit_price)::numeric(12,2),
    s.run_id,
    %(loaded_at)s
FROM orders.stg_order_lines AS s
JOIN orders.order_versions AS v ON v.order_id = s.order_id AND v.run_id = s.run_id
WHERE s.run_id = %(batch_id)s
ON CONFLICT (order_id, line_number) DO UPDATE SET
    customer_id = EXCLUDED.customer_id,
    order_ts = EXCLUDED.order_ts,
    order_date = EXCLUDED.order_date,
    currency = EXCLUDED.currency,
    product_code = EXCLUDED.product_code,
    product_name = EXCLUDED.product_name,
    quantity = EXCLUDED.quantity,
    unit_price = EXCLUDED.unit_price,
    line_amount = EXCLUDED.line_amount,
    run_id = EXCLUDED.run_id,
    loaded_at = EXCLUDED.loaded_at;
