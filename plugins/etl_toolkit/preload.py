"""What a task process of the local runtime finds imported when it starts.

``make airflow`` and the compose stack run the LocalExecutor with ``mp_start_method = forkserver``
and ``[core] mp_forkserver_preload = etl_toolkit.preload``: the forkserver imports this module
once, the executor's workers fork from it, and every task process forks from a worker. A task
then starts with the heavy libraries the toolkit uses already loaded - Great Expectations (seconds
to import), the Amazon provider's operators and hooks with boto3, pyarrow, psycopg2 - instead of
paying those imports on every try of every task.

Two one-time costs of a task's first AWS client are paid here too:

- the botocore models of the services the toolkit calls, parsed into the process's shared loader
  (``etl_toolkit.aws_session``, the session factory of every environment);
- the map from loaded modules to their files in ``inspect``: the provider's hooks walk the call
  stack (``inspect.stack``) to name their caller in the user agent of every client they make,
  and the first walk in a process maps every loaded module - 0.2 s with Great Expectations loaded.

The toolkit's own modules are left out on purpose, but for ``etl_toolkit.aws_session`` (which the
provider imports in every process anyway): a task imports them from disk when it parses its DAG
file (a few milliseconds), so an edit reaches the next task, as it reaches the DAG processor, with
no restart. Only a library upgrade, or an edit of ``aws_session``, needs ``make airflow`` started
again.

Nothing here may start a thread or open a connection: both would be copied, half-alive, into
every fork. The forkserver skips a preload module it cannot import without a word;
``tests/unit/test_task_process_preload.py`` checks that this one loads.
"""

from __future__ import annotations

import importlib
import inspect

LIBRARIES = (
    "great_expectations",  # the schema checks
    "psycopg2",  # the ledger and the warehouse
    "pyarrow.parquet",  # counts and schema checks from parquet footers
    # The Amazon provider's modules the task factories build on (they import boto3 and botocore).
    "airflow.providers.amazon.aws.hooks.s3",
    "airflow.providers.amazon.aws.hooks.sns",
    "airflow.providers.amazon.aws.notifications.sns",
    "airflow.providers.amazon.aws.operators.athena",
    "airflow.providers.amazon.aws.operators.glue",
    "airflow.providers.amazon.aws.operators.glue_crawler",
    "airflow.providers.amazon.aws.sensors.s3",
    "airflow.providers.amazon.aws.triggers.s3",
    # What a task process runs before its task: the task runner, the DAG bundle, the DAG file's parse.
    "airflow.sdk.execution_time.task_runner",
    "airflow.dag_processing.bundles.local",
    "airflow.dag_processing.dagbag",
)

# Every service a task of the toolkit makes a client of.
AWS_SERVICES = ("s3", "glue", "logs", "sns", "sts", "athena", "secretsmanager", "sqs", "events")

for _library in LIBRARIES:
    importlib.import_module(_library)

importlib.import_module("etl_toolkit.aws_session").warm(AWS_SERVICES)
inspect.stack()  # as the provider's hooks do: maps every module loaded so far to its file
