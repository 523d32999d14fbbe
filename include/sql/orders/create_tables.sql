-- The orders warehouse: a staging table the load job fills one batch at a time, and the final
-- table of product lines (CONTRACTS.md, "Orders"). Idempotent: safe to run before every batch.
CREATE SCHEMA IF NOT EXISTS orders;

-- One row per product line of the latest copy of each order, as S3 staging holds them.
-- No key: a load replaces its whole batch (run_id), and the final table enforces the key.
CREATE TABLE IF NOT EXISTS orders.stg_order_lines (
    order_id       text          NOT NULL,
    line_number    int           NOT NULL,
    customer_id    text,
    order_ts       timestamptz,
    currency       text,
    product_code   text,
    product_name   text,
    quantity       int,
    unit_price     numeric(10,2),
    processing_ts  timestamptz,
    run_id         text          NOT NULL
);

CREATE INDEX IF NOT EXISTS stg_order_lines_run_id_idx ON orders.stg_order_lines (run_id);

CREATE TABLE IF NOT EXISTS orders.fact_order_lines (
    order_id      text          NOT NULL,
    line_number   int           NOT NULL,
    customer_id   text,
    order_ts      timestamptz,
    order_date    date,
    currency      char(3),
    product_code  text,
    product_name  text,
    quantity      int,
    unit_price    numeric(10,2),
    line_amount   numeric(12,2),
    run_id        text,
    loaded_at     timestamptz,
    PRIMARY KEY (order_id, line_number)
);

-- The audit counts a batch's final rows by run_id.
CREATE INDEX IF NOT EXISTS fact_order_lines_run_id_idx ON orders.fact_order_lines (run_id);
