"""The first line of defence: every DAG file imports cleanly and carries the project's defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from etl_toolkit import environment
from etl_toolkit.tasks.notify import BatchFailureNotifier

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
HEAVY_MODULES = ("great_expectations", "pandas", "pyarrow", "psycopg2", "numpy")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_every_dag_file_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert len(dagbag.dags) >= len(DAG_FILES)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_each_dag_has_owner_tags_docs_retries_and_a_failure_notifier(dagbag, dag_file):
    dags = [d for d in dagbag.dags.values() if Path(d.fileloc).name == dag_file.name]
    assert dags, f"{dag_file.name} defines no DAG"
    for dag in dags:
        assert dag.tags, f"{dag.dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag.dag_id} has no real doc_md"
        assert dag.owner != "airflow", f"{dag.dag_id} keeps the default owner"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag.dag_id}.{task.task_id} has no retries"
            callbacks = task.on_failure_callback or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert any(isinstance(c, BatchFailureNotifier) for c in callbacks), (
                f"{dag.dag_id}.{task.task_id} publishes no failure notification"
            )
        # Task templates name the environment's resources through the toolkit's macro.
        macros = dag.user_defined_macros or {}
        assert environment.DAG_MACROS.items() <= macros.items(), f"{dag.dag_id} lacks the environment macro"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_parsing_a_dag_file_imports_no_heavy_library(dag_file):
    code = (
        "import json, runpy, sys; runpy.run_path(sys.argv[1]); "
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO / "dags")])}
    result = subprocess.run([sys.executable, "-c", code, str(dag_file)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_every_dag_imports_from_the_mwaa_bundle_alone(tmp_path):
    """MWAA's layout: the dags prefix (with include/) and the unpacked plugins.zip, nothing else."""
    import zipfile

    from devstack.bundle import build

    bundle = build(tmp_path / "mwaa")
    plugins = tmp_path / "plugins"
    zipfile.ZipFile(bundle / "plugins.zip").extractall(plugins)
    dags = bundle / "dags"
    code = """
import sys
from airflow.dag_processing.dagbag import DagBag
from etl_toolkit.paths import include_dir
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
assert bag.dags, "no DAG found in the bundle"
assert str(include_dir()).startswith(sys.argv[1]), include_dir()
print(sorted(bag.dags))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("ETL_INCLUDE_DIR", "PYTHONPATH")}
    env.update(AIRFLOW__CORE__DAGS_FOLDER=str(dags), AIRFLOW__CORE__PLUGINS_FOLDER=str(plugins))
    # sys.path as MWAA builds it: the dags folder and the plugins folder, then site-packages.
    env["PYTHONPATH"] = os.pathsep.join([str(dags), str(plugins)])
    result = subprocess.run(
        [sys.executable, "-c", code, str(dags)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "orders_pipeline" in result.stdout


def test_a_task_pushes_the_keys_of_its_result_as_xcoms_only_when_a_task_reads_them(dagbag):
    """Each XCom is a write through the execution API: a dict result is one XCom unless a
    downstream task takes one of its keys (``multiple_outputs``)."""
    from airflow.sdk.definitions.xcom_arg import XComArg

    for dag in dagbag.dags.values():
        read = {
            (operator.task_id, key)
            for task in dag.tasks
            for field in ("op_args", "op_kwargs", *task.template_fields)
            for operator, key in XComArg.iter_xcom_references(getattr(task, field, None))
        }
        for task in dag.tasks:
            if getattr(task, "multiple_outputs", False):
                keys = {key for task_id, key in read if task_id == task.task_id} - {"return_value"}
                assert keys, f"{dag.dag_id}.{task.task_id} pushes every key of its result, and no task reads one"
