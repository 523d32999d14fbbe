"""Every name that differs between environments is resolved per run from the environment's Variable.

Each task of each DAG is rendered as a worker renders it, under an environment whose every name
differs from the local defaults; no local default may be left in any rendered field, and the
environment's names must be there. DAG files are parsed with no Variable at all: nothing of the
environment is read at parse time.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from etl_toolkit import environment

REPO = Path(__file__).resolve().parents[2]


def other_environment(name: str = "qa") -> dict:
    """An environment none of whose names is a local default (nor contains one)."""
    local = environment.LOCAL
    renamed = {
        section: {key: f"{name}-{section[:3]}{number}" for number, key in enumerate(local[section])}
        for section in environment.NAME_SECTIONS
    }
    renamed["topics"] = {key: f"arn:aws:sns:eu-west-1:210987654321:{name}-{key}-topic" for key in local["topics"]}
    return {
        "name": name,
        **renamed,
        "glue_role_arn": f"arn:aws:iam::210987654321:role/{name}-glue-role",
        "warehouse_database": f"{name}_dwh",
    }


def local_names() -> set[str]:
    names = {value for section in environment.NAME_SECTIONS for value in environment.LOCAL[section].values()}
    # Not the warehouse's database name, "warehouse": a word layers and connections use too. That it
    # is resolved shows in the configured name being found below.
    return names | {environment.LOCAL["glue_role_arn"]}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


class _TaskInstance:
    """What the templates ask of ``ti``: the claimed batch, as claim_batch leaves it (XCom ``claim``)."""

    def __init__(self, claim: dict):
        self.claim = claim

    def xcom_pull(self, task_ids=None, key="return_value", **_):
        from etl_toolkit.tasks.frame import CLAIM_KEY

        if task_ids == "plan_batch":
            return {"batch_id": "totesys-20260101T000000.000000", "tables": ["staff", "payment"]}
        # A template still reading the claim task's return value (the branch it took) gets nothing.
        return self.claim if key == CLAIM_KEY else None


def rendered_fields(task, dag) -> dict:
    claim = {"batch_id": "b-001", "started_at": "2026-01-01T00:00:00+00:00",
             "completed_at": "2026-01-01T01:00:00+00:00", "expected_counts": {"orders": 3, "shipments": 3},
             "objects": ["incoming/b-001/a.json"]}  # fmt: skip
    from airflow.sdk.execution_time.context import VariableAccessor

    variables = {"json": VariableAccessor(deserialize_json=True), "value": VariableAccessor(deserialize_json=False)}
    context = {"ti": _TaskInstance(claim), "params": {"batch_id": None, "reprocess": False}, "dag": dag,
               "run_id": "manual__2026-01-01", "task": task, "var": variables}  # fmt: skip
    task = copy.deepcopy(task)
    task.render_template_fields(context, jinja_env=dag.get_template_env())
    return {name: getattr(task, name) for name in task.template_fields}


def mentions(text: str, name: str) -> bool:
    """``name`` as a whole name in ``text`` (a path component, an ARN's part), not inside another
    name: a crawler named after its bucket, ``qa-ecommerce-raw-crawler``, does not name the bucket."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def strings_in(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings_in(k) + strings_in(v)]
    if isinstance(value, list | tuple | set):
        return [s for v in value for s in strings_in(v)]
    return []


def test_every_rendered_field_names_the_configured_environment_and_no_local_default(dagbag, monkeypatch):
    configured = other_environment()
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ENVIRONMENT", json.dumps(configured))
    defaults = local_names()
    expected = {v for s in environment.NAME_SECTIONS for v in configured[s].values()}
    expected |= {configured["glue_role_arn"], configured["warehouse_database"]}
    found: set[str] = set()
    leftovers = []
    rendered_tasks = 0
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            fields = rendered_fields(task, dag)
            rendered_tasks += 1
            for field_name, value in fields.items():
                for text in strings_in(value):
                    assert "{{" not in text, f"{dag.dag_id}.{task.task_id}.{field_name} left a template: {text}"
                    leftovers += [f"{dag.dag_id}.{task.task_id}.{field_name}: {d} in {text!r}"
                                  for d in defaults if mentions(text, d)]  # fmt: skip
                    found |= {name for name in expected if name in text}
    assert rendered_tasks > 50
    assert not leftovers, "local default names left under another environment:\n" + "\n".join(leftovers)
    # Every configured name reaches some task, except those only the toolkit's own code or the
    # failure notifier resolves at run time (the failure topic) and the crawler-only JDBC connection,
    # and the marker queues, which the triggerer resolves (etl_toolkit.tasks.marker_events).
    run_time_only = {configured["topics"]["failure"], configured["topics"]["success"], *configured["queues"].values()}
    unreached = expected - found - run_time_only
    assert not unreached, f"names of the environment that no task renders: {sorted(unreached)}"


def test_glue_job_and_crawler_names_carry_the_environment_name(dagbag, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ENVIRONMENT", json.dumps(other_environment("dev")))
    glue_names = []
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            fields = rendered_fields(task, dag)
            if "job_name" in fields:
                glue_names.append(fields["job_name"])
            if isinstance(fields.get("config"), dict) and "Name" in fields["config"]:
                glue_names.append(fields["config"]["Name"])
    assert len(glue_names) >= 10
    assert all(name.startswith("dev-") for name in glue_names), glue_names


def test_glue_jobs_that_reach_a_database_run_through_the_network_connection(dagbag, monkeypatch):
    configured = other_environment()
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ENVIRONMENT", json.dumps(configured))
    network = configured["glue_connections"]["network"]
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            fields = rendered_fields(task, dag)
            job = fields.get("create_job_kwargs")
            if not job:
                continue
            reads_a_secret = any(key.endswith("secret_id") for key in fields["script_args"])
            connections = (job.get("Connections") or {}).get("Connections", [])
            assert (connections == [network]) == reads_a_secret, f"{dag.dag_id}.{task.task_id}: {connections}"
            # Nothing is installed from PyPI at job start: extra modules are wheels in S3.
            for module in filter(None, job["DefaultArguments"].get("--additional-python-modules", "").split(",")):
                assert module.startswith("s3://"), f"{dag.dag_id}.{task.task_id} installs {module} at start"


def test_a_broken_environment_fails_rendering_at_once_naming_the_key_and_the_variable(dagbag, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    broken = other_environment()
    del broken["buckets"]["orders_staging"]
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ENVIRONMENT", json.dumps(broken))
    dag = dagbag.dags["orders_pipeline"]
    with pytest.raises(AirflowFailException, match=r"Variable etl_environment: buckets\.orders_staging is missing"):
        rendered_fields(dag.get_task("landing_to_staging"), dag)

    monkeypatch.setenv("AIRFLOW_VAR_ETL_ENVIRONMENT", "{not json")
    with pytest.raises(AirflowFailException, match=r"Variable etl_environment is not valid JSON"):
        rendered_fields(dag.get_task("wait_for_marker"), dag)
