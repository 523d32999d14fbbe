"""Totesys, S3 ingestion to S3 processed: one ingested batch remodelled into the star schema.

Reads   s3://<ingestion_bucket>/batches/<batch_id>/<table>.parquet  (totesys_extract's output, in
        the source's own column types; a table without a file had no changes), and the current
        state of the reference tables s3://<processed_bucket>/state/<table>.parquet (address,
        counterparty, department, staff: the latest version of every row seen so far).
Writes  s3://<processed_bucket>/<warehouse_table>/batch_id=<batch_id>/part-00000.parquet for the
        eleven warehouse tables of docs/interfaces.md ("Totesys"), each replaced as a whole on a
        rerun:
        - facts: one row per source-row version of the batch (the version is ``last_updated``,
          split into ``last_updated_date`` and ``last_updated_time``, as ``created_at`` is);
        - dimensions: the latest version of each row the batch changed, joined with what it
          refers to; a changed department re-emits its staff, a changed address its
          counterparties (the state supplies the rows the batch did not carry). Each row carries
          its version: ``source_last_updated``, the ``last_updated`` of the source row it is
          keyed by, and for dim_staff and dim_counterparty also the ``last_updated`` of the row
          joined into it (``department_last_updated``, ``address_last_updated``). The warehouse
          keeps a dimension row unless a newer version arrives, so loading an older batch
          changes nothing (include/sql/totesys/load_dimension.sql);
        - dim_date: every date a fact row of the batch refers to.
        then the merged state, last, so a failed run leaves the previous state. A state row is
        replaced only by a newer version of it: remodelling an older batch again (a reprocess, or
        a failed batch run after a newer one) leaves the state as it was.

Source types: the landing columns are conformed to the types below, whatever the source declared
(``conform_source``): integers read back as floats (a nullable integer column such as
``transaction.sales_order_id`` in a pandas export) must hold whole numbers; prices as floats are
read as the shortest decimal that prints them and rounded half away from zero to two places, as
PostgreSQL rounds a numeric; dates held as ``YYYY-MM-DD`` text (the source's ``agreed_*_date``
and ``payment_date``) are parsed, and a value that is not such a date fails the job naming it;
timestamps of any unit are kept to the microsecond, naive (a zoned one is taken in UTC).

Runs on AWS Glue 5.0 and locally as a plain Python process (pyarrow only; totesys batches are
small: one batch of changed rows fits in memory). Ends with one JSON line: rows per table.

Arguments: --batch_id --ingestion_bucket --processed_bucket; others are ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

ARGUMENTS = ["batch_id", "ingestion_bucket", "processed_bucket"]
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
STATE_TABLES = ("address", "counterparty", "department", "staff")

_TS = pa.timestamp("us")
_MONEY = pa.decimal128(10, 2)
_STAMPS = [("created_at", _TS), ("last_updated", _TS)]

# The ingested layer, as totesys_extract writes it (its allow-list): source table -> columns and types.
SOURCE: dict[str, list[tuple[str, pa.DataType]]] = {
    "address": [("address_id", pa.int32()), ("address_line_1", pa.string()), ("address_line_2", pa.string()),
                ("district", pa.string()), ("city", pa.string()), ("postal_code", pa.string()),
                ("country", pa.string()), ("phone", pa.string())],
    "counterparty": [("counterparty_id", pa.int32()), ("counterparty_legal_name", pa.string()),
                     ("legal_address_id", pa.int32()), ("commercial_contact", pa.string()),
                     ("delivery_contact", pa.string())],
    "currency": [("currency_id", pa.int32()), ("currency_code", pa.string())],
    "department": [("department_id", pa.int32()), ("department_name", pa.string()), ("location", pa.string()),
                   ("manager", pa.string())],
    "design": [("design_id", pa.int32()), ("design_name", pa.string()), ("file_location", pa.string()),
               ("file_name", pa.string())],
    "staff": [("staff_id", pa.int32()), ("first_name", pa.string()), ("last_name", pa.string()),
              ("department_id", pa.int32()), ("email_address", pa.string())],
    "sales_order": [("sales_order_id", pa.int32()), ("design_id", pa.int32()), ("staff_id", pa.int32()),
                    ("counterparty_id", pa.int32()), ("units_sold", pa.int32()), ("unit_price", _MONEY),
                    ("currency_id", pa.int32()), ("agreed_delivery_date", pa.date32()),
                    ("agreed_payment_date", pa.date32()), ("agreed_delivery_location_id", pa.int32())],
    "purchase_order": [("purchase_order_id", pa.int32()), ("staff_id", pa.int32()), ("counterparty_id", pa.int32()),
                       ("item_code", pa.string()), ("item_quantity", pa.int32()), ("item_unit_price", _MONEY),
                       ("currency_id", pa.int32()), ("agreed_delivery_date", pa.date32()),
                       ("agreed_payment_date", pa.date32()), ("agreed_delivery_location_id", pa.int32())],
    "payment": [("payment_id", pa.int32()), ("transaction_id", pa.int32()), ("counterparty_id", pa.int32()),
                ("payment_amount", pa.decimal128(12, 2)), ("currency_id", pa.int32()),
                ("payment_type_id", pa.int32()), ("paid", pa.bool_()), ("payment_date", pa.date32()),
                ("company_ac_number", pa.int32()), ("counterparty_ac_number", pa.int32())],
    "payment_type": [("payment_type_id", pa.int32()), ("payment_type_name", pa.string())],
    "transaction": [("transaction_id", pa.int32()), ("transaction_type", pa.string()),
                    ("sales_order_id", pa.int32()), ("purchase_order_id", pa.int32())],
}  # fmt: skip
SOURCE = {name: [*columns, *_STAMPS] for name, columns in SOURCE.items()}

_DATE, _TIME, _STR, _INT = pa.date32(), pa.time64("us"), pa.string(), pa.int32()
# A dimension row's version (facts carry theirs as last_updated_date and _time): the last_updated
# of the source row it is keyed by, then, where another row is joined into it, that row's. Ordered
# as a pair, not by the greater of the two: a staff member who moves to another department is a
# newer version even when their old department's stamp, loaded first from a later batch, is
# greater than every stamp of the move.
VERSION = "source_last_updated"
_SOURCE_VERSION = [(VERSION, _TS)]
_VERSION = [
    ("created_date", _DATE), ("created_time", _TIME), ("last_updated_date", _DATE), ("last_updated_time", _TIME)
]  # fmt: skip

WAREHOUSE: dict[str, list[tuple[str, pa.DataType]]] = {
    "dim_date": [("date_id", _DATE), ("year", _INT), ("month", _INT), ("day", _INT), ("day_of_week", _INT),
                 ("day_name", _STR), ("month_name", _STR), ("quarter", _INT)],
    "dim_staff": [("staff_id", _INT), ("first_name", _STR), ("last_name", _STR), ("department_name", _STR),
                  ("location", _STR), ("email_address", _STR), *_SOURCE_VERSION,
                  ("department_last_updated", _TS)],
    "dim_location": [("location_id", _INT), ("address_line_1", _STR), ("address_line_2", _STR), ("district", _STR),
                     ("city", _STR), ("postal_code", _STR), ("country", _STR), ("phone", _STR), *_SOURCE_VERSION],
    "dim_currency": [("currency_id", _INT), ("currency_code", _STR), ("currency_name", _STR), *_SOURCE_VERSION],
    "dim_design": [("design_id", _INT), ("design_name", _STR), ("file_location", _STR), ("file_name", _STR),
                   *_SOURCE_VERSION],
    "dim_counterparty": [("counterparty_id", _INT), ("counterparty_legal_name", _STR),
                         ("counterparty_legal_address_line_1", _STR), ("counterparty_legal_address_line_2", _STR),
                         ("counterparty_legal_district", _STR), ("counterparty_legal_city", _STR),
                         ("counterparty_legal_postal_code", _STR), ("counterparty_legal_country", _STR),
                         ("counterparty_legal_phone_number", _STR), *_SOURCE_VERSION,
                         ("address_last_updated", _TS)],
    "dim_payment_type": [("payment_type_id", _INT), ("payment_type_name", _STR), *_SOURCE_VERSION],
    "dim_transaction": [("transaction_id", _INT), ("transaction_type", _STR), ("sales_order_id", _INT),
                        ("purchase_order_id", _INT), *_SOURCE_VERSION],
    "fact_sales_order": [("sales_order_id", _INT), *_VERSION, ("sales_staff_id", _INT), ("counterparty_id", _INT),
                         ("units_sold", _INT), ("unit_price", pa.decimal128(10, 2)), ("currency_id", _INT),
                         ("design_id", _INT), ("agreed_payment_date", _DATE), ("agreed_delivery_date", _DATE),
                         ("agreed_delivery_location_id", _INT)],
    "fact_purchase_orders": [("purchase_order_id", _INT), *_VERSION, ("staff_id", _INT), ("counterparty_id", _INT),
                             ("item_code", _STR), ("item_quantity", _INT), ("item_unit_price", pa.decimal128(10, 2)),
                             ("currency_id", _INT), ("agreed_delivery_date", _DATE), ("agreed_payment_date", _DATE),
                             ("agreed_delivery_location_id", _INT)],
    "fact_payment": [("payment_id", _INT), *_VERSION, ("transaction_id", _INT), ("counterparty_id", _INT),
                     ("payment_amount", pa.decimal128(12, 2)), ("currency_id", _INT), ("payment_type_id", _INT),
                     ("paid", pa.bool_()), ("payment_date", _DATE)],
}  # fmt: skip

CURRENCY_NAMES = {
    "GBP": "British Pound", "USD": "US Dollar", "EUR": "Euro", "JPY": "Japanese Yen", "CHF": "Swiss Franc",
    "AUD": "Australian Dollar", "CAD": "Canadian Dollar", "CNY": "Chinese Yuan", "SEK": "Swedish Krona",
}  # fmt: skip
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
               "November", "December")  # fmt: skip
FACT_DATE_COLUMNS = {
    "fact_sales_order": ("created_date", "last_updated_date", "agreed_payment_date", "agreed_delivery_date"),
    "fact_purchase_orders": ("created_date", "last_updated_date", "agreed_delivery_date", "agreed_payment_date"),
    "fact_payment": ("created_date", "last_updated_date", "payment_date"),
}


def source_schema(table: str) -> pa.Schema:
    return pa.schema([pa.field(name, arrow_type) for name, arrow_type in SOURCE[table]])


def warehouse_schema(table: str) -> pa.Schema:
    return pa.schema([pa.field(name, arrow_type) for name, arrow_type in WAREHOUSE[table]])


def resolve_options(argv: Sequence[str], names: Iterable[str]) -> dict[str, str]:
    """``awsglue.utils.getResolvedOptions``: every name is a required ``--name value``."""
    names = list(names)
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    for name in names:
        parser.add_argument(f"--{name}", required=True)
    parsed, _ = parser.parse_known_args(list(argv[1:]))
    return {name: getattr(parsed, name) for name in names}


# -- pure transforms --------------------------------------------------------------------------------


class SourceValueError(ValueError):
    """A landing value that cannot be read as its column's type: the job fails, naming it."""


