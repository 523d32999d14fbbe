"""Which landing rows make up an orders batch: the one definition every orders Glue job uses.

A batch is the rows whose ``run_id`` is the batch id, in the landing hour partitions
``<landing_prefix>year=YYYY/month=MM/day=DD/hour=HH/`` from the hour of the marker's started_at
to the hour of its completed_at plus ``late_minutes`` (the whole landing prefix when the marker
gives no time window). Objects whose name starts with ``_`` or ``.`` are skipped, as Glue and
Athena skip them. Only an object's parquet footer is read to learn which of its row groups can
hold the batch: a row group whose ``run_id`` min/max statistics exclude the batch id is never
read, and an object with no such row group is not read past its footer.

Delivery is at least once, so an order can land several times: the latest ``processing_ts``
wins; on a tie the copy in the later object (in sorted key order), then the later row, wins; a
null processing_ts loses to any timestamp.

Used by ``orders_landing_to_staging.py`` (which writes the batch to staging) and
``orders_audit_landing.py`` (which counts it), so both see the same rows. Not a Glue job itself:
on AWS Glue it is shipped with ``--extra-py-files`` and imported as ``orders_batch``.
Needs pyarrow and numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# What pass 1 reads of every row group that can hold the batch.
KEY_COLUMNS = ["order_id", "processing_ts", "run_id"]
PROCESSING_TS = pa.timestamp("ms", tz="UTC")
READ_BATCH_ROWS = 65_536

T = TypeVar("T")


class BatchReadError(RuntimeError):
    """A landing object of the batch cannot be read; the message names the object and batch."""


# --- the window ----------------------------------------------------------------------------


def parse_utc(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def hour_prefixes(landing_prefix: str, started_at: datetime, completed_at: datetime) -> list[str]:
    """The processing-time hour partitions from the hour of started_at to the hour of
    completed_at, inclusive."""
    if completed_at < started_at:
        raise ValueError(f"completed_at {completed_at:%Y-%m-%dT%H:%M:%SZ} is before started_at")
    prefix = _folder(landing_prefix)
    hour = started_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    last = completed_at.astimezone(UTC)
    prefixes = []
    while hour <= last:
        prefixes.append(f"{prefix}year={hour:%Y}/month={hour:%m}/day={hour:%d}/hour={hour:%H}/")
        hour += timedelta(hours=1)
    return prefixes


def batch_prefixes(landing_prefix: str, started_at: str, completed_at: str, late_minutes: float = 0) -> list[str]:
    """The prefixes a batch's objects can sit under, from the marker's ISO-8601 timestamps
    (naive means UTC). Records the delivery stream processes after completed_at sit in later
    hours, so ``late_minutes`` widens the window past it. Without both timestamps (the marker's
    window is optional) any hour partition may hold the batch: the whole landing prefix."""
    if not (started_at and completed_at):
        return [_folder(landing_prefix)]
    late = timedelta(minutes=late_minutes)
    return hour_prefixes(landing_prefix, parse_utc(started_at), parse_utc(completed_at) + late)


def _folder(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


# --- the objects and row groups that can hold the batch ------------------------------------


def list_objects(
    fs: pafs.FileSystem, bucket: str, prefixes: Iterable[str], log: Callable[[str], None] | None = None
) -> list[str]:
    """Paths (``bucket/key``) of the data objects under the prefixes, sorted: the order that
    gives each object its file index in the tie-break."""
    paths = []
    for prefix in prefixes:
        selector = pafs.FileSelector(f"{bucket}/{prefix}", recursive=True, allow_not_found=True)
        found = [
            info.path
            for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File and not info.base_name.startswith(("_", "."))
        ]
        if log:
            log(f"listed s3://{bucket}/{prefix}: {len(found)} objects")
        paths += found
    return sorted(paths)


def _open(fs: pafs.FileSystem, path: str, required_columns: Sequence[str] = KEY_COLUMNS) -> pq.ParquetFile:
    """The object as a parquet file; opening it reads its footer only. A read then fetches the
    column chunks it needs in a few coalesced requests (pre_buffer), not in one request per
    chunk or page, which on S3 cost more than the bytes; they are held until the read is done."""
    parquet = pq.ParquetFile(fs.open_input_file(path), coerce_int96_timestamp_unit="ms", pre_buffer=True)
    missing = [c for c in dict.fromkeys([*required_columns, "run_id"]) if c not in parquet.schema_arrow.names]
    if missing:
        raise ValueError(f"missing columns {missing}")
    return parquet


def _row_groups(parquet: pq.ParquetFile) -> Iterator[tuple[int, int]]:
    """(row group index, index of its first row in the object) of every row group."""
    first_row = 0
    for index in range(parquet.metadata.num_row_groups):
        yield index, first_row
        first_row += parquet.metadata.row_group(index).num_rows


def _row_groups_of_batch(parquet: pq.ParquetFile, batch_id: str) -> Iterator[tuple[int, int]]:
    """Row groups that may hold the batch, by their run_id min/max statistics when present."""
    for index, first_row in _row_groups(parquet):
        group = parquet.metadata.row_group(index)
        stats = next(
            (
                group.column(c).statistics
                for c in range(group.num_columns)
                if group.column(c).path_in_schema == "run_id"
            ),
            None,
        )
        if stats is not None and stats.has_min_max and isinstance(stats.min, str):
            if not stats.min <= batch_id <= stats.max:
                continue
        yield index, first_row


def _consecutive(row_groups: Iterable[tuple[int, int]]) -> Iterator[tuple[int, list[int]]]:
    """Runs of consecutive row groups: (index of the run's first row in the object, its row group
    indices), from (row group index, index of its first row) in ascending order."""
    run: list[int] = []
    first_row = 0
    for index, first in row_groups:
        if run and index != run[-1] + 1:
            yield first_row, run
            run = []
        if not run:
            first_row = first
        run.append(index)
    if run:
        yield first_row, run


def _list_length_column(parquet: pq.ParquetFile, column: str) -> str:
    """One leaf column of a list column, preferably fixed-width: reading it gives the lists'
    lengths (null elements included) without decoding the other fields of the elements."""
    leaves = [
        parquet.schema.column(i)
        for i in range(len(parquet.schema))
        if parquet.schema.column(i).path.startswith(f"{column}.")
    ]
    if not leaves:
        return column
    return min(leaves, key=lambda leaf: leaf.physical_type == "BYTE_ARRAY").path


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """``items`` in order, each next one already being produced on a thread of its own while the
    caller works on the current one: pyarrow releases the GIL while it fetches and decodes, so
    reading overlaps the caller's work. One item is held ahead, no more."""
    end = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as thread:
        upcoming = thread.submit(next, items, end)
        while (item := upcoming.result()) is not end:
            upcoming = thread.submit(next, items, end)
            yield item


