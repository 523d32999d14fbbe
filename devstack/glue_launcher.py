"""Runs a Glue job script the way the local stack's Glue emulation does: as a plain Python process.

Usage: python glue_launcher.py SCRIPT [--JOB_NAME name --JOB_RUN_ID id --key value ...]

Local Glue runs are Python-only: there is no Spark and no ``awsglue`` library here, so
importing either fails at once with a message that says so, instead of a confusing
ModuleNotFoundError deep inside the script.

The script's folder comes first on ``sys.path``, in place of this launcher's, as
``python script.py`` would have it: the script imports what sits beside it and nothing of
``devstack/``. ``PYTHONPATH`` (where the emulator puts a run's ``--extra-py-files``) follows.
"""

import importlib.abc
import os
import runpy
import sys

_SPARK_ONLY_PACKAGES = {"awsglue", "pyspark", "py4j"}


class _PythonOnlyGlue(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in _SPARK_ONLY_PACKAGES:
            raise ModuleNotFoundError(
                f"'{fullname}' is not available: local Glue runs are Python-only (no Spark, no awsglue). "
                "Write the job with boto3/pyarrow, or run it on AWS Glue.",
                name=fullname,
            )
        return None


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: glue_launcher.py SCRIPT [ARGS...]")
    script = sys.argv[1]
    sys.argv = [script, *sys.argv[2:]]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    sys.meta_path.insert(0, _PythonOnlyGlue())
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
