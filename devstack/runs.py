"""What a finished ``dag.test()`` run left behind, read back from the metadata database."""

from __future__ import annotations

from typing import Any


def task_return_value(dag_run, task_id: str) -> Any:
    """A task's return value (its ``return_value`` XCom), or None when it returned nothing."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key="return_value")
            .one_or_none()
        )
        return XComModel.deserialize_value(row) if row is not None else None