@contextmanager
def _reading(path: str, batch_id: str) -> Iterator[None]:
    """Re-raise any failure to read an object as a BatchReadError naming the object and batch."""
    try:
        yield
    except (OSError, ValueError, pa.ArrowException) as error:
        message = f"landing object s3://{path} of batch {batch_id} cannot be read: {error}"
        raise BatchReadError(" ".join(message.split())) from error


# --- the latest-copy rule ------------------------------------------------------------------


def select_latest_copies(keys: pa.Table, carry: Sequence[str] = ()) -> tuple[pa.Table, int]:
    """Choose one copy per order_id: the latest ``processing_ts`` wins; ties go to the copy
    found later (higher ``file_index``, then ``row_index``), so the choice is deterministic.
    A null processing_ts loses to any timestamp.

    ``keys`` has order_id, processing_ts, file_index, row_index and the ``carry`` columns.
    Returns the winners' (file_index, row_index, *carry), in (file_index, row_index) order, and
    how many copies were dropped.
    """
    columns = ["file_index", "row_index", *carry]
    if keys.num_rows == 0:
        return keys.select(columns), 0
    # Most orders land once, and a row whose id hash no other row shares is the only copy of its
    # order. Only the other rows (the copies, and the rare hash collision) are grouped by their
    # actual ids and ranked: sorting or dictionary-encoding every string id costs several times more.
    ids = keys.column("order_id")
    hashes = _id_hashes(ids)
    by_hash = np.argsort(hashes)
    shared = hashes[by_hash[1:]] == hashes[by_hash[:-1]]
    maybe_copy = np.zeros(keys.num_rows, dtype=bool)
    maybe_copy[by_hash[1:][shared]] = True
    maybe_copy[by_hash[:-1][shared]] = True
    candidates = np.flatnonzero(maybe_copy)
    keep = np.ones(keys.num_rows, dtype=bool)
    if len(candidates):
        taken = pa.array(candidates)
        codes = pc.dictionary_encode(ids.take(taken).combine_chunks(), null_encoding="encode").indices.to_numpy()
        stamps = keys.column("processing_ts").take(taken)
        # The copy that wins sorts last among its order's: by (has a timestamp, timestamp, file, row).
        ranked = np.lexsort(
            (
                keys.column("row_index").to_numpy()[candidates],
                keys.column("file_index").to_numpy()[candidates],
                pc.fill_null(stamps.cast(pa.int64()), 0).to_numpy(),
                pc.is_valid(stamps).to_numpy(),
                codes,
            )
        )
        grouped = codes[ranked]
        last_of_order = np.append(grouped[1:] != grouped[:-1], True)
        keep[candidates] = False
        keep[candidates[ranked[last_of_order]]] = True
    winners = keys.select(columns).filter(pa.array(keep))
    files, rows = winners.column("file_index").to_numpy(), winners.column("row_index").to_numpy()
    # scan_batch_keys gathers the keys object by object, row by row: already in order then.
    if not np.all((files[1:] > files[:-1]) | ((files[1:] == files[:-1]) & (rows[1:] > rows[:-1]))):
        winners = winners.take(pa.array(np.lexsort((rows, files))))
    return winners, keys.num_rows - winners.num_rows


