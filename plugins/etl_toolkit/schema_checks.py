"""Great Expectations schema checks for every pipeline layer.

Layer 3: validation only (no S3, no Airflow tasks). Airflow tasks check a layer from its
parquet *footers* (``validate_footers``): GX validates the column set and every column's Arrow
type on a zero-row frame built from each distinct footer schema, and the not-null expectations
are answered from the footers' null-count statistics. No data page is read, so a check costs the
same for a thousand rows as for a billion. Values that only the data can show (a unique key) are
checked where the data is processed: in the Glue job, or by the warehouse's own constraints.

A pipeline declares, as code beside its DAG, what each layer's data must look like: a
``SchemaSuite`` of columns (name, Arrow type, nullability), an optional unique key and whether
extra columns are tolerated. ``check_table`` runs that suite through Great Expectations (GX)
against a ``pyarrow.Table`` and fails the task when the data does not conform; its result is a
small JSON-able dict that fits in an XCom.

Why the types are checked the way they are: GX's own ``ExpectColumnValuesToBeOfType`` compares,
on pandas, only ``dtype.type`` - the Python scalar class - so with Arrow-backed columns it sees
``int`` for both int32 and int64, ``datetime`` for every timestamp, and it cannot parse a
decimal type name at all. The table is therefore handed to GX with ``pandas.ArrowDtype``
columns, which keep the exact Arrow type, and a small custom GX expectation
(``expect_column_arrow_type_to_be``) compares GX's ``table.column_types`` metric with the
declared type.

GX takes seconds to import, and DAG files import this module at parse time, so GX, pandas
and pyarrow are imported only inside the functions that run the check.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import numbers
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

# Map expectations report at most _SAMPLE_SIZE distinct offending values (picked from GX's
# first _PARTIAL_COUNT), each cut to _MAX_TEXT characters, and column lists are cut to
# _MAX_NAMES, so the result stays small enough for an XCom even when every row fails.
_SAMPLE_SIZE = 3
_PARTIAL_COUNT = 10
_MAX_TEXT = 60
_MAX_NAMES = 20

# Type names compared after these rewrites: Arrow has several physical layouts of one logical
# string type, and a list's child field is called "item" in memory but "element" once read
# back from parquet.
_STRING_ALIASES = re.compile(r"\b(?:large_string|string_view|large_utf8|utf8)\b")
_LIST_CHILD_NAME = re.compile(r"\blist<(?:item|element):")


@dataclass(frozen=True)
class Column:
    """A column of a layer: its name, its Arrow type as pyarrow prints it, its nullability.

    ``type`` is compared with ``str()`` of the column's Arrow type, ignoring whitespace, the
    string layout (``large_string``, ``string_view`` count as ``string``) and the name of a
    list's child field (``list<item: int64>`` and ``list<element: int64>`` are one type).
    """

    name: str
    type: str
    nullable: bool = True
    pattern: str | None = None  # text columns (CSV): a regex the values match, in ``mostly`` of the rows


@dataclass(frozen=True)
class SchemaSuite:
    """The schema and key constraints of one pipeline layer, e.g. ``orders_landing``."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    allow_extra_columns: bool = False
    # The share of rows that must match a column's pattern: a few bad values are the rows a job
    # rejects one by one; a column whose values mostly do not match is a broken feed.
    mostly: float = 1.0

    def __post_init__(self) -> None:
        # Suites are declared in DAG files: a mistake should fail at parse time, not mid-run.
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "key", tuple(self.key))
        names = [column.name for column in self.columns]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"suite {self.name!r} declares columns twice: {duplicated}")
        unknown = [name for name in self.key if name not in names]
        if unknown:
            raise ValueError(f"suite {self.name!r} has key columns it does not declare: {unknown}")


class SchemaCheckFailed(Exception):
    """A table did not conform to its suite; ``result`` is what ``validate_table`` returned."""

    def __init__(self, result: dict) -> None:
        self.result = result
        super().__init__(_describe(result))

    def __reduce__(self):
        # Rebuild from the result, not the message, when the exception crosses a process.
        return (type(self), (self.result,))


