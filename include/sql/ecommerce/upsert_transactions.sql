-- Upsert, step 3 of 3: the batch's valid rows into the fact table, with the customer's e-mail and
-- the product's name from the dimensions. Each row is one of:
--   insert      a transaction_id the fact table does not have;
--   update      a known one whose values differ, from a batch at least as new as the row's version;
--   unchanged   a known one with the same values: left alone (its batch_id and loaded_at stay);
--   superseded  a known one a newer batch already wrote (an older batch loaded again): left alone.
-- The actions are decided once, under the lock taken in step 1, and recorded in batch_loads; the
-- MERGE then applies exactly the inserts and updates.
-- Fresh statistics first: a fact table last analysed while it was empty, or a staging table
-- just loaded, would make the planner loop over one of them once per row of the other.
ANALYZE ecommerce.fact_transactions;

CREATE TEMPORARY TABLE upsert_rows (
    transaction_id text, customer_id text, customer_email text, product_id text, product_name text,
    quantity int, total_price numeric(12,2), transaction_date date, payment_type text, status text,
    action text
) ON COMMIT DROP;

INSERT INTO upsert_rows
SELECT s.transaction_id, s.customer_id, c.email AS customer_email, s.product_id, p.product_name,
       s.quantity, s.price AS total_price, s.transaction_date, s.payment_type, s.status,
       CASE
           WHEN f.transaction_id IS NULL THEN 'insert'
           WHEN f.source_completed_at > %(completed_at)s::timestamptz THEN 'superseded'
           WHEN (f.customer_id, f.customer_email, f.product_id, f.product_name, f.quantity, f.total_price,
                 f.transaction_date, f.payment_type, f.status)
                IS NOT DISTINCT FROM
                (s.customer_id, c.email, s.product_id, p.product_name, s.quantity, s.price,
                 s.transaction_date, s.payment_type, s.status) THEN 'unchanged'
           ELSE 'update'
       END AS action
FROM ecommerce.stg_transactions AS s
JOIN ecommerce.dim_customers AS c ON c.customer_id = s.customer_id
JOIN ecommerce.dim_products AS p ON p.product_id = s.product_id
LEFT JOIN ecommerce.fact_transactions AS f ON f.transaction_id = s.transaction_id
WHERE s.batch_id = %(batch_id)s AND s.disposition = 'valid';

ANALYZE upsert_rows;

MERGE INTO ecommerce.fact_transactions AS f
USING (SELECT * FROM upsert_rows WHERE action IN ('insert', 'update')) AS u
ON f.transaction_id = u.transaction_id
WHEN MATCHED THEN UPDATE SET
    customer_id = u.customer_id, customer_email = u.customer_email, product_id = u.product_id,
    product_name = u.product_name, quantity = u.quantity, total_price = u.total_price,
    transaction_date = u.transaction_date, payment_type = u.payment_type, status = u.status,
    batch_id = %(batch_id)s, loaded_at = %(loaded_at)s, source_completed_at = %(completed_at)s
WHEN NOT MATCHED THEN INSERT (
    transaction_id, customer_id, customer_email, product_id, product_name, quantity, total_price,
    transaction_date, payment_type, status, batch_id, loaded_at, source_completed_at
) VALUES (
    u.transaction_id, u.customer_id, u.customer_email, u.product_id, u.product_name, u.quantity,
    u.total_price, u.transaction_date, u.payment_type, u.status, %(batch_id)s, %(loaded_at)s, %(completed_at)s
);

INSERT INTO ecommerce.batch_loads (batch_id, inserted, updated, unchanged, superseded, source_completed_at, loaded_at)
SELECT %(batch_id)s,
       count(*) FILTER (WHERE action = 'insert'),
       count(*) FILTER (WHERE action = 'update'),
       count(*) FILTER (WHERE action = 'unchanged'),
       count(*) FILTER (WHERE action = 'superseded'),
       %(completed_at)s,
       %(loaded_at)s
FROM upsert_rows
ON CONFLICT (batch_id) DO UPDATE SET
    inserted = excluded.inserted, updated = excluded.updated, unchanged = excluded.unchanged,
    superseded = excluded.superseded, source_completed_at = excluded.source_completed_at,
    loaded_at = excluded.loaded_at;