def _bad(table: str, column: str, values: Iterable, what: str) -> SourceValueError:
    sample = list(dict.fromkeys(repr(v) for v in values))[:3]
    return SourceValueError(f"{table}.{column}: {what}, e.g. {', '.join(sample)}")


def to_decimal(value: float | int | str | Decimal | None, scale: int) -> Decimal | None:
    """A float, integer or decimal text as a decimal of ``scale`` places.

    A float is read as the shortest decimal that prints it (3.94, not 3.939999...), then rounded
    half away from zero, as PostgreSQL rounds a value into numeric(p, scale).
    """
    if value is None:
        return None
    exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    return exact.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)


def _as_integer(values: pa.ChunkedArray, target: pa.DataType, table: str, column: str) -> pa.ChunkedArray:
    if pa.types.is_floating(values.type):  # a nullable integer column as pandas exports it
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, values.type), values)  # NaN: its null
        fractional = pc.filter(values, pc.not_equal(values, pc.floor(values)))
        if len(fractional):
            raise _bad(table, column, fractional.to_pylist(), "not a whole number")
    try:
        return pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise _bad(table, column, values.to_pylist()[:3], f"not a {target} ({error})") from error


def _as_decimal(values: pa.ChunkedArray, target: pa.Decimal128Type, table: str, column: str) -> pa.ChunkedArray:
    try:
        exact = [to_decimal(v, target.scale) for v in values.to_pylist()]
        return pa.chunked_array([pa.array(exact, type=target)], type=target)
    except (ArithmeticError, ValueError, pa.ArrowInvalid) as error:
        what = f"not a decimal({target.precision}, {target.scale})"
        raise _bad(table, column, values.to_pylist()[:3], what) from error


