-- The batch's duplicates, settled where the whole batch is (docs/interfaces.md, "E-commerce"):
-- copies of one transaction_id with different values are all rejected; of identical copies the
-- first (by object key, then line) is kept and the others are dropped as duplicates.
-- Runs again from the start on a rerun: it first undoes what an earlier run of it did.
UPDATE ecommerce.stg_transactions
SET disposition = 'valid'
WHERE batch_id = %(batch_id)s AND disposition <> 'valid';

DELETE FROM ecommerce.rejected_transactions
WHERE batch_id = %(batch_id)s AND rule = 'conflicting_duplicate';

-- The stage job has just loaded the batch: without fresh statistics the planner takes it for a
-- few rows and picks nested loops that grow with the square of the batch.
ANALYZE ecommerce.stg_transactions;

-- Only transaction_ids that appear more than once need a look (one hash aggregate over the
-- batch); sorting just those finds both kinds: copies whose fingerprints differ conflict; among
-- identical copies, every one after the first is a duplicate. Only those rows are written.
WITH repeated AS (
    SELECT transaction_id
    FROM ecommerce.stg_transactions
    WHERE batch_id = %(batch_id)s
    GROUP BY transaction_id
    HAVING count(*) > 1
), ranked AS (
    SELECT object_key, line_number, transaction_id,
           count(*) OVER same_id AS copies,
           min(fingerprint) OVER same_id <> max(fingerprint) OVER same_id AS conflicting,
           row_number() OVER (same_id ORDER BY object_key, line_number) AS copy
    FROM (
        SELECT s.object_key, s.line_number, s.transaction_id,
               md5(row(s.customer_id, s.product_id, s.quantity, s.price, s.transaction_date, s.payment_type,
                       s.status)::text) AS fingerprint
        FROM ecommerce.stg_transactions AS s
        JOIN repeated AS r ON r.transaction_id = s.transaction_id
        WHERE s.batch_id = %(batch_id)s
    ) AS copies_of_repeated
    WINDOW same_id AS (PARTITION BY transaction_id)
), settled AS (
    UPDATE ecommerce.stg_transactions AS s
    SET disposition = CASE WHEN r.conflicting THEN 'rejected' ELSE 'duplicate' END
    FROM ranked AS r
    WHERE s.batch_id = %(batch_id)s
      AND s.object_key = r.object_key AND s.line_number = r.line_number
      AND (r.conflicting OR r.copy > 1)
    RETURNING s.*, r.copies, r.conflicting
)
INSERT INTO ecommerce.rejected_transactions (batch_id, object_key, line_number, rule, reason, raw)
SELECT batch_id, object_key, line_number, 'conflicting_duplicate',
       format('transaction_id %%s appears %%s times in the batch with different values', transaction_id, copies),
       jsonb_build_object(
           'transaction_id', transaction_id, 'customer_id', customer_id, 'product_id', product_id,
           'quantity', quantity::text, 'price', price::text, 'transaction_date', transaction_date::text,
           'payment_type', payment_type, 'status', status)
FROM settled
WHERE conflicting;