_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def _id_hashes(ids: pa.ChunkedArray) -> np.ndarray:
    """A 64-bit number per id, the same for equal ids (different ids share one only rarely).

    Ids that all have one length, as UUIDs do, are hashed from their bytes in numpy, eight bytes
    at a time; otherwise the ids' dictionary codes serve, exact but slower to make."""
    hashes = []
    for chunk in ids.chunks:
        if not len(chunk):
            continue
        if chunk.null_count or chunk.type not in (pa.string(), pa.binary()):
            break
        offsets = np.frombuffer(chunk.buffers()[1], np.int32, len(chunk) + 1, chunk.offset * 4)
        lengths = np.diff(offsets)
        if (lengths != lengths[0]).any():
            break
        width = int(lengths[0])
        data = np.frombuffer(chunk.buffers()[2] or b"", np.uint8)[offsets[0] : offsets[-1]]
        padded = np.zeros((len(chunk), -(-width // 8) * 8), dtype=np.uint8)
        padded[:, :width] = data.reshape(len(chunk), width)
        chunk_hashes = np.full(len(chunk), width, dtype=np.uint64)
        for word in padded.view(np.uint64).T:
            chunk_hashes = (chunk_hashes ^ word) * _HASH_MULTIPLIER
        hashes.append(chunk_hashes)
    else:
        return np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
    codes = pc.dictionary_encode(ids.combine_chunks(), null_encoding="encode").indices
    return codes.to_numpy().astype(np.uint64)


def dedupe_orders(orders: pa.Table) -> tuple[pa.Table, int]:
    """In-memory form of the dedupe: the latest copy of each order, in their original order."""
    positions = pa.array(np.arange(orders.num_rows, dtype=np.int64))
    keys = pa.table(
        {
            "order_id": orders.column("order_id"),
            "processing_ts": orders.column("processing_ts"),
            "file_index": pa.array(np.zeros(orders.num_rows, dtype=np.int32)),
            "row_index": positions,
        }
    )
    winners, dropped = select_latest_copies(keys)
    return orders.take(winners.column("row_index")), dropped


def batch_keys(
    batch: pa.RecordBatch, batch_id: str, file_index: int, first_row: int, lines_of: str | None = None
) -> pa.Table | None:
    """The dedupe keys of the batch's rows in one record batch (None when it has none):
    order_id, processing_ts, and where the row sits (file_index, row_index in the object).
    With ``lines_of`` (a list column), also ``lines``: each row's list length, null = 0."""
    mine = pc.fill_null(pc.equal(batch.column("run_id"), batch_id), False)
    positions = np.flatnonzero(mine.to_numpy(zero_copy_only=False))
    if not len(positions):
        return None
    # A row group usually holds one batch only: then its columns are used as they are, not copied.
    if len(positions) < batch.num_rows:
        batch = batch.take(pa.array(positions))
    order_ids = batch.column("order_id")
    if order_ids.null_count:
        raise ValueError(f"{order_ids.null_count} rows of the batch have a null order_id")
    columns = {
        "order_id": order_ids,
        "processing_ts": conform(batch.column("processing_ts"), PROCESSING_TS),
        "file_index": pa.array(np.full(len(positions), file_index, dtype=np.int32)),
        "row_index": pa.array(positions + first_row),
    }
    if lines_of is not None:
        lengths = pc.list_value_length(batch.column(lines_of))
        columns["lines"] = pc.cast(pc.fill_null(lengths, 0), pa.int64())
    return pa.table(columns)


def conform(values: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if values.type == target:
        return values
    # Sub-millisecond precision and tz-naive timestamps (read as UTC) are accepted; any other
    # lossy cast (a price that does not fit decimal(10,2), a quantity over int32) fails.
    options = pc.CastOptions(target, allow_time_truncate=pa.types.is_timestamp(target))
    return pc.cast(values, options=options)


@dataclass
class BatchKeys:
    """Pass 1's output: where the batch's rows are, and which copy of each order wins."""

    objects: list[str]
    rows_read: int = 0
    duplicates: int = 0
    winners: dict[int, np.ndarray] = field(default_factory=dict)  # file index -> sorted row indices
    holding: list[int] = field(default_factory=list)  # file indices of the objects with rows of the batch
    lines: int | None = None  # the winners' list items, when scan_batch_keys was given lines_of

    @property
    def orders(self) -> int:
        return sum(len(rows) for rows in self.winners.values())


def _key_batches(
    fs: pafs.FileSystem, objects: list[str], batch_id: str, required_columns: Sequence[str], lines_of: str | None
) -> Iterator[tuple[int, int, pa.RecordBatch]]:
    """(file index, index of its first row in the object, record batch) of the key columns of
    every row group that can hold the batch."""
    for file_index, path in enumerate(objects):
        with _reading(path, batch_id):
            parquet = _open(fs, path, required_columns)
            columns = [*KEY_COLUMNS, *([_list_length_column(parquet, lines_of)] if lines_of else [])]
            for first_row, row_groups in _consecutive(_row_groups_of_batch(parquet, batch_id)):
                # Consecutive row groups in one read: their column chunks are fetched together.
                for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, row_groups=row_groups, columns=columns):
                    yield file_index, first_row, batch
                    first_row += batch.num_rows


def scan_batch_keys(
    fs: pafs.FileSystem,
    objects: list[str],
    batch_id: str,
    required_columns: Sequence[str] = KEY_COLUMNS,
    lines_of: str | None = None,
) -> BatchKeys:
    """Pass 1: read order_id, processing_ts and run_id of every row group that can hold the
    batch and pick the winners. An object lacking one of ``required_columns`` fails. With
    ``lines_of`` (a list column), also count the winners' items, reading the lists' lengths
    only (one leaf column, not the elements' values)."""
    chunks: list[pa.Table] = []
    holding: set[int] = set()
    batches = _key_batches(fs, objects, batch_id, [*required_columns, *([lines_of] if lines_of else [])], lines_of)
    for file_index, first_row, batch in read_ahead(batches):
        with _reading(objects[file_index], batch_id):
            if (keys := batch_keys(batch, batch_id, file_index, first_row, lines_of)) is not None:
                chunks.append(keys)
                holding.add(file_index)
    result = BatchKeys(objects=objects, holding=sorted(holding), lines=0 if lines_of else None)
    if not chunks:
        return result
    keys = pa.concat_tables(chunks)
    del chunks
    result.rows_read = keys.num_rows
    winners, result.duplicates = select_latest_copies(keys, carry=["lines"] if lines_of else [])
    del keys
    pa.default_memory_pool().release_unused()
    if lines_of:
        result.lines = int(pc.sum(winners.column("lines")).as_py() or 0)
    files = winners.column("file_index").to_numpy()
    rows = winners.column("row_index").to_numpy()
    # The winners are in (file_index, row_index) order: each object's rows are one run.
    file_indices, firsts = np.unique(files, return_index=True)
    for file_index, object_rows in zip(file_indices, np.split(rows, firsts[1:]), strict=True):
        result.winners[int(file_index)] = object_rows
    return result
