"""athena_query: the local Athena engine's wall time for the shipping totals query on one batch
partition, against DuckDB reading that partition's parquet files straight from local disk.

``session.shipments`` normalized shipping rows (shipping_id bigint, shipping_date date,
destination_city string, shipping_cost decimal(12,2), shipping_distance double, quantity double,
product_id bigint) are written as four parquet files under ``normalized/batch_id=<id>/``, with a
second partition of other rows beside it (a quarter as many), to local disk and to the emulator's
S3; a crawler catalogs them (a partitioned table in a hyphenated database). The emulator runs in
this process (``devstack.emulator.Emulator`` on a free port, provisioned by
``devstack.resources.provision``).

- baseline  ``SELECT count(*), SUM(shipping_cost), SUM(shipping_distance), SUM(quantity) FROM
  read_parquet([...the partition's four local files...])`` on a new in-memory DuckDB connection
- candidate the same totals through Athena's API: ``SELECT count(*) AS shipments, SUM(...) ... FROM
  "<db>"."normalized" WHERE batch_id = '<id>'``: StartQueryExecution -> GetQueryExecution polled
  every 50 ms until SUCCEEDED -> GetQueryResults (transpiled, bound to the catalog, the other
  partition pruned, the objects read from the in-process S3, run on DuckDB, the result CSV written)

alternately (A B A B ...), after one untimed run of each. Both must return the same numbers (and
the rows' own totals), and the candidate must scan only the batch's partition.

Target: candidate <= 1.5x baseline + 0.5 s (medians).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

from bench.common import (
    DUMMY_CREDENTIALS,
    REGION,
    Session,
    Verdict,
    fmt_samples,
    in_process_emulator,
    interleave,
    median,
    progress,
    result_block,
)

NAME = "athena_query"
DEFAULT_REPEAT = 9
TARGET_RATIO = 1.5
TARGET_SLACK_SECONDS = 0.5
POLL_SECONDS = 0.05
FILES = 4
BUCKET = "shipping-staging"
OUTPUT = "s3://shipping-query-results/bench/athena_query/"
ROLE_ARN = "arn:aws:iam::123456789012:role/etl-glue-job-role"
CITIES = ["Leeds", "Manchester", "London", "Bristol", "York", "Glasgow", "Cardiff", "Belfast"]
TOTALS = (
    "SELECT count(*) AS shipments, SUM(shipping_cost) AS total_cost, SUM(shipping_distance) AS total_distance, "
    "SUM(quantity) AS total_fuel_quantity FROM {source}"
)


def shipments_table(rows: int, first_id: int, seed: int):
    """``rows`` normalized shipping rows, made with numpy (a million in well under a second)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    cents = rng.integers(100, 2_000_000, rows, dtype=np.int64)
    # decimal128 values are 16-byte little-endian integers: the cents, then their (zero) high half
    cost_buffer = pa.py_buffer(np.column_stack([cents, np.zeros(rows, np.int64)]).astype("<i8").tobytes())
    return pa.table(
        {
            "shipping_id": pa.array(np.arange(first_id, first_id + rows, dtype=np.int64)),
            "shipping_date": pa.array(rng.integers(19_723, 20_088, rows, dtype=np.int32)).cast(pa.date32()),
            "destination_city": pc.take(pa.array(CITIES), pa.array(rng.integers(0, len(CITIES), rows))),
            "shipping_cost": pa.Array.from_buffers(pa.decimal128(12, 2), rows, [None, cost_buffer]),
            "shipping_distance": pa.array(rng.uniform(1.0, 3000.0, rows)),
            "quantity": pa.array(rng.uniform(0.5, 400.0, rows)),
            "product_id": pa.array(rng.integers(1, 5_000, rows, dtype=np.int64)),
        }
    )


def expected_totals(table) -> tuple[int, Decimal, float, float]:
    import pyarrow.compute as pc

    return (
        table.num_rows,
        pc.sum(table["shipping_cost"]).as_py(),
        pc.sum(table["shipping_distance"]).as_py(),
        pc.sum(table["quantity"]).as_py(),
    )


def same_totals(a: tuple, b: tuple) -> bool:
    count_a, cost_a, distance_a, quantity_a = a
    count_b, cost_b, distance_b, quantity_b = b
    # the float sums depend on the order DuckDB's threads add them in: equal to 1e-9
    return (
        count_a == count_b
        and cost_a == cost_b
        and abs(distance_a - distance_b) <= 1e-9 * abs(distance_a)
        and abs(quantity_a - quantity_b) <= 1e-9 * abs(quantity_a)
    )


