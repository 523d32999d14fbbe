"""``make bundle``: what MWAA deploys, built into ``dist/mwaa/``.

MWAA takes a dags prefix, ``plugins.zip`` and ``requirements.txt`` from S3 and nothing else, so:

- ``dags/``: the DAG files, with ``include/`` (SQL, Glue scripts, expectation suites) inside it
  and an ``.airflowignore`` so the DAG processor does not parse ``include/``;
- ``plugins.zip``: the toolkit packages at the zip's root (MWAA unpacks it into the plugins
  folder, which is on ``sys.path``);
- ``requirements.txt``: as in the repository (its ``--constraint`` line is MWAA's).

Upload with ``aws s3 sync dist/mwaa/dags s3://<env-bucket>/dags`` and ``aws s3 cp`` for the other
two, then point the environment at the new ``plugins.zip`` and ``requirements.txt`` versions.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def build(out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    dags = out / "dags"
    shutil.copytree(REPO_ROOT / "dags", dags, ignore=_SKIP)
    shutil.copytree(REPO_ROOT / "include", dags / "include", ignore=_SKIP)
    (dags / ".airflowignore").write_text("include/\n")
    with zipfile.ZipFile(out / "plugins.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((REPO_ROOT / "plugins").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                archive.write(path, path.relative_to(REPO_ROOT / "plugins"))
    shutil.copy2(REPO_ROOT / "requirements.txt", out / "requirements.txt")
    return out
