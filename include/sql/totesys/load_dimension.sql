-- A dimension, type 1: each staged row (the latest version of a source row, as the batch
-- remodelled it) inserts its key or overwrites the row that has it, but never with an older
-- version, so loading an older batch again, in any order, leaves the dimension as it was.
-- A row's version is source_last_updated (the last_updated of the source row it is keyed by),
-- then, in dim_staff and dim_counterparty, the last_updated of the department or address joined
-- into it: compared as a pair, in that order (a missing joined row counts as the oldest). A
-- staged row replaces the row only when its version is newer, or when the row has none (loaded
-- before versions were kept). An equal version leaves the row as it is: it is the same source
-- rows, so the same values. dim_date has no version (a date's row never changes): a row that
-- would not change is left alone.
-- Rendered by etl_toolkit.tasks.warehouse.load_parquet_tables with fixed names: table, staged,
-- columns (the staged parquet's, checked as plain identifiers) and keys.
{%- set versions = columns | select("in", ["source_last_updated", "department_last_updated",
                                           "address_last_updated"]) | list %}
INSERT INTO {{ table }} AS d ({{ columns | join(', ') }})
SELECT {{ columns | join(', ') }}
FROM {{ staged }}
ON CONFLICT ({{ keys | join(', ') }}) DO UPDATE SET
{%- for column in columns if column not in keys %}
    {{ column }} = EXCLUDED.{{ column }}{{ "," if not loop.last }}
{%- endfor %}
{%- if versions %}
WHERE d.source_last_updated IS NULL
   OR ({% for v in versions %}coalesce(EXCLUDED.{{ v }}, '-infinity'){{ ", " if not loop.last }}{% endfor %})
    > ({% for v in versions %}coalesce(d.{{ v }}, '-infinity'){{ ", " if not loop.last }}{% endfor %});
{%- else %}
WHERE ({% for column in columns if column not in keys %}d.{{ column }}{{ ", " if not loop.last }}{% endfor %})
    IS DISTINCT FROM
      ({% for column in columns if column not in keys %}EXCLUDED.{{ column }}{{ ", " if not loop.last }}{% endfor %});
{%- endif %}
