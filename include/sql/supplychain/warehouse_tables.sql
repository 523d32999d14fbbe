-- The supply-chain warehouse: the three gold tables of the lakehouse, in the schema supplychain,
-- with the gold tables' names, columns and types. supplychain_load_warehouse runs these statements
-- (its WAREHOUSE_TABLES) in the transaction that replaces the tables' rows, so a first load
-- creates them; idempotent. The columns every row has a value for are NOT NULL.
CREATE SCHEMA IF NOT EXISTS supplychain;

CREATE TABLE IF NOT EXISTS supplychain.gold_supplier_performance (
    supplier_id        integer PRIMARY KEY,
    supplier_name      text,
    purchase_orders    bigint NOT NULL,
    units_received     bigint NOT NULL,
    on_time_rate       numeric(6, 4),
    avg_lead_time_days numeric(10, 2),
    total_cost         numeric(18, 2) NOT NULL
);

CREATE TABLE IF NOT EXISTS supplychain.gold_inventory_position (
    warehouse_id   integer NOT NULL,
    product_id     integer NOT NULL,
    units_received bigint NOT NULL,
    units_shipped  bigint NOT NULL,
    on_hand        bigint NOT NULL,
    PRIMARY KEY (warehouse_id, product_id)
);

CREATE TABLE IF NOT EXISTS supplychain.gold_daily_shipments (
    ship_date    date NOT NULL,
    warehouse_id integer NOT NULL,
    shipments    bigint NOT NULL,
    units        bigint NOT NULL,
    delivered    bigint NOT NULL,
    late         bigint NOT NULL,
    PRIMARY KEY (ship_date, warehouse_id)
);
