"""Sample shipping records as the upstream producer lands them, plus the batch marker.

The producer writes newline-delimited JSON in UTF-8, one shipping record per line, to
``s3://shipping-landing/incoming/<batch_id>/`` (any file name; ``.json``, or ``.json.gz`` when
gzip-compressed), then the marker ``batch-completion/<batch_id>.json``:
``{"batch_id", "started_at", "completed_at", "expected_counts": {"shipments": lines written,
rejected ones included}, "objects": [keys]}`` (``objects`` optional).

A record has the producer's fields and nothing else:

- ``shipping_id``: a random integer, not unique (the producer draws it; repeats happen);
- ``shipping_date``: ``YYYY/MM/DD`` text, a day of 2023 to 2025;
- ``customer_name`` and ``street_address``: personal data, with non-ASCII letters
  (``Zoë Ångström``, ``Łukasz Żółć``, ``Hauptstraße 12``) from the word lists below;
- ``destination_city``: text;
- ``shipping_cost`` (two decimals at most), ``shipping_distance`` and ``quantity`` (fuel
  gallons): JSON numbers, some written as integers and some with a fraction;
- no ``product_id`` (the producer never writes it).

To exercise the pipeline a share of the lines can be bad, the kinds cycled in this order
(``BAD_KINDS``): a line that is not JSON (a record cut short), a ``shipping_cost`` written as a
JSON string (``"12.5"``), a ``shipping_date`` that is not a real date (``2023/02/30``...).

Generation is deterministic for a seed (``random.Random(seed)``) and formats each line from
pre-encoded words, so a million lines take a few seconds. Files are cut into ``files`` objects
of about equal size; the last ``gzip_files`` of them are gzip-compressed.

CLI (endpoint from ``AWS_ENDPOINT_URL``, as in ``.local/stack.env``)::

    python -m devstack.sample_data.shipping batch --batch-id B1 --shipments 1000 [--bad-share 0.005]
        [--seed 0] [--files 3] [--gzip-files 1] [--no-objects] [--no-marker]

It prints one JSON line: the keys with their lines, the bad lines' count and the marker.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

LANDING_BUCKET = "shipping-landing"
STAGING_BUCKET = "shipping-staging"
RESULTS_BUCKET = "shipping-query-results"
PREFIX = "incoming/"
MARKER_PREFIX = "batch-completion/"

FIELDS = (
    "shipping_id",
    "shipping_date",
    "customer_name",
    "street_address",
    "destination_city",
    "shipping_cost",
    "shipping_distance",
    "quantity",
)
NOT_JSON, COST_AS_STRING, IMPOSSIBLE_DATE = "not_json", "cost_as_string", "impossible_date"
BAD_KINDS = (NOT_JSON, COST_AS_STRING, IMPOSSIBLE_DATE)
IMPOSSIBLE_DATES = ("2023/02/30", "2024/13/01", "2025/04/31", "2023/02/29", "2024/00/10")

FIRST_NAMES = (
    "Zoë", "Łukasz", "José", "Søren", "Chloé", "Björn", "Ana", "Ngozi", "Raúl", "Aoife", "Mei", "François",
    "Dmitri", "Émilie", "Jürgen", "Siobhán", "Kofi", "Ines", "Mateusz", "Priya", "Oliver", "Maëlys",
)  # fmt: skip
LAST_NAMES = (
    "Ångström", "Żółć", "García", "Müller", "Nørgaard", "O'Brien", "Dubois", "Kowalski", "Çelik", "Øster",
    "Smith", "Łęcka", "Núñez", "Sørensen", "Byrne", "Schäfer", "Okafor", "Ferreira", "Novák", "Jones",
)  # fmt: skip
STREETS = (
    "Hauptstraße", "Rue de l'Église", "Calle Mayor", "Ulica Źródlana", "Main Street", "Høvedgade",
    "Via Garibaldi", "Gänsemarkt", "Avenida da Liberdade", "Station Road", "Väster Långgatan",
    "Bahnhofstraße", "Strandvejen", "Rua Augusta", "Church Lane",
)  # fmt: skip
CITIES = (
    "London", "Kraków", "München", "Malmö", "Zürich", "Lisboa", "São Paulo", "Reykjavík", "Manchester",
    "Łódź", "Göteborg", "Québec", "Leeds", "Aarhus", "Sevilla", "Bristol",
)  # fmt: skip
FIRST_DAY = date(2023, 1, 1)
DAYS = (date(2025, 12, 31) - FIRST_DAY).days + 1
MAX_SHIPPING_ID = 100_000


@dataclass
class Batch:
    """What ``write_batch`` wrote."""

    batch_id: str
    keys: list[str]
    lines: int  # non-blank lines written, bad ones included
    bad: list[tuple[str, int, str]]  # (key, 1-based line in that object, kind)
    records: list[dict]  # the good records as written, in order (empty with keep_records=False)
    marker: dict  # the marker's body ({} when none was written)
    lines_per_key: dict[str, int] = field(default_factory=dict)


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _number(rng: random.Random, low: float, high: float, decimals: int) -> int | float:
    """Half integers, half numbers with a fraction, as the producer's mix."""
    if rng.random() < 0.5:
        return rng.randint(int(low), int(high))
    return round(rng.uniform(low, high), decimals)


