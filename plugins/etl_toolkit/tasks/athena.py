"""Athena queries of the claimed batch, from SQL files versioned beside the DAGs.

Layer 4. ``query`` makes a ``BatchQuery``, the provider's ``AthenaOperator`` running
``include/sql/<pipeline>/<file>``: Athena SQL in which ``{{ batch_id }}`` stands for the claimed
batch's id. It is deferred while Athena runs, so a long query holds no worker slot; its XCom is
the query execution id, whose answer ``audit.count_athena`` reads.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.operators.athena import AthenaOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from etl_toolkit.paths import sql_path
from etl_toolkit.settings import AWS_CONN_ID, GLUE_POLL_SECONDS
from etl_toolkit.tasks.frame import current

BATCH_ID_PLACEHOLDER = "{{ batch_id }}"


class BatchQuery(AthenaOperator):
    """``AthenaOperator`` whose failure says Athena's reason in one line, and is final when Athena
    says the error is not retryable (a missing table, a bad column: the same query fails again)."""

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowException as error:
            self._explain(error, self.query_execution_id)

    def execute_complete(self, context, event=None):
        try:
            return super().execute_complete(context, event)
        except AirflowException as error:
            self._explain(error, (event or {}).get("value"))

    def _explain(self, error: AirflowException, query_execution_id: str | None):
        if not query_execution_id:
            raise error
        status = self.hook.get_conn().get_query_execution(QueryExecutionId=query_execution_id)["QueryExecution"][
            "Status"
        ]
        message = f"Athena query {query_execution_id} {status['State']}: {status.get('StateChangeReason', '')}"
        if (status.get("AthenaError") or {}).get("Retryable") is False:
            raise AirflowFailException(message) from error
        raise AirflowException(message) from error


def query(task_id: str, *, file: str, database: str, output_location: str, workgroup: str = "primary",
          **kwargs: Any) -> BatchQuery:  # fmt: skip
    """Run ``include/sql/<pipeline>/<file>`` on Athena for the claimed batch; results under ``output_location``."""
    frame = current()
    text = sql_path(frame.pipeline.name, file).read_text()
    if BATCH_ID_PLACEHOLDER not in text:
        raise ValueError(f"{file}: an Athena query of a batch must name it as {BATCH_ID_PLACEHOLDER}")
    # Batch ids are [A-Za-z0-9_.-] (the marker contract), so the id is safe between quotes.
    kwargs.setdefault("aws_conn_id", AWS_CONN_ID)
    kwargs.setdefault("deferrable", True)
    kwargs.setdefault("sleep_time", max(1, int(GLUE_POLL_SECONDS)))  # polled as often as Glue
    return BatchQuery(
        task_id=task_id,
        query=text.replace(BATCH_ID_PLACEHOLDER, frame.batch_id),
        database=database,
        output_location=output_location,
        workgroup=workgroup,
        **kwargs,
    )