def validate_table(table: pa.Table, suite: SchemaSuite, *, batch_id: str) -> dict:
    """Run ``suite`` through Great Expectations against ``table`` and return a compact result.

    The result is JSON-serialisable and small enough for an XCom::

        {"suite", "batch_id", "success", "rows", "evaluated",
         "failed": [{"expectation", "column", "observed", ...}, ...]}
    """
    _quiet_gx_logging()
    context = _ephemeral_context()
    data_source = context.data_sources.add_pandas(name="arrow_table")
    try:
        results = _validate(context, data_source, table, suite)
    finally:
        # GX keeps the latest context alive process-wide, and with it the data source's
        # cached batch: dropping the data source lets the batch go with the caller's table.
        context.data_sources.delete(data_source.name)
    failed = [result for result in results if not result.success]
    return {
        "suite": suite.name,
        "batch_id": batch_id,
        "success": not failed,
        "rows": table.num_rows,
        "evaluated": len(results),
        "failed": [_failure(result) for result in failed],
    }


def check_table(table: pa.Table, suite: SchemaSuite, *, batch_id: str) -> dict:
    """``validate_table``, raising ``SchemaCheckFailed`` when the table does not conform."""
    result = validate_table(table, suite, batch_id=batch_id)
    if not result["success"]:
        raise SchemaCheckFailed(result)
    return result


def _same_arrow_type(declared: str, observed: str) -> bool:
    """Whether two Arrow type names, as pyarrow prints them, name the same logical type."""
    return _canonical_type(declared) == _canonical_type(observed)


def _canonical_type(arrow_type: str) -> str:
    compact = "".join(arrow_type.split())
    return _LIST_CHILD_NAME.sub("list<", _STRING_ALIASES.sub("string", compact))


# --- building the check -------------------------------------------------------------------


def _validate(context, data_source, table: pa.Table, suite: SchemaSuite) -> list:
    """GX's result for every expectation of ``suite``, in the suite's order."""
    batch = data_source.add_dataframe_asset(name=suite.name).add_batch_definition_whole_dataframe(name="whole_table")
    present = set(table.column_names)
    # Two runs, because GX fingerprints every batch by hashing all of its cells (pickling the
    # whole frame when a column holds lists or structs): on wide or nested staging batches
    # that alone took most of the time. The column set and the types need only the schema,
    # so they run on a zero-row slice; nulls and the key run on just the columns they read.
    results = _run(context, batch, "schema", table.slice(0, 0), _schema_expectations(suite, present))
    value_columns = _value_columns(suite, present)
    if value_columns:
        values = table.select(value_columns)
        results += _run(context, batch, "values", values, _value_expectations(suite, present))
    return results


def _run(context, batch, name: str, table: pa.Table, expectations: list) -> list:
    """Validate ``table`` against ``expectations``; GX's results in the order given."""
    import great_expectations as gx
    import pandas as pd

    # ArrowDtype columns wrap the Arrow buffers (no copy) and keep the exact Arrow types,
    # which numpy-backed dtypes lose for decimals, nested and tz-aware values.
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    # BASIC: counts and a few offending values. SUMMARY would also collect the index of
    # every failing row, which on a batch of millions of bad rows is slow and useless here.
    outcome = validation.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "BASIC", "partial_unexpected_count": _PARTIAL_COUNT},
    )
    position = {_identity(expectation.configuration): n for n, expectation in enumerate(expectations)}
    return sorted(
        outcome.results,
        key=lambda result: position.get(_identity(result.expectation_config), len(position)),
    )


def _value_columns(suite: SchemaSuite, present: set[str]) -> list[str]:
    """The present columns whose values some expectation reads: the non-nullable and the key."""
    key = set(suite.key) if present.issuperset(suite.key) else set()
    return [
        column.name
        for column in suite.columns
        if column.name in present and (not column.nullable or column.name in key or column.pattern)
    ]


def _schema_expectations(suite: SchemaSuite, present: set[str]) -> list:
    """The column set, then the type of each column that is there.

    A missing column is reported once, by the column-set expectation, rather than as an
    error from every expectation that would have read it.
    """
    from great_expectations import expectations as gxe

    arrow_type_expectation = _arrow_type_expectation()
    names = [column.name for column in suite.columns]
    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=names, exact_match=not suite.allow_extra_columns),
        *(
            arrow_type_expectation(column=column.name, arrow_type=column.type)
            for column in suite.columns
            if column.name in present
        ),
    ]


