-- Warehouse: the rows of each gold table in schema supplychain, counted from the tables (the load
-- replaces them whole, so every row is the batch's); each must equal the gold layer's count.
SELECT
    (SELECT count(*) FROM supplychain.gold_supplier_performance) AS gold_supplier_performance,
    (SELECT count(*) FROM supplychain.gold_inventory_position) AS gold_inventory_position,
    (SELECT count(*) FROM supplychain.gold_daily_shipments) AS gold_daily_shipments;
