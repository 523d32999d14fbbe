"""requirements.txt is what MWAA installs: it must resolve for Python 3.12 under MWAA's constraints."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MWAA_CONSTRAINTS = REPO / "constraints" / "mwaa-3.3.1-py3.12.txt"


def test_requirements_resolve_for_mwaa_python_3_12(tmp_path):
    lines = (REPO / "requirements.txt").read_text().splitlines()
    # MWAA fetches the constraint URL itself; offline we resolve against the vendored copy of it.
    assert any(line.startswith("--constraint") and "constraints-3.3.1/constraints-3.12.txt" in line for line in lines)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(line for line in lines if not line.startswith("--constraint")))
    uv = Path(sys.executable).with_name("uv")
    result = subprocess.run(
        [str(uv), "pip", "compile", "--quiet", "--python-version", "3.12", "-c", str(MWAA_CONSTRAINTS),
         str(requirements), "-o", str(tmp_path / "resolved.txt")],
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