class _Data:
    """The batch partition and the other one, on local disk and in the emulator's S3, catalogued."""

    def __init__(self, endpoint: str, folder: Path, shipments: int):
        import boto3
        import pyarrow.parquet as pq

        session = boto3.Session(
            region_name=REGION,
            aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        self.athena = session.client("athena", endpoint_url=endpoint)
        s3, glue = session.client("s3", endpoint_url=endpoint), session.client("glue", endpoint_url=endpoint)
        run = uuid.uuid4().hex[:8]
        self.batch_id = f"bench-{run}"
        self.database = f"bench-athena-{run}"
        prefix = f"bench/athena_query/{run}/normalized/"
        other = max(1, shipments // 4)
        progress(f"writing {shipments:,} shipping rows (batch {self.batch_id}) and {other:,} others as parquet ...")
        started = time.perf_counter()
        batch = shipments_table(shipments, 1, seed=7)
        self.expected = expected_totals(batch)
        self.files: list[Path] = []
        self.batch_bytes = 0
        for partition, table in ((self.batch_id, batch), (f"other-{run}", shipments_table(other, shipments + 1, 8))):
            step = -(-table.num_rows // FILES)
            for index in range(FILES):
                chunk = table.slice(index * step, step)
                if chunk.num_rows == 0:
                    continue
                path = folder / f"batch_id={partition}" / f"part-{index:05d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(chunk, path)
                body = path.read_bytes()
                s3.put_object(Bucket=BUCKET, Key=f"{prefix}batch_id={partition}/{path.name}", Body=body)
                if partition == self.batch_id:
                    self.files.append(path)
                    self.batch_bytes += len(body)
        progress(f"written in {time.perf_counter() - started:.1f} s ({self.batch_bytes / 1e6:.1f} MB in the batch)")
        crawler = f"bench-athena-{run}"
        glue.create_crawler(
            Name=crawler, Role=ROLE_ARN, DatabaseName=self.database,
            Targets={"S3Targets": [{"Path": f"s3://{BUCKET}/{prefix}"}]},
        )  # fmt: skip
        glue.start_crawler(Name=crawler)
        while (state := glue.get_crawler(Name=crawler)["Crawler"])["State"] != "READY" or "LastCrawl" not in state:
            time.sleep(0.1)
        if state["LastCrawl"]["Status"] != "SUCCEEDED":
            raise RuntimeError(f"the crawl failed: {state['LastCrawl']}")
        progress(f'catalogued as "{self.database}"."normalized" (partitioned by batch_id)')
        self.scanned: list[int] = []

    def baseline(self, _index: int = 0) -> tuple[float, tuple]:
        import duckdb

        files = ", ".join(f"'{path}'" for path in self.files)
        started = time.perf_counter()
        connection = duckdb.connect()
        try:
            row = connection.execute(TOTALS.format(source=f"read_parquet([{files}])")).fetchone()
        finally:
            connection.close()
        return time.perf_counter() - started, (row[0], row[1], row[2], row[3])

    def candidate(self, _index: int = 0) -> tuple[float, tuple]:
        sql = TOTALS.format(source=f'"{self.database}"."normalized" WHERE batch_id = \'{self.batch_id}\'')
        started = time.perf_counter()
        query_id = self.athena.start_query_execution(QueryString=sql, ResultConfiguration={"OutputLocation": OUTPUT})[
            "QueryExecutionId"
        ]
        while True:
            execution = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            if execution["Status"]["State"] not in ("QUEUED", "RUNNING"):
                break
            time.sleep(POLL_SECONDS)
        if execution["Status"]["State"] != "SUCCEEDED":
            raise RuntimeError(f"query {query_id} ended {execution['Status']['State']}: {execution['Status']}")
        rows = self.athena.get_query_results(QueryExecutionId=query_id)["ResultSet"]["Rows"]
        seconds = time.perf_counter() - started
        self.scanned.append(execution["Statistics"]["DataScannedInBytes"])
        values = [datum["VarCharValue"] for datum in rows[1]["Data"]]
        return seconds, (int(values[0]), Decimal(values[1]), float(values[2]), float(values[3]))


def run(session: Session) -> list[Verdict]:
    repeat = session.repeats(DEFAULT_REPEAT, minimum=3)
    with tempfile.TemporaryDirectory(prefix="bench-athena-") as folder, in_process_emulator() as endpoint:
        progress(f"emulator on {endpoint}")
        data = _Data(endpoint, Path(folder), session.shipments)
        # warm-up: imports, the page cache, first-request paths
        data.baseline(), data.candidate()
        baseline, candidate = interleave(
            data.baseline,
            data.candidate,
            repeat,
            label="query pair",
            describe=lambda a, b: f"DuckDB on local files {a[0]:.3f} s, local Athena {b[0]:.3f} s",
        )
    baseline_s, candidate_s = median([s for s, _ in baseline]), median([s for s, _ in candidate])
    agree = all(same_totals(data.expected, totals) for _, totals in baseline + candidate)
    pruned = all(scanned == data.batch_bytes for scanned in data.scanned)
    limit = TARGET_RATIO * baseline_s + TARGET_SLACK_SECONDS
    ratio = candidate_s / baseline_s
    count, cost, distance, quantity = data.expected
    return [
        result_block(
            NAME,
            "local Athena: the shipping totals of one batch partition",
            measured=(
                f"count and three sums over {count:,} rows in {len(data.files)} parquet files, {repeat} interleaved "
                "pairs, medians; Athena polled every 50 ms"
            ),
            baseline=(
                "DuckDB, local files",
                f"{baseline_s:.3f} s (samples {fmt_samples([s for s, _ in baseline], digits=3)})",
            ),
            candidate=(
                "Start..GetQueryResults",
                f"{candidate_s:.3f} s (samples {fmt_samples([s for s, _ in candidate], digits=3)})",
            ),
            difference=f"{candidate_s - baseline_s:+.3f} s per query (limit {limit:.3f} s)",
            ratio=f"local Athena / DuckDB on local files = {ratio:.2f}x",
            details=[
                f"results    {'the same' if agree else 'DIFFERENT'} in every run: {count:,} shipments, cost {cost}, "
                f"distance {distance:.2f}, fuel {quantity:.2f}",
                f"scanned    {data.scanned[-1]:,} bytes per query, the batch partition's objects "
                f"({data.batch_bytes:,} bytes){'' if pruned else ' -- NOT PRUNED'}",
            ],
            target=(
                f"candidate <= {TARGET_RATIO}x baseline + {TARGET_SLACK_SECONDS} s, same results, "
                "other partition pruned"
            ),
            passed=candidate_s <= limit and agree and pruned,
        )
    ]
