"""Faults the tests inject into real data."""

from __future__ import annotations

import random


def corrupt_data_pages(parquet: bytes) -> bytes:
    """The file with garbage in the middle of its data pages; the leading magic and the footer
    (schema, row groups, column statistics) stay intact, so only reading the data fails."""
    data = bytearray(parquet)
    footer_start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    start, end = 4 + (footer_start - 4) // 4, 4 + 3 * (footer_start - 4) // 4
    data[start:end] = random.Random(end).randbytes(end - start)
    return bytes(data)