def _generate(
    count: int,
    seed: int,
    bad_share: float,
    customers: Sequence[tuple[str, str]] | None,
    keep_records: bool,
) -> tuple[list[str], list[tuple[int, str]], list[dict]]:
    if count < 0 or not 0 <= bad_share <= 1:
        raise ValueError("count must be >= 0 and bad_share within [0, 1]")
    rng = random.Random(seed)
    if customers:
        people = [(_quoted(name), _quoted(address), name, address) for name, address in customers]
    else:
        people = []
        for _ in range(500):
            name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            address = f"{rng.choice(STREETS)} {rng.randint(1, 250)}"
            people.append((_quoted(name), _quoted(address), name, address))
    cities = [(_quoted(city), city) for city in CITIES]
    days = [(FIRST_DAY + timedelta(days=i)).strftime("%Y/%m/%d") for i in range(DAYS)]
    n_bad = round(count * bad_share)
    bad_positions = sorted(rng.sample(range(count), n_bad)) if n_bad else []
    kinds = {position: BAD_KINDS[i % len(BAD_KINDS)] for i, position in enumerate(bad_positions)}

    lines: list[str] = []
    records: list[dict] = []
    randint, choice, random_ = rng.randint, rng.choice, rng.random
    for index in range(count):
        shipping_id = randint(1, MAX_SHIPPING_ID)
        day = choice(days)
        quoted_name, quoted_address, name, address = choice(people)
        quoted_city, city = choice(cities)
        cost = randint(5, 900) if random_() < 0.5 else randint(500, 90_000) / 100
        distance = randint(1, 3000) if random_() < 0.5 else round(random_() * 3000, 1)
        quantity = randint(1, 40) if random_() < 0.5 else round(random_() * 40, 2)
        kind = kinds.get(index)
        if kind == IMPOSSIBLE_DATE:
            day = IMPOSSIBLE_DATES[index % len(IMPOSSIBLE_DATES)]
        cost_text = f'"{cost}"' if kind == COST_AS_STRING else f"{cost}"
        line = (
            f'{{"shipping_id": {shipping_id}, "shipping_date": "{day}", "customer_name": {quoted_name}, '
            f'"street_address": {quoted_address}, "destination_city": {quoted_city}, '
            f'"shipping_cost": {cost_text}, "shipping_distance": {distance}, "quantity": {quantity}}}'
        )
        if kind == NOT_JSON:
            line = line[: len(line) // 2]  # a record cut short, as a broken upload leaves it
        lines.append(line)
        if kind is None and keep_records:
            records.append(
                {
                    "shipping_id": shipping_id,
                    "shipping_date": day,
                    "customer_name": name,
                    "street_address": address,
                    "destination_city": city,
                    "shipping_cost": cost,
                    "shipping_distance": distance,
                    "quantity": quantity,
                }
            )
    return lines, sorted(kinds.items()), records


def make_lines(
    count: int, *, seed: int = 0, bad_share: float = 0.0, customers: Sequence[tuple[str, str]] | None = None
) -> tuple[list[str], list[tuple[int, str]]]:
    """``count`` JSON lines (no line ends) and the bad ones as (0-based index, kind), in order.

    ``customers``: (name, address) pairs to draw from instead of the word lists."""
    lines, bad, _records = _generate(count, seed, bad_share, customers, keep_records=False)
    return lines, bad


def object_keys(batch_id: str, files: int, gzip_files: int) -> list[str]:
    """The batch's keys: ``incoming/<batch_id>/shipments-0001.json`` ..., the last ``gzip_files``
    ending ``.json.gz``."""
    if files < 1 or not 0 <= gzip_files <= files:
        raise ValueError("files must be >= 1 and gzip_files within [0, files]")
    return [
        f"{PREFIX}{batch_id}/shipments-{i + 1:04d}.json" + (".gz" if i >= files - gzip_files else "")
        for i in range(files)
    ]


def write_batch(
    s3,
    batch_id: str,
    *,
    shipments: int,
    seed: int = 0,
    bad_share: float = 0.0,
    files: int = 3,
    gzip_files: int = 1,
    customers: Sequence[tuple[str, str]] | None = None,
    list_objects: bool = True,
    write_marker: bool = True,
    expected: int | None = None,
    bucket: str = LANDING_BUCKET,
    keep_records: bool = True,
) -> Batch:
    """Write ``shipments`` lines under ``incoming/<batch_id>/`` in ``files`` objects, then (unless
    ``write_marker=False``) the marker, with ``objects`` when ``list_objects`` and
    ``expected_counts.shipments`` = the lines written, or ``expected`` (fault tests)."""
    started_at = datetime.now(UTC)
    lines, bad, records = _generate(shipments, seed, bad_share, customers, keep_records)
    keys = object_keys(batch_id, files, gzip_files)
    bounds = [shipments * i // files for i in range(files + 1)]
    bad_at = dict(bad)
    found_bad: list[tuple[str, int, str]] = []
    per_key: dict[str, int] = {}
    for i, key in enumerate(keys):
        start, end = bounds[i], bounds[i + 1]
        body = "".join(line + "\n" for line in lines[start:end]).encode("utf-8")
        if key.endswith(".gz"):
            body = gzip.compress(body, compresslevel=6, mtime=0)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        per_key[key] = end - start
        found_bad += [(key, index - start + 1, bad_at[index]) for index in range(start, end) if index in bad_at]
    marker: dict = {}
    if write_marker:
        marker = _write_marker(
            s3,
            batch_id,
            objects=keys if list_objects else None,
            shipments=shipments if expected is None else expected,
            started_at=started_at,
            bucket=bucket,
        )
    return Batch(batch_id, keys, shipments, found_bad, records, marker, per_key)


def write_marker(
    s3,
    batch_id: str,
    *,
    objects: Sequence[str] | None = None,
    shipments: int | None = None,
    started_at: datetime | None = None,
    completed_at: datetime | None = None,
    bucket: str = LANDING_BUCKET,
) -> dict:
    """Write ``batch-completion/<batch_id>.json``; returns its body. ``shipments=None`` leaves
    ``expected_counts`` empty (a marker without a count, for fault tests); ``objects=None`` leaves
    ``objects`` out (the batch is then every object under ``incoming/<batch_id>/``)."""
    return _write_marker(
        s3, batch_id, objects=objects, shipments=shipments, started_at=started_at, completed_at=completed_at,
        bucket=bucket,
    )  # fmt: skip


def _write_marker(s3, batch_id, *, objects, shipments, started_at=None, completed_at=None, bucket=LANDING_BUCKET):
    completed = completed_at or datetime.now(UTC)
    body: dict = {
        "batch_id": batch_id,
        "started_at": _iso(started_at or completed),
        "completed_at": _iso(completed),
        "expected_counts": {} if shipments is None else {"shipments": shipments},
    }
    if objects is not None:
        body["objects"] = list(objects)
    s3.put_object(
        Bucket=bucket,
        Key=f"{MARKER_PREFIX}{batch_id}.json",
        Body=json.dumps(body).encode(),
        ContentType="application/json",
    )
    return body


def _iso(value: datetime) -> str:
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.sample_data.shipping", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    batch = commands.add_parser(
        "batch", help="write a batch of shipping records to the landing bucket, then its marker"
    )
    batch.add_argument("--batch-id", required=True)
    batch.add_argument("--shipments", type=int, required=True, help="lines to write, bad ones included")
    batch.add_argument("--bad-share", type=float, default=0.0, help="share of bad lines (kinds cycled)")
    batch.add_argument("--seed", type=int, default=0)
    batch.add_argument("--files", type=int, default=3, help="objects to spread the lines over")
    batch.add_argument("--gzip-files", type=int, default=1, help="of those, how many are gzip-compressed")
    batch.add_argument("--bucket", default=LANDING_BUCKET)
    batch.add_argument("--no-objects", action="store_true", help="leave the object list out of the marker")
    batch.add_argument("--no-marker", action="store_true", help="write the data but not the marker")
    args = parser.parse_args(argv)

    import boto3  # the endpoint comes from AWS_ENDPOINT_URL, as for every client of the stack

    try:
        written = write_batch(
            boto3.client("s3"),
            args.batch_id,
            shipments=args.shipments,
            seed=args.seed,
            bad_share=args.bad_share,
            files=args.files,
            gzip_files=args.gzip_files,
            list_objects=not args.no_objects,
            write_marker=not args.no_marker,
            bucket=args.bucket,
            keep_records=False,
        )
    except ValueError as error:
        parser.error(str(error))
    summary = {
        "batch_id": written.batch_id,
        "bucket": args.bucket,
        "objects": written.lines_per_key,
        "lines": written.lines,
        "bad": len(written.bad),
        "marker": written.marker or None,
    }
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