def _value_expectations(suite: SchemaSuite, present: set[str]) -> list:
    """No nulls in each non-nullable column that is there, then the key's uniqueness."""
    from great_expectations import expectations as gxe

    expectations: list = [
        gxe.ExpectColumnValuesToNotBeNull(column=column.name)
        for column in suite.columns
        if column.name in present and not column.nullable
    ]
    expectations += [
        gxe.ExpectColumnValuesToMatchRegex(column=column.name, regex=column.pattern, mostly=suite.mostly)
        for column in suite.columns
        if column.name in present and column.pattern
    ]
    if suite.key and present.issuperset(suite.key):
        if len(suite.key) == 1:
            expectations.append(gxe.ExpectColumnValuesToBeUnique(column=suite.key[0]))
        else:
            expectations.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(suite.key)))
    return expectations


def _quiet_gx_logging() -> None:
    """Keep GX's INFO chatter (hundreds of lines on import) out of Airflow's INFO task logs.

    Only when nobody configured the ``great_expectations`` logger: an explicit level wins.
    """
    logger = logging.getLogger("great_expectations")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def _ephemeral_context():
    """An in-memory GX context: no files, no progress bars, no analytics.

    GX 1.24 has no usage-statistics client left (``GX_ANALYTICS_ENABLED`` is read nowhere)
    and GX Cloud is shut down, so nothing phones home; ``analytics_enabled=False`` keeps it
    that way on a GX release that brings analytics back. ``get_context`` also makes this the
    process's current context, which is harmless as every check builds its own.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


@functools.cache
def _arrow_type_expectation() -> type:
    """The ``expect_column_arrow_type_to_be`` expectation, defined once and on first use.

    Defining a GX expectation class registers it with GX, which needs GX imported: hence a
    function, not a module-level class.
    """
    from great_expectations.expectations.expectation import BatchExpectation

    class ExpectColumnArrowTypeToBe(BatchExpectation):
        """Expect a column of an Arrow-backed pandas frame to have exactly this Arrow type."""

        column: str
        arrow_type: str

        metric_dependencies = ("table.column_types",)
        success_keys = ("column", "arrow_type")
        args_keys = ("column", "arrow_type")

        def _validate(self, metrics, runtime_configuration=None, execution_engine=None):
            column = self.configuration.kwargs["column"]
            dtypes = {entry["name"]: entry["type"] for entry in metrics["table.column_types"]}
            if column not in dtypes:
                return {"success": False, "result": {"observed_value": None}}
            # An ArrowDtype knows its Arrow type; any other dtype means the frame was not
            # built from Arrow and is reported as pandas names it.
            dtype = dtypes[column]
            observed = str(getattr(dtype, "pyarrow_dtype", dtype))
            return {
                "success": _same_arrow_type(self.configuration.kwargs["arrow_type"], observed),
                "result": {"observed_value": observed},
            }

    return ExpectColumnArrowTypeToBe


# --- reporting ------------------------------------------------------------------------------


def _identity(configuration: Any) -> tuple[str, str]:
    kwargs = configuration.kwargs
    return configuration.type, repr(kwargs.get("column") or kwargs.get("column_list"))


def _failure(result: Any) -> dict:
    """One failed expectation, reduced to what a person needs to find the problem."""
    kwargs = result.expectation_config.kwargs
    failure: dict[str, Any] = {"expectation": result.expectation_config.type}
    column = kwargs.get("column") or kwargs.get("column_list")
    if column:
        failure["column"] = column if isinstance(column, str) else list(column)
    if "arrow_type" in kwargs:
        failure["expected"] = kwargs["arrow_type"]
    error = _exception_message(result.exception_info)
    failure["observed"] = {"error": _short(error)} if error else _observed(result.result or {})
    return failure


def _observed(gx_result: dict) -> Any:
    if "unexpected_count" in gx_result:
        observed = {
            "unexpected_count": _jsonable(gx_result["unexpected_count"]),
            "unexpected_percent": _jsonable(round(gx_result.get("unexpected_percent") or 0.0, 3)),
        }
        values = gx_result.get("partial_unexpected_list") or []
        sample = _distinct([_jsonable(value) for value in values])[:_SAMPLE_SIZE]
        if sample:
            observed["sample"] = sample
        return observed
    mismatched = (gx_result.get("details") or {}).get("mismatched")
    if mismatched:
        return {kind: _jsonable(names, limit=_MAX_NAMES) for kind, names in mismatched.items()}
    return _jsonable(gx_result.get("observed_value"))


def _distinct(values: list) -> list:
    """The values without repeats and without nulls (a null sample says nothing new)."""
    seen: dict[str, Any] = {}
    for value in values:
        if value is not None:
            seen.setdefault(json.dumps(value, sort_keys=True), value)
    return list(seen.values())


def _exception_message(exception_info: Any) -> str | None:
    """GX files an error either directly or per metric id; take the first message found."""
    if not isinstance(exception_info, dict):
        return None
    if exception_info.get("raised_exception") or exception_info.get("exception_message"):
        return str(exception_info.get("exception_message") or "error")
    for value in exception_info.values():
        message = _exception_message(value)
        if message:
            return message
    return None


def _jsonable(value: Any, limit: int = _SAMPLE_SIZE) -> Any:
    """``value`` as plain JSON types, with collections and text cut short."""
    if value is None or isinstance(value, (bool, str)):
        return _short(value) if isinstance(value, str) else value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in list(value.items())[:_MAX_NAMES]}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(item) for item in list(value)[:limit]]
    return None if _is_missing(value) else _short(str(value))


def _is_missing(value: Any) -> bool:
    """pandas' null scalars (NA, NaT) as they come back from Arrow-backed columns."""
    import pandas as pd

    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


