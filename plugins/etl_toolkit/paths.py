"""Find the project's ``include/`` folder in every layout the DAGs run in.

- the repository: ``<repo>/include`` beside ``plugins/`` and ``dags/``;
- the MWAA bundle: ``<dags folder>/include`` (MWAA deploys only the dags prefix and
  ``plugins.zip``, so ``make bundle`` carries ``include/`` inside the dags prefix);
- anything else: the ``ETL_INCLUDE_DIR`` environment variable.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path


@cache
def include_dir() -> Path:
    candidates: list[Path] = []
    if env := os.environ.get("ETL_INCLUDE_DIR"):
        candidates.append(Path(env))
    if dags_folder := os.environ.get("AIRFLOW__CORE__DAGS_FOLDER"):
        candidates.append(Path(dags_folder) / "include")
    here = Path(__file__).resolve()
    # plugins/etl_toolkit/paths.py -> <repo>/include; <dags>/../plugins on MWAA -> <dags>/include
    candidates += [here.parents[2] / "include", here.parents[2] / "dags" / "include"]
    for candidate in candidates:
        if (candidate / "sql").is_dir() or (candidate / "glue_scripts").is_dir():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"cannot find the project's include/ folder; looked in: {looked}")


def sql_path(pipeline: str, name: str) -> Path:
    return include_dir() / "sql" / pipeline / name


def glue_script_path(pipeline: str, name: str) -> Path:
    return include_dir() / "glue_scripts" / pipeline / name


def glue_wheel_path(distribution: str) -> Path:
    """The Glue 5.0 wheel of ``distribution`` that ``make glue-wheels`` put in ``include/glue_wheels/``."""
    import re

    stem = re.sub(r"[-_.]+", "_", distribution).lower()  # a wheel's file name normalises the name (PEP 427)
    folder = include_dir() / "glue_wheels"
    found = sorted(path for path in folder.glob("*.whl") if path.name.lower().startswith(f"{stem}-"))
    if not found:
        raise FileNotFoundError(
            f"no wheel of {distribution} in {folder} (pinned in include/glue_wheels.txt): run `make glue-wheels`"
        )
    return found[-1]
