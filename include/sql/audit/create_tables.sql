-- The audit trail every pipeline writes: one row per batch, one row per (batch, layer).
-- Idempotent: every DAG runs it before it claims a batch.
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
