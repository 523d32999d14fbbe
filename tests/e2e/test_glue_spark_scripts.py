"""PySpark Glue scripts written the ways people write them, run on the local stack's Spark runtime.

Each script in ``glue_scripts/spark`` is uploaded and run with plain boto3 (``create_job``,
``start_job_run``), and the data it writes is read back and checked row by row:

- ``glue_studio_style.py``: the code Glue Studio generates (S3 JSON source, Change Schema,
  Drop Fields, partitioned glueparquet target);
- ``console_classic_style.py``: the older console-generated script with ``## @type`` blocks,
  reading a CSV table that a real crawler catalogued;
- ``mixed_dataframe_style.py``: DynamicFrames and DataFrames mixed, with a choice column
  resolved, and a sink that updates the catalog;
- ``bookmarked_incremental.py``: a job bookmark across three runs, with a reset between.

Six Spark runs in all (each starts a JVM); every test has its own S3 prefix, database and job.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.glue_runs import ARTIFACTS, ERROR_GROUP, ROLE, create_job, job_log_lines, start_job_run, wait_for_job_run

pytestmark = pytest.mark.e2e

SCRIPTS = Path(__file__).parent / "glue_scripts" / "spark"
BUCKET = ARTIFACTS  # the runs' data sits beside the scripts


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_spark_job(aws, name: str, script: str, **job) -> None:
    """A job running ``glue_scripts/spark/<script>``."""
    create_job(aws, name, f"tests/glue-spark-scripts/{name}/{script}", (SCRIPTS / script).read_bytes(), **job)


def run_job(aws, name: str, timeout: float = 240, **arguments) -> dict:
    """Starts a run and waits for its end; fails with the run's error log unless it SUCCEEDED."""
    run_id = start_job_run(aws, name, **arguments)
    run = wait_for_job_run(aws, name, run_id, timeout)
    assert run["JobRunState"] == "SUCCEEDED", (run.get("ErrorMessage"), job_log_lines(aws, run_id, ERROR_GROUP)[-40:])
    return run


