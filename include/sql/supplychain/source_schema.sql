-- The supply-chain OLTP source (database supplychain): the four dimension tables the ERP, CRM and
-- project-management applications keep. Rows are inserted, updated (the application sets
-- updated_at to now() on every update) and hard-deleted; silver_dimensions reads the changes.
-- Run by the sample-data generator to (re)create the source; not by the pipeline.
DROP TABLE IF EXISTS product, supplier, warehouse, customer;

CREATE TABLE supplier (
    supplier_id    integer PRIMARY KEY,
    supplier_name  text NOT NULL,
    country        char(2) NOT NULL,
    lead_time_days integer NOT NULL CHECK (lead_time_days >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE product (
    product_id   integer PRIMARY KEY,
    sku          text NOT NULL UNIQUE,
    product_name text NOT NULL,
    category     text NOT NULL,
    unit_cost    numeric(10, 2) NOT NULL,
    supplier_id  integer NOT NULL REFERENCES supplier (supplier_id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE warehouse (
    warehouse_id   integer PRIMARY KEY,
    warehouse_name text NOT NULL,
    city           text NOT NULL,
    country        char(2) NOT NULL,
    capacity_units integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customer (
    customer_id   integer PRIMARY KEY,
    customer_name text NOT NULL,
    segment       text NOT NULL,
    country       char(2) NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The incremental extract reads each table by updated_at.
CREATE INDEX supplier_updated_at ON supplier (updated_at);
CREATE INDEX product_updated_at ON product (updated_at);
CREATE INDEX warehouse_updated_at ON warehouse (updated_at);
CREATE INDEX customer_updated_at ON customer (updated_at);
