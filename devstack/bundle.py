"""``make bundle``: what MWAA deploys, built into ``dist/mwaa/``.

MWAA takes a dags prefix, ``plugins.zip`` and ``requirements.txt`` from S3 and nothing else, so:

- ``dags/``: the DAG files, with ``include/`` (SQL, Glue scripts, expectation suites) inside it
  and an ``.airflowignore`` line ``include/`` so the DAG processor never parses ``include/``;
- ``plugins.zip``: the toolkit packages at the zip's root. MWAA unpacks it into the plugins
  folder (``/usr/local/airflow/plugins``), which Airflow puts on ``sys.path``, so
  ``import etl_toolkit.pipeline`` works. Airflow's plugin manager also imports every ``.py``
  file it finds there as a top-level module named after the file (``etl_toolkit/settings.py``
  would become module ``settings``: a second copy of ``etl_toolkit.settings`` that shadows any
  other ``settings``), so the zip carries an ``.airflowignore`` at its root that lists each
  package (``etl_toolkit/``). The lines work in both ``[core] dag_ignore_file_syntax`` modes
  (``glob``, the default, and ``regexp``), and the task SDK's plugin manager always reads them
  as ``glob``. Top-level ``.py`` files in ``plugins/`` (real ``AirflowPlugin`` modules) stay
  visible to the plugin manager;
- ``requirements.txt``: as in the repository (its ``--constraint`` line is MWAA's).

An ``.airflowignore`` already in ``dags/`` or ``plugins/`` is kept, with the bundle's lines added.
``tests/unit/test_mwaa_bundle.py`` runs Airflow's own plugin manager and DagBag on the result.

Upload with ``aws s3 sync dist/mwaa/dags s3://<env-bucket>/dags`` and ``aws s3 cp`` for the other
two, then point the environment at the new ``plugins.zip`` and ``requirements.txt`` versions.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
IGNORE_FILE = ".airflowignore"
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def toolkit_packages(plugins: Path = REPO_ROOT / "plugins") -> list[str]:
    """The packages at the root of ``plugins/``: libraries on ``sys.path``, not plugin files."""
    return sorted(p.name for p in plugins.iterdir() if p.is_dir() and (p / "__init__.py").is_file())


def _ignore_file(existing: Path, header: str, patterns: list[str]) -> str:
    """``existing``'s lines (if it exists) plus ``patterns`` not already among them."""
    lines = existing.read_text().splitlines() if existing.is_file() else []
    missing = [p for p in patterns if p not in (line.strip() for line in lines)]
    if missing:
        lines += [f"# {header}", *missing]
    return "\n".join(lines) + "\n"


def build(out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    dags = out / "dags"
    shutil.copytree(REPO_ROOT / "dags", dags, ignore=_SKIP)
    shutil.copytree(REPO_ROOT / "include", dags / "include", ignore=_SKIP)
    (dags / IGNORE_FILE).write_text(
        _ignore_file(REPO_ROOT / "dags" / IGNORE_FILE, "added by make bundle: SQL and Glue scripts", ["include/"])
    )
    plugins = REPO_ROOT / "plugins"
    plugins_ignore = _ignore_file(
        plugins / IGNORE_FILE,
        "added by make bundle: packages imported via sys.path, never by the plugin manager",
        [f"{package}/" for package in toolkit_packages(plugins)],
    )
    with zipfile.ZipFile(out / "plugins.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(IGNORE_FILE, date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16  # rw-r--r--, like the files beside it
        archive.writestr(info, plugins_ignore, zipfile.ZIP_DEFLATED)
        for path in sorted(plugins.rglob("*")):
            relative = path.relative_to(plugins)
            if relative == Path(IGNORE_FILE) or not path.is_file():
                continue
            if "__pycache__" not in path.parts and path.suffix != ".pyc":
                archive.write(path, relative)
    shutil.copy2(REPO_ROOT / "requirements.txt", out / "requirements.txt")
    return out
