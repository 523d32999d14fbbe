-- The batch's shipping metrics over the normalized layer (Athena SQL, in the pipeline's Glue
-- database). The table is partitioned by batch_id, so Athena reads the batch's own files only.
-- An empty batch answers 0, not NULL.
SELECT
    count(*)                            AS shipments,
    coalesce(sum(shipping_cost), 0)     AS total_cost,
    coalesce(sum(shipping_distance), 0) AS total_distance,
    coalesce(sum(quantity), 0)          AS total_fuel_quantity
FROM normalized
WHERE batch_id = '{{ batch_id }}'
