-- A dimension, type 1: each staged row (the latest version of a source row, as the batch
-- remodelled it) inserts its key or overwrites the row that has it. A row that would not change
-- is left alone, so loading the same batch again writes nothing.
-- Rendered by etl_toolkit.warehouse.load_parquet_tables with fixed names: table, staged,
-- columns (the staged parquet's, checked as plain identifiers) and keys.
INSERT INTO {{ table }} AS d ({{ columns | join(', ') }})
SELECT {{ columns | join(', ') }}
FROM {{ staged }}
ON CONFLICT ({{ keys | join(', ') }}) DO UPDATE SET
{%- for column in columns if column not in keys %}
    {{ column }} = EXCLUDED.{{ column }}{{ "," if not loop.last }}
{%- endfor %}
WHERE ({% for column in columns if column not in keys %}d.{{ column }}{{ ", " if not loop.last }}{% endfor %})
    IS DISTINCT FROM
      ({% for column in columns if column not in keys %}EXCLUDED.{{ column }}{{ ", " if not loop.last }}{% endfor %});
