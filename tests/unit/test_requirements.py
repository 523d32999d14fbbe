"""requirements.txt is what MWAA installs: it must resolve for Python 3.12 under MWAA's constraints.

MWAA installs it with two sets of constraints: the ``--constraint`` URL in the file (Airflow's
constraints for 3.3.1 on Python 3.12; vendored as constraints/mwaa-3.3.1-py3.12.txt) and its own
essential constraints (vendored as constraints/mwaa-essential-constraints-3.3.1.txt: Airflow,
Flask, Celery, SQLAlchemy, ... which MWAA "does not allow the customer to override"). A
requirement that pins one of those at another version makes the whole install fail.
"""

import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "requirements.txt"
MWAA_CONSTRAINTS = REPO / "constraints" / "mwaa-3.3.1-py3.12.txt"
MWAA_ESSENTIAL_CONSTRAINTS = REPO / "constraints" / "mwaa-essential-constraints-3.3.1.txt"
CONSTRAINT_URL = re.compile(
    r"https://raw\.githubusercontent\.com/apache/airflow/constraints-([\d.]+)/constraints-([\d.]+)\.txt"
)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def _lines(path: Path) -> list[str]:
    """The non-blank, non-comment lines, with trailing comments removed."""
    lines = (re.sub(r"\s+#.*", "", line).strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _pins(path: Path) -> dict[str, str]:
    """A constraints file's ``name==version`` lines by canonical name; every line must be one."""
    pins = {}
    for line in _lines(path):
        match = PIN.match(line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def _requirements() -> list[Requirement]:
    return [Requirement(line) for line in _lines(REQUIREMENTS) if not line.startswith("-")]


def _constraint_urls(path: Path) -> list[str]:
    return [match[0] for match in CONSTRAINT_URL.finditer(path.read_text())]


def test_requirements_resolve_for_mwaa_python_3_12(tmp_path):
    lines = REQUIREMENTS.read_text().splitlines()
    # MWAA fetches the constraint URL itself; offline we resolve against the vendored copy of it,
    # plus the essential constraints MWAA adds to every install.
    assert any(line.startswith("--constraint") and "constraints-3.3.1/constraints-3.12.txt" in line for line in lines)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(line for line in lines if not line.startswith("--constraint")))
    uv = Path(sys.executable).with_name("uv")
    result = subprocess.run(
        [str(uv), "pip", "compile", "--quiet", "--python-version", "3.12", "-c", str(MWAA_CONSTRAINTS),
         "-c", str(MWAA_ESSENTIAL_CONSTRAINTS), str(requirements), "-o", str(tmp_path / "resolved.txt")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    resolved = (tmp_path / "resolved.txt").read_text()
    pins = (
        "great-expectations==1.24.1",
        "apache-airflow-providers-amazon==9.34.0",
        "pandas==3.0.5",
        "aiobotocore==3.9.0",
    )
    for pin in pins:
        assert pin in resolved
    # Everything the requirements pull in (transitively) that MWAA fixes is at MWAA's version.
    resolved_pins = {canonicalize_name(m[1]): m[2] for m in map(PIN.match, _lines(tmp_path / "resolved.txt")) if m}
    essential = _pins(MWAA_ESSENTIAL_CONSTRAINTS)
    assert "apache-airflow" in resolved_pins  # the providers pull Airflow in, so the check below bites
    clashes = {name: (version, essential[name]) for name, version in resolved_pins.items()
               if name in essential and version != essential[name]}  # fmt: skip
    assert clashes == {}, f"resolved (ours, MWAA's essential): {clashes}"


def test_no_requirement_overrides_mwaa_essential_constraints():
    """A requirement naming a package MWAA fixes must allow exactly MWAA's version."""
    essential = _pins(MWAA_ESSENTIAL_CONSTRAINTS)
    assert len(essential) > 20 and essential["apache-airflow"] == "3.3.1"
    requirements = _requirements()
    assert requirements, "requirements.txt lists nothing"
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name in essential:
            assert requirement.specifier.contains(essential[name], prereleases=True), (
                f"{requirement} excludes MWAA's essential {name}=={essential[name]}"
            )
            pinned = [s.version for s in requirement.specifier if s.operator in ("==", "===")]
            assert all(v == essential[name] for v in pinned), f"{requirement} vs MWAA's {name}=={essential[name]}"


def test_the_constraint_files_mwaa_combines_agree():
    """MWAA applies the --constraint file and its essential constraints together: no package
    may be pinned differently by the two, or no requirements.txt installs at all."""
    full, essential = _pins(MWAA_CONSTRAINTS), _pins(MWAA_ESSENTIAL_CONSTRAINTS)
    both = full.keys() & essential.keys()
    assert len(both) > 10  # Flask, Celery, SQLAlchemy, ...: the comparison is not vacuous
    assert {n: (full[n], essential[n]) for n in both if full[n] != essential[n]} == {}


def test_the_constraint_url_matches_the_vendored_constraints():
    """requirements.txt's --constraint URL names the Airflow and Python versions of the vendored
    files: the full constraints (file name and the URL it was copied from) and the essential ones."""
    constraint_lines = [line for line in _lines(REQUIREMENTS) if line.startswith(("--constraint", "-c "))]
    assert len(constraint_lines) == 1, constraint_lines
    match = CONSTRAINT_URL.search(constraint_lines[0])
    assert match, constraint_lines[0]
    url, airflow_version, python_version = match[0], match[1], match[2]

    vendored = re.fullmatch(r"mwaa-([\d.]+)-py([\d.]+)\.txt", MWAA_CONSTRAINTS.name)
    assert vendored and (vendored[1], vendored[2]) == (airflow_version, python_version)
    assert _constraint_urls(MWAA_CONSTRAINTS) == [url], "the vendored constraints were copied from another URL"

    assert MWAA_ESSENTIAL_CONSTRAINTS.name == f"mwaa-essential-constraints-{airflow_version}.txt"
    assert _constraint_urls(MWAA_ESSENTIAL_CONSTRAINTS) == [url]
    assert _pins(MWAA_ESSENTIAL_CONSTRAINTS)["apache-airflow"] == airflow_version


def test_the_local_pins_match_mwaa():
    local = (REPO / "requirements-local.txt").read_text().splitlines()
    for pin in (
        "apache-airflow==3.3.1",
        "apache-airflow-providers-amazon==9.34.0",
        "apache-airflow-providers-postgres==7.0.1",
        "pandas==3.0.5",
        "pyarrow==25.0.0",
        "sqlalchemy==2.0.51",
        "great-expectations==1.24.1",
        "boto3==1.43.56",
        "aiobotocore==3.9.0",  # the triggerer's S3 client, pinned by MWAA's constraints too
    ):
        assert pin in [line.strip().lower() for line in local], pin
