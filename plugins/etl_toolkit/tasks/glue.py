"""Glue jobs and crawlers with the project's defaults.

``GlueJob`` is the provider's ``GlueJobOperator`` with three things every pipeline wants:

- the script is the file versioned beside the DAG (``include/glue_scripts/<pipeline>/``): the
  task uploads it on every run, with its modules and wheels, through one S3 client, and keeps the
  job definition in step with the DAG (``update_config``), so what runs is always the script
  versioned beside it;
- Glue 5.0, the poll interval from ``etl_toolkit.settings``, and the role, artifacts bucket and
  the job's name from the environment (``etl_toolkit.environment``): the name carries the
  environment's, so that two environments can share an account;
- ``network=True`` for a job that reaches a database: it runs in the database's VPC through the
  environment's Glue NETWORK connection;
- ``python_modules``: what the script needs beyond what Glue 5.0 provides, as the wheels that
  ``make glue-wheels`` downloads into ``include/glue_wheels/`` (pinned in
  ``include/glue_wheels.txt``): uploaded beside the script and installed from there, never from
  PyPI at job start (a job in a private VPC cannot reach it);
- a failed run fails the task with the script's own error (``GetJobRun.ErrorMessage``), not just
  "Run State: FAILED", so the failure notification says what went wrong; a script that refuses
  its batch (raises ``BatchRefused``) fails it without retries, since the same input would fail
  the same way;
- ``py_modules``: modules beside the script that it imports (one definition shared by several
  jobs), uploaded with it on every run and passed as ``--extra-py-files``, as Glue expects.

``CatalogCrawler`` creates or updates a crawler from its config and runs it: the provider's
``GlueCrawlerOperator`` did exactly that but is deprecated in favour of separate create, update
and run operators; one task reads better in a pipeline than three.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.operators.glue import GlueJobOperator
from airflow.providers.amazon.aws.operators.glue_crawler import GlueCrawlerRunOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from etl_toolkit import environment
from etl_toolkit.paths import glue_script_path, glue_wheel_path
from etl_toolkit.settings import AWS_CONN_ID, GLUE_POLL_SECONDS, GLUE_VERSION

POLL_SECONDS = GLUE_POLL_SECONDS
# A script that refuses its batch (too many bad records, an object that is not what the contract
# says) raises an exception of this name; the run's error then starts with it, on AWS as locally.
REFUSED = re.compile(r"(^|[\s.:])BatchRefused:")


class GlueJob(GlueJobOperator):
    def __init__(
        self,
        *,
        pipeline: str,
        script: str,  # a file under include/glue_scripts/<pipeline>/, or an absolute path
        py_modules: tuple[str, ...] = (),  # files beside it that it imports
        python_modules: tuple[str, ...] = (),  # distributions it needs that Glue 5.0 lacks (wheels)
        network: bool = False,  # reaches a database: runs in its VPC through the NETWORK connection
        script_args: dict[str, str] | None = None,
        default_arguments: dict[str, str] | None = None,
        worker_type: str = "G.1X",
        number_of_workers: int = 2,
        timeout_minutes: int = 60,
        **kwargs: Any,
    ):
        # Every job's name carries the environment's prefix: the IAM policies grant job/<env>-* only.
        base_name = kwargs.pop("job_name", None) or script.rsplit("/", 1)[-1].removesuffix(".py")
        kwargs["job_name"] = environment.glue_name(base_name)
        if python_modules and "--additional-python-modules" in (default_arguments or {}):
            raise ValueError(f"Glue job {base_name}: give extra modules as python_modules (wheels), not both")
        modules = [str(glue_script_path(pipeline, name)) for name in py_modules]
        kwargs.setdefault("aws_conn_id", AWS_CONN_ID)
        job = {
            "GlueVersion": GLUE_VERSION,
            "WorkerType": worker_type,
            "NumberOfWorkers": number_of_workers,
            "Timeout": timeout_minutes,
            "DefaultArguments": {
                "--job-language": "python",
                "--enable-continuous-cloudwatch-log": "true",
                **(default_arguments or {}),
            },
        }
        if network:
            job["Connections"] = {"Connections": [environment.glue_connection("network")]}
        super().__init__(
            script_location=str(glue_script_path(pipeline, script)),
            s3_bucket=environment.bucket("glue_artifacts"),
            iam_role_arn=environment.GLUE_ROLE_ARN,
            script_args=script_args or {},
            create_job_kwargs=job,
            update_config=True,
            verbose=True,
            stop_job_run_on_kill=True,
            job_poll_interval=POLL_SECONDS,
            **kwargs,
        )
        self.py_modules = modules
        self.python_modules = tuple(python_modules)

    def execute(self, context):
        self._upload_artifacts()
        try:
            return super().execute(context)
        except AirflowException as error:
            detail = self._run_error()
            if not detail:
                raise
            message = f"Glue job {self.job_name} run {self._job_run_id}: {detail}"
            if REFUSED.search(detail):  # the script judged the batch itself: the same input fails again
                raise AirflowFailException(message) from error
            raise AirflowException(message) from error

    def _upload_artifacts(self) -> None:
        """Upload the script, the modules it imports and the wheels it installs, through one S3 client.

        The provider would upload the script itself, through an S3 hook (and a client) of its own
        and a transfer manager (threads); with ``s3_script_location`` set it takes the script from
        there. Each new hook costs a connection look-up and a client (~0.1 s), and this runs before
        every job run.
        """
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        try:
            wheels = [glue_wheel_path(name) for name in self.python_modules]
        except FileNotFoundError as error:
            raise AirflowFailException(f"Glue job {self.job_name}: {error}") from None
        s3 = S3Hook(aws_conn_id=self.aws_conn_id)
        client = s3.get_conn()

        def upload(path: Path, key: str) -> str:
            # One PUT: a script or a wheel is a few MB at most, well under PutObject's 5 GB.
            client.put_object(Bucket=self.s3_bucket, Key=key, Body=path.read_bytes())
            return f"s3://{self.s3_bucket}/{key}"

        script = Path(self.script_location)
        self.s3_script_location = upload(script, f"{self.s3_artifacts_prefix}{script.name}")
        arguments = self.create_job_kwargs["DefaultArguments"]
        if self.py_modules:
            locations = [upload(Path(path), f"{self.s3_artifacts_prefix}{Path(path).name}") for path in self.py_modules]
            arguments["--extra-py-files"] = ",".join(locations)
        if wheels:
            prefix = f"{self.s3_artifacts_prefix}wheels/"
            uploaded = set(s3.list_keys(bucket_name=self.s3_bucket, prefix=prefix) or [])
            locations = []
            for wheel in wheels:
                key = f"{prefix}{wheel.name}"
                if key in uploaded:  # a wheel's name pins its content
                    locations.append(f"s3://{self.s3_bucket}/{key}")
                else:
                    locations.append(upload(wheel, key))
            arguments["--additional-python-modules"] = ",".join(locations)
            # Whatever the wheels depend on must be what Glue provides: never fall back to PyPI.
            arguments["--python-modules-installer-option"] = "--no-index"

    def _run_error(self) -> str | None:
        if not self._job_run_id:
            return None
        run = self.hook.conn.get_job_run(JobName=self.job_name, RunId=self._job_run_id)["JobRun"]
        message = run.get("ErrorMessage")
        return f"{run['JobRunState']}: {message}" if message else None


def crawler_config(
    name: str, s3_path: str | tuple[str, ...], *, table_prefix: str = "", database: str | None = None
) -> dict:
    """A crawler over one S3 path (or several: one table each), cataloguing into the project's Glue
    database (or ``database``). The name gets the environment's prefix."""
    paths = (s3_path,) if isinstance(s3_path, str) else s3_path
    return {
        "Name": environment.glue_name(name),
        "Role": environment.GLUE_ROLE_ARN,
        "DatabaseName": database or environment.catalog_database("etl"),
        "Targets": {"S3Targets": [{"Path": path} for path in paths]},
        "TablePrefix": table_prefix,
        "SchemaChangePolicy": {"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "LOG"},
        "RecrawlPolicy": {"RecrawlBehavior": "CRAWL_EVERYTHING"},
    }


def jdbc_crawler_config(name: str, connection: str, path: str, *, table_prefix: str = "") -> dict:
    """A crawler over database tables through a Glue connection; ``path`` is
    ``<database>/<schema>/<table>``, any part ``%`` for all."""
    return {
        "Name": environment.glue_name(name),
        "Role": environment.GLUE_ROLE_ARN,
        "DatabaseName": environment.catalog_database("etl"),
        "Targets": {"JdbcTargets": [{"ConnectionName": connection, "Path": path}]},
        "TablePrefix": table_prefix,
        "SchemaChangePolicy": {"UpdateBehavior": "UPDATE_IN_DATABASE", "DeleteBehavior": "LOG"},
    }


class CatalogCrawler(GlueCrawlerRunOperator):
    """Create or update the crawler from ``config``, then run it and wait for it."""

    template_fields = (*GlueCrawlerRunOperator.template_fields, "config")

    def __init__(self, *, config: dict[str, Any], **kwargs: Any):
        kwargs.setdefault("aws_conn_id", AWS_CONN_ID)
        kwargs.setdefault("poll_interval", POLL_SECONDS)  # a waiter's delay: fractions of a second work
        super().__init__(crawler_name=config["Name"], **kwargs)
        self.config = config

    def execute(self, context):
        if self.hook.has_crawler(self.config["Name"]):
            self.hook.update_crawler(**self.config)
        else:
            self.hook.create_crawler(**self.config)
        try:
            return super().execute(context)
        except Exception as error:
            # The waiter only says "terminal failure state"; the crawl itself says what broke.
            last_crawl = self.hook.get_crawler(self.crawler_name).get("LastCrawl") or {}
            if last_crawl.get("ErrorMessage"):
                raise AirflowException(
                    f"crawler {self.crawler_name} {last_crawl.get('Status', 'FAILED')}: {last_crawl['ErrorMessage']}"
                ) from error
            raise
