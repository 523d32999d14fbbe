"""What a finished ``dag.test()`` run left behind, read back from the metadata database."""

from __future__ import annotations

from typing import Any


def task_return_value(dag_run, task_id: str, key: str = "return_value") -> Any:
    """A task's return value (or its XCom ``key``), or None when it left none."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key)
            .one_or_none()
        )
        return XComModel.deserialize_value(row) if row is not None else None
