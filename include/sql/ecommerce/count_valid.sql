-- Valid: the batch's rows to upsert.
SELECT count(*) AS transactions
FROM ecommerce.stg_transactions
WHERE batch_id = %(batch_id)s AND disposition = 'valid';
