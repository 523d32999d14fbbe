"""A DAG that runs one query through the Amazon provider's Athena pieces on the local stack
(tests/e2e/test_athena_clients.py): ``AthenaOperator`` polling and deferred, ``AthenaSensor`` on
the first one's query, ``AthenaHook.get_query_results`` reading its result.

It lives in the test suite's own DAG bundle (``dag.test()`` runs only DAGs it finds in a bundle);
the query, its database and the output location come in through ``params``.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.amazon.aws.hooks.athena import AthenaHook
from airflow.providers.amazon.aws.operators.athena import AthenaOperator
from airflow.providers.amazon.aws.sensors.athena import AthenaSensor
from airflow.sdk import dag, task

from etl_toolkit.settings import AWS_CONN_ID

QUERY = {
    "query": "{{ params.query }}",
    "database": "{{ params.database }}",
    "output_location": "{{ params.output_location }}",
    "aws_conn_id": AWS_CONN_ID,
    "sleep_time": 1,
    "retries": 0,
}


@dag(
    schedule=None,
    dag_id="athena_checks",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"query": "SELECT 1", "database": "default", "output_location": ""},
    tags=["test"],
    doc_md=__doc__,
)
def athena_checks():
    run_query = AthenaOperator(task_id="run_query", **QUERY)
    # the same query again, independently, waiting in the triggerer (AthenaTrigger)
    AthenaOperator(task_id="run_query_deferred", deferrable=True, **QUERY)
    sense_query = AthenaSensor(
        task_id="sense_query",
        query_execution_id="{{ ti.xcom_pull(task_ids='run_query') }}",
        aws_conn_id=AWS_CONN_ID,
        poke_interval=1,
        timeout=60,
        retries=0,
    )

    @task(retries=0)
    def read_results(query_execution_id: str) -> dict:
        """The query's ColumnInfo and rows (header first), as AthenaHook returns them."""
        result = AthenaHook(aws_conn_id=AWS_CONN_ID).get_query_results(query_execution_id)
        result_set = result["ResultSet"]
        return {
            "columns": [[c["Name"], c["Type"]] for c in result_set["ResultSetMetadata"]["ColumnInfo"]],
            "rows": [[datum.get("VarCharValue") for datum in row["Data"]] for row in result_set["Rows"]],
        }

    results = read_results(run_query.output)
    run_query >> sense_query >> results


athena_checks()
