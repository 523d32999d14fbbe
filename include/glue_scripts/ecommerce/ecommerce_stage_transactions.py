"""E-commerce, raw CSV to warehouse staging: every row of a batch checked, typed and staged.

Reads   the batch's CSV objects in s3://<raw_bucket>/: the keys in --objects (a JSON list, the
        marker's ``objects``; every one must exist) or, when it is ``null``, every ``.csv`` under
        --prefix. Each object is streamed one block at a time (memory stays flat whatever its
        size), with every cell read as text. Its header must name exactly the contract's eight
        columns (in any order). The customer and product ids are checked against the
        warehouse's dimensions, read once (their size, not the batch's, bounds the memory).
Checks  each row against docs/interfaces.md ("E-commerce"): a non-empty transaction_id,
        customer_id and payment_type; quantity a whole number >= 1; price a decimal >= 0 with at
        most two places; transaction_date a real ``YYYY-MM-DD`` date; status one of Pending,
        Completed, Cancelled, Refunded; a known customer and product. A row that fails is
        rejected with the first reason it fails for.
Writes  to the warehouse whose credentials are the Secrets Manager secret --warehouse_secret_id,
        in one transaction that first deletes what an earlier run wrote for the batch (a rerun
        replaces, never adds): the rows that pass into ``ecommerce.stg_transactions``, the
        rejected ones into ``ecommerce.rejected_transactions`` (object key, line number, rule,
        reason, the row's cells as JSON), and each object read, with its size, ETag and rows,
        into ``ecommerce.batch_objects``, all with ``COPY ... FROM STDIN``. An object's staged
        rows go in one COPY, fed block by block as they are checked, so the server loads one
        block while the next is read and checked; its rejected rows wait in a temporary file
        and follow in a COPY of their own. Duplicates across the batch are settled afterwards in
        the database, where the whole batch is.

Line numbers count the header as line 1 (a quoted value spanning lines is not expected in this
feed). Runs on AWS Glue 5.0 (psycopg2 through --additional-python-modules) and locally as a plain
Python process. Ends with one JSON line: batch id, objects, rows read, staged, rejected. The
password is never printed.

Arguments: --batch_id --raw_bucket --prefix --objects --warehouse_secret_id; others are ignored.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ARGUMENTS = ["batch_id", "raw_bucket", "prefix", "objects", "warehouse_secret_id"]
BATCH_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
COLUMNS = ["transaction_id", "customer_id", "product_id", "quantity", "price", "transaction_date", "payment_type",
           "status"]  # fmt: skip
STATUSES = ["Pending", "Completed", "Cancelled", "Refunded"]
CSV_BLOCK_BYTES = 1 << 20
# The patterns a cell must match; what they cannot say (a real date, the int range) is checked after.
WHOLE_NUMBER = r"^[0-9]{1,9}$"
PRICE = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

STAGED_COLUMNS = ["batch_id", "object_key", "line_number", *COLUMNS]
COPY_STAGED = f"COPY ecommerce.stg_transactions ({', '.join(STAGED_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"
COPY_REJECTED = ("COPY ecommerce.rejected_transactions (batch_id, object_key, line_number, rule, reason, raw) "
                 "FROM STDIN WITH (FORMAT csv)")  # fmt: skip
COPY_OBJECTS = ("COPY ecommerce.batch_objects (batch_id, object_key, size, etag, rows_read) "
                "FROM STDIN WITH (FORMAT csv)")  # fmt: skip
CLEAR_BATCH = [
    "DELETE FROM ecommerce.stg_transactions WHERE batch_id = %(batch_id)s",
    "DELETE FROM ecommerce.rejected_transactions WHERE batch_id = %(batch_id)s",
    "DELETE FROM ecommerce.batch_objects WHERE batch_id = %(batch_id)s",
]


class BatchObjectsError(RuntimeError):
    """The batch's objects cannot be read as the contract says (missing, or a wrong header)."""


@dataclass(frozen=True)
class BatchObject:
    key: str
    size: int
    etag: str


@dataclass
class Staged:
    rows_read: int = 0
    staged: int = 0
    rejected: int = 0


def resolve_options(argv: Sequence[str], names: Iterable[str]) -> dict[str, str]:
    """``awsglue.utils.getResolvedOptions``: every name is a required ``--name value``."""
    names = list(names)
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    for name in names:
        parser.add_argument(f"--{name}", required=True)
    parsed, _ = parser.parse_known_args(list(argv[1:]))
    return {name: getattr(parsed, name) for name in names}


