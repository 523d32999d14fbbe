-- Final: the batch's valid rows that the fact table accounts for, counted from the fact table:
-- the row holds the batch's values, or a newer batch's version of it (superseded). A valid row
-- missing from the fact table, or holding other values from an older batch, is not counted, and
-- the batch does not reconcile. With it, what the batch's upsert did (batch_loads).
SELECT
    (
        SELECT count(*)
        FROM ecommerce.stg_transactions AS s
        JOIN ecommerce.fact_transactions AS f ON f.transaction_id = s.transaction_id
        WHERE s.batch_id = %(batch_id)s AND s.disposition = 'valid'
          AND (
              (f.customer_id, f.product_id, f.quantity, f.total_price, f.transaction_date, f.payment_type, f.status)
              IS NOT DISTINCT FROM
              (s.customer_id, s.product_id, s.quantity, s.price, s.transaction_date, s.payment_type, s.status)
              OR f.source_completed_at > l.source_completed_at
          )
    ) AS transactions,
    coalesce(l.inserted, 0) AS inserted,
    coalesce(l.updated, 0) AS updated,
    coalesce(l.unchanged, 0) AS unchanged,
    coalesce(l.superseded, 0) AS superseded
FROM (SELECT 1) AS one
LEFT JOIN ecommerce.batch_loads AS l ON l.batch_id = %(batch_id)s;
