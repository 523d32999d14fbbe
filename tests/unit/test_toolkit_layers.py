"""The toolkit's shape: its layers (checked by import-linter in ``make lint``) and the frame's
parse-time checks of a pipeline's declared layers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(plugins: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(REPO / "pyproject.toml")],
        capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": str(plugins), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_the_toolkit_keeps_its_layers():
    result = lint_imports(REPO / "plugins")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward_import"),
    [
        ("s3.py", "from etl_toolkit import ledger"),  # I/O reaching up to the ledger
        ("ledger.py", "from etl_toolkit.tasks import frame"),  # the ledger reaching up to a task factory
        ("tasks/audit.py", "from etl_toolkit.tasks import notify"),  # one task factory using another
    ],
)
def test_the_layer_check_fails_on_an_upward_import(tmp_path, module, upward_import):
    plugins = tmp_path / "plugins"
    shutil.copytree(REPO / "plugins", plugins, ignore=shutil.ignore_patterns("__pycache__"))
    path = plugins / "etl_toolkit" / module
    header = "\nfrom __future__ import annotations\n"
    path.write_text(path.read_text().replace(header, f"{header}\n{upward_import}\n", 1))

    result = lint_imports(plugins)

    assert result.returncode != 0
    assert "BROKEN" in result.stdout


def build_dag(pipeline, steps):
    from etl_toolkit.pipeline import marker_dag

    @marker_dag(pipeline, dag_id=f"frame_check_{pipeline.name}", tags=["test"], doc_md="a DAG built by a test")
    def frame_check(batch):
        steps(batch)

    return frame_check()


def test_a_declared_layer_that_no_step_counts_fails_the_dags_import():
    from etl_toolkit.pipeline import Layer, Pipeline
    from etl_toolkit.tasks import audit

    pipeline = Pipeline("uncounted", "bucket", (Layer("landing", ("rows",)), Layer("final", ("rows",))))

    with pytest.raises(ValueError, match="declares layers that no step counts: final"):
        build_dag(pipeline, lambda batch: audit.count_parquet("landing", bucket="b", prefix="p/", entity="rows"))


def test_a_count_of_a_layer_the_pipeline_does_not_declare_fails_the_dags_import():
    from etl_toolkit.pipeline import Layer, Pipeline
    from etl_toolkit.tasks import audit

    pipeline = Pipeline("undeclared", "bucket", (Layer("landing", ("rows",)),))

    with pytest.raises(KeyError, match="declares no layer 'staging'"):
        build_dag(pipeline, lambda batch: audit.count_parquet("staging", bucket="b", prefix="p/", entity="rows"))


def test_reconcile_takes_every_count_as_an_explicit_input_wherever_its_task_sits():
    from airflow.sdk import TaskGroup

    from etl_toolkit.pipeline import Layer, Pipeline
    from etl_toolkit.tasks import audit

    pipeline = Pipeline("grouped", "bucket", (Layer("landing", ("rows",)), Layer("final", ("rows",))))

    def steps(batch):
        with TaskGroup("checks"):
            first = audit.count_parquet("landing", bucket="b", prefix="p/", entity="rows", task_id="how_many")
        first >> audit.count_sql("final", file="count.sql", entity="rows", task_id="rows_at_the_end")

    dag = build_dag(pipeline, steps)

    reconcile = dag.get_task("reconcile")
    assert {"checks.how_many", "rows_at_the_end"} <= reconcile.upstream_task_ids
    assert {layer: arg.operator.task_id for layer, arg in reconcile.op_args[0].items()} == {
        "landing": "checks.how_many",
        "final": "rows_at_the_end",
    }
