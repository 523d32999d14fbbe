"""The Glue jobs install nothing from PyPI: every package a Glue script imports is in the standard
library, awsglue/pyspark, AWS Glue 5.0's own modules (include/glue5_provided_modules.txt, copied
from AWS's list) or pinned in include/glue_wheels.txt with its Glue 5.0 wheel in
include/glue_wheels/ (`make glue-wheels`)."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from devstack import glue_wheels
from devstack.glue_wheels import Wheel, canonical, read_pins, wheel_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "include" / "glue_scripts"
GLUE5_VENV_REQUIREMENTS = ROOT / "constraints" / "glue5-python.txt"
AWS_PAGE = "https://docs.aws.amazon.com/glue/latest/dg/aws-glue-programming-python-libraries.html"
GLUE_RUNTIME = {"awsglue", "pyspark"}  # Glue's own, on every Glue 5.0 job's path

PINS = read_pins(glue_wheels.WHEELS_FILE)
PROVIDED = read_pins(glue_wheels.PROVIDED_FILE)


def script_imports() -> dict[str, set[str]]:
    """Every top-level module the Glue scripts import (at module level or in a function), with the
    scripts importing it; the modules beside a script and those of include/glue_scripts/common/
    (shipped with --extra-py-files) left out."""
    found: dict[str, set[str]] = {}
    shared = {path.stem for path in (SCRIPTS / "common").glob("*.py")}
    for script in sorted(SCRIPTS.rglob("*.py")):
        siblings = {path.stem for path in script.parent.glob("*.py")} | shared
        for node in ast.walk(ast.parse(script.read_text(), str(script))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in siblings and top != "__future__":
                    found.setdefault(top, set()).add(str(script.relative_to(SCRIPTS)))
    return found


def wheel_top_level(path: Path) -> set[str]:
    """The top-level packages and modules a wheel installs, from its RECORD."""
    with zipfile.ZipFile(path) as wheel:
        record = next(name for name in wheel.namelist() if name.endswith(".dist-info/RECORD"))
        paths = [line.split(",", 1)[0] for line in wheel.read(record).decode().splitlines() if line]
    tops = set()
    for item in paths:
        top = item.split("/", 1)[0]
        if not top.endswith((".dist-info", ".data", ".libs")):
            tops.add(top.removesuffix(".py"))
    return tops


def provided_import_names(dist: str) -> tuple[str, ...]:
    return glue_wheels.IMPORT_NAMES.get(dist, (dist.replace("-", "_"),))


def test_every_pin_has_its_glue5_wheel():
    assert PINS, "include/glue_wheels.txt pins nothing"
    assert glue_wheels.WHEELS_DIR.is_dir(), "no include/glue_wheels/: run make glue-wheels"
    wheels = {wheel.name: wheel for wheel in glue_wheels.wheels_in()}
    for name, version in PINS.items():
        wheel = wheels.get(name)
        assert wheel is not None, f"no wheel of {name}=={version} in include/glue_wheels/: run make glue-wheels"
        assert wheel.version == version, f"{wheel.path.name} is not {name}=={version}: run make glue-wheels"
        # CPython 3.11 (or the stable ABI, or pure Python) on manylinux x86_64 (or any platform).
        assert "cp311" in wheel.python_tags or "abi3" in wheel.abi_tags or "py3" in wheel.python_tags, wheel.path.name
        assert "any" in wheel.platform_tags or any(
            tag.startswith("manylinux") and tag.endswith("_x86_64") for tag in wheel.platform_tags
        ), wheel.path.name
        assert wheel.fits_glue5(), wheel.path.name
        assert wheel_for(name) == wheel.path


def test_the_psycopg2_wheel_is_the_cpython_3_11_manylinux_x86_64_build():
    wheel = Wheel.parse(wheel_for("psycopg2-binary"))
    assert "cp311" in wheel.python_tags and "cp311" in wheel.abi_tags
    assert any(tag.startswith("manylinux") and tag.endswith("_x86_64") for tag in wheel.platform_tags)
    assert "psycopg2" in wheel_top_level(wheel.path)


def test_every_module_the_glue_scripts_import_is_provided_or_pinned():
    wheels = {wheel.name: wheel for wheel in glue_wheels.wheels_in()}
    from_wheels = {top for name in PINS if name in wheels for top in wheel_top_level(wheels[name].path)}
    from_glue = {top for dist in PROVIDED for top in provided_import_names(dist)}
    allowed = set(sys.stdlib_module_names) | GLUE_RUNTIME | from_glue | from_wheels
    imports = script_imports()
    assert {"pyarrow", "boto3", "psycopg2"} <= set(imports)  # the scan sees lazy imports too
    missing = {name: sorted(scripts) for name, scripts in imports.items() if name not in allowed}
    assert not missing, f"imported by Glue scripts but neither provided by Glue 5.0 nor pinned: {missing}"


def test_the_pins_are_not_what_glue5_already_provides():
    same = {name: version for name, version in PINS.items() if PROVIDED.get(name) == version}
    assert not same, f"Glue 5.0 already provides these: drop them from include/glue_wheels.txt: {same}"


def test_the_vendored_list_and_the_glue5_venv_name_their_source_and_agree():
    assert AWS_PAGE in glue_wheels.PROVIDED_FILE.read_text()
    text = GLUE5_VENV_REQUIREMENTS.read_text()
    assert AWS_PAGE in text
    venv_pins = {canonical(line.split("==")[0]): line.split("==")[1] for line in text.splitlines() if "==" in line}
    for name in ("pyarrow", "pandas", "numpy"):
        assert venv_pins[name] == PROVIDED[name], name
    assert "-r ../include/glue_wheels.txt" in text.splitlines()


def test_glue5_constraints_take_the_pins_over_glue5_and_glue5_over_the_local_lock():
    constraints = dict(line.split("==") for line in glue_wheels.glue5_constraints().splitlines())
    for name, version in PINS.items():
        assert constraints[name] == version
    for name in ("pyarrow", "numpy", "pandas", "urllib3", "requests"):
        assert constraints[name] == PROVIDED[name]
    assert constraints["pytest"]  # from requirements-local.txt


@pytest.mark.glue5
def test_the_glue5_venv_has_glue5s_versions_and_the_pinned_ones():
    if Path(sys.prefix).name != "glue5-venv":
        pytest.skip("checks the venv of make test-glue5")
    for name in ("pyarrow", "pandas", "numpy"):
        assert metadata.version(name) == PROVIDED[name], name
    for name, version in PINS.items():
        assert metadata.version(name) == version, name


# -- the file names, as pip and Glue read them ---------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "psycopg2_binary-2.9.12-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "pyarrow-17.0.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "cryptography-44.0.0-cp39-abi3-manylinux_2_34_x86_64.whl",
        "boto3-1.43.56-py3-none-any.whl",
        "six-1.16.0-py2.py3-none-any.whl",
        "orjson-3.10.0-1-cp311-cp311-manylinux_2_17_x86_64.whl",  # a build tag
    ],
)
def test_wheels_that_install_on_glue5(name):
    assert Wheel.parse(Path(name)).fits_glue5()


@pytest.mark.parametrize(
    "name",
    [
        "psycopg2_binary-2.9.12-cp312-cp312-manylinux2014_x86_64.whl",  # another Python
        "psycopg2_binary-2.9.12-cp311-cp311-manylinux2014_aarch64.whl",  # another machine
        "psycopg2_binary-2.9.12-cp311-cp311-musllinux_1_1_x86_64.whl",  # another libc
        "psycopg2_binary-2.9.12-cp311-cp311-macosx_11_0_arm64.whl",
        "numpy-2.3.0-cp311-cp311-manylinux_2_35_x86_64.whl",  # a newer glibc than AL2023's 2.34
        "cryptography-44.0.0-cp312-abi3-manylinux_2_34_x86_64.whl",  # the stable ABI from 3.12 on
    ],
)
def test_wheels_that_do_not(name):
    assert not Wheel.parse(Path(name)).fits_glue5()


def test_wheel_for_normalises_the_name_and_says_how_to_get_a_missing_wheel(tmp_path):
    wheel = tmp_path / "psycopg2_binary-2.9.12-cp311-cp311-manylinux2014_x86_64.whl"
    wheel.touch()
    assert wheel_for("psycopg2-binary", tmp_path) == wheel
    assert wheel_for("Psycopg2_Binary", tmp_path) == wheel
    with pytest.raises(FileNotFoundError, match=r"'pyyaml'.*run make glue-wheels"):
        wheel_for("pyyaml", tmp_path)
    (tmp_path / "psycopg2_binary-2.9.11-cp311-cp311-manylinux2014_x86_64.whl").touch()
    with pytest.raises(FileNotFoundError, match="several wheels.*run make glue-wheels"):
        wheel_for("psycopg2-binary", tmp_path)


def test_a_pin_must_be_exact(tmp_path):
    pins = tmp_path / "pins.txt"
    pins.write_text("# comment\n\nPsycopg2_Binary==2.9.12  # why\n")
    assert read_pins(pins) == {"psycopg2-binary": "2.9.12"}
    pins.write_text("boto3>=1.35\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        read_pins(pins)


def test_download_fetches_only_the_missing_pins_and_drops_wheels_no_longer_pinned(tmp_path, monkeypatch):
    pins, wheels = tmp_path / "pins.txt", tmp_path / "wheels"
    pins.write_text("psycopg2-binary==2.9.12\nboto3==1.43.56\n")
    wheels.mkdir()
    (wheels / "psycopg2_binary-2.9.12-cp311-cp311-manylinux2014_x86_64.whl").touch()
    (wheels / "boto3-1.40.0-py3-none-any.whl").touch()  # a pin since bumped
    calls = []

    def pip(argv, check):
        calls.append(argv)
        Path(argv[argv.index("-d") + 1], "boto3-1.43.56-py3-none-any.whl").touch()
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(glue_wheels.subprocess, "run", pip)
    assert [path.name for path in glue_wheels.download(pins, wheels)] == ["boto3-1.43.56-py3-none-any.whl"]
    (argv,) = calls
    assert argv[-1:] == ["boto3==1.43.56"] and "--no-deps" in argv and "--only-binary=:all:" in argv
    assert argv[argv.index("--platform") + 1] == "manylinux2014_x86_64"
    assert argv[argv.index("--python-version") + 1] == "3.11"
    assert sorted(path.name for path in wheels.iterdir()) == [
        "boto3-1.43.56-py3-none-any.whl", "psycopg2_binary-2.9.12-cp311-cp311-manylinux2014_x86_64.whl",
    ]  # fmt: skip

    calls.clear()
    assert glue_wheels.download(pins, wheels) == [] and not calls  # every pin there: pip is not run
