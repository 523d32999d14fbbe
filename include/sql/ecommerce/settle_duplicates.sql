-- The batch's duplicates, settled where the whole batch is (docs/interfaces.md, "E-commerce"):
-- copies of one transaction_id with different values are all rejected; of identical copies the
-- first (by object key, then line) is kept and the others are dropped as duplicates.
-- Runs again from the start on a rerun: it first undoes what an earlier run of it did.
UPDATE ecommerce.stg_transactions
SET disposition = 'valid'
WHERE batch_id = %(batch_id)s AND disposition <> 'valid';

DELETE FROM ecommerce.rejected_transactions
WHERE batch_id = %(batch_id)s AND rule = 'conflicting_duplicate';

WITH conflicting AS (
    SELECT transaction_id, count(*) AS copies
    FROM ecommerce.stg_transactions
    WHERE batch_id = %(batch_id)s
    GROUP BY transaction_id
    HAVING count(DISTINCT (customer_id, product_id, quantity, price, transaction_date, payment_type, status)) > 1
), rejected AS (
    UPDATE ecommerce.stg_transactions AS s
    SET disposition = 'rejected'
    FROM conflicting AS c
    WHERE s.batch_id = %(batch_id)s AND s.transaction_id = c.transaction_id
    RETURNING s.*, c.copies
)
INSERT INTO ecommerce.rejected_transactions (batch_id, object_key, line_number, rule, reason, raw)
SELECT batch_id, object_key, line_number, 'conflicting_duplicate',
       format('transaction_id %%s appears %%s times in the batch with different values', transaction_id, copies),
       jsonb_build_object(
           'transaction_id', transaction_id, 'customer_id', customer_id, 'product_id', product_id,
           'quantity', quantity::text, 'price', price::text, 'transaction_date', transaction_date::text,
           'payment_type', payment_type, 'status', status)
FROM rejected;

UPDATE ecommerce.stg_transactions AS s
SET disposition = 'duplicate'
FROM (
    SELECT object_key, line_number,
           row_number() OVER (PARTITION BY transaction_id ORDER BY object_key, line_number) AS copy
    FROM ecommerce.stg_transactions
    WHERE batch_id = %(batch_id)s AND disposition = 'valid'
) AS d
WHERE s.batch_id = %(batch_id)s
  AND s.object_key = d.object_key AND s.line_number = d.line_number
  AND d.copy > 1;
