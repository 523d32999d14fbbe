"""An in-process moto server for the unit tests that need real AWS APIs but not the whole stack,
an S3 client on it, and a bucket of its own for each test."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A fresh moto server on a free loopback port for each test module; its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


REGION = "eu-west-1"


@pytest.fixture(scope="module")
def s3(moto_endpoint):
    """An S3 client on the module's moto server."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def bucket(s3) -> str:
    """A new, empty bucket for the test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name
