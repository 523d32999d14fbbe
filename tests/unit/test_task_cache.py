"""What a task reads once per try: kept for the try that read it, read afresh by the next one, and
never kept outside a running task."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

from airflow.sdk.execution_time.context import set_current_context

from etl_toolkit import environment
from etl_toolkit.task_cache import once_per_try


def running(ti_id=None):
    """The context of a running task try, as the task runner sets it around rendering and execute."""
    return set_current_context({"ti": SimpleNamespace(id=ti_id or uuid.uuid4())})


def counting(values):
    reads = []

    def read():
        reads.append(1)
        return values[len(reads) - 1]

    return read, reads


def test_a_try_reads_a_value_once_and_the_next_try_reads_it_again():
    read, reads = counting(["first", "second"])
    with running():
        assert [once_per_try("thing", read) for _ in range(3)] == ["first"] * 3
    with running():  # a retry, a cleared task, the next task of a dag.test(): a new task instance id
        assert once_per_try("thing", read) == "second"
    assert len(reads) == 2


def test_none_is_kept_too():
    read, reads = counting([None, "late"])
    with running():
        assert once_per_try("unset", read) is None
        assert once_per_try("unset", read) is None
    assert len(reads) == 1


def test_nothing_is_kept_outside_a_running_task():
    read, reads = counting(["a", "b"])
    assert [once_per_try("thing", read), once_per_try("thing", read)] == ["a", "b"]


def test_the_environment_variable_is_read_once_per_try(monkeypatch):
    data = json.loads(json.dumps(environment.LOCAL))
    calls = []

    def variable_get(key, default=None):
        calls.append(key)
        return json.dumps({**data, "name": f"env{len(calls)}"})

    monkeypatch.setattr("airflow.sdk.Variable.get", variable_get)
    with running():
        assert {environment.current().name for _ in range(5)} == {"env1"}
    with running():
        assert environment.current().name == "env2"
    assert calls == [environment.VARIABLE, environment.VARIABLE]
