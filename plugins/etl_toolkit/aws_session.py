"""boto3 sessions that share one botocore data loader per process: the Amazon provider's session
factory for every environment (``[aws] session_factory``).

Every hook of the Amazon provider makes its own boto3 session, and a session's botocore loader
reads and parses each service's model files again (the Glue model alone is over a megabyte of
JSON). A Glue task makes five clients (the script's and modules' uploads, the job, its runs' logs),
a batch several dozen: parsing the same models over and over was the largest single cost of a
task outside the work itself. Sessions made here share one loader, so each model is parsed once
per process; in the local runtime the task processes fork from a process that has parsed the
models the toolkit uses already (``etl_toolkit.preload`` calls ``warm``).

The provider does the same for its asynchronous sessions (triggers); a loader holds nothing but
the parsed files, so sharing it across sessions, credentials and regions changes nothing else.
Sessions that assume a role, and those made without a connection, are the provider's own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import boto3
import botocore.session

_lock = threading.Lock()
_loader: Any = None


def shared_loader():
    """The process's botocore data loader (made from the first session's configuration, so a
    custom ``AWS_DATA_PATH`` is honoured)."""
    global _loader
    with _lock:
        if _loader is None:
            _loader = botocore.session.Session().get_component("data_loader")
        return _loader


def new_session(**session_kwargs: Any) -> boto3.session.Session:
    """A boto3 session, as ``boto3.session.Session(**session_kwargs)``, on the shared loader."""
    core = botocore.session.Session()
    loader = shared_loader()
    core.register_component("data_loader", loader)
    session = boto3.session.Session(botocore_session=core, **session_kwargs)
    # boto3 appends its own data folder to the loader's search path for every session: keep one.
    with _lock:
        loader.search_paths[:] = list(dict.fromkeys(loader.search_paths))
    return session


def warm(services: Iterable[str], region_name: str = "us-east-1") -> None:
    """Parse the models of ``services`` now (a client each, no request made), so that the clients
    of processes forked from this one start with them parsed."""
    session = new_session(region_name=region_name, aws_access_key_id="warm", aws_secret_access_key="warm")
    for service in services:
        session.client(service)


def __getattr__(name: str) -> Any:
    """``SharedLoaderSessionFactory``, made on first use. The provider imports this module while
    it is itself being imported (that is when it reads ``[aws] session_factory``); importing the
    provider at the top of this module would make importing this module first a circular import."""
    if name != "SharedLoaderSessionFactory":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from airflow.providers.amazon.aws.hooks.base_aws import BaseSessionFactory

    class SharedLoaderSessionFactory(BaseSessionFactory):
        """The provider's session factory, with basic sessions on the process's shared loader."""

        def _create_basic_session(self, session_kwargs: dict[str, Any]) -> boto3.session.Session:
            return new_session(**session_kwargs)

    SharedLoaderSessionFactory.__module__, SharedLoaderSessionFactory.__qualname__ = __name__, name
    globals()[name] = SharedLoaderSessionFactory
    return SharedLoaderSessionFactory