def connection_options(secret_string: str) -> dict:
    """psycopg2.connect keyword arguments from an RDS-style secret (never echoes the secret)."""
    try:
        secret = json.loads(secret_string)
    except json.JSONDecodeError:
        raise ValueError("the warehouse secret is not a JSON object") from None
    if not isinstance(secret, dict):
        raise ValueError("the warehouse secret is not a JSON object")
    missing = [k for k in ("host", "dbname", "password") if k not in secret]
    if "username" not in secret and "user" not in secret:
        missing.append("username")
    if missing:
        raise ValueError(f"the warehouse secret lacks {', '.join(missing)}")
    options = {"host": secret["host"], "port": int(secret.get("port") or 5432), "dbname": secret["dbname"],
               "user": secret.get("username", secret.get("user")), "password": secret["password"],
               "connect_timeout": 30, "application_name": "ecommerce_stage_transactions"}  # fmt: skip
    if secret.get("sslmode"):
        options["sslmode"] = secret["sslmode"]
    return options


# -- which objects ----------------------------------------------------------------------------------


def parse_objects(text: str) -> list[str] | None:
    """--objects: a JSON list of keys, or ``null`` / empty for "every CSV under the prefix"."""
    if not text.strip() or text.strip() in ("null", "None"):
        return None
    keys = json.loads(text)
    if not isinstance(keys, list) or not all(isinstance(key, str) and key for key in keys):
        raise ValueError(f"--objects must be a JSON list of keys, got {text[:200]!r}")
    return list(dict.fromkeys(keys))


def batch_objects(s3, bucket: str, prefix: str, keys: list[str] | None, batch_id: str) -> list[BatchObject]:
    """The batch's objects with their size and ETag: the named ones (each must exist), else the CSVs
    under the prefix (names starting with ``_`` or ``.`` are skipped, as Glue skips them)."""
    if keys is not None:
        found, missing = [], []
        for key in keys:
            try:
                head = s3.head_object(Bucket=bucket, Key=key)
            except s3.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
                missing.append(key)
                continue
            found.append(BatchObject(key, head["ContentLength"], head["ETag"].strip('"')))
        if missing:
            raise BatchObjectsError(
                f"batch {batch_id}: the marker names {len(missing)} object(s) that do not exist in "
                f"s3://{bucket}/: {', '.join(missing[:10])}"
            )
        return found
    listed = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"].rsplit("/", 1)[-1]
            if item["Key"].endswith(".csv") and not name.startswith(("_", ".")):
                listed.append(BatchObject(item["Key"], item["Size"], item["ETag"].strip('"')))
    return sorted(listed, key=lambda o: o.key)


# -- reading and checking ---------------------------------------------------------------------------


def csv_batches(stream, key: str, batch_id: str) -> Iterator[pa.RecordBatch]:
    """The object's rows as record batches of text columns, in COLUMNS order, header checked."""
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in COLUMNS}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as error:
        if "Empty CSV file" in str(error):
            raise BatchObjectsError(f"batch {batch_id}: {key} is empty (no header row)") from None
        raise BatchObjectsError(f"batch {batch_id}: {key} is not readable CSV: {error}") from None
    header = reader.schema.names
    missing = [name for name in COLUMNS if name not in header]
    extra = [name for name in header if name not in COLUMNS]
    if missing or extra:
        problems = ([f"lacks column(s) {', '.join(missing)}"] if missing else []) + (
            [f"has unexpected column(s) {', '.join(extra)}"] if extra else []
        )
        raise BatchObjectsError(f"batch {batch_id}: {key} " + " and ".join(problems))
    for batch in reader:
        yield pa.RecordBatch.from_arrays([batch.column(name) for name in COLUMNS], names=COLUMNS)


