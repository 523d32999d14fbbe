"""dag_parse: what each DAG file adds to parsing, against a bare ``import airflow.sdk``.

The DAG processor parses every file in ``dags/`` over and over (and MWAA's parse timeout is
unforgiving), so a DAG file must not do heavy work at import. Every sample is a fresh
interpreter, so no module cache from an earlier sample helps the next:

- baseline  ``python -c "import airflow.sdk"``
- candidate ``python -c "import airflow.sdk; runpy.run_path(dag_file)"``

run alternately (A B A B ...) after one untimed warm-up of each (so both read compiled
bytecode). Two measures per file:

- in-process: inside the candidate, the time of ``runpy.run_path(dag_file)`` after
  ``airflow.sdk`` is imported, i.e. what the DAG processor pays per parse on top of Airflow;
- whole process: wall time of the candidate minus the baseline, from spawn to exit.

Target: each DAG file adds at most 100 ms (judged on the in-process median; the whole-process
difference is printed beside it as a cross-check). PYTHONPATH is ``plugins/`` plus the repository
root and AIRFLOW_HOME an empty temporary folder, so parsing needs no database.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from bench.common import (
    PYTHON,
    REPO,
    Session,
    Verdict,
    clean_environment,
    fmt_samples,
    interleave,
    median,
    result_block,
    run_child,
)

NAME = "dag_parse"
DEFAULT_REPEAT = 7
TARGET_MS = 100.0

_IMPORTTIME = re.compile(r"import time:\s+\d+ \|\s+(?P<cumulative>\d+) \|(?P<name>.*)")

_BASELINE_CODE = """
import json, time
t0 = time.perf_counter()
import airflow.sdk
print(json.dumps({"import_s": time.perf_counter() - t0}))
"""

_CANDIDATE_CODE = """
import json, runpy, sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
print("-- parsing the DAG file --", file=sys.stderr, flush=True)
runpy.run_path(sys.argv[1])
print(json.dumps({"import_s": t1 - t0, "parse_s": time.perf_counter() - t1}))
"""


def _environment(airflow_home: str) -> dict[str, str]:
    return {
        **clean_environment(),
        "PYTHONPATH": f"{REPO / 'plugins'}:{REPO}",
        "AIRFLOW_HOME": airflow_home,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "ETL_INCLUDE_DIR": str(REPO / "include"),
    }


def _heaviest_imports(dag_file: Path, env: dict[str, str], count: int = 3) -> str:
    """What the DAG file's parse spends its imports on (one ``-X importtime`` run): its direct
    imports and the top-level packages, by cumulative time."""
    run = run_child([PYTHON, "-X", "importtime", "-c", _CANDIDATE_CODE, str(dag_file)], env=env)
    _, _, parse_phase = run.output.partition("-- parsing the DAG file --")
    entries = []  # (cumulative µs, nesting depth, module)
    for line in parse_phase.splitlines():
        if match := _IMPORTTIME.match(line):
            name = match["name"]
            entries.append((int(match["cumulative"]), len(name) - len(name.lstrip()), name.strip()))
    if not entries:
        return "it imports nothing new"
    top = min(depth for _, depth, _ in entries)

    def listing(selected: list[tuple[int, int, str]]) -> str:
        return ", ".join(f"{name} {micros / 1000:.0f} ms" for micros, _, name in sorted(selected, reverse=True)[:count])

    direct = listing([e for e in entries if e[1] == top])
    packages = listing([e for e in entries if "." not in e[2]])
    return f"direct imports {direct}; top-level packages {packages}"


def _measure_file(dag_file: Path, env: dict[str, str], repeat: int) -> Verdict:
    def baseline(_index: int) -> dict:
        run = run_child([PYTHON, "-c", _BASELINE_CODE], env=env)
        return {"wall_s": run.seconds, **run.last_json()}

    def candidate(_index: int) -> dict:
        run = run_child([PYTHON, "-c", _CANDIDATE_CODE, str(dag_file)], env=env)
        return {"wall_s": run.seconds, **run.last_json()}

    baseline(-1), candidate(-1)  # warm-up: compile bytecode, fill the page cache
    a, b = interleave(
        baseline,
        candidate,
        repeat,
        label=f"{dag_file.name} pair",
        describe=lambda x, y: (
            f"bare {x['wall_s']:.2f} s, with DAG {y['wall_s']:.2f} s (parse {y['parse_s'] * 1000:.0f} ms)"
        ),
    )
    wall_a = median([s["wall_s"] for s in a])
    wall_b = median([s["wall_s"] for s in b])
    parse = median([s["parse_s"] for s in b])
    wall_diffs = [y["wall_s"] - x["wall_s"] for x, y in zip(a, b, strict=True)]
    wall_diff = median(wall_diffs)
    imports = median([s["import_s"] for s in a + b])
    return result_block(
        NAME,
        f"dags/{dag_file.name}",
        measured=f"fresh interpreters, {repeat} interleaved pairs, medians",
        baseline=("import airflow.sdk", f"{wall_a:.3f} s whole process (import itself {imports:.3f} s)"),
        candidate=("+ runpy.run_path", f"{wall_b:.3f} s whole process"),
        difference=(
            f"the DAG file adds {parse * 1000:.0f} ms in-process (samples "
            f"{fmt_samples([s['parse_s'] for s in b], 1000, 'ms', 0)}); "
            f"{wall_diff * 1000:+.0f} ms whole process (median of pair differences "
            f"{fmt_samples(wall_diffs, 1000, 'ms', 0)})"
        ),
        ratio=f"whole process with DAG / bare import = {wall_b / wall_a:.2f}x",
        target=f"in-process parse <= {TARGET_MS:.0f} ms",
        passed=parse * 1000 <= TARGET_MS,
        details=[f"-X importtime, cumulative: {_heaviest_imports(dag_file, env)}"],
    )


def run(session: Session) -> list[Verdict]:
    repeat = session.repeats(DEFAULT_REPEAT, minimum=5)
    dag_files = sorted(p for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
    if not dag_files:
        raise RuntimeError("no DAG files in dags/")
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="bench-airflow-home-") as airflow_home:
        env = _environment(airflow_home)
        for dag_file in dag_files:
            verdicts.append(_measure_file(dag_file, env, repeat))
    return verdicts
