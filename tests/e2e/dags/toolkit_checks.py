"""DAGs that exercise the toolkit's AWS pieces on their own (tests/e2e/test_toolkit_on_stack.py).

They live in a DAG bundle of the test suite's own (``dag.test()`` runs only DAGs it can find in a
bundle); the values each run needs come in through ``params``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.providers.amazon.aws.sensors.glue_catalog_partition import GlueCatalogPartitionSensor
from airflow.sdk import TaskGroup, dag, task

from etl_toolkit import environment
from etl_toolkit.pipeline import Layer, Pipeline, default_args, marker_dag
from etl_toolkit.settings import AWS_CONN_ID
from etl_toolkit.tasks import audit, batches, glue

SCRIPTS = Path(__file__).resolve().parents[1] / "glue_scripts"
COMMON = {
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "default_args": default_args("toolkit_test"),
    "user_defined_macros": environment.DAG_MACROS,  # the toolkit's operators name the environment's resources
    "tags": ["test"],
    "doc_md": __doc__,
}


@dag(schedule=None, dag_id="toolkit_glue_writes_parquet", params={"bucket": "", "key": "", "rows": 1}, **COMMON)
def glue_writes_parquet():
    glue.GlueJob(
        task_id="write_parquet",
        pipeline="tests",
        script=str(SCRIPTS / "write_parquet.py"),
        job_name="toolkit_write_parquet",
        script_args={"--bucket": "{{ params.bucket }}", "--key": "{{ params.key }}", "--rows": "{{ params.rows }}"},
    )


@dag(schedule=None, dag_id="toolkit_glue_fails", params={"batch_id": "b-1"}, **COMMON)
def glue_fails():
    glue.GlueJob(
        task_id="fail",
        pipeline="tests",
        script=str(SCRIPTS / "fail_with_reason.py"),
        job_name="toolkit_fail_with_reason",
        script_args={"--batch_id": "{{ params.batch_id }}"},
        retries=0,
    )


@dag(
    schedule=None,
    dag_id="toolkit_crawl_then_sense_partition",
    params={"path": "", "crawler": "", "hour": "10"},
    **COMMON,
)
def crawl_then_sense_partition():
    crawl = glue.CatalogCrawler(
        task_id="crawl",
        config={
            **glue.crawler_config("toolkit-crawler", "s3://placeholder/", database="toolkit_test"),
            "Name": "{{ params.crawler }}",
            "Targets": {"S3Targets": [{"Path": "{{ params.path }}"}]},
        },
    )
    wait_for_partition = GlueCatalogPartitionSensor(
        task_id="wait_for_partition",
        database_name="toolkit_test",
        table_name="events",
        expression="year='2026' AND month='11' AND day='25' AND hour='{{ params.hour }}'",
        aws_conn_id=AWS_CONN_ID,
        poke_interval=1,
        timeout=30,
    )
    crawl >> wait_for_partition


@dag(schedule=None, dag_id="toolkit_wait_for_marker", params={"bucket": ""}, **COMMON)
def wait_for_marker():
    """The marker sensor with a 3 s timeout: a quiet day, or a bucket it cannot read."""
    wait = batches.BatchMarkerSensor(
        task_id="wait_for_marker", bucket_name="{{ params.bucket }}", timeout=3, poke_interval=1, retries=0
    )

    @task
    def after_the_marker() -> str:
        return "ran"

    wait >> after_the_marker()


glue_writes_parquet()
glue_fails()
wait_for_marker()
crawl_then_sense_partition()


# A marker-driven pipeline whose counts sit in TaskGroups under task ids of their own choosing:
# reconciliation must still compare them, because the frame knows them by what they count.
GROUPED = Pipeline(
    name="grouped_counts",
    landing_bucket="toolkit-grouped-landing",
    layers=(Layer("landing", ("rows",)), Layer("copy", ("rows",))),
)


@marker_dag(GROUPED, dag_id="toolkit_grouped_counts", tags=["test"], doc_md=__doc__)
def grouped_counts(batch):
    with TaskGroup("landing_checks"):
        rows_in_landing = audit.count_parquet(
            "landing", bucket=GROUPED.landing_bucket, prefix="data/{batch_id}/", entity="rows",
            task_id="rows_in_landing",
        )  # fmt: skip
    with TaskGroup("copy_checks"):
        rows_copied = audit.count_parquet(
            "copy", bucket=GROUPED.landing_bucket, prefix="copy/{batch_id}/", entity="rows", task_id="rows_copied"
        )
    rows_in_landing >> rows_copied


grouped_counts()
