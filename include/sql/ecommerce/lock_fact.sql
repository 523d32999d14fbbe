-- Upsert, step 1 of 3 (all three in one transaction): one upsert of the fact table at a time, so
-- two batches that carry the same transaction compare versions one after the other.
SELECT pg_advisory_xact_lock(hashtext('ecommerce.fact_transactions'));
