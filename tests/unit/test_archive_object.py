"""etl_toolkit.s3.archive_object: a batch's object moved to the archive bucket, against a real moto server.

Every test makes a landing and an archive bucket of its own, so tests share one emulator without
resetting it and run alone or in any order.
"""

from __future__ import annotations

import uuid

import boto3
import pytest

from etl_toolkit import s3 as toolkit_s3
from etl_toolkit.s3 import WRITTEN_AGAIN, ArchiveError, archive_object

REGION = "eu-west-1"
KEY = "transactions/year=2026/month=11/day=01/transactions_2026-11-01.csv"
BODY = (
    b"transaction_id,customer_id,product_id,quantity,price,transaction_date,payment_type,status\n"
    b"TXN00000001,CUST00001,PROD00001,1,799.99,2026-11-01,Credit Card,Completed\n"
)


def make_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def client(moto_endpoint: str):
    return make_client(moto_endpoint)


@pytest.fixture
def buckets(client) -> tuple[str, str]:
    """(landing bucket, archive bucket), both new and empty."""
    names = []
    for role in ("raw", "archive"):
        name = f"ecommerce-{role}-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        names.append(name)
    return names[0], names[1]


def put(client, bucket: str, key: str, body: bytes) -> str:
    """Write an object; its ETag without quotes."""
    return client.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')


def read(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def exists(client, bucket: str, key: str) -> bool:
    return bool(client.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"))


def keys(client, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_a_fresh_object_is_moved_to_the_same_key_with_the_same_bytes(client, buckets):
    source, archive = buckets
    etag = put(client, source, KEY, BODY)

    outcome = archive_object(client, source, KEY, archive, size=len(BODY), etag=etag, batch_id="B1")

    assert outcome == "moved"
    assert read(client, archive, KEY) == BODY
    assert not exists(client, source, KEY)


def test_archiving_an_object_again_finds_it_already_archived(client, buckets):
    source, archive = buckets
    etag = put(client, source, KEY, BODY)
    archive_object(client, source, KEY, archive, size=len(BODY), etag=etag, batch_id="B1")

    outcome = archive_object(client, source, KEY, archive, size=len(BODY), etag=etag, batch_id="B1")

    assert outcome == "already archived"
    assert read(client, archive, KEY) == BODY
    assert keys(client, archive) == [KEY]
    assert not exists(client, source, KEY)


def test_a_move_that_died_between_copy_and_delete_converges_when_run_again(moto_endpoint, buckets, monkeypatch):
    client = make_client(moto_endpoint)  # its own client: the copy counter below stays in this test
    source, archive = buckets
    etag = put(client, source, KEY, BODY)
    real_delete = toolkit_s3.delete_original
    crashes = []

    def delete_that_crashes_once(*args, **kwargs):
        if not crashes:
            crashes.append(args)
            raise RuntimeError("worker lost between copy and delete")
        return real_delete(*args, **kwargs)

    monkeypatch.setattr(toolkit_s3, "delete_original", delete_that_crashes_once)
    copies = []
    client.meta.events.register("before-call.s3.CopyObject", lambda **_: copies.append(1))

    with pytest.raises(RuntimeError, match="worker lost"):
        archive_object(client, source, KEY, archive, size=len(BODY), etag=etag, batch_id="B1")
    assert exists(client, source, KEY) and read(client, archive, KEY) == BODY  # copied, not deleted

    outcome = archive_object(client, source, KEY, archive, size=len(BODY), etag=etag, batch_id="B1")

    assert outcome == "moved"
    assert len(copies) == 1  # the whole copy of the first run was kept, not made again
    assert keys(client, archive) == [KEY]
    assert read(client, archive, KEY) == BODY
    assert not exists(client, source, KEY)


def test_an_original_written_again_after_the_batch_read_it_is_neither_copied_nor_deleted(client, buckets):
    source, archive = buckets
    read_etag = put(client, source, KEY, BODY)
    newer = BODY + b"TXN00000002,CUST00002,PROD00002,1,499.99,2026-11-01,Debit Card,Completed\n"
    put(client, source, KEY, newer)

    outcome = archive_object(client, source, KEY, archive, size=len(BODY), etag=read_etag, batch_id="B1")

    assert outcome == WRITTEN_AGAIN
    assert read(client, source, KEY) == newer
    assert keys(client, archive) == []


def test_an_object_gone_from_both_buckets_is_an_error_naming_it(client, buckets):
    source, archive = buckets

    with pytest.raises(ArchiveError, match="is gone") as raised:
        archive_object(client, source, KEY, archive, size=len(BODY), etag="0" * 32, batch_id="B1")

    assert KEY in str(raised.value)


def test_an_original_gone_whose_archive_copy_is_not_whole_is_an_error(client, buckets):
    source, archive = buckets
    etag = put(client, archive, KEY, BODY)  # the ETag the batch read, had the original been BODY
    put(client, archive, KEY, BODY[:20])

    with pytest.raises(ArchiveError, match="not a whole copy") as raised:
        archive_object(client, source, KEY, archive, size=len(BODY), etag=etag, batch_id="B1")

    assert KEY in str(raised.value)


@pytest.mark.parametrize(
    "stale",
    [BODY[:25], BODY.replace(b"Credit", b"Debit!")],
    ids=["a shorter copy", "a copy of the same size with other bytes"],
)
def test_an_archive_copy_that_is_not_whole_is_replaced_before_the_original_is_deleted(client, buckets, stale):
    source, archive = buckets
    assert stale != BODY
    etag = put(client, source, KEY, BODY)
    put(client, archive, KEY, stale)

    outcome = archive_object(client, source, KEY, archive, size=len(BODY), etag=etag, batch_id="B1")

    assert outcome == "moved"
    assert read(client, archive, KEY) == BODY
    assert not exists(client, source, KEY)


def test_a_multipart_original_is_moved_and_then_found_already_archived(client, buckets):
    source, archive = buckets
    upload = client.create_multipart_upload(Bucket=source, Key=KEY)["UploadId"]
    part = client.upload_part(Bucket=source, Key=KEY, UploadId=upload, PartNumber=1, Body=BODY)["ETag"]
    client.complete_multipart_upload(
        Bucket=source, Key=KEY, UploadId=upload, MultipartUpload={"Parts": [{"ETag": part, "PartNumber": 1}]}
    )
    etag = client.head_object(Bucket=source, Key=KEY)["ETag"].strip('"')
    assert "-" in etag  # a multipart ETag: not the MD5 of the bytes

    first = archive_object(client, source, KEY, archive, size=len(BODY), etag=etag, batch_id="B1")
    second = archive_object(client, source, KEY, archive, size=len(BODY), etag=etag, batch_id="B1")

    assert (first, second) == ("moved", "already archived")
    assert read(client, archive, KEY) == BODY
    assert not exists(client, source, KEY)
