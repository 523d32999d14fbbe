"""The wheels the Glue jobs install instead of reaching PyPI, and the Glue 5.0 environment they join.

``include/glue_wheels.txt`` pins the packages the Glue scripts need beyond what AWS Glue 5.0
provides (``include/glue5_provided_modules.txt``, copied from AWS's list). ``make glue-wheels``
(``python -m devstack.glue_wheels download``) downloads each pinned wheel for Glue 5.0 (CPython
3.11, manylinux x86_64) into ``include/glue_wheels/``, and does nothing when every pinned wheel is
already there. A job's ``--additional-python-modules`` then names the wheels' S3 copies, so no
job installs anything from PyPI when it starts.

``python -m devstack.glue_wheels glue5-constraints`` prints the constraints of ``make glue5-venv``:
Glue 5.0's own versions, replaced by the pins of ``include/glue_wheels.txt``, and for every other
package the version of ``requirements-local.txt``.

Standard library only: the Makefile runs it before anything else is installed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INCLUDE = REPO / "include"
WHEELS_FILE = INCLUDE / "glue_wheels.txt"
WHEELS_DIR = INCLUDE / "glue_wheels"
PROVIDED_FILE = INCLUDE / "glue5_provided_modules.txt"
LOCAL_REQUIREMENTS = REPO / "requirements-local.txt"

# AWS Glue 5.0 runs CPython 3.11 on Amazon Linux 2023 (glibc 2.34), x86_64.
GLUE_PYTHON_VERSION = "3.11"
GLUE_PLATFORM = "manylinux2014_x86_64"
# pip takes one --platform per tag: manylinux2014 and the newer manylinux_2_x up to AL2023's glibc 2.34
# (adbc-driver-* from 1.11 on are built for manylinux_2_28 only).
GLUE_PLATFORMS = (GLUE_PLATFORM, *(f"manylinux_2_{minor}_x86_64" for minor in range(24, 35)))
GLUE_PYTHON_TAGS = frozenset({"cp311", "py3", "py311"})
GLUE_ABI_TAGS = frozenset({"cp311", "abi3", "none"})
_MANYLINUX_X86_64 = re.compile(r"^(manylinux1|manylinux2010|manylinux2014|manylinux_2_(\d+))_x86_64$")
GLUE_GLIBC_MINOR = 34

# Distributions whose import name is not their normalised name (only the ones Glue 5.0 provides).
IMPORT_NAMES = {"python-dateutil": ("dateutil",), "pillow": ("PIL",), "fonttools": ("fontTools",)}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([A-Za-z0-9.+!_-]+)$")


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares it: ``Psycopg2_Binary`` -> ``psycopg2-binary``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_escaped(name: str) -> str:
    """A distribution name as a wheel's file name spells it (PEP 427): ``psycopg2_binary``."""
    return re.sub(r"[-_.]+", "_", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements-style file, by canonical name; comments and blank
    lines skipped, anything else (a range, an option, a URL) refused: the pins must be exact."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if not match:
            raise ValueError(f"{path}:{number}: not an exact pin (name==version): {raw.strip()!r}")
        pins[canonical(match.group(1))] = match.group(3)
    return pins


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str  # canonical
    version: str
    python_tags: frozenset[str]
    abi_tags: frozenset[str]
    platform_tags: frozenset[str]

    @classmethod
    def parse(cls, path: Path) -> Wheel:
        """A wheel from its file name, ``{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl``."""
        parts = path.name.removesuffix(".whl").split("-")
        if not path.name.endswith(".whl") or len(parts) not in (5, 6):
            raise ValueError(f"not a wheel file name: {path.name}")
        python, abi, platform = parts[-3:]
        return cls(
            path, canonical(parts[0]), parts[1],
            frozenset(python.split(".")), frozenset(abi.split(".")), frozenset(platform.split(".")),
        )  # fmt: skip

    def fits_glue5(self) -> bool:
        """Installable on Glue 5.0: CPython 3.11 (its ABI or the stable one) or pure Python 3, on manylinux
        x86_64 up to glibc 2.34 (Amazon Linux 2023)."""
        stable_abi = "abi3" in self.abi_tags and any(  # cp39-abi3: CPython 3.9 and every later one
            re.fullmatch(r"cp3(\d+)", tag) and int(tag[3:]) <= 11 for tag in self.python_tags
        )
        if not (stable_abi or self.python_tags & GLUE_PYTHON_TAGS and self.abi_tags & GLUE_ABI_TAGS):
            return False
        if "any" in self.platform_tags:
            return True
        for tag in self.platform_tags:
            match = _MANYLINUX_X86_64.match(tag)
            if match and (match.group(2) is None or int(match.group(2)) <= GLUE_GLIBC_MINOR):
                return True
        return False


def wheels_in(wheels_dir: Path = WHEELS_DIR) -> list[Wheel]:
    return [Wheel.parse(path) for path in sorted(wheels_dir.glob("*.whl"))] if wheels_dir.is_dir() else []


def wheel_for(dist_name: str, wheels_dir: Path = WHEELS_DIR) -> Path:
    """The one wheel of ``dist_name`` in ``wheels_dir``: ``psycopg2-binary`` -> ``psycopg2_binary-*.whl``."""
    found = [wheel.path for wheel in wheels_in(wheels_dir) if wheel.name == canonical(dist_name)]
    if not found:
        raise FileNotFoundError(
            f"no wheel of {dist_name!r} ({wheel_escaped(dist_name)}-*.whl) in {wheels_dir}: "
            f"pin it in {WHEELS_FILE.relative_to(REPO)} and run make glue-wheels"
        )
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise FileNotFoundError(f"several wheels of {dist_name!r} in {wheels_dir} ({names}): run make glue-wheels")
    return found[0]


def missing(pins: dict[str, str], wheels_dir: Path = WHEELS_DIR) -> dict[str, str]:
    """The pins that have no wheel of exactly that version in ``wheels_dir``."""
    present = {(wheel.name, wheel.version) for wheel in wheels_in(wheels_dir)}
    return {name: version for name, version in pins.items() if (name, version) not in present}


def download(wheels_file: Path = WHEELS_FILE, wheels_dir: Path = WHEELS_DIR) -> list[Path]:
    """Download the pinned wheels that are not there yet and drop the wheels no longer pinned;
    returns the wheels downloaded (none when every pin already has its wheel)."""
    pins = read_pins(wheels_file)
    wanted = missing(pins, wheels_dir)
    wheels_dir.mkdir(parents=True, exist_ok=True)
    got: list[Path] = []
    if wanted:
        listed = ", ".join(f"{name}=={version}" for name, version in wanted.items())
        print(f"downloading the Glue 5.0 wheels of {listed} into {wheels_dir}")
        with tempfile.TemporaryDirectory() as tmp:  # a failed download leaves no partial file behind
            pip = subprocess.run(
                [
                    sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--only-binary=:all:", *(arg for tag in GLUE_PLATFORMS for arg in ("--platform", tag)),
                    "--python-version", GLUE_PYTHON_VERSION,
                    "--implementation", "cp", "--no-deps", "-d", tmp,
                    *(f"{name}=={version}" for name, version in wanted.items()),
                ],
                check=False,
            )  # fmt: skip
            if pip.returncode:
                raise SystemExit(f"pip download failed (exit {pip.returncode}) for {listed}: nothing was changed")
            for path in sorted(Path(tmp).glob("*.whl")):
                got.append(Path(shutil.move(path, wheels_dir / path.name)))
    for wheel in wheels_in(wheels_dir):  # a version bumped in glue_wheels.txt leaves its old wheel
        if pins.get(wheel.name) != wheel.version:
            wheel.path.unlink()
    left = missing(pins, wheels_dir)
    if left:
        raise SystemExit(f"pip downloaded no Glue 5.0 wheel for {', '.join(f'{n}=={v}' for n, v in left.items())}")
    return got


def glue5_constraints() -> str:
    """The constraints of the Glue 5.0 test venv: Glue 5.0's versions, the pins of glue_wheels.txt
    over them, and requirements-local.txt's version of every package neither names."""
    pins = {**read_pins(PROVIDED_FILE), **read_pins(WHEELS_FILE)}
    for name, version in _locked(LOCAL_REQUIREMENTS).items():
        pins.setdefault(name, version)
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def _locked(path: Path) -> dict[str, str]:
    """The ``name==version`` lines of a compiled requirements file (its comments are skipped)."""
    locked = {}
    for raw in path.read_text().splitlines():
        match = _PIN.match(raw.split("#", 1)[0].split(";", 1)[0].strip())
        if match:
            locked[canonical(match.group(1))] = match.group(3)
    return locked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.glue_wheels", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("download", help="download the missing wheels of include/glue_wheels.txt")
    commands.add_parser("glue5-constraints", help="print the constraints of make glue5-venv")
    args = parser.parse_args(argv)
    if args.command == "download":
        download()
    else:
        sys.stdout.write(glue5_constraints())
    return 0


if __name__ == "__main__":
    sys.exit(main())
