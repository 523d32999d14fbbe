"""Test settings and the local stack as fixtures.

Airflow reads its configuration when it is first imported, so the settings for the test suite's
own Airflow home (a SQLite metadata database under ``.local/test``) are set here, before any test
module imports Airflow, and override whatever the calling shell has sourced: the suite never
touches a developer's ``make stack`` databases.

The ``stack`` fixture starts the same local stack as ``make stack`` (``python -m devstack up``)
on free ports, once per session, and points the AWS and connection variables at it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.airflow_config import local_airflow_config

REPO = Path(__file__).resolve().parents[1]
TEST_HOME = REPO / ".local" / "test"
AIRFLOW_HOME = TEST_HOME / "airflow"
# pgserver logs from an atexit hook, after pytest has closed the streams it captured: a "Logging
# error" traceback at the end of every run, about nothing.
logging.getLogger("pgserver").setLevel(logging.WARNING)
# py4j, under the in-process Spark session of the awsglue unit tests, logs from the same kind of
# hook when the session's gateway closes at exit.
logging.getLogger("py4j").setLevel(logging.WARNING)

os.environ.update(
    AIRFLOW_HOME=str(AIRFLOW_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
    **local_airflow_config(),  # as make airflow: Glue polled every 0.1 s, shared AWS models
    AIRFLOW__ETL__RETRY_DELAY_SECONDS="1",
    # The totesys extract trails the source's clock by this lag so that late commits are not
    # skipped; the tests write rows and extract them at once (the lag's own test sets its own).
    AIRFLOW_VAR_TOTESYS_COMMIT_LAG_SECONDS="0",
    ETL_INCLUDE_DIR=str(REPO / "include"),
    # The project's DAGs plus the test suite's own (dag.test() runs only DAGs found in a bundle).
    AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST=json.dumps(
        [
            {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}},
            {
                "name": "test-dags",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(REPO / "tests" / "e2e" / "dags")},
            },
        ]
    ),
)
AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(name, None)

# Variables the stack fixture sets: everything in stack.env except Airflow's own configuration.
_STACK_KEYS_KEPT_FROM_TESTS = ("AIRFLOW_HOME", "AIRFLOW__")


@pytest.fixture(scope="session")
def airflow_db():
    """The test suite's metadata database, migrated once per session."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, env=os.environ
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return AIRFLOW_HOME / "airflow.db"


@pytest.fixture(scope="session")
def stack():
    """The local stack on free ports; yields the variables of its stack.env."""
    from devstack.stack import read_env_file

    state_dir = TEST_HOME / "stack"
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    log = (TEST_HOME / "stack.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "devstack", "up", "--state-dir", str(state_dir),
            "--aws-port", "0", "--pg-port", "0", "--no-airflow-db", "--exit-with-parent",
        ],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    env_file = state_dir / "stack.env"
    deadline = time.monotonic() + 90
    while not env_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                f"the local stack did not start; see {TEST_HOME / 'stack.log'}:\n" + _tail(TEST_HOME / "stack.log")
            )
        time.sleep(0.2)
    env = read_env_file(env_file)
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if not k.startswith(_STACK_KEYS_KEPT_FROM_TESTS)})
    try:
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _tail(path: Path, size: int = 4000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


@pytest.fixture(scope="session")
def aws(stack):
    """boto3 clients on the stack: aws("s3"), aws("glue"), ..."""
    import boto3

    session = boto3.Session(region_name=stack["AWS_DEFAULT_REGION"])
    clients = {}

    def client(service: str):
        if service not in clients:
            clients[service] = session.client(service, endpoint_url=stack["AWS_ENDPOINT_URL"])
        return clients[service]

    return client


@pytest.fixture(scope="session")
def warehouse_dsn(stack):
    import json

    conn = json.loads(stack["AIRFLOW_CONN_WAREHOUSE_DB"])
    return (
        f"host={conn['host']} port={conn['port']} dbname={conn['schema']} "
        f"user={conn['login']} password={conn['password']}"
    )


@pytest.fixture(scope="session")
def dags():
    """Every DAG of the project and of the test suite, by id."""
    from airflow.dag_processing.dagbag import DagBag

    found = {}
    for folder in (REPO / "dags", REPO / "tests" / "e2e" / "dags"):
        bag = DagBag(dag_folder=str(folder))
        assert not bag.import_errors, bag.import_errors
        found.update(bag.dags)
    return found


def run_dag(dag, **conf):
    """dag.test() with ``conf``; returns the run and each task instance by task id.

    Every param is passed explicitly: in one process, dag.test() leaves the previous run's conf
    in the DAG object's params, so a param left out would silently keep the last run's value.
    """
    dag_run = dag.test(run_conf={**_defaults(dag), **conf})
    return dag_run, {ti.task_id: ti for ti in dag_run.get_task_instances()}


_PARAM_DEFAULTS: dict[str, dict] = {}


def _defaults(dag) -> dict:
    """The DAG's declared param defaults, remembered from the first time the DAG is run."""
    if dag.dag_id not in _PARAM_DEFAULTS:
        _PARAM_DEFAULTS[dag.dag_id] = {name: dag.params.get_param(name).value for name in dag.params}
    return _PARAM_DEFAULTS[dag.dag_id]
