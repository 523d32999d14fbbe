-- Duplicates dropped: identical copies of a row the batch already has.
SELECT count(*) AS duplicates_dropped
FROM ecommerce.stg_transactions
WHERE batch_id = %(batch_id)s AND disposition = 'duplicate';
