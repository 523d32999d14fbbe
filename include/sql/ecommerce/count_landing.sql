-- Landing: the rows the stage job read from the batch's CSV objects (header lines excluded).
SELECT coalesce(sum(rows_read), 0) AS transactions, count(*) AS objects
FROM ecommerce.batch_objects
WHERE batch_id = %(batch_id)s;
