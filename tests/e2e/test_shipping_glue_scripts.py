"""The shipping Glue scripts on the local stack's Spark runtime, run as AWS runs them.

``shipping_json_to_parquet.py`` and ``shipping_normalize.py`` are uploaded and run with plain
boto3 (``create_job``, ``start_job_run``) on batches written by ``devstack.sample_data.shipping``
(plus hand-written edge cases), and what they write is read back and checked row by row.

Every batch has an id of its own; a module fixture runs the job once for a batch and the tests
that read its output share that run. Twelve job runs in all (each starts a JVM), two of them
stopping before Spark starts.
"""

from __future__ import annotations

import gzip
import io
import json
import time
import uuid
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devstack.sample_data import shipping
from tests.e2e.glue_runs import ROLE, create_job, output_and_error_lines, start_job_run, wait_for_job_run

pytestmark = pytest.mark.e2e

SCRIPTS = Path(__file__).resolve().parents[2] / "include" / "glue_scripts" / "shipping"
LANDING, STAGING = shipping.LANDING_BUCKET, shipping.STAGING_BUCKET

RAW_SCHEMA = pa.schema(
    [
        ("shipping_id", pa.int64()),
        ("shipping_date", pa.date32()),
        ("customer_name", pa.string()),
        ("street_address", pa.string()),
        ("destination_city", pa.string()),
        ("shipping_cost", pa.decimal128(12, 2)),
        ("shipping_distance", pa.float64()),
        ("quantity", pa.float64()),
        ("product_id", pa.int64()),
    ]
)
NORMALIZED_NAMES = [name for name in RAW_SCHEMA.names if name not in ("customer_name", "street_address")]
# Personal data planted in the batches: it must reach raw, and never a log, a reason or a reject.
PLANTED = [("Zoë Ångström-Plantéd", "Straße der Plantage 7"), ("Łukasz Żółć-Plantéd", "Ulica Źródlana 9 Plant")]


# -- running the jobs -------------------------------------------------------------------------------


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def jobs(stack, aws):
    """One job per script for this module: name by script stem."""
    names = {}
    for script in ("shipping_json_to_parquet", "shipping_normalize"):
        name = _unique(f"e2e-{script}")
        create_job(aws, name, f"tests/shipping/{name}/{script}.py", (SCRIPTS / f"{script}.py").read_bytes())
        names[script] = name
    return names


def run_logs(aws, run_id: str) -> str:
    """The run's stdout then its stderr, as one text."""
    return "\n".join(output_and_error_lines(aws, run_id))


def to_parquet(aws, jobs, batch_id: str, expect: str = "SUCCEEDED", **arguments) -> dict:
    args = {"--batch_id": batch_id, "--landing_bucket": LANDING, "--staging_bucket": STAGING, **arguments}
    run_id = start_job_run(aws, jobs["shipping_json_to_parquet"], **args)
    run = wait_for_job_run(aws, jobs["shipping_json_to_parquet"], run_id)
    assert run["JobRunState"] == expect, (run.get("ErrorMessage"), run_logs(aws, run_id)[-4000:])
    return run


def normalize(aws, jobs, batch_id: str, database: str, expect: str = "SUCCEEDED") -> dict:
    args = {"--batch_id": batch_id, "--staging_bucket": STAGING, "--database": database}
    run_id = start_job_run(aws, jobs["shipping_normalize"], **args)
    run = wait_for_job_run(aws, jobs["shipping_normalize"], run_id)
    assert run["JobRunState"] == expect, (run.get("ErrorMessage"), run_logs(aws, run_id)[-4000:])
    return run


# -- reading what they wrote ------------------------------------------------------------------------


