-- Rejected: the batch's rows that are not loaded, for any reason.
SELECT count(*) AS rejected FROM ecommerce.rejected_transactions WHERE batch_id = %(batch_id)s;
