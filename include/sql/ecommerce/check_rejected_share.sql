-- Upsert, step 2 of 3: a batch whose share of rejected rows is over the limit is not loaded at
-- all; the error names the batch, the counts and the limit, and the transaction rolls back.
-- (Percent signs are doubled: the driver reads single ones as placeholders.)
SELECT ecommerce.refuse(format(
    'batch %%s: %%s of %%s rows rejected (%%s%%%%), over the limit of %%s%%%%: nothing upserted',
    %(batch_id)s, rejected, read_rows, round(100.0 * rejected / read_rows, 1), round(100 * share_limit, 1)
))
FROM (
    SELECT
        (SELECT coalesce(sum(rows_read), 0) FROM ecommerce.batch_objects WHERE batch_id = %(batch_id)s) AS read_rows,
        (SELECT count(*) FROM ecommerce.rejected_transactions WHERE batch_id = %(batch_id)s) AS rejected,
        %(max_rejected_fraction)s::numeric AS share_limit
) AS batch
WHERE read_rows > 0 AND rejected::numeric / read_rows > share_limit;
