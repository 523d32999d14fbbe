-- Staging to final, step 1 of 5 (all five in one transaction): one load of the final table at a
-- time, until commit. Two batches that deliver the same order then compare versions one after
-- the other, each seeing what the other committed.
SELECT pg_advisory_xact_lock(hashtext('orders.fact_order_lines'));
