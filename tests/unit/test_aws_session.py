"""etl_toolkit.aws_session: the Amazon provider's hooks make their sessions on one botocore loader
per process, and their clients still talk to AWS (the local stack's emulator)."""

from __future__ import annotations

import uuid

import pytest
from airflow.providers.amazon.aws.hooks import base_aws
from airflow.providers.amazon.aws.hooks.glue import GlueJobHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from devstack.airflow_config import AWS_SESSION_FACTORY
from etl_toolkit import aws_session

BASE_AWS = "airflow.providers.amazon.aws.hooks.base_aws"


def test_the_provider_resolves_the_session_factory_the_settings_name():
    # tests/conftest.py puts the local settings in the environment before Airflow is imported.
    module, _, name = AWS_SESSION_FACTORY.rpartition(".")
    assert (module, name) == (aws_session.__name__, aws_session.SharedLoaderSessionFactory.__name__)
    assert base_aws.SessionFactory is aws_session.SharedLoaderSessionFactory


def test_the_module_imports_before_or_after_the_provider(tmp_path):
    """The provider imports the factory's module while it is itself being imported: either order of
    imports gives the provider the project's factory."""
    import os
    import subprocess
    import sys

    for first, second in (("etl_toolkit.aws_session", BASE_AWS), (BASE_AWS, "etl_toolkit.aws_session")):
        probe = (f"import {first}, {second}, sys; "
                 f"print(sys.modules['{BASE_AWS}'].SessionFactory.__qualname__)")  # fmt: skip
        answer = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
            env={**os.environ, "AIRFLOW__AWS__SESSION_FACTORY": AWS_SESSION_FACTORY, "AIRFLOW_HOME": str(tmp_path),
                 "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        assert answer.returncode == 0, answer.stderr[-2000:]
        assert answer.stdout.strip().splitlines()[-1] == "SharedLoaderSessionFactory", first


def test_hooks_share_one_loader_and_each_model_is_parsed_once(stack):
    first, second = S3Hook(aws_conn_id="aws_default"), S3Hook(aws_conn_id="aws_default")
    model = first.get_conn().meta.service_model
    assert first.get_session() is not second.get_session()
    # The second client's model is the very object the first parsed, not a second parse.
    assert second.get_conn().meta.service_model._service_description is model._service_description
    assert first.get_session()._loader is second.get_session()._loader is aws_session.shared_loader()


def test_the_shared_loaders_search_path_does_not_grow_with_sessions():
    for _ in range(3):
        aws_session.new_session(region_name="eu-west-1")
    paths = aws_session.shared_loader().search_paths
    assert len(paths) == len(set(paths))


def test_clients_of_shared_sessions_talk_to_aws(stack):
    bucket = f"aws-session-{uuid.uuid4().hex[:12]}"
    s3 = S3Hook(aws_conn_id="aws_default")
    s3.create_bucket(bucket_name=bucket)
    s3.load_string("hello", "k.txt", bucket_name=bucket)
    # A new hook (a new session, the same loader) reads what the first wrote.
    assert S3Hook(aws_conn_id="aws_default").read_key("k.txt", bucket_name=bucket) == "hello"
    glue = GlueJobHook(aws_conn_id="aws_default").conn
    with pytest.raises(glue.exceptions.EntityNotFoundException):  # the emulator answered, in Glue's terms
        glue.get_job(JobName=f"no-such-job-{bucket}")


def test_warm_parses_the_models_in_advance():
    def parsed() -> bool:  # a service no other test makes a client of
        return any(key[0] == "load_service_model" and "translate" in key for key in aws_session.shared_loader()._cache)

    assert not parsed()
    aws_session.warm(["translate"])
    assert parsed()  # before any client of it is made here
