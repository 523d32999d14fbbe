"""The Spark side of local Glue job runs: which runtime a run gets, and what a Spark run needs.

AWS Glue runs a ``pythonshell`` job in a plain Python process (no Spark; of ``awsglue`` only
``awsglue.utils``) and a ``glueetl`` job on Spark. Locally, starting a JVM costs seconds, so a
``glueetl`` job runs on Spark only when its script (or one of its ``--extra-py-files``) imports
``awsglue`` or ``pyspark``; any other script keeps the plain Python path, which never starts a JVM.

A Spark run is the same kind of process as a Python run (``glue_launcher.py``), with:

- this folder on ``PYTHONPATH``, so ``import awsglue`` finds the local implementation beside it;
- ``SPARK_CONF_DIR``: a ``spark-defaults.conf`` for PySpark 3.5 in local mode, whose ``s3://``,
  ``s3a://`` and ``s3n://`` paths all reach the emulated S3 through Hadoop's S3A file system
  (the two jars of ``spark_jars()``), and a ``log4j2.properties`` that keeps Spark's log quiet;
- ``GLUE_LOCAL_STATE_DIR``: the folder the emulator shares with every run (job bookmarks in
  ``bookmarks/<job name>.json``).
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Put on a Spark run's PYTHONPATH: the local ``awsglue`` package lives here.
GLUE_SPARK_DIR = Path(__file__).resolve().parent
DEFAULT_JARS_DIR = REPO_ROOT / ".local" / "spark-jars"
# Hadoop's S3A file system for Spark 3.5 (Hadoop 3.3) and the AWS SDK it is built against.
SPARK_JARS = ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")
INSTALL_TARGET = "make venv"

# Environment variables of a job run.
JARS_DIR_VARIABLE = "GLUE_SPARK_JARS_DIR"  # overrides DEFAULT_JARS_DIR
STATE_DIR_VARIABLE = "GLUE_LOCAL_STATE_DIR"
RUNTIME_VARIABLE = "GLUE_LOCAL_RUNTIME"  # one of the runtimes below; read by glue_launcher.py
ERROR_FILE_VARIABLE = "GLUE_LOCAL_ERROR_FILE"  # where glue_launcher.py writes the script's error line

SPARK, PYTHON, PYTHON_SHELL = "spark", "python", "pythonshell"
SPARK_PACKAGES = frozenset({"awsglue", "pyspark"})
# Command.Name of the jobs AWS runs without Spark.
NON_SPARK_COMMANDS = frozenset({"pythonshell", "glueray"})

BOOKMARKS_DIR = "bookmarks"
# --TempDir when the job sets none; the emulator creates the bucket on first use.
DEFAULT_TEMP_DIR_BUCKET = "aws-glue-assets-local"
DEFAULT_TEMP_DIR = f"s3://{DEFAULT_TEMP_DIR_BUCKET}/temporary/"
DEFAULT_BOOKMARK_OPTION = "job-bookmark-disable"


class SparkRuntimeUnavailable(RuntimeError):
    """Something a Spark run needs is not installed on this machine."""


# -- which runtime --------------------------------------------------------------------------------


def imported_top_level_packages(source: str | bytes) -> set[str]:
    """The top-level names a Python source imports anywhere (absolute imports only); empty if it
    does not parse (the run then fails with the SyntaxError, on whichever path)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def python_sources(paths: Iterable[Path]) -> Iterable[bytes]:
    """The text of each ``.py`` file among ``paths`` and of each ``.py`` member of the archives."""
    for path in paths:
        if path.is_dir():
            yield from python_sources(sorted(path.iterdir()))
        elif path.suffix == ".py":
            yield path.read_bytes()
        elif path.suffix == ".zip" and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.endswith(".py"):
                        yield archive.read(member)


def needs_spark(sources: Iterable[str | bytes]) -> bool:
    return any(imported_top_level_packages(source) & SPARK_PACKAGES for source in sources)


def choose_runtime(command_name: str | None, sources: Iterable[str | bytes]) -> str:
    """``pythonshell`` for the jobs AWS runs without Spark; ``spark`` for any other job whose code
    imports awsglue or pyspark; ``python`` (the fast path, no JVM) for the rest."""
    if (command_name or "glueetl") in NON_SPARK_COMMANDS:
        return PYTHON_SHELL
    return SPARK if needs_spark(sources) else PYTHON


# -- what a Spark run needs -------------------------------------------------------------------------


