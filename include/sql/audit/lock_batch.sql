-- One claim of a batch at a time, until commit. SELECT ... FOR UPDATE alone locks nothing while
-- the batch has no row yet, so two first claims would both insert: they queue here instead.
SELECT pg_advisory_xact_lock(hashtext('audit.batches:' || %(pipeline)s || ':' || %(batch_id)s));