def valid_mask(batch: pa.RecordBatch, customers: pa.Array, products: pa.Array) -> pa.Array:
    """True for each row that passes every check (vectorised; the reasons are found for the rest)."""
    column = {name: batch.column(name) for name in COLUMNS}
    checks = [
        pc.not_equal(pc.utf8_trim_whitespace(column["transaction_id"]), ""),
        pc.not_equal(pc.utf8_trim_whitespace(column["payment_type"]), ""),
        pc.match_substring_regex(column["quantity"], WHOLE_NUMBER),
        pc.match_substring_regex(column["price"], PRICE),
        pc.is_in(column["status"], value_set=pa.array(STATUSES)),
        pc.is_in(column["customer_id"], value_set=customers),
        pc.is_in(column["product_id"], value_set=products),
    ]
    mask = checks[0]
    for check in checks[1:]:
        mask = pc.and_(mask, check)
    # Only now the checks that need a parsed value, on the cells that match their pattern.
    quantity = pc.cast(pc.if_else(mask, column["quantity"], "1"), pa.int64())
    mask = pc.and_(mask, pc.greater_equal(quantity, 1))
    dates = pc.if_else(pc.match_substring_regex(column["transaction_date"], DATE), column["transaction_date"], "")
    parsed = pc.strptime(dates, format="%Y-%m-%d", unit="s", error_is_null=True)
    # strptime rolls 2026-02-30 over to March 2: a real date is one that prints back as it was.
    real_date = pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), dates)
    # Arrow accepts year 0; PostgreSQL (and Python) do not, and COPY would fail the whole batch.
    real_date = pc.and_(real_date, pc.greater_equal(pc.year(parsed), 1))
    return pc.and_(mask, real_date).fill_null(False)


def rejection(row: dict[str, str], customers: set[str], products: set[str]) -> tuple[str, str]:
    """(rule, reason) of the first check a row fails; rows that fail none never get here.

    The patterns are matched whole (``fullmatch``), as Arrow matches them in ``valid_mask``: with
    ``re.match`` a ``$`` would also match before a trailing newline inside a quoted cell."""
    from datetime import date

    if not row["transaction_id"].strip():
        return "format", "transaction_id is empty"
    if not re.fullmatch(WHOLE_NUMBER, row["quantity"]):
        return "format", f"quantity {row['quantity']!r} is not a whole number"
    if int(row["quantity"]) < 1:
        return "format", f"quantity {row['quantity']} is below 1"
    if not re.fullmatch(PRICE, row["price"]):
        return "format", f"price {row['price']!r} is not a decimal >= 0 with at most two places"
    try:
        if not re.fullmatch(DATE, row["transaction_date"]):
            raise ValueError
        date.fromisoformat(row["transaction_date"])
    except ValueError:
        return "format", f"transaction_date {row['transaction_date']!r} is not a YYYY-MM-DD date"
    if not row["payment_type"].strip():
        return "format", "payment_type is empty"
    if row["status"] not in STATUSES:
        return "format", f"status {row['status']!r} is not one of {', '.join(STATUSES)}"
    if row["customer_id"] not in customers:
        return "reference", f"customer_id {row['customer_id']!r} is not in dim_customers"
    if row["product_id"] not in products:
        return "reference", f"product_id {row['product_id']!r} is not in dim_products"
    raise AssertionError(f"row passes every check: {row}")  # the vectorised mask said otherwise


def csv_text(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=False))
    return sink.getvalue()


