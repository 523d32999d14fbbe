"""Runs a Glue job script the way the local stack's Glue emulation does: as its own Python process.

Usage: python glue_launcher.py SCRIPT [--JOB_NAME name --JOB_RUN_ID id --key value ...]

The emulator says in ``GLUE_LOCAL_RUNTIME`` which runtime the job has (devstack/glue_spark/runtime.py):

- ``spark`` and ``python`` (a ``glueetl`` job): the script runs as it is; on ``spark`` PySpark and
  the local ``awsglue`` are on its path and configured for the emulator.
- ``pythonshell``: as on AWS Glue, a Python shell job has no Spark: importing ``pyspark`` or any of
  ``awsglue`` but ``awsglue.utils`` fails at once with a message that says so, instead of a
  confusing error deep inside the script.

The script's folder comes first on ``sys.path``, in place of this launcher's, as
``python script.py`` would have it: the script imports what sits beside it and nothing of
``devstack/``. ``PYTHONPATH`` (where the emulator puts a run's ``--extra-py-files``) follows.

If the script raises, the last line of its traceback (for an error of Spark's JVM, the Java
exception too) is also written to ``GLUE_LOCAL_ERROR_FILE``: the run's ``ErrorMessage``, which
Spark's own log lines after the traceback must not push out of the error stream's last line.
"""

import importlib.abc
import os
import runpy
import sys
import traceback

_SPARK_ONLY_PACKAGES = {"pyspark", "py4j"}
# What a Python shell job has of awsglue on AWS (getResolvedOptions), and what that imports here.
_PYTHON_SHELL_AWSGLUE = {"awsglue", "awsglue.utils", "awsglue.job"}


class _PythonShellGlue(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        package = fullname.partition(".")[0]
        spark_only = package in _SPARK_ONLY_PACKAGES or (
            package == "awsglue" and fullname not in _PYTHON_SHELL_AWSGLUE and not fullname.startswith("awsglue._")
        )
        if spark_only:
            raise ModuleNotFoundError(
                f"'{fullname}' is not available in a Python shell job: it has no Spark (of awsglue only "
                "awsglue.utils), as on AWS Glue. Make it a Spark job (Command.Name 'glueetl') to use "
                "pyspark and awsglue.",
                name=fullname,
            )
        return None


def error_line(error: BaseException) -> str:
    """The run's ErrorMessage: the last line of the traceback Python prints for ``error``; for an
    error raised in Spark's JVM (py4j's Py4JJavaError) its first line and the Java exception."""
    lines = [line.strip() for line in "".join(traceback.format_exception_only(type(error), error)).splitlines()]
    lines = [line for line in lines if line]
    java_exception = getattr(error, "java_exception", None)
    if java_exception is not None and lines:
        try:
            java = str(java_exception.toString()).strip().splitlines()[0]
        except Exception:  # the JVM may be gone already
            java = ""
        return f"{lines[0]} {java}".strip()
    return lines[-1] if lines else type(error).__name__


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: glue_launcher.py SCRIPT [ARGS...]")
    script = sys.argv[1]
    sys.argv = [script, *sys.argv[2:]]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    if os.environ.get("GLUE_LOCAL_RUNTIME") == "pythonshell":
        sys.meta_path.insert(0, _PythonShellGlue())
    try:
        runpy.run_path(script, run_name="__main__")
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as error:
        error_file = os.environ.get("GLUE_LOCAL_ERROR_FILE")
        if error_file:
            with open(error_file, "w", encoding="utf-8") as sink:
                sink.write(error_line(error)[:2048])
        raise


if __name__ == "__main__":
    main()
