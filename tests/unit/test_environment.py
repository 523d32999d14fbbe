"""The environment's Variable: validated with errors that name the key, local defaults without it."""

from __future__ import annotations

import copy
import json

import pytest

from etl_toolkit import environment
from etl_toolkit.environment import ConfigError


def complete(name: str = "prod") -> dict:
    data = copy.deepcopy(environment.LOCAL)
    data["name"] = name
    return data


def test_without_the_variable_the_local_defaults_apply(monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_ETL_ENVIRONMENT", raising=False)
    env = environment.current()
    assert env.name == "local" and env.glue_prefix == ""
    assert env.bucket("orders_landing") == environment.LOCAL["buckets"]["orders_landing"]
    assert env.glue_name("orders_audit_landing") == "orders_audit_landing"


def test_the_variable_is_read_when_a_task_runs_and_names_carry_the_environment(monkeypatch):
    data = complete("dev")
    data["buckets"]["orders_landing"] = "dev-orders-landing"
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ENVIRONMENT", json.dumps(data))
    env = environment.current()
    assert env.bucket("orders_landing") == "dev-orders-landing"
    assert env.glue_name("orders_audit_landing") == "dev-orders_audit_landing"
    assert environment.render(f"s3://{environment.bucket('orders_landing')}/orders/") == "s3://dev-orders-landing/orders/"
    assert environment.render({"a": [environment.glue_name("x")]}) == {"a": ["dev-x"]}
    assert environment.render("plain") == "plain"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("name"), "name is missing"),
        (lambda d: d.update(name="Prod_1"), "name must be"),
        (lambda d: d.pop("topics"), "topics is missing"),
        (lambda d: d["buckets"].pop("shipping_staging"), "buckets.shipping_staging is missing"),
        (lambda d: d["buckets"].update(shipping_staging=""), "buckets.shipping_staging must be a non-empty string"),
        (lambda d: d["secrets"].update(warehouse=7), "secrets.warehouse must be a non-empty string, got 7"),
        (lambda d: d["buckets"].update(orders_landng="x"), "buckets.orders_landng is not a known key"),
        (lambda d: d.update(bucket={}), "bucket is not a known key"),
        (lambda d: d.update(glue_role_arn="etl-glue-job-role"), "glue_role_arn must be an IAM role ARN"),
        (lambda d: d.update(catalog_databases=[]), "catalog_databases must be a JSON object, got list"),
    ],
)
def test_a_malformed_variable_is_refused_naming_the_variable_and_the_key(mutate, message):
    data = complete()
    mutate(data)
    with pytest.raises(ConfigError, match="^Airflow Variable etl_environment: ") as raised:
        environment.parse(json.dumps(data))
    assert message in str(raised.value)


@pytest.mark.parametrize(("text", "message"), [("{not json", "is not valid JSON"), ("[1]", "must be a JSON object")])
def test_a_variable_that_is_not_a_json_object_is_refused(text, message):
    with pytest.raises(ConfigError, match=f"Airflow Variable etl_environment {message}"):
        environment.parse(text)


def test_a_configuration_error_still_finds_a_failure_topic(monkeypatch):
    data = complete()
    data["topics"]["failure"] = "arn:aws:sns:eu-west-1:1:prod-failure"
    del data["buckets"]["orders_landing"]
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ENVIRONMENT", json.dumps(data))
    assert environment.failure_topic() == "arn:aws:sns:eu-west-1:1:prod-failure"
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ENVIRONMENT", "{not json")
    assert environment.failure_topic() == environment.LOCAL["topics"]["failure"]


def test_a_template_for_a_name_the_environment_does_not_define_fails_when_the_dag_is_parsed():
    with pytest.raises(KeyError, match="buckets.orders_landng is not a name"):
        environment.bucket("orders_landng")
    assert environment.bucket("orders_landing") == "{{ etl.bucket('orders_landing') }}"


def test_a_variable_that_cannot_be_read_falls_back_to_the_configured_failure_topic(monkeypatch):
    """Neither the Variable nor its topics can be read (not JSON, or the secrets backend failing):
    the failure goes to Airflow's [etl] failure_topic, which the deployment sets."""
    monkeypatch.setenv("AIRFLOW_VAR_ETL_ENVIRONMENT", "{not json")
    monkeypatch.setenv("AIRFLOW__ETL__FAILURE_TOPIC", "arn:aws:sns:eu-west-1:1:prod-etl-failure")
    assert environment.failure_topic() == "arn:aws:sns:eu-west-1:1:prod-etl-failure"

    def unreachable(*args, **kwargs):
        raise RuntimeError("Secrets Manager: ThrottlingException")

    monkeypatch.setattr("airflow.sdk.Variable.get", unreachable)
    assert environment.failure_topic() == "arn:aws:sns:eu-west-1:1:prod-etl-failure"


def test_the_parsed_environment_is_read_only():
    env = environment.parse(json.dumps(complete()))
    with pytest.raises(TypeError):
        env.buckets["orders_landing"] = "elsewhere"