def _short(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _describe(result: dict) -> str:
    failed = result.get("failed", [])
    lines = [
        f"schema check failed: suite {result.get('suite')!r}, batch {result.get('batch_id')!r}: "
        f"{len(failed)} of {result.get('evaluated')} expectations failed on {result.get('rows')} rows"
    ]
    lines += [_describe_failure(failure) for failure in failed]
    if result.get("objects"):
        lines.append(f"  in: {', '.join(result['objects'])}")
    return "\n".join(lines)


def _describe_failure(failure: dict) -> str:
    column = failure.get("column")
    where = "" if column is None else f" [{column if isinstance(column, str) else ', '.join(column)}]"
    observed = failure.get("observed")
    if "expected" in failure:
        detail = f"expected {failure['expected']}, observed {observed}"
    else:
        detail = f"observed {json.dumps(observed, default=str)}"
    return f"  {failure['expectation']}{where}: {detail}"


# -- suites beside their pipeline, checked against parquet footers -----------------------------------


def load_suite(pipeline: str, name: str) -> SchemaSuite:
    """The suite kept in ``include/quality/<pipeline>/<name>.json``."""
    from etl_toolkit.paths import include_dir

    path = include_dir() / "quality" / pipeline / f"{name}.json"
    spec = json.loads(path.read_text())
    return SchemaSuite(
        name=spec["name"],
        columns=tuple(Column(c["name"], c["type"], c.get("nullable", True), c.get("pattern")) for c in spec["columns"]),
        key=tuple(spec.get("key", ())),
        allow_extra_columns=spec.get("allow_extra_columns", False),
        mostly=spec.get("mostly", 1.0),
    )


def validate_footers(footers: list, suite: SchemaSuite, *, batch_id: str) -> dict:
    """Check a layer's files against ``suite`` from their footers (``s3.Footer``): schema through
    Great Expectations on a zero-row frame per distinct schema, nulls from the statistics.

    Returns the ``validate_table`` result of the first schema that fails (or of the first one),
    with ``objects`` the keys of the files of that schema, ``rows`` the rows of all files together,
    ``files`` and ``schemas`` counted, and every not-null failure found in the statistics added to
    ``failed``.
    """
    import pyarrow as pa

    if not footers:  # an empty batch: nothing to hold against the suite
        return {"suite": suite.name, "batch_id": batch_id, "success": True, "rows": 0, "evaluated": 0,
                "failed": [], "files": 0, "schemas": 0}  # fmt: skip
    by_schema: dict = {}
    for footer in footers:
        by_schema.setdefault(footer.schema, []).append(footer)
    results = []
    for schema, group in by_schema.items():
        result = validate_table(pa.Table.from_pylist([], schema=schema), _schema_only(suite), batch_id=batch_id)
        result["failed"] += _null_failures(group, suite)
        result["evaluated"] += sum(1 for c in suite.columns if not c.nullable and c.name in schema.names)
        result["success"] = not result["failed"]
        result["objects"] = [footer.key for footer in group][:_MAX_NAMES]
        results.append(result)
    chosen = next((r for r in results if not r["success"]), results[0])
    return {**chosen, "rows": sum(f.rows for f in footers), "files": len(footers), "schemas": len(results)}


def check_footers(footers: list, suite: SchemaSuite, *, batch_id: str) -> dict:
    """``validate_footers``, raising ``SchemaCheckFailed`` when the files do not conform."""
    result = validate_footers(footers, suite, batch_id=batch_id)
    if not result["success"]:
        raise SchemaCheckFailed(result)
    return result


def _schema_only(suite: SchemaSuite) -> SchemaSuite:
    """The suite's column set and types; nulls come from the statistics, keys from the data's home."""
    columns = tuple(Column(c.name, c.type, True) for c in suite.columns)
    return SchemaSuite(suite.name, columns, (), suite.allow_extra_columns)


def _null_failures(footers: list, suite: SchemaSuite) -> list[dict]:
    failures = []
    for column in suite.columns:
        if column.nullable:
            continue
        counts = [f.null_counts.get(column.name) for f in footers if column.name in f.schema.names]
        if not counts:
            continue  # a missing column is reported by the column-set expectation
        if any(count is None for count in counts):
            failures.append({"expectation": "expect_column_values_to_not_be_null", "column": column.name,
                             "observed": {"error": "the parquet footers carry no null counts for it"}})  # fmt: skip
        elif sum(counts):
            failures.append({"expectation": "expect_column_values_to_not_be_null", "column": column.name,
                             "observed": {"unexpected_count": sum(counts)}})  # fmt: skip
    return failures


# -- CSV objects, from a bounded read of each ------------------------------------------------------------


def csv_sample(data: bytes, *, complete: bool) -> pa.Table:
    """The rows of a CSV object's first bytes, every column as text (named by the header).

    ``complete``: the bytes are the whole object; otherwise the last, probably cut, line is left out.
    """
    import csv
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    if not complete:
        data = data[: data.rfind(b"\n") + 1]
    header_line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    header = next(csv.reader([header_line]), [])
    if not header:
        return pa.table({})
    return pacsv.read_csv(
        io.BytesIO(data),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=False
        ),
    )


