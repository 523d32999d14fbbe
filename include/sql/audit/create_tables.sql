-- The audit trail every pipeline writes: one row per batch, one row per (batch, layer).
-- Idempotent: every claim runs it first, under a lock, because two CREATE ... IF NOT EXISTS at
-- once can both try to create (a unique violation in PostgreSQL's catalog).
SELECT pg_advisory_xact_lock(hashtext('audit.create_tables'));
CREATE SCHEMA IF NOT EXISTS audit;

CREATE TABLE IF NOT EXISTS audit.batches (
    pipeline         text        NOT NULL,
    batch_id         text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('RUNNING', 'SUCCESS', 'FAILED')),
    marker_key       text,
    expected_counts  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    dag_run_id       text        NOT NULL,
    claimed_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    error            text,
    PRIMARY KEY (pipeline, batch_id)
);
-- Columns added since the table was first created. ALTER TABLE takes an exclusive lock even when
-- the column exists, and this file runs before every claim: alter only where one is missing.
--   attempts         claims since the batch last started afresh (a batch whose runs keep dying
--                    is given up on)
--   marker_version   the marker version (ETag@LastModified) the batch was claimed with
--   rerun_requested  the marker was written again while the batch ran: the next claim loads it again
--   failure_announced_by  the run (and how often it had been cleared) whose FAILURE was published:
--                    the tasks of that run that fail after it publish nothing more
DO $$
DECLARE
    added text[];
BEGIN
    FOREACH added SLICE 1 IN ARRAY ARRAY[
        ['attempts', 'int NOT NULL DEFAULT 1'],
        ['marker_version', 'text'],
        ['rerun_requested', 'boolean NOT NULL DEFAULT false'],
        ['failure_announced_by', 'text']
    ] LOOP
        IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = 'audit' AND table_name = 'batches' AND column_name = added[1]) THEN
            EXECUTE 'ALTER TABLE audit.batches ADD COLUMN ' || quote_ident(added[1]) || ' ' || added[2];
        END IF;
    END LOOP;
END
$$;

CREATE TABLE IF NOT EXISTS audit.layer_counts (
    pipeline    text        NOT NULL,
    batch_id    text        NOT NULL,
    layer       text        NOT NULL,
    row_count   bigint      NOT NULL,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    dag_run_id  text        NOT NULL,
    counted_at  timestamptz NOT NULL,
    PRIMARY KEY (pipeline, batch_id, layer)
);
