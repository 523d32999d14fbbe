"""An in-process moto server for the unit tests that need real AWS APIs but not the whole stack,
an S3 client on it, and a bucket of its own for each test; the ``glue5`` marker, and the check
that `make test-glue5` ran enough of its tests."""

from __future__ import annotations

import logging
import os
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


# -- make test-glue5 -----------------------------------------------------------------------------
# The tests marked ``glue5`` (the Python Glue scripts', which import no Airflow) run a second time in
# .local/glue5-venv, under AWS Glue 5.0's pyarrow, pandas and numpy. That run sets GLUE5_MIN_PASSED
# and fails when fewer tests passed, so a venv that skips or deselects them cannot pass silently.

GLUE5_MIN_PASSED = "GLUE5_MIN_PASSED"
_passed = 0
_too_few = ""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "glue5: a Python Glue script's test that `make test-glue5` runs again under AWS Glue 5.0's versions"
    )


def pytest_runtest_logreport(report):
    global _passed
    if report.when == "call" and report.passed:
        _passed += 1


def pytest_sessionfinish(session, exitstatus):
    global _too_few
    minimum = int(os.environ.get(GLUE5_MIN_PASSED) or 0)
    if minimum and _passed < minimum and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        _too_few = f"{GLUE5_MIN_PASSED}: {_passed} tests passed, fewer than the {minimum} expected"
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _too_few:
        terminalreporter.write_sep("=", _too_few, red=True, bold=True)