def spark_jars() -> list[Path]:
    """The S3A jars Spark needs, from ``$GLUE_SPARK_JARS_DIR`` or ``<repo>/.local/spark-jars``."""
    folder = Path(os.environ.get(JARS_DIR_VARIABLE) or DEFAULT_JARS_DIR)
    jars = [folder / name for name in SPARK_JARS]
    missing = [jar.name for jar in jars if not jar.is_file()]
    if missing:
        raise SparkRuntimeUnavailable(
            f"the local Spark runtime is missing {', '.join(missing)} in {folder} "
            f"(the S3A file system for s3:// paths): run `{INSTALL_TARGET}` to install it"
        )
    return jars


def java_executable() -> str:
    """The ``java`` PySpark will start: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not candidate or not os.access(candidate, os.X_OK):
        where = f"JAVA_HOME={java_home}" if java_home else "PATH"
        raise SparkRuntimeUnavailable(
            f"the local Spark runtime needs Java 17 and found no java on {where}: run `{INSTALL_TARGET}` "
            "(it installs openjdk-17-jre-headless with apt-get) or install a JDK yourself"
        )
    return candidate


def spark_defaults(
    endpoint_url: str, jars: Iterable[Path], access_key: str, secret_key: str, region: str
) -> dict[str, str]:
    """spark-defaults.conf for a local Glue run: local mode, and every S3 scheme on the emulator."""
    s3a = {
        "endpoint": endpoint_url,
        "endpoint.region": region,
        "path.style.access": "true",
        "connection.ssl.enabled": str(endpoint_url.startswith("https://")).lower(),
        "aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "access.key": access_key,
        "secret.key": secret_key,
        # A run makes a handful of requests: no need to wait minutes for a retry budget to run out.
        "attempts.maximum": "3",
        "retry.limit": "3",
    }
    return {
        "spark.master": "local[2]",
        "spark.jars": ",".join(str(jar) for jar in jars),
        "spark.driver.memory": "1g",
        # A local run is mostly JVM start and small data: the client compiler alone and the serial
        # collector start seconds sooner than the JIT's second tier and G1 pay back.
        "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.session.timeZone": "UTC",
        **{f"spark.hadoop.fs.s3a.{key}": value for key, value in s3a.items()},
        # Glue scripts name s3:// (and old ones s3n://) paths: both are S3A here, as EMRFS is on AWS.
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3n.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.AbstractFileSystem.s3.impl": "org.apache.hadoop.fs.s3a.S3A",
    }


# Spark's own log to stderr at WARN (the job's /aws-glue/jobs/error stream), without the warnings
# every local run prints about nothing (no native Hadoop library, no S3A metrics configuration).
LOG4J2_PROPERTIES = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = error
logger.metrics.name = org.apache.hadoop.metrics2
logger.metrics.level = error
logger.s3aconf.name = org.apache.hadoop.fs.s3a.S3AUtils
logger.s3aconf.level = error
"""


def write_spark_conf(conf_dir: Path, defaults: Mapping[str, str]) -> Path:
    conf_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"{key} {value}" for key, value in defaults.items()]
    (conf_dir / "spark-defaults.conf").write_text("\n".join(lines) + "\n")
    (conf_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
    return conf_dir


def spark_environment(env: Mapping[str, str], conf_dir: Path) -> dict[str, str]:
    """``env`` with what a Spark run adds: the conf folder, and this interpreter for PySpark's
    driver and workers; a SPARK_HOME or submit arguments of the calling shell are dropped, so the
    pip-installed PySpark of this interpreter runs with the conf above."""
    spark_env = {key: value for key, value in env.items() if key not in ("SPARK_HOME", "PYSPARK_SUBMIT_ARGS")}
    spark_env.update(
        SPARK_CONF_DIR=str(conf_dir),
        SPARK_LOCAL_IP="127.0.0.1",  # Spark's driver on loopback, whatever the host name resolves to
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    return spark_env


# -- job bookmarks ----------------------------------------------------------------------------------


def bookmark_file(state_dir: Path, job_name: str) -> Path:
    """``<state dir>/bookmarks/<job name>.json``, any character of the name but letters, digits,
    ``-``, ``_`` and ``.`` written ``_`` (the same file name the local awsglue uses)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in job_name) or "_"
    return state_dir / BOOKMARKS_DIR / f"{safe}.json"


def empty_bookmark_entry(job_name: str) -> dict[str, object]:
    return {"JobName": job_name, "Version": 0, "Run": 0, "Attempt": 0}