class CopySource:
    """What ``copy_expert`` reads: the bytes an iterator of chunks yields, produced only as the COPY
    asks for them. One COPY then carries a whole object while the server loads what it has been
    sent and this process reads and checks the next block. An exception from the iterator is kept
    in ``error``: psycopg2 replaces it by a QueryCanceled, and ``copy_from_chunks`` raises it again."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._pending = memoryview(b"")
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            while not self._pending:
                self._pending = memoryview(next(self._chunks))
        except StopIteration:
            return b""
        except BaseException as error:
            self.error = error
            raise
        size = len(self._pending) if size is None or size < 0 else size
        chunk, self._pending = self._pending[:size], self._pending[size:]
        return bytes(chunk)


def copy_from_chunks(cursor, statement: str, chunks: Iterator[bytes]) -> None:
    """``COPY ... FROM STDIN`` of the bytes ``chunks`` yields, streamed; an exception raised while
    making them is raised as itself (the COPY, and so the transaction, has failed)."""
    source = CopySource(chunks)
    try:
        cursor.copy_expert(statement, source, size=CSV_BLOCK_BYTES)
    except Exception:
        if source.error is not None:
            raise source.error from None
        raise
    if source.error is not None:  # psycopg2 fails the COPY when read() raises: only a guard
        raise source.error


def stage_object(cursor, s3, bucket: str, item: BatchObject, batch_id: str, customers: tuple[pa.Array, set],
                 products: tuple[pa.Array, set]) -> Staged:  # fmt: skip
    """One object's rows into staging and rejects; returns what it did. The rows that pass go to
    ``stg_transactions`` in one COPY, block by block as they are checked; the rejected ones wait
    in a temporary file (memory stays flat) and follow in one COPY of their own."""
    body = s3.get_object(Bucket=bucket, Key=item.key, IfMatch=f'"{item.etag}"')["Body"]
    done = Staged()
    with tempfile.TemporaryFile() as rejects:

        def staged_csv() -> Iterator[bytes]:
            for batch in csv_batches(body, item.key, batch_id):
                lines = pa.array(range(done.rows_read + 2, done.rows_read + 2 + batch.num_rows), pa.int32())
                done.rows_read += batch.num_rows
                mask = valid_mask(batch, customers[0], products[0])
                valid = pa.Table.from_batches([batch]).filter(mask)
                if valid.num_rows:
                    constant = [pa.repeat(batch_id, valid.num_rows), pa.repeat(item.key, valid.num_rows)]
                    staged = pa.Table.from_arrays([*constant, lines.filter(mask), *valid.columns],
                                                  names=STAGED_COLUMNS)  # fmt: skip
                    done.staged += valid.num_rows
                    yield csv_text(staged)
                refused = pc.invert(mask)
                if pc.any(refused).as_py():
                    rows = pa.Table.from_batches([batch]).filter(refused).to_pylist()
                    numbers = lines.filter(refused).to_pylist()
                    out = io.StringIO()
                    writer = csv.writer(out)
                    for number, row in zip(numbers, rows, strict=True):
                        rule, reason = rejection(row, customers[1], products[1])
                        writer.writerow([batch_id, item.key, number, rule, reason, json.dumps(row)])
                    rejects.write(out.getvalue().encode())
                    done.rejected += len(rows)

        copy_from_chunks(cursor, COPY_STAGED, staged_csv())
        if done.rejected:
            rejects.seek(0)
            cursor.copy_expert(COPY_REJECTED, rejects, size=CSV_BLOCK_BYTES)
    out = io.StringIO()
    csv.writer(out).writerow([batch_id, item.key, item.size, item.etag, done.rows_read])
    cursor.copy_expert(COPY_OBJECTS, io.BytesIO(out.getvalue().encode()))
    return done


def dimension_keys(cursor, table: str, column: str) -> tuple[pa.Array, set[str]]:
    cursor.execute(f"SELECT {column} FROM ecommerce.{table}")  # fixed names, never from input
    keys = [row[0] for row in cursor.fetchall()]
    return pa.array(keys, pa.string()), set(keys)


def read_secret(secret_id: str) -> str:
    import boto3  # reaches AWS_ENDPOINT_URL by itself

    return boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]


def log(message: str) -> None:
    print(f"[ecommerce_stage_transactions] {message}", flush=True)


def main(argv: Sequence[str] | None = None) -> dict:
    argv = sys.argv if argv is None else argv
    args = resolve_options(argv, ARGUMENTS)
    batch_id, bucket = args["batch_id"], args["raw_bucket"]
    if not BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch id {batch_id!r} does not match {BATCH_ID.pattern}")

    import boto3
    import psycopg2

    s3 = boto3.client("s3")
    objects = batch_objects(s3, bucket, args["prefix"], parse_objects(args["objects"]), batch_id)
    log(f"batch {batch_id}: {len(objects)} object(s), {sum(o.size for o in objects):,} bytes")
    connection = psycopg2.connect(**connection_options(read_secret(args["warehouse_secret_id"])))
    total = Staged()
    try:
        connection.set_client_encoding("UTF8")
        with connection, connection.cursor() as cursor:
            customers = dimension_keys(cursor, "dim_customers", "customer_id")
            products = dimension_keys(cursor, "dim_products", "product_id")
            for statement in CLEAR_BATCH:
                cursor.execute(statement, {"batch_id": batch_id})
            for number, item in enumerate(objects, 1):
                done = stage_object(cursor, s3, bucket, item, batch_id, customers, products)
                total.rows_read += done.rows_read
                total.staged += done.staged
                total.rejected += done.rejected
                log(f"{number}/{len(objects)} {item.key}: {done.rows_read} rows, {done.staged} staged, "
                    f"{done.rejected} rejected")  # fmt: skip
    finally:
        connection.close()
    summary = {"batch_id": batch_id, "objects": len(objects), "rows_read": total.rows_read,
               "staged": total.staged, "rejected": total.rejected}  # fmt: skip
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
