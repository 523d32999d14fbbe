-- The orders warehouse: a staging table the load job fills one batch at a time, and the final
-- table of product lines (docs/interfaces.md, "Orders"). Idempotent: safe to run before every batch.
CREATE SCHEMA IF NOT EXISTS orders;

-- One row per product line of the latest copy of each order, as S3 staging holds them.
-- A load replaces its whole batch (run_id); the unique index below holds the line key.
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
-- A batch's line key is unique: checked here, where the data is, so a load job that staged a line
-- twice fails its COPY (the schema checks read parquet footers only, which cannot see a key).
CREATE UNIQUE INDEX IF NOT EXISTS stg_order_lines_key ON orders.stg_order_lines (run_id, order_id, line_number);

-- One row per order a batch delivers (its latest copy), with that copy's processing_ts, loaded
-- with the batch's lines in one transaction. It is how the load knows an order delivered with
-- null or empty products (it has no line above) and each order's version stamp.
CREATE TABLE IF NOT EXISTS orders.stg_order_versions (
    order_id       text          NOT NULL,
    processing_ts  timestamptz,
    run_id         text          NOT NULL,
    PRIMARY KEY (run_id, order_id)
);

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

-- The version of each order the final table holds: the processing_ts (the version
-- stamp) and the batch of the copy whose lines are loaded; none for an order delivered with no
-- products, whose lines are simply gone. A batch replaces an order's lines only when its copy
-- is at least as new as this one, so reprocessing an older batch never brings older lines back.
CREATE TABLE IF NOT EXISTS orders.order_versions (
    order_id       text          PRIMARY KEY,
    processing_ts  timestamptz,
    run_id         text          NOT NULL,
    loaded_at      timestamptz
);

CREATE INDEX IF NOT EXISTS order_versions_run_id_idx ON orders.order_versions (run_id);

-- Once, in a warehouse loaded before order_versions existed: the loaded orders' versions from
-- their batch's staged lines (NULL, the oldest, where those are gone). Does nothing afterwards.
INSERT INTO orders.order_versions (order_id, processing_ts, run_id, loaded_at)
SELECT DISTINCT ON (f.order_id) f.order_id, s.processing_ts, f.run_id, f.loaded_at
FROM orders.fact_order_lines AS f
LEFT JOIN orders.stg_order_lines AS s
    ON s.run_id = f.run_id AND s.order_id = f.order_id AND s.line_number = f.line_number
WHERE NOT EXISTS (SELECT 1 FROM orders.order_versions)
ORDER BY f.order_id, s.processing_ts DESC NULLS LAST
ON CONFLICT (order_id) DO NOTHING;