def validate_csv_samples(samples: dict[str, pa.Table], suite: SchemaSuite, *, batch_id: str) -> dict:
    """Check CSV objects from their samples (key -> ``csv_sample``): the header through Great
    Expectations per distinct header, and the patterns of the columns on the samples together.

    Returns the ``validate_table`` result of the first header that fails (or of all the rows),
    with ``objects`` the keys of the files of that header and ``files`` and ``headers`` counted.
    """
    import pyarrow as pa

    if not samples:
        return {"suite": suite.name, "batch_id": batch_id, "success": True, "rows": 0, "evaluated": 0,
                "failed": [], "files": 0, "headers": 0}  # fmt: skip
    by_header: dict[tuple[str, ...], list[str]] = {}
    for key, sample in samples.items():
        by_header.setdefault(tuple(sample.column_names), []).append(key)
    for keys in by_header.values():
        result = validate_table(pa.concat_tables([samples[key] for key in keys]), suite, batch_id=batch_id)
        result.update(objects=keys[:_MAX_NAMES], files=len(samples), headers=len(by_header))
        if not result["success"]:
            return result
    rows = sum(sample.num_rows for sample in samples.values())
    return {**result, "rows": rows, "objects": sorted(samples)[:_MAX_NAMES]}


def check_csv_samples(samples: dict[str, pa.Table], suite: SchemaSuite, *, batch_id: str) -> dict:
    """``validate_csv_samples``, raising ``SchemaCheckFailed`` when the objects do not conform."""
    result = validate_csv_samples(samples, suite, batch_id=batch_id)
    if not result["success"]:
        raise SchemaCheckFailed(result)
    return result
