"""The MWAA bundle as Airflow 3.3 itself sees it: the plugin manager on the unpacked plugins.zip and
the DagBag on the dags prefix, each in a fresh interpreter with its own AIRFLOW_HOME.

Airflow's plugin manager (``_load_plugins_from_plugin_directory`` in ``airflow/_shared/plugins_manager``)
walks the plugins folder and imports every ``.py`` file that ``.airflowignore`` does not exclude
as a top-level module named after the file: without the bundle's ``.airflowignore``,
``etl_toolkit/settings.py`` would be imported a second time as ``settings``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from devstack.bundle import IGNORE_FILE, _ignore_file, build, toolkit_packages

# Run in a fresh interpreter: Airflow's real plugin managers (core's, as the scheduler, API server
# and triggerer run it, and the task SDK's, as a task runs it) on AIRFLOW__CORE__PLUGINS_FOLDER.
# Prints every module loaded from the plugins folder, after the plugin managers and after
# ``import etl_toolkit.pipeline``, with its file.
PLUGIN_PROBE = """
import json, sys
from pathlib import Path

folder = Path(sys.argv[1]).resolve()

def from_folder():
    return {
        name: str(Path(module.__file__).resolve().relative_to(folder))
        for name, module in list(sys.modules.items())
        if getattr(module, "__file__", None) and Path(module.__file__).resolve().is_relative_to(folder)
    }

from airflow import plugins_manager, settings
from airflow.sdk import plugins_manager as sdk_plugins_manager

assert Path(settings.PLUGINS_FOLDER).resolve() == folder, settings.PLUGINS_FOLDER
_, core_errors = plugins_manager._get_plugins()
_, sdk_errors = sdk_plugins_manager._get_plugins()
after_plugin_managers = from_folder()
import etl_toolkit.pipeline  # found through the sys.path entry Airflow adds for the plugins folder
print(json.dumps({
    "errors": {**core_errors, **sdk_errors},
    "after_plugin_managers": after_plugin_managers,
    "after_import": from_folder(),
    "pipeline": str(Path(etl_toolkit.pipeline.__file__).resolve()),
}))
"""

# Airflow's DagBag on the bundled dags folder, safe_mode off (every .py file that .airflowignore
# lets through is imported, not only those mentioning "airflow" and "dag"), as the DAG processor
# would with dag_discovery_safe_mode=False; and the file list Airflow's importers produce.
DAGBAG_PROBE = """
import json, sys
from pathlib import Path

from airflow.dag_processing.dagbag import DagBag
from airflow.dag_processing.importers import get_importer_registry

dags = Path(sys.argv[1]).resolve()
listed = get_importer_registry().list_dag_files(str(dags), safe_mode=False)
bag = DagBag(dag_folder=str(dags), safe_mode=False)
print(json.dumps({
    "listed": sorted(str(Path(p).resolve().relative_to(dags)) for p in listed),
    "parsed": sorted(str(Path(p).resolve().relative_to(dags)) for p in bag.file_last_changed),
    "dag_files": {d.dag_id: str(Path(d.fileloc).resolve().relative_to(dags)) for d in bag.dags.values()},
    "import_errors": {str(k): str(v)[-500:] for k, v in bag.import_errors.items()},
    "modules_from_dags_folder": sorted(
        str(Path(m.__file__).resolve().relative_to(dags))
        for m in list(sys.modules.values())
        if getattr(m, "__file__", None) and Path(m.__file__).resolve().is_relative_to(dags)
    ),
}))
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("bundle") / "mwaa")


def _unpack_plugins(bundle: Path, where: Path) -> Path:
    """plugins.zip unpacked as MWAA does, into a fresh plugins folder."""
    plugins = where / "plugins"
    with zipfile.ZipFile(bundle / "plugins.zip") as archive:
        archive.extractall(plugins)
    return plugins