def keys_under(aws, bucket: str, prefix: str) -> list[str]:
    pages = aws("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def read_parquet(aws, prefix: str) -> tuple[list[dict], list[pa.Schema], list[str]]:
    keys = keys_under(aws, STAGING, prefix)
    rows, schemas = [], []
    for key in keys:
        table = pq.read_table(io.BytesIO(aws("s3").get_object(Bucket=STAGING, Key=key)["Body"].read()))
        schemas.append(table.schema)
        rows += table.to_pylist()
    return rows, schemas, keys


def read_text(aws, bucket: str, key: str) -> str:
    return aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")


def read_rejects(aws, batch_id: str) -> list[dict]:
    rows = []
    for key in keys_under(aws, STAGING, f"rejected/batch_id={batch_id}/"):
        rows += [json.loads(line) for line in read_text(aws, STAGING, key).splitlines() if line.strip()]
    return sorted(rows, key=lambda r: (r["object"], r["line"]))


def read_report(aws, batch_id: str) -> dict:
    return json.loads(read_text(aws, STAGING, f"audit/batch_id={batch_id}/json_to_parquet.json"))


def cents(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def expected_row(record: dict) -> dict:
    """A written record as the raw layer types it."""
    year, month, day = map(int, record["shipping_date"].split("/"))
    return {
        "shipping_id": record["shipping_id"],
        "shipping_date": date(year, month, day),
        "customer_name": record["customer_name"],
        "street_address": record["street_address"],
        "destination_city": record["destination_city"],
        "shipping_cost": cents(record["shipping_cost"]),
        "shipping_distance": float(record["shipping_distance"]),
        "quantity": float(record["quantity"]),
        "product_id": record.get("product_id"),
    }


def sort_key(row: dict) -> tuple:
    return tuple((value is None, str(value)) for value in row.values())


def sorted_rows(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=sort_key)


# -- batch A: sample data with every kind of bad line, plus hand-written edge cases -----------------

EDGE_GOOD = [
    # product_id given, an unknown field, a cost rounded half up to cents, integers for the doubles
    {"shipping_id": 4611686018427387904, "shipping_date": "2024/02/29", "customer_name": "山田 太郎 🚚",
     "street_address": "1-2-3 Ginza, Chūō", "destination_city": "Tōkyō", "shipping_cost": 12.345,
     "shipping_distance": 12, "quantity": 3, "product_id": 987654321, "loyalty_tier": "gold"},
    {"shipping_id": 7, "shipping_date": "2025/12/31", "customer_name": "Ève", "street_address": "Quai d'Orsay 2",
     "destination_city": "Paris", "shipping_cost": 0, "shipping_distance": 0.5, "quantity": 1e2,
     "product_id": None},
]  # fmt: skip
GOOD_BASE = {
    "shipping_id": 11, "shipping_date": "2024/05/06", "customer_name": PLANTED[0][0],
    "street_address": PLANTED[0][1], "destination_city": "Malmö", "shipping_cost": 10.5,
    "shipping_distance": 20.25, "quantity": 2,
}  # fmt: skip


def _edge(change: dict, drop: str | None = None) -> str:
    record = {**GOOD_BASE, **change}
    if drop:
        del record[drop]
    return json.dumps(record, ensure_ascii=False)


# (line text, expected reason or None for an accepted line); "" is a blank line
EDGE_LINES: list[tuple[str, str | None]] = [
    (json.dumps(EDGE_GOOD[0], ensure_ascii=False), None),
    ("", None),
    ("[1, 2]", "not a JSON object"),
    ("   ", None),
    (_edge({"shipping_id": "17"}), "shipping_id is not an integer"),
    (_edge({"shipping_id": 1.5}), "shipping_id is not an integer"),
    (_edge({}, drop="shipping_date"), "shipping_date is missing"),
    (_edge({"shipping_date": "2024/02/30"}), "shipping_date is not a date in YYYY/MM/DD"),
    (_edge({"shipping_date": "2024-05-06"}), "shipping_date is not a date in YYYY/MM/DD"),
    (_edge({"customer_name": None}), "customer_name is missing"),
    (_edge({}, drop="street_address"), "street_address is missing"),
    (_edge({"shipping_cost": "12.5"}), "shipping_cost is not a number"),
    (_edge({"shipping_cost": 1e20}), "shipping_cost does not fit decimal(12,2)"),
    (_edge({"shipping_distance": True}), "shipping_distance is not a number"),
    (_edge({"quantity": "Infinity"}), "quantity is not a number"),
    (_edge({"product_id": "P-1"}), "product_id is not an integer"),
    (json.dumps(EDGE_GOOD[1], ensure_ascii=False), None),
    ('{"shipping_id": 3, "customer_name": "' + PLANTED[1][0], "not a JSON object"),
]
SAMPLE_LINES = 3000
SAMPLE_BAD_SHARE = 0.003  # 9 bad lines, with the 14 edge cases: 23 of 3,016 lines, under 1%


def _edge_file() -> bytes:
    return "".join(text + "\n" for text, _ in EDGE_LINES).encode("utf-8")


@pytest.fixture(scope="module")
def batch_a(stack, aws, jobs):
    """Sample data in three objects (one gzip), with planted personal data, plus a file of edge
    cases with blank lines; the marker lists the objects. Run once."""
    batch_id = _unique("ship-a")
    written = shipping.write_batch(
        aws("s3"), batch_id, shipments=SAMPLE_LINES, seed=11, bad_share=SAMPLE_BAD_SHARE, customers=PLANTED
    )
    edge_key = f"{shipping.PREFIX}{batch_id}/edge-cases.json"
    aws("s3").put_object(Bucket=LANDING, Key=edge_key, Body=_edge_file())
    keys = [*written.keys, edge_key]
    run = to_parquet(aws, jobs, batch_id, **{"--objects": json.dumps(keys)})
    return {"id": batch_id, "written": written, "edge_key": edge_key, "keys": keys, "run": run}


def expected_raw_a(batch_a) -> list[dict]:
    records = list(batch_a["written"].records)
    records += [json.loads(text) for text, reason in EDGE_LINES if text.strip() and reason is None]
    return sorted_rows([expected_row(r) for r in records])


def expected_rejects_a(batch_a) -> list[dict]:
    kinds = {
        shipping.NOT_JSON: "not a JSON object",
        shipping.COST_AS_STRING: "shipping_cost is not a number",
        shipping.IMPOSSIBLE_DATE: "shipping_date is not a date in YYYY/MM/DD",
    }
    rejects = [{"object": key, "line": line, "reason": kinds[kind]} for key, line, kind in batch_a["written"].bad]
    rejects += [
        {"object": batch_a["edge_key"], "line": number, "reason": reason}
        for number, (_, reason) in enumerate(EDGE_LINES, start=1)
        if reason
    ]
    return sorted(rejects, key=lambda r: (r["object"], r["line"]))


def test_raw_holds_every_accepted_record_typed(aws, batch_a):
    rows, schemas, keys = read_parquet(aws, f"transformed_data/batch_id={batch_a['id']}/")

    assert keys and all(key.endswith(".parquet") for key in keys), keys  # no _SUCCESS, no _temporary
    for schema in schemas:
        assert schema.names == RAW_SCHEMA.names  # no batch_id column: it is the path's partition
        assert [field.type for field in schema] == RAW_SCHEMA.types
    assert sorted_rows(rows) == expected_raw_a(batch_a)
    names = {row["customer_name"] for row in rows}
    assert {PLANTED[0][0], PLANTED[1][0], "山田 太郎 🚚"} <= names  # non-ASCII kept as written
    tokyo = next(row for row in rows if row["destination_city"] == "Tōkyō")
    assert tokyo["shipping_cost"] == Decimal("12.35") and tokyo["product_id"] == 987654321
    assert all(row["product_id"] is None for row in rows if row["destination_city"] != "Tōkyō")


def test_rejects_name_the_object_line_and_reason_of_each_bad_line(aws, batch_a):
    rejects = read_rejects(aws, batch_a["id"])

    assert rejects == expected_rejects_a(batch_a)
    gzip_key = next(key for key in batch_a["keys"] if key.endswith(".gz"))
    kinds_in_gzip = {kind for key, _, kind in batch_a["written"].bad if key == gzip_key}
    assert kinds_in_gzip, "the sample batch should have a bad line in its gzip object"
    assert any(r["object"] == gzip_key for r in rejects)
    text = "\n".join(
        read_text(aws, STAGING, k) for k in keys_under(aws, STAGING, f"rejected/batch_id={batch_a['id']}/")
    )
    for name, address in PLANTED:  # neither the record nor a value of it is copied
        assert name not in text and address not in text


def test_the_report_counts_the_batch_and_lists_the_first_rejections(aws, batch_a):
    report = read_report(aws, batch_a["id"])
    rejects = expected_rejects_a(batch_a)
    landing = SAMPLE_LINES + sum(1 for text, _ in EDGE_LINES if text.strip())

    assert report == {
        "batch_id": batch_a["id"],
        "objects": batch_a["keys"],
        "landing": landing,
        "rejected": len(rejects),
        "raw": landing - len(rejects),
        "max_rejected_fraction": 0.01,
        "first_rejections": rejects[:10],
    }


def test_the_logs_hold_counts_and_keys_but_no_personal_data(aws, batch_a):
    logs = run_logs(aws, batch_a["run"]["Id"])

    landing = SAMPLE_LINES + sum(1 for text, _ in EDGE_LINES if text.strip())
    assert f"{landing:,} lines" in logs and batch_a["edge_key"] in logs
    for name, address in PLANTED:
        assert name not in logs and address not in logs


# -- reruns ------------------------------------------------------------------------------------------


def test_a_rerun_of_the_same_batch_leaves_the_same_output(aws, jobs, batch_a):
    raw_prefix = f"transformed_data/batch_id={batch_a['id']}/"
    before, _, before_keys = read_parquet(aws, raw_prefix)
    rejects_before, report_before = read_rejects(aws, batch_a["id"]), read_report(aws, batch_a["id"])

    to_parquet(aws, jobs, batch_a["id"], **{"--objects": json.dumps(batch_a["keys"])})

    after, _, after_keys = read_parquet(aws, raw_prefix)
    assert sorted_rows(after) == sorted_rows(before)  # no duplicates
    assert len(after_keys) == len(before_keys)
    assert read_rejects(aws, batch_a["id"]) == rejects_before
    assert len(keys_under(aws, STAGING, f"rejected/batch_id={batch_a['id']}/")) == 1
    assert read_report(aws, batch_a["id"]) == report_before


def test_a_run_stopped_mid_write_then_rerun_leaves_exact_rows(aws, jobs):
    batch_id = _unique("ship-kill")
    written = shipping.write_batch(aws("s3"), batch_id, shipments=150_000, seed=5, files=2, gzip_files=1)
    raw_prefix = f"transformed_data/batch_id={batch_id}/"
    # what an earlier crashed attempt leaves behind: part files and the committer's work folder
    stale = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([expected_row(written.records[0])], schema=RAW_SCHEMA), stale)
    for key in (f"{raw_prefix}part-00000-stale-c000.snappy.parquet", f"{raw_prefix}_temporary/0/part-00001.parquet"):
        aws("s3").put_object(Bucket=STAGING, Key=key, Body=stale.getvalue())
    job = jobs["shipping_json_to_parquet"]
    args = {"--batch_id": batch_id, "--landing_bucket": LANDING, "--staging_bucket": STAGING}

    run_id = start_job_run(aws, job, **args)
    deadline = time.monotonic() + 240
    while aws("glue").get_job_run(JobName=job, RunId=run_id)["JobRun"]["JobRunState"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(8)  # past the JVM start, into the pass over the batch
    aws("glue").batch_stop_job_run(JobName=job, JobRunIds=[run_id])
    stopped = wait_for_job_run(aws, job, run_id)
    assert stopped["JobRunState"] in ("STOPPED", "SUCCEEDED")

    to_parquet(aws, jobs, batch_id)

    rows, _, keys = read_parquet(aws, raw_prefix)
    assert all(key.endswith(".parquet") and "/_temporary/" not in key and "stale" not in key for key in keys), keys
    assert len(rows) == len(written.records)
    assert sorted_rows(rows) == sorted_rows([expected_row(r) for r in written.records])


# -- failures ----------------------------------------------------------------------------------------


def test_a_batch_over_the_rejected_share_fails_with_the_share_and_first_reasons(aws, jobs):
    batch_id = _unique("ship-bad")
    written = shipping.write_batch(aws("s3"), batch_id, shipments=1000, seed=3, bad_share=0.05, customers=PLANTED)
    first = min(written.bad, key=lambda b: (b[0], b[1]))

    run = to_parquet(aws, jobs, batch_id, expect="FAILED", **{"--objects": json.dumps(written.keys)})

    message = run["ErrorMessage"]
    assert batch_id in message and "50 of 1,000 lines rejected (5.0%), over the 1.0% allowed" in message, message
    assert f"{first[0]} line {first[1]}: not a JSON object" in message, message
    for name, address in PLANTED:
        assert name not in message and address not in message
    assert keys_under(aws, STAGING, f"transformed_data/batch_id={batch_id}/") == []
    assert len(read_rejects(aws, batch_id)) == 50
    report = read_report(aws, batch_id)
    assert (report["landing"], report["rejected"], len(report["first_rejections"])) == (1000, 50, 10)


def test_an_object_that_is_not_json_lines_fails_the_batch_naming_it(aws, jobs):
    batch_id = _unique("ship-csv")
    s3 = aws("s3")
    written = shipping.write_batch(s3, batch_id, shipments=200, seed=4, files=1, gzip_files=0, write_marker=False)
    csv_key = f"{shipping.PREFIX}{batch_id}/shipments.csv"
    rows = ["shipping_id,shipping_date,customer_name"] + [f"{i},2024/01/0{i % 9 + 1},Name {i}" for i in range(30)]
    s3.put_object(Bucket=LANDING, Key=csv_key, Body=("\n".join(rows) + "\n").encode())

    run = to_parquet(aws, jobs, batch_id, expect="FAILED", **{"--prefix": f"incoming/{batch_id}"})

    message = run["ErrorMessage"]
    assert "31 of 231 lines rejected (13.42%)" in message, message
    assert f"not JSON lines (every line rejected): {csv_key}" in message, message
    assert f"{csv_key} line 1: not a JSON object" in message
    assert keys_under(aws, STAGING, f"transformed_data/batch_id={batch_id}/") == []
    assert read_report(aws, batch_id)["objects"] == sorted([*written.keys, csv_key])


def test_a_listed_object_that_does_not_exist_fails_the_run_naming_it(aws, jobs):
    batch_id = _unique("ship-missing")
    written = shipping.write_batch(aws("s3"), batch_id, shipments=10, files=1, gzip_files=0)
    missing = f"{shipping.PREFIX}{batch_id}/never-uploaded.json"

    run = to_parquet(aws, jobs, batch_id, expect="FAILED", **{"--objects": json.dumps([*written.keys, missing])})

    assert f"s3://{LANDING}/{missing}" in run["ErrorMessage"] and "do not exist" in run["ErrorMessage"]
    assert keys_under(aws, STAGING, f"transformed_data/batch_id={batch_id}/") == []


# -- an empty batch ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def empty_batch(stack, aws, jobs):
    """A batch whose only object holds blank lines, beside a folder marker; objects from the prefix
    (other batches' objects sit under incoming/ too)."""
    batch_id = _unique("ship-empty")
    s3 = aws("s3")
    s3.put_object(Bucket=LANDING, Key=f"{shipping.PREFIX}{batch_id}/", Body=b"")
    s3.put_object(Bucket=LANDING, Key=f"{shipping.PREFIX}{batch_id}/blank.json.gz", Body=gzip.compress(b"\n \n\n"))
    # the landing root as --prefix, as the DAG passes it: only this batch's folder is read
    to_parquet(aws, jobs, batch_id, **{"--objects": "null", "--prefix": "incoming/"})
    return batch_id


def test_an_empty_batch_writes_an_empty_parquet_file_with_the_schema(aws, empty_batch):
    rows, schemas, keys = read_parquet(aws, f"transformed_data/batch_id={empty_batch}/")

    assert rows == [] and len(keys) == 1 and keys[0].endswith(".parquet")
    assert schemas[0] == RAW_SCHEMA
    body = aws("s3").get_object(Bucket=STAGING, Key=keys[0])["Body"].read()
    assert pq.ParquetFile(io.BytesIO(body)).metadata.num_rows == 0
    assert read_rejects(aws, empty_batch) == []
    report = read_report(aws, empty_batch)
    assert report["objects"] == [f"{shipping.PREFIX}{empty_batch}/blank.json.gz"]
    assert (report["landing"], report["rejected"], report["raw"], report["first_rejections"]) == (0, 0, 0, [])


# -- normalize ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogued(stack, aws, batch_a, empty_batch):
    """The raw layer crawled into a database of this module's own (not shipping-db)."""
    database = f"shipping_e2e_{uuid.uuid4().hex[:8]}"
    glue = aws("glue")
    crawler = _unique("e2e-shipping-raw")
    glue.create_crawler(
        Name=crawler,
        Role=ROLE,
        DatabaseName=database,
        Targets={"S3Targets": [{"Path": f"s3://{STAGING}/transformed_data/"}]},
    )
    glue.start_crawler(Name=crawler)
    deadline = time.monotonic() + 120
    while (found := glue.get_crawler(Name=crawler)["Crawler"])["State"] != "READY" or "LastCrawl" not in found:
        assert time.monotonic() < deadline, f"crawler still {found['State']}"
        time.sleep(0.2)
    assert found["LastCrawl"]["Status"] == "SUCCEEDED", found["LastCrawl"]
    table = glue.get_table(DatabaseName=database, Name="transformed_data")["Table"]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["batch_id"]
    return database


def expected_normalized(raw_rows: list[dict]) -> list[dict]:
    return sorted_rows([{name: row[name] for name in NORMALIZED_NAMES} for row in raw_rows])


def test_normalize_reads_the_catalogued_batch_and_drops_the_personal_columns(aws, jobs, batch_a, catalogued):
    raw_rows, _, _ = read_parquet(aws, f"transformed_data/batch_id={batch_a['id']}/")

    run = normalize(aws, jobs, batch_a["id"], catalogued)

    rows, schemas, keys = read_parquet(aws, f"normalized/batch_id={batch_a['id']}/")
    assert keys and all(key.endswith(".parquet") for key in keys)
    for schema in schemas:
        assert schema.names == NORMALIZED_NAMES
        assert [f.type for f in schema] == [RAW_SCHEMA.field(name).type for name in NORMALIZED_NAMES]
    assert sorted_rows(rows) == expected_normalized(raw_rows)
    logs = run_logs(aws, run["Id"])
    for name, address in PLANTED:
        assert name not in logs and address not in logs

    normalize(aws, jobs, batch_a["id"], catalogued)  # a rerun replaces, never adds

    again, _, again_keys = read_parquet(aws, f"normalized/batch_id={batch_a['id']}/")
    assert sorted_rows(again) == sorted_rows(rows) and len(again_keys) == len(keys)


def test_normalize_of_an_empty_batch_writes_the_schema(aws, jobs, empty_batch, catalogued):
    normalize(aws, jobs, empty_batch, catalogued)

    rows, schemas, keys = read_parquet(aws, f"normalized/batch_id={empty_batch}/")
    assert rows == [] and len(keys) == 1
    assert schemas[0].names == NORMALIZED_NAMES
    assert [f.type for f in schemas[0]] == [RAW_SCHEMA.field(name).type for name in NORMALIZED_NAMES]


def test_normalize_fails_for_a_batch_the_catalog_does_not_have(aws, jobs, catalogued):
    batch_id = _unique("ship-uncrawled")

    run = normalize(aws, jobs, batch_id, catalogued, expect="FAILED")

    assert f"no partition batch_id={batch_id}" in run["ErrorMessage"] and catalogued in run["ErrorMessage"]