def _is_date(text: str) -> bool:
    try:
        return bool(_ISO_DATE.fullmatch(text)) and date.fromisoformat(text) is not None
    except ValueError:
        return False


def _as_date(values: pa.ChunkedArray, table: str, column: str) -> pa.ChunkedArray:
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return pc.cast(values, _DATE)
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    try:
        return pc.cast(text, _DATE)  # strict: YYYY-MM-DD, a real day
    except pa.ArrowInvalid:
        unreadable = [v for v in text.to_pylist() if v is not None and not _is_date(v)]
        raise _bad(table, column, unreadable, "not a date written YYYY-MM-DD") from None


def _as_timestamp(values: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_timestamp(values.type) and values.type.tz is not None:
        values = pc.cast(values, pa.timestamp(values.type.unit))  # the instant, in UTC
    return pc.cast(values, _TS, safe=False)  # PostgreSQL keeps microseconds


def conform_source(table: str, rows: pa.Table) -> pa.Table:
    """The landing rows of ``table`` in the types of ``SOURCE``, whatever types the source gave them.

    Extra columns are dropped; a missing one, or a value that cannot be read as its column's
    type, fails with the table, the column and a sample of the values.
    """
    target = source_schema(table)
    missing = [name for name in target.names if name not in rows.column_names]
    if missing:
        raise SourceValueError(f"{table}: the batch has no column {', '.join(missing)}")
    columns = []
    for field in target:
        values = rows[field.name]
        if values.type == field.type:
            columns.append(values)
        elif pa.types.is_integer(field.type):
            columns.append(_as_integer(values, field.type, table, field.name))
        elif pa.types.is_decimal(field.type):
            columns.append(_as_decimal(values, field.type, table, field.name))
        elif field.type == _DATE:
            columns.append(_as_date(values, table, field.name))
        elif field.type == _TS:
            columns.append(_as_timestamp(values))
        else:
            try:
                columns.append(pc.cast(values, field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise _bad(table, field.name, values.to_pylist()[:3], f"not a {field.type} ({error})") from error
    return pa.Table.from_arrays(columns, schema=target)


def latest_versions(rows: pa.Table, key: str) -> pa.Table:
    """One row per ``key``: the one with the latest ``last_updated`` (ties: the later row), by key."""
    if rows.num_rows == 0:
        return rows
    position = pa.array(range(rows.num_rows), pa.int64())
    ranked = rows.append_column("_position", position)
    order = pc.sort_indices(
        ranked, sort_keys=[(key, "ascending"), ("last_updated", "descending"), ("_position", "descending")]
    )
    rows = rows.take(order)
    keys = rows[key].combine_chunks()
    first = pa.concat_arrays([pa.array([True]), pc.not_equal(keys[1:], keys[:-1])])
    return rows.filter(first)


def merge_state(state: pa.Table | None, changes: pa.Table, key: str) -> pa.Table:
    """The latest version of every row in the state and the batch's changes, by key.

    A state row is replaced only by a newer version (a later ``last_updated``); an older or
    equal one leaves it as it is. So remodelling an older batch again, in any order, never rolls
    the state back, and the result does not depend on the order the batches come in.
    """
    changes = latest_versions(changes, key)
    if state is None or state.num_rows == 0:
        return changes
    state = latest_versions(state.select(changes.column_names).cast(changes.schema), key)
    # The state after the batch's rows, so on an equal last_updated the state's row is "the later".
    return latest_versions(pa.concat_tables([changes, state]), key)


def distinct_versions(rows: pa.Table, key: str) -> pa.Table:
    """Each (key, last_updated) once: a version seen twice is one fact row."""
    if rows.num_rows < 2:
        return rows
    rows = rows.take(pc.sort_indices(rows, sort_keys=[(key, "ascending"), ("last_updated", "ascending")]))
    keys, stamps = rows[key].combine_chunks(), rows["last_updated"].combine_chunks()
    changed = pc.or_(pc.not_equal(keys[1:], keys[:-1]), pc.not_equal(stamps[1:], stamps[:-1]))
    return rows.filter(pa.concat_arrays([pa.array([True]), changed]))


def _conform(table: pa.Table, name: str) -> pa.Table:
    target = warehouse_schema(name)
    return pa.Table.from_arrays([table[f.name].cast(f.type) for f in target], schema=target)


def _version_columns(rows: pa.Table) -> dict[str, pa.ChunkedArray]:
    return {
        "created_date": pc.cast(rows["created_at"], _DATE),
        "created_time": pc.cast(rows["created_at"], _TIME),
        "last_updated_date": pc.cast(rows["last_updated"], _DATE),
        "last_updated_time": pc.cast(rows["last_updated"], _TIME),
    }


def fact_table(name: str, rows: pa.Table, key: str, renames: Mapping[str, str] | None = None) -> pa.Table:
    rows = distinct_versions(rows, key)
    renames = renames or {}
    columns = {**{renames.get(c, c): rows[c] for c in rows.column_names}, **_version_columns(rows)}
    return _conform(pa.table({f: columns[f] for f, _ in WAREHOUSE[name]}), name)


def date_dimension(dates: Iterable[date | None]) -> pa.Table:
    days = sorted({d for d in dates if d is not None})
    rows = {
        "date_id": days,
        "year": [d.year for d in days],
        "month": [d.month for d in days],
        "day": [d.day for d in days],
        "day_of_week": [d.isoweekday() for d in days],
        "day_name": [DAY_NAMES[d.weekday()] for d in days],
        "month_name": [MONTH_NAMES[d.month - 1] for d in days],
        "quarter": [(d.month - 1) // 3 + 1 for d in days],
    }
    return pa.Table.from_pydict(rows, schema=warehouse_schema("dim_date"))


def _lookup(rows: pa.Table, key: str) -> dict:
    return {row[key]: row for row in rows.to_pylist()}


def _ids(rows: pa.Table, column: str) -> set:
    return set(rows[column].to_pylist()) if rows.num_rows else set()


def _versioned(rows: pa.Table) -> pa.Table:
    """A dimension built from one source row: its version is that row's ``last_updated``."""
    return rows.append_column(VERSION, rows["last_updated"])


def remodel(batch: Mapping[str, pa.Table], state: Mapping[str, pa.Table | None]) -> tuple[dict, dict]:
    """(the eleven warehouse tables, the new state) for one batch of changed source rows.

    ``batch`` maps every source table to its changed rows (possibly empty), in the types of
    ``SOURCE``; ``state`` maps the reference tables to the latest versions seen before this
    batch (None: nothing yet). dim_staff and dim_counterparty are built from the new state, so a
    batch remodelled again after newer ones shows the newest version of its rows, never older;
    the other dimensions are the batch's own rows, each with its version.
    """
    changes = {name: latest_versions(rows, f"{name}_id") for name, rows in batch.items()}
    new_state = {name: merge_state(state.get(name), changes[name], f"{name}_id") for name in STATE_TABLES}
    departments = _lookup(new_state["department"], "department_id")
    addresses = _lookup(new_state["address"], "address_id")

    # A changed department re-emits its staff; a changed address its counterparties.
    staff_ids = _ids(changes["staff"], "staff_id") | {
        row["staff_id"] for row in new_state["staff"].to_pylist()
        if row["department_id"] in _ids(changes["department"], "department_id")
    }  # fmt: skip
    counterparty_ids = _ids(changes["counterparty"], "counterparty_id") | {
        row["counterparty_id"] for row in new_state["counterparty"].to_pylist()
        if row["legal_address_id"] in _ids(changes["address"], "address_id")
    }  # fmt: skip

    staff_rows = []
    for row in sorted(new_state["staff"].to_pylist(), key=lambda r: r["staff_id"]):
        if row["staff_id"] in staff_ids:
            department = departments.get(row["department_id"]) or {}
            staff_rows.append({**row, "department_name": department.get("department_name"),
                               "location": department.get("location"), VERSION: row["last_updated"],
                               "department_last_updated": department.get("last_updated")})  # fmt: skip
    counterparty_rows = []
    for row in sorted(new_state["counterparty"].to_pylist(), key=lambda r: r["counterparty_id"]):
        if row["counterparty_id"] in counterparty_ids:
            address = addresses.get(row["legal_address_id"]) or {}
            counterparty_rows.append(
                {
                    "counterparty_id": row["counterparty_id"],
                    "counterparty_legal_name": row["counterparty_legal_name"],
                    **{f"counterparty_legal_{c}": address.get(c) for c in
                       ("address_line_1", "address_line_2", "district", "city", "postal_code", "country")},
                    "counterparty_legal_phone_number": address.get("phone"),
                    VERSION: row["last_updated"],
                    "address_last_updated": address.get("last_updated"),
                }
            )  # fmt: skip

    currencies = changes["currency"]
    currency_names = [CURRENCY_NAMES.get((code or "").strip()) for code in currencies["currency_code"].to_pylist()]
    addresses_changed = changes["address"]
    out = {
        "dim_staff": pa.Table.from_pylist(staff_rows, schema=warehouse_schema("dim_staff")),
        "dim_counterparty": pa.Table.from_pylist(counterparty_rows, schema=warehouse_schema("dim_counterparty")),
        "dim_location": _conform(_versioned(addresses_changed.rename_columns(
            ["location_id" if c == "address_id" else c for c in addresses_changed.column_names])), "dim_location"),
        "dim_currency": _conform(_versioned(currencies.append_column("currency_name", pa.array(currency_names, _STR))),
                                 "dim_currency"),
        "dim_design": _conform(_versioned(changes["design"]), "dim_design"),
        "dim_payment_type": _conform(_versioned(changes["payment_type"]), "dim_payment_type"),
        "dim_transaction": _conform(_versioned(changes["transaction"]), "dim_transaction"),
        "fact_sales_order": fact_table("fact_sales_order", batch["sales_order"], "sales_order_id",
                                       {"staff_id": "sales_staff_id"}),
        "fact_purchase_orders": fact_table("fact_purchase_orders", batch["purchase_order"], "purchase_order_id"),
        "fact_payment": fact_table("fact_payment", batch["payment"], "payment_id"),
    }  # fmt: skip
    dates = [d for fact, columns in FACT_DATE_COLUMNS.items() for c in columns for d in out[fact][c].to_pylist()]
    out["dim_date"] = date_dimension(dates)
    return {name: out[name] for name in WAREHOUSE}, new_state


# -- I/O --------------------------------------------------------------------------------------------


def s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow does not read AWS_ENDPOINT_URL itself; pass it on, and the region."""
    options = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_override"] = endpoint
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    if region:
        options["region"] = region
    return pafs.S3FileSystem(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=5), **options)


def read_optional(fs: pafs.FileSystem, path: str) -> pa.Table | None:
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    try:
        return pq.read_table(fs.open_input_file(path))
    except (OSError, ValueError, pa.ArrowException) as error:
        raise RuntimeError(f"s3://{path} cannot be read: {error}") from error


def read_batch(fs: pafs.FileSystem, bucket: str, batch_id: str) -> dict[str, pa.Table]:
    """Every source table's rows in the batch, conformed to ``SOURCE`` (empty: no file)."""
    batch = {}
    for table in SOURCE:
        rows = read_optional(fs, f"{bucket}/batches/{batch_id}/{table}.parquet")
        batch[table] = source_schema(table).empty_table() if rows is None else conform_source(table, rows)
    return batch


def write(fs: pafs.FileSystem, path: str, table: pa.Table) -> None:
    with fs.open_output_stream(path) as sink:
        pq.write_table(table, sink, compression="snappy")


def log(message: str) -> None:
    print(f"[totesys_remodel] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> dict:
    args = resolve_options(sys.argv if argv is None else argv, ARGUMENTS)
    batch_id = args["batch_id"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")
    fs, processed = s3_filesystem(), args["processed_bucket"]
    batch = read_batch(fs, args["ingestion_bucket"], batch_id)
    log(f"batch {batch_id}: " + ", ".join(f"{t} {rows.num_rows}" for t, rows in batch.items()))
    state = {name: read_optional(fs, f"{processed}/state/{name}.parquet") for name in STATE_TABLES}
    tables, new_state = remodel(batch, state)
    for name, table in tables.items():
        write(fs, f"{processed}/{name}/batch_id={batch_id}/part-00000.parquet", table)
        log(f"{name}: {table.num_rows} rows")
    for name, table in new_state.items():  # last: a failed run leaves the previous state
        write(fs, f"{processed}/state/{name}.parquet", table)
    summary = {"batch_id": batch_id, "rows": {name: table.num_rows for name, table in tables.items()}}
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
