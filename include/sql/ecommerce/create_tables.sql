-- The e-commerce warehouse (docs/interfaces.md, "E-commerce"): the two dimensions, preloaded with
-- the upstream system's rows, the fact table, and the tables a batch passes through on its way.
-- Idempotent: runs before every batch, under a lock, because two CREATE ... IF NOT EXISTS at once
-- can both try to create (a unique violation in PostgreSQL's catalog).
SELECT pg_advisory_xact_lock(hashtext('ecommerce.create_tables'));
CREATE SCHEMA IF NOT EXISTS ecommerce;

-- Fails the statement that calls it with the message given: a guard that refuses a batch in
-- plain SQL (check_rejected_share.sql) rolls back its whole transaction with a readable reason.
CREATE OR REPLACE FUNCTION ecommerce.refuse(message text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = message, ERRCODE = 'check_violation';
END
$$;

CREATE TABLE IF NOT EXISTS ecommerce.dim_customers (
    customer_id       text PRIMARY KEY,
    first_name        text,
    last_name         text,
    email             text,
    membership_level  text
);

CREATE TABLE IF NOT EXISTS ecommerce.dim_products (
    product_id    text PRIMARY KEY,
    product_name  text,
    category      text,
    price         numeric(10,2),
    supplier_id   text
);

-- The rows the upstream system starts with. A row already there is left as it is: the warehouse,
-- not this file, owns a dimension once it exists.
INSERT INTO ecommerce.dim_customers (customer_id, first_name, last_name, email, membership_level) VALUES
    ('CUST00001', 'Yash', 'Bhawsar', 'yash.bha@example.com', 'BR'),
    ('CUST00002', 'Vini', 'Shrivastava', 'vini.stva@example.com', 'SL'),
    ('CUST00003', 'Ram', 'Heerekar', 'ram.heer@example.com', 'GL'),
    ('CUST00004', 'Matin', 'Khan', 'matin.khan@example.com', 'BR'),
    ('CUST00005', 'Bikki', 'Tamoli', 'Bikki.tamoli@example.com', 'SL')
ON CONFLICT (customer_id) DO NOTHING;

INSERT INTO ecommerce.dim_products (product_id, product_name, category, price, supplier_id) VALUES
    ('PROD00001', 'Laptop', 'Electronics', 799.99, 'SUP00001'),
    ('PROD00002', 'Smartphone', 'Electronics', 499.99, 'SUP00002'),
    ('PROD00003', 'Headphones', 'Electronics', 79.99, 'SUP00001'),
    ('PROD00004', 'T-Shirt', 'Clothing', 19.99, 'SUP00003'),
    ('PROD00005', 'Jeans', 'Clothing', 49.99, 'SUP00003'),
    ('PROD00006', 'Coffee Maker', 'Home Goods', 99.99, 'SUP00002'),
    ('PROD00007', 'Microwave', 'Home Goods', 149.99, 'SUP00001'),
    ('PROD00008', 'Vacuum Cleaner', 'Home Goods', 199.99, 'SUP00002'),
    ('PROD00009', 'Book', 'Other', 14.99, 'SUP00003'),
    ('PROD00010', 'Movie', 'Other', 19.99, 'SUP00002')
ON CONFLICT (product_id) DO NOTHING;

-- What the stage job read: one row per CSV object of a batch, with the size and ETag it had, so
-- the archive moves exactly those objects and can tell a copy that is whole from one that is not.
CREATE TABLE IF NOT EXISTS ecommerce.batch_objects (
    batch_id    text    NOT NULL,
    object_key  text    NOT NULL,
    size        bigint  NOT NULL,
    etag        text    NOT NULL,
    rows_read   int     NOT NULL,
    PRIMARY KEY (batch_id, object_key)
);

-- Every row of a batch whose values parse and whose customer and product exist, typed; the
-- batch's duplicates are settled here (disposition), in the database, where the whole batch is.
CREATE TABLE IF NOT EXISTS ecommerce.stg_transactions (
    batch_id          text           NOT NULL,
    object_key        text           NOT NULL,
    line_number       int            NOT NULL,
    transaction_id    text           NOT NULL,
    customer_id       text           NOT NULL,
    product_id        text           NOT NULL,
    quantity          int            NOT NULL,
    price             numeric(12,2)  NOT NULL,
    transaction_date  date           NOT NULL,
    payment_type      text           NOT NULL,
    status            text           NOT NULL,
    disposition       text           NOT NULL DEFAULT 'valid'
                      CHECK (disposition IN ('valid', 'duplicate', 'rejected')),
    PRIMARY KEY (batch_id, object_key, line_number)
);
-- No index beyond the key: the primary key serves every lookup by batch, and a second index in
-- transaction_id order made the stage job's COPY three times slower.
DROP INDEX IF EXISTS ecommerce.stg_transactions_batch_transaction;

-- Rows that are not loaded, and why: rule is the check that refused them (format, reference,
-- conflicting_duplicate); raw is the row's cells as read, by column name.
CREATE TABLE IF NOT EXISTS ecommerce.rejected_transactions (
    batch_id     text         NOT NULL,
    object_key   text         NOT NULL,
    line_number  int          NOT NULL,
    rule         text         NOT NULL,
    reason       text         NOT NULL,
    raw          jsonb        NOT NULL,
    rejected_at  timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, object_key, line_number)
);

-- One row per transaction, upserted. batch_id and loaded_at say which batch last changed the row;
-- source_completed_at is that batch's completion time, the row's version: an older batch loaded
-- again never overwrites what a newer one wrote.
CREATE TABLE IF NOT EXISTS ecommerce.fact_transactions (
    transaction_id       text           PRIMARY KEY,
    customer_id          text           NOT NULL,
    customer_email       text,
    product_id           text           NOT NULL,
    product_name         text,
    quantity             int            NOT NULL,
    total_price          numeric(12,2)  NOT NULL,
    transaction_date     date           NOT NULL,
    payment_type         text           NOT NULL,
    status               text           NOT NULL,
    batch_id             text           NOT NULL,
    loaded_at            timestamptz    NOT NULL,
    source_completed_at  timestamptz    NOT NULL
);

-- What each batch's upsert did, for its audit count and its notification.
CREATE TABLE IF NOT EXISTS ecommerce.batch_loads (
    batch_id             text         PRIMARY KEY,
    inserted             int          NOT NULL,
    updated              int          NOT NULL,
    unchanged            int          NOT NULL,
    superseded           int          NOT NULL,
    source_completed_at  timestamptz  NOT NULL,
    loaded_at            timestamptz  NOT NULL
);
