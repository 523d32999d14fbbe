-- A fact table keeps history: each staged row is one version of a source row (its key and
-- last_updated date and time). A version not seen before is appended with the batch that
-- brought it; a version already there (a rerun, or a change extracted twice) adds nothing.
-- Rendered by etl_toolkit.tasks.warehouse.load_parquet_tables with fixed names: table, staged,
-- columns (the staged parquet's, checked as plain identifiers) and keys.
INSERT INTO {{ table }} ({{ columns | join(', ') }}, batch_id, loaded_at)
SELECT {{ columns | join(', ') }}, %(batch_id)s, %(loaded_at)s
FROM {{ staged }}
ON CONFLICT ({{ keys | join(', ') }}) DO NOTHING;
