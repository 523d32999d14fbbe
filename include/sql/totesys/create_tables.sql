-- The totesys warehouse: the star schema of docs/interfaces.md ("Totesys"). Idempotent: safe to
-- run before every batch. Dimensions hold the latest version of each source row (type 1), and each
-- row says which: source_last_updated, the last_updated of the source row it is keyed by, and in
-- dim_staff and dim_counterparty also that of the department or address joined into it, so an
-- older version never replaces it (load_dimension.sql). They are null only on a row loaded
-- before versions were kept, until its next version. dim_date is static. Facts keep one row per
-- source-row version, identified by the source key and its last_updated split into date and
-- time, and remember the batch that first brought the version.
CREATE SCHEMA IF NOT EXISTS totesys;

CREATE TABLE IF NOT EXISTS totesys.dim_date (
    date_id      date PRIMARY KEY,
    year         int  NOT NULL,
    month        int  NOT NULL,
    day          int  NOT NULL,
    day_of_week  int  NOT NULL,
    day_name     text NOT NULL,
    month_name   text NOT NULL,
    quarter      int  NOT NULL
);

CREATE TABLE IF NOT EXISTS totesys.dim_staff (
    staff_id         int PRIMARY KEY,
    first_name       text NOT NULL,
    last_name        text NOT NULL,
    department_name  text,
    location         text,
    email_address    text NOT NULL,
    source_last_updated      timestamp,
    department_last_updated  timestamp
);

CREATE TABLE IF NOT EXISTS totesys.dim_location (
    location_id     int PRIMARY KEY,
    address_line_1  text NOT NULL,
    address_line_2  text,
    district        text,
    city            text NOT NULL,
    postal_code     text NOT NULL,
    country         text NOT NULL,
    phone           text NOT NULL,
    source_last_updated  timestamp
);

CREATE TABLE IF NOT EXISTS totesys.dim_currency (
    currency_id    int PRIMARY KEY,
    currency_code  text NOT NULL,
    currency_name  text,
    source_last_updated  timestamp
);

CREATE TABLE IF NOT EXISTS totesys.dim_design (
    design_id      int PRIMARY KEY,
    design_name    text NOT NULL,
    file_location  text NOT NULL,
    file_name      text NOT NULL,
    source_last_updated  timestamp
);

CREATE TABLE IF NOT EXISTS totesys.dim_counterparty (
    counterparty_id                    int PRIMARY KEY,
    counterparty_legal_name            text NOT NULL,
    counterparty_legal_address_line_1  text,
    counterparty_legal_address_line_2  text,
    counterparty_legal_district        text,
    counterparty_legal_city            text,
    counterparty_legal_postal_code     text,
    counterparty_legal_country         text,
    counterparty_legal_phone_number    text,
    source_last_updated                timestamp,
    address_last_updated               timestamp
);

CREATE TABLE IF NOT EXISTS totesys.dim_payment_type (
    payment_type_id    int PRIMARY KEY,
    payment_type_name  text NOT NULL,
    source_last_updated  timestamp
);

CREATE TABLE IF NOT EXISTS totesys.dim_transaction (
    transaction_id     int PRIMARY KEY,
    transaction_type   text NOT NULL,
    sales_order_id     int,
    purchase_order_id  int,
    source_last_updated  timestamp
);

CREATE TABLE IF NOT EXISTS totesys.fact_sales_order (
    sales_record_id              bigserial PRIMARY KEY,
    sales_order_id               int           NOT NULL,
    created_date                 date          NOT NULL REFERENCES totesys.dim_date,
    created_time                 time          NOT NULL,
    last_updated_date            date          NOT NULL REFERENCES totesys.dim_date,
    last_updated_time            time          NOT NULL,
    sales_staff_id               int           NOT NULL REFERENCES totesys.dim_staff,
    counterparty_id              int           NOT NULL REFERENCES totesys.dim_counterparty,
    units_sold                   int           NOT NULL,
    unit_price                   numeric(10,2) NOT NULL,
    currency_id                  int           NOT NULL REFERENCES totesys.dim_currency,
    design_id                    int           NOT NULL REFERENCES totesys.dim_design,
    agreed_payment_date          date          NOT NULL REFERENCES totesys.dim_date,
    agreed_delivery_date         date          NOT NULL REFERENCES totesys.dim_date,
    agreed_delivery_location_id  int           NOT NULL REFERENCES totesys.dim_location,
    batch_id                     text          NOT NULL,
    loaded_at                    timestamptz   NOT NULL,
    UNIQUE (sales_order_id, last_updated_date, last_updated_time)
);

