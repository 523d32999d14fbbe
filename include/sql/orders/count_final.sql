-- The batch's lines accounted for by the final table, which reconcile compares with landing:
--   the final lines whose last load was the batch (run_id), plus
--   the batch's staged lines of orders whose loaded version is another batch's copy at least as
--   new (superseded: the batch delivered them, the newer copy's lines stand in their place).
-- A batch loaded before any newer one has none superseded, and the count is its final lines.
-- Once a newer batch replaces some of its orders, the count stays what the batch delivered, so
-- the batch still reconciles when reprocessed; any line neither loaded nor superseded by an at
-- least as new version (lost, or held back by an older one) still makes the count fall short.
SELECT
    (SELECT count(*) FROM orders.fact_order_lines WHERE run_id = %(batch_id)s)
    + (
        SELECT count(*)
        FROM orders.stg_order_lines AS s
        JOIN orders.order_versions AS v ON v.order_id = s.order_id
        WHERE s.run_id = %(batch_id)s
          AND v.run_id <> s.run_id
          AND coalesce(v.processing_ts, '-infinity') >= coalesce(s.processing_ts, '-infinity')
    ) AS row_count;
