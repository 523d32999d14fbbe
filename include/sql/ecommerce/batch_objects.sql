-- The objects the batch's stage job read, as it read them: what the archive moves.
SELECT object_key, size, etag
FROM ecommerce.batch_objects
WHERE batch_id = %(batch_id)s
ORDER BY object_key;