CREATE TABLE IF NOT EXISTS totesys.fact_purchase_orders (
    purchase_record_id           bigserial PRIMARY KEY,
    purchase_order_id            int           NOT NULL,
    created_date                 date          NOT NULL REFERENCES totesys.dim_date,
    created_time                 time          NOT NULL,
    last_updated_date            date          NOT NULL REFERENCES totesys.dim_date,
    last_updated_time            time          NOT NULL,
    staff_id                     int           NOT NULL REFERENCES totesys.dim_staff,
    counterparty_id              int           NOT NULL REFERENCES totesys.dim_counterparty,
    item_code                    text          NOT NULL,
    item_quantity                int           NOT NULL,
    item_unit_price              numeric(10,2) NOT NULL,
    currency_id                  int           NOT NULL REFERENCES totesys.dim_currency,
    agreed_delivery_date         date          NOT NULL REFERENCES totesys.dim_date,
    agreed_payment_date          date          NOT NULL REFERENCES totesys.dim_date,
    agreed_delivery_location_id  int           NOT NULL REFERENCES totesys.dim_location,
    batch_id                     text          NOT NULL,
    loaded_at                    timestamptz   NOT NULL,
    UNIQUE (purchase_order_id, last_updated_date, last_updated_time)
);

CREATE TABLE IF NOT EXISTS totesys.fact_payment (
    payment_record_id  bigserial PRIMARY KEY,
    payment_id         int           NOT NULL,
    created_date       date          NOT NULL REFERENCES totesys.dim_date,
    created_time       time          NOT NULL,
    last_updated_date  date          NOT NULL REFERENCES totesys.dim_date,
    last_updated_time  time          NOT NULL,
    transaction_id     int           NOT NULL REFERENCES totesys.dim_transaction,
    counterparty_id    int           NOT NULL REFERENCES totesys.dim_counterparty,
    payment_amount     numeric(12,2) NOT NULL,
    currency_id        int           NOT NULL REFERENCES totesys.dim_currency,
    payment_type_id    int           NOT NULL REFERENCES totesys.dim_payment_type,
    paid               boolean       NOT NULL,
    payment_date       date          NOT NULL REFERENCES totesys.dim_date,
    batch_id           text          NOT NULL,
    loaded_at          timestamptz   NOT NULL,
    UNIQUE (payment_id, last_updated_date, last_updated_time)
);

-- Tables made before dimensions kept their version gain the columns (null until the row's next
-- version is loaded). Only where one is missing: ALTER TABLE takes an exclusive lock, even when
-- IF NOT EXISTS finds the column there, and this file runs before every batch while readers
-- may be querying the dimensions.
DO $$
DECLARE
    version text[];
BEGIN
    FOREACH version SLICE 1 IN ARRAY ARRAY[
        ['dim_staff', 'source_last_updated'], ['dim_staff', 'department_last_updated'],
        ['dim_location', 'source_last_updated'], ['dim_currency', 'source_last_updated'],
        ['dim_design', 'source_last_updated'], ['dim_counterparty', 'source_last_updated'],
        ['dim_counterparty', 'address_last_updated'], ['dim_payment_type', 'source_last_updated'],
        ['dim_transaction', 'source_last_updated']
    ] LOOP
        IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = 'totesys' AND table_name = version[1]
                         AND column_name = version[2]) THEN
            EXECUTE 'ALTER TABLE totesys.' || quote_ident(version[1])
                 || ' ADD COLUMN IF NOT EXISTS ' || quote_ident(version[2]) || ' timestamp';
        END IF;
    END LOOP;
END
$$;

CREATE INDEX IF NOT EXISTS fact_sales_order_batch_idx ON totesys.fact_sales_order (batch_id);
CREATE INDEX IF NOT EXISTS fact_purchase_orders_batch_idx ON totesys.fact_purchase_orders (batch_id);
CREATE INDEX IF NOT EXISTS fact_payment_batch_idx ON totesys.fact_payment (batch_id);