def keys_under(aws, bucket: str, prefix: str) -> list[str]:
    pages = aws("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def read_parquet_dataset(aws, bucket: str, prefix: str) -> tuple[list[dict], list[pa.Schema]]:
    """Every row of the parquet files below ``prefix``, with the ``key=value`` folders between
    the prefix and each file added as string columns (as Hive-partitioned readers do)."""
    rows, schemas = [], []
    for key in keys_under(aws, bucket, prefix):
        if not key.endswith(".parquet"):
            continue
        table = pq.read_table(io.BytesIO(aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read()))
        schemas.append(table.schema)
        folders = key.removeprefix(prefix).split("/")[:-1]
        partition = dict(folder.split("=", 1) for folder in folders if "=" in folder)
        rows += [{**row, **partition} for row in table.to_pylist()]
    return rows, schemas


def read_json_lines(aws, bucket: str, prefix: str) -> list[dict]:
    rows = []
    for key in keys_under(aws, bucket, prefix):
        if key.rsplit("/", 1)[-1].startswith(("_", ".")):
            continue
        body = aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        rows += [json.loads(line) for line in body.splitlines() if line.strip()]
    return rows


def json_lines(records: list[dict]) -> bytes:
    return ("\n".join(json.dumps(record) for record in records) + "\n").encode()


# -- 1. Glue Studio ---------------------------------------------------------------------------------

SHIPMENTS = [
    {
        "id": "s-1",
        "weight": 2.5,
        "parcels": 1,
        "carrier": "dpd",
        "customer_email": "ana@example.com",
        "destination": {"country": "GB", "city": "Leeds"},
    },
    {
        "id": "s-2",
        "weight": 12.0,
        "parcels": 3,
        "carrier": "ups",
        "customer_email": "ben@example.com",
        "destination": {"country": "FR", "city": "Lyon"},
    },
    {
        "id": "s-3",
        "weight": 0.75,
        "parcels": 2,
        "carrier": "dpd",
        "customer_email": "cy@example.com",
        "destination": {"country": "GB", "city": "York"},
    },
]


def test_a_glue_studio_script_maps_drops_personal_data_and_writes_partitioned_parquet(stack, aws):
    name = _unique("studio-shipments")
    prefix = f"glue-spark-scripts/{name}"
    s3 = aws("s3")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/in/day=1/shipments.json", Body=json_lines(SHIPMENTS[:2]))
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/in/late/more/shipments.json", Body=json_lines(SHIPMENTS[2:]))
    create_spark_job(aws, name, "glue_studio_style.py")

    run_job(
        aws,
        name,
        **{"--source_path": f"s3://{BUCKET}/{prefix}/in/", "--target_path": f"s3://{BUCKET}/{prefix}/out/"},
    )

    keys = keys_under(aws, BUCKET, f"{prefix}/out/")
    assert {key.split("/")[-2] for key in keys} == {"country=GB", "country=FR"}, keys
    rows, schemas = read_parquet_dataset(aws, BUCKET, f"{prefix}/out/")
    assert sorted(rows, key=lambda row: row["shipment_id"]) == [
        {"shipment_id": "s-1", "weight_kg": 2.5, "parcels": 1, "city": "Leeds", "country": "GB"},
        {"shipment_id": "s-2", "weight_kg": 12.0, "parcels": 3, "city": "Lyon", "country": "FR"},
        {"shipment_id": "s-3", "weight_kg": 0.75, "parcels": 2, "city": "York", "country": "GB"},
    ]
    for schema in schemas:
        assert schema.names == ["shipment_id", "weight_kg", "parcels", "city"]  # no email, no carrier
        assert schema.field("weight_kg").type == pa.float64()
        assert schema.field("parcels").type == pa.int64()
    for key in keys:
        body = aws("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert pq.ParquetFile(io.BytesIO(body)).metadata.row_group(0).column(0).compression == "SNAPPY", key


# -- 2. the classic console script over a crawled CSV table -----------------------------------------

PARCELS_CSV = [
    ["parcel_id", "depot", "weight_g", "pieces", "legacy_ref", "notes"],
    ["p-1", "LDS", "1200", "1", "", "fragile"],
    ["p-2", "MAN", "350", "2", "", ""],
    ["p-3", "LDS", "9800", "4", "", "heavy, two-person lift"],
]


def crawl(aws, name: str, path: str, database: str, timeout: float = 60) -> dict:
    glue = aws("glue")
    glue.create_crawler(Name=name, Role=ROLE, DatabaseName=database, Targets={"S3Targets": [{"Path": path}]})
    glue.start_crawler(Name=name)
    deadline = time.monotonic() + timeout
    while (found := glue.get_crawler(Name=name)["Crawler"])["State"] != "READY" or "LastCrawl" not in found:
        assert time.monotonic() < deadline, f"crawler {name} still {found['State']} after {timeout} s"
        time.sleep(0.1)
    assert found["LastCrawl"]["Status"] == "SUCCEEDED", found["LastCrawl"]
    return found


def test_a_classic_console_script_reads_a_crawled_csv_table_and_drops_the_empty_column(stack, aws):
    name = _unique("classic-parcels")
    hexid = name.rsplit("-", 1)[1]
    prefix = f"glue-spark-scripts/{name}"
    table, database = f"parcels_{hexid}", f"classic_{hexid}"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(PARCELS_CSV)
    aws("s3").put_object(Bucket=BUCKET, Key=f"{prefix}/landing/{table}/parcels.csv", Body=buffer.getvalue().encode())
    crawl(aws, name, f"s3://{BUCKET}/{prefix}/landing/{table}/", database)
    crawled = aws("glue").get_table(DatabaseName=database, Name=table)["Table"]
    assert crawled["Parameters"]["classification"] == "csv"
    assert [c["Name"] for c in crawled["StorageDescriptor"]["Columns"]] == PARCELS_CSV[0]
    create_spark_job(aws, name, "console_classic_style.py")

    run_job(
        aws,
        name,
        **{"--database": database, "--table_name": table, "--target_path": f"s3://{BUCKET}/{prefix}/out/"},
    )

    rows, schemas = read_parquet_dataset(aws, BUCKET, f"{prefix}/out/")
    assert sorted(rows, key=lambda row: row["parcel_id"]) == [
        {"parcel_id": "p-1", "depot_code": "LDS", "weight_g": 1200, "pieces": 1},
        {"parcel_id": "p-2", "depot_code": "MAN", "weight_g": 350, "pieces": 2},
        {"parcel_id": "p-3", "depot_code": "LDS", "weight_g": 9800, "pieces": 4},
    ]
    for schema in schemas:
        # legacy_ref (empty everywhere) went with DropNullFields, notes with ApplyMapping
        assert schema.names == ["parcel_id", "depot_code", "weight_g", "pieces"]
        assert schema.field("weight_g").type == pa.int64() and schema.field("pieces").type == pa.int32()


# -- 3. DynamicFrames and DataFrames mixed, with a catalog-updating sink ----------------------------

DEPOTS = [
    {"depot_id": "D1", "region": "north", "depot_name": "Leeds"},
    {"depot_id": "D2", "region": "north", "depot_name": "York"},
    {"depot_id": "D3", "region": "south", "depot_name": "Bristol"},
]
PAYMENTS = [
    {"payment_id": "p1", "depot_id": "D1", "amount": 40, "status": "paid", "paid_at": "2025-03-01T09:00:00"},
    {"payment_id": "p2", "depot_id": "D1", "amount": "72.5", "status": "paid", "paid_at": "2025-03-01T15:30:00"},
    {"payment_id": "p3", "depot_id": "D1", "amount": 10, "status": "refunded", "paid_at": "2025-03-01T18:00:00"},
    {"payment_id": "p4", "depot_id": "D2", "amount": 19.99, "status": "paid", "paid_at": "2025-03-01T11:00:00"},
    {"payment_id": "p5", "depot_id": "D2", "amount": "-5", "status": "paid", "paid_at": "2025-03-02T08:00:00"},
    {"payment_id": "p6", "depot_id": "D3", "amount": 120, "status": "paid", "paid_at": "2025-03-02T10:00:00"},
    {"payment_id": "p7", "depot_id": "D9", "amount": 50, "status": "paid", "paid_at": "2025-03-01T12:00:00"},
]


def test_a_mixed_dynamicframe_and_dataframe_script_writes_data_and_updates_the_catalog(stack, aws):
    name = _unique("mixed-revenue")
    hexid = name.rsplit("-", 1)[1]
    prefix = f"glue-spark-scripts/{name}"
    database, table = f"mixed_{hexid}", "depot_daily_revenue"
    s3 = aws("s3")
    depots = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(DEPOTS), depots)
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/depots/depots.parquet", Body=depots.getvalue())
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/payments/a.json", Body=json_lines(PAYMENTS[:4]))
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/payments/b.json", Body=json_lines(PAYMENTS[4:]))
    aws("glue").create_database(DatabaseInput={"Name": database})
    target = f"s3://{BUCKET}/{prefix}/out/"
    create_spark_job(aws, name, "mixed_dataframe_style.py")

    run_job(
        aws,
        name,
        **{
            "--payments_path": f"s3://{BUCKET}/{prefix}/payments/",
            "--depots_path": f"s3://{BUCKET}/{prefix}/depots/",
            "--target_path": target,
            "--catalog_database": database,
            "--catalog_table": table,
        },
    )

    rows, _ = read_parquet_dataset(aws, BUCKET, f"{prefix}/out/")
    loaded = "2025-01-01T00:00:00"
    assert sorted(rows, key=lambda row: (row["day"], row["depot_id"])) == [
        {"depot_id": "D1", "revenue": 112.5, "payments": 2, "last_payment_id": "p2", "band": "high",
         "loaded_at": loaded, "region": "north", "day": "2025-03-01"},
        {"depot_id": "D2", "revenue": 19.99, "payments": 1, "last_payment_id": "p4", "band": "low",
         "loaded_at": loaded, "region": "north", "day": "2025-03-01"},
        {"depot_id": "D3", "revenue": 120.0, "payments": 1, "last_payment_id": "p6", "band": "high",
         "loaded_at": loaded, "region": "south", "day": "2025-03-02"},
    ]  # fmt: skip
    # D2's 2025-03-02 (a -5 adjustment only) was filtered out, p3 (refunded) and p7 (no depot) never counted

    glue = aws("glue")
    catalogued = glue.get_table(DatabaseName=database, Name=table)["Table"]
    assert [k["Name"] for k in catalogued["PartitionKeys"]] == ["region", "day"]
    descriptor = catalogued["StorageDescriptor"]
    assert descriptor["Location"].rstrip("/") == target.rstrip("/")
    columns = {c["Name"]: c["Type"] for c in descriptor["Columns"]}
    assert columns == {
        "depot_id": "string",
        "revenue": "double",
        "payments": "bigint",
        "last_payment_id": "string",
        "band": "string",
        "loaded_at": "string",
    }
    partitions = glue.get_partitions(DatabaseName=database, TableName=table)["Partitions"]
    assert sorted(tuple(p["Values"]) for p in partitions) == [("north", "2025-03-01"), ("south", "2025-03-02")]
    for partition in partitions:
        location = partition["StorageDescriptor"]["Location"].rstrip("/")
        assert location == f"{target}region={partition['Values'][0]}/day={partition['Values'][1]}"


# -- 4. job bookmarks --------------------------------------------------------------------------------


def test_a_bookmarked_job_reads_only_new_objects_until_its_bookmark_is_reset(stack, aws):
    name = _unique("bookmarked-events")
    prefix = f"glue-spark-scripts/{name}"
    s3, glue = aws("s3"), aws("glue")
    events = {
        "e1.json": [{"event_id": "e-1", "kind": "scan"}, {"event_id": "e-2", "kind": "scan"}],
        "e2.json": [{"event_id": "e-3", "kind": "delivered"}],
        "e3.json": [{"event_id": "e-4", "kind": "scan"}, {"event_id": "e-5", "kind": "returned"}],
    }
    create_spark_job(
        aws,
        name,
        "bookmarked_incremental.py",
        DefaultArguments={
            "--job-bookmark-option": "job-bookmark-enable",
            "--source_path": f"s3://{BUCKET}/{prefix}/events/",
            "--target_path": f"s3://{BUCKET}/{prefix}/out/",
        },
    )

    def run_and_read() -> tuple[str, list[str], int]:
        run_id = run_job(aws, name)["Id"]
        records = read_json_lines(aws, BUCKET, f"{prefix}/out/{run_id}/records/")
        (summary,) = read_json_lines(aws, BUCKET, f"{prefix}/out/{run_id}/count/")
        assert summary["run_id"] == run_id
        return run_id, sorted(record["event_id"] for record in records), summary["records"]

    for key in ("e1.json", "e2.json"):
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/events/{key}", Body=json_lines(events[key]))
    first, ids, count = run_and_read()
    assert (ids, count) == (["e-1", "e-2", "e-3"], 3)
    entry = glue.get_job_bookmark(JobName=name)["JobBookmarkEntry"]
    assert (entry["Run"], entry["RunId"]) == (1, first)

    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/events/e3.json", Body=json_lines(events["e3.json"]))
    second, ids, count = run_and_read()
    assert (ids, count) == (["e-4", "e-5"], 2)
    entry = glue.get_job_bookmark(JobName=name)["JobBookmarkEntry"]
    assert entry["JobName"] == name
    assert (entry["Run"], entry["Version"], entry["RunId"], entry["PreviousRunId"]) == (2, 2, second, first)
    recorded = json.loads(entry["JobBookmark"])["events_source"]["objects"]
    assert sorted(recorded) == [f"s3://{BUCKET}/{prefix}/events/{key}" for key in sorted(events)]

    reset = glue.reset_job_bookmark(JobName=name)["JobBookmarkEntry"]
    assert reset["Run"] == 0 and "JobBookmark" not in reset
    assert glue.get_job_bookmark(JobName=name)["JobBookmarkEntry"]["Run"] == 0

    third, ids, count = run_and_read()
    assert (ids, count) == (["e-1", "e-2", "e-3", "e-4", "e-5"], 5)
    entry = glue.get_job_bookmark(JobName=name)["JobBookmarkEntry"]
    assert (entry["Run"], entry["RunId"]) == (1, third)