def _airflow(code: str, arg: Path, home: Path, **config: str) -> dict:
    """Run ``code`` in a fresh interpreter with only this test's Airflow settings (none of the test
    session's, nor the shell's) and nothing of the repository on sys.path; its JSON output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ETL_")) and k != "PYTHONPATH"}
    home.mkdir(parents=True, exist_ok=True)
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    env.update({f"AIRFLOW__CORE__{key.upper()}": value for key, value in config.items()})
    result = subprocess.run(
        [sys.executable, "-c", code, str(arg)], capture_output=True, text=True, env=env, cwd=home, timeout=120
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _module_name(relative_file: str) -> str:
    """The one right name for a module file of the plugins folder: its dotted path."""
    parts = Path(relative_file).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_plugins_zip_carries_an_airflowignore_for_every_toolkit_package(bundle):
    packages = toolkit_packages()
    assert "etl_toolkit" in packages
    with zipfile.ZipFile(bundle / "plugins.zip") as archive:
        names = archive.namelist()
        patterns = [line.strip() for line in archive.read(IGNORE_FILE).decode().splitlines()]
    assert names.count(IGNORE_FILE) == 1  # at the zip's root: the plugins folder once unpacked
    assert {f"{package}/" for package in packages} <= set(patterns)
    assert "etl_toolkit/pipeline.py" in names and not any("__pycache__" in n or n.endswith(".pyc") for n in names)


@pytest.mark.parametrize("syntax", ["glob", "regexp"])
def test_the_plugin_manager_imports_nothing_of_the_toolkit(bundle, tmp_path, syntax):
    """glob is Airflow 3.3.1's default [core] dag_ignore_file_syntax (MWAA does not set it); regexp
    is the other value a deployment could choose. The task SDK's plugin manager reads glob always."""
    plugins = _unpack_plugins(bundle, tmp_path)
    seen = _airflow(
        PLUGIN_PROBE, plugins, tmp_path / "home", plugins_folder=str(plugins), dag_ignore_file_syntax=syntax
    )

    assert seen["errors"] == {}
    assert seen["after_plugin_managers"] == {}, "the plugin manager imported toolkit files"
    assert seen["pipeline"] == str((plugins / "etl_toolkit" / "pipeline.py").resolve())
    # Every module from the plugins folder is loaded once, under its package name: no `settings`,
    # `glue`, `contract`, ... at the top level, and no file under two names.
    modules = seen["after_import"]
    assert "etl_toolkit.pipeline" in modules and "etl_toolkit.settings" in modules
    assert {name: _module_name(file) for name, file in modules.items()} == {name: name for name in modules}
    assert len(set(modules.values())) == len(modules)


def test_without_the_airflowignore_the_plugin_manager_shadows_toolkit_modules(bundle, tmp_path):
    """The control for the test above: the same probe on the same folder, minus .airflowignore."""
    plugins = _unpack_plugins(bundle, tmp_path)
    (plugins / IGNORE_FILE).unlink()
    seen = _airflow(PLUGIN_PROBE, plugins, tmp_path / "home", plugins_folder=str(plugins))

    shadowing = seen["after_plugin_managers"]
    assert shadowing.get("settings") == "etl_toolkit/settings.py"
    assert shadowing.get("glue") == "etl_toolkit/tasks/glue.py"
    assert shadowing.get("contract") == "etl_toolkit/contract.py"
    # ...and etl_toolkit.settings is a second module object for the same file.
    assert seen["after_import"].get("etl_toolkit.settings") == "etl_toolkit/settings.py"


@pytest.mark.parametrize("syntax", ["glob", "regexp"])
def test_the_dag_processor_parses_every_dag_and_nothing_under_include(bundle, tmp_path, syntax):
    """MWAA's layout: the dags prefix (with include/) and the unpacked plugins.zip; Airflow puts the
    plugins folder on sys.path, nothing else does (no PYTHONPATH, no ETL_INCLUDE_DIR)."""
    plugins = _unpack_plugins(bundle, tmp_path)
    dags = bundle / "dags"
    assert (dags / "include" / "sql").is_dir() and list((dags / "include").rglob("*.py"))  # something to ignore
    seen = _airflow(
        DAGBAG_PROBE, dags, tmp_path / "home",
        dags_folder=str(dags), plugins_folder=str(plugins), dag_ignore_file_syntax=syntax,
    )  # fmt: skip

    dag_files = sorted(p.name for p in dags.glob("*.py"))
    assert seen["import_errors"] == {}
    assert seen["listed"] == dag_files
    assert seen["parsed"] == dag_files
    assert sorted(set(seen["dag_files"].values())) == dag_files  # every file defines a DAG
    assert "orders_pipeline" in seen["dag_files"]
    assert not [m for m in seen["modules_from_dags_folder"] if m.startswith("include/")]


def test_the_toolkit_finds_include_in_the_mwaa_layout_with_nothing_set(bundle, tmp_path):
    """/usr/local/airflow/{dags,plugins}: etl_toolkit.paths finds dags/include from its own file,
    without ETL_INCLUDE_DIR or AIRFLOW__CORE__DAGS_FOLDER (so MWAA needs no startup script)."""
    airflow_home = tmp_path / "usr" / "local" / "airflow"
    plugins = _unpack_plugins(bundle, airflow_home)
    (airflow_home / "dags").symlink_to(bundle / "dags", target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ETL_")) and k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(plugins)
    code = "from etl_toolkit.paths import include_dir; print(include_dir())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(airflow_home / "dags" / "include")


def test_an_existing_airflowignore_is_kept_and_extended(tmp_path):
    existing = tmp_path / IGNORE_FILE
    assert _ignore_file(existing, "why", ["include/"]) == "# why\ninclude/\n"
    existing.write_text("scratch/\ninclude/\n")
    assert _ignore_file(existing, "why", ["include/"]) == "scratch/\ninclude/\n"
    existing.write_text("scratch/\n")
    assert _ignore_file(existing, "why", ["include/"]) == "scratch/\n# why\ninclude/\n"
