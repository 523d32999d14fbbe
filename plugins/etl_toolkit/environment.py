"""The deployed environment's names, resolved at run time from one Airflow Variable.

Bottom layer: no toolkit imports. Every name that differs between accounts or environments - the
buckets, SNS topics, Glue catalog databases and connections, Secrets Manager secrets, the Glue
role, and the prefix of the Glue job and crawler names - comes from the Variable ``etl_environment``
(a JSON object; on MWAA the secret ``airflow/variables/etl_environment`` that the CloudFormation
stack in ``deploy/`` writes). Without the Variable the local defaults apply (``LOCAL``, the names
of ``docs/interfaces.md``). A Variable that exists must be complete: a real account never falls
back to a local name by accident.

DAG files never read the Variable at parse time. They hold templates::

    LANDING_BUCKET = environment.bucket("orders_landing")   # "{{ etl.bucket('orders_landing') }}"

which the operators' templated fields render through the ``etl`` macro (``DAG_MACROS``, given to
every DAG), and which the toolkit's own tasks render with ``render()`` at run time. Both go through
``current()``, which reads the Variable each time (on MWAA through Airflow's secrets cache, which
the deployment turns on): a Variable changed between two runs is seen by the next one.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from etl_toolkit.task_cache import once_per_try

VARIABLE = "etl_environment"
LOCAL_NAME = "local"
ACCOUNT_ID = "123456789012"  # the local emulator's account

# The local defaults, and the shape every environment's Variable must have (each key required).
LOCAL: dict[str, Any] = {
    "name": LOCAL_NAME,
    "buckets": {
        "orders_landing": "fo-to-dw-orders-landing-area",
        "orders_staging": "fo-to-dw-orders-staging-area",
        "totesys_ingestion": "totesys-ingestion",
        "totesys_processed": "totesys-processed",
        "ecommerce_raw": "ecommerce-raw",
        "ecommerce_archive": "ecommerce-archive",
        "shipping_landing": "shipping-landing",
        "shipping_staging": "shipping-staging",
        "shipping_query_results": "shipping-query-results",
        "supplychain_landing": "supplychain-landing",
        "supplychain_lakehouse": "supplychain-lakehouse",
        "glue_artifacts": "etl-glue-artifacts",
    },
    # Names or ARNs: a name is looked up in the account the AWS connection reaches.
    "topics": {"success": "etl-success", "failure": "etl-failure"},
    "catalog_databases": {
        "etl": "etl_catalog",
        "shipping": "shipping-db",
        "supplychain_silver": "supplychain_silver",
        "supplychain_gold": "supplychain_gold",
    },
    "glue_connections": {
        # NETWORK: puts the Glue jobs that reach a database into its VPC (subnet, security group).
        "network": "etl-network",
        # JDBC: the crawler that catalogs the warehouse's tables.
        "warehouse_jdbc": "warehouse-jdbc",
    },
    "secrets": {"warehouse": "etl/warehouse", "totesys": "etl/totesys", "supplychain": "etl/supplychain"},
    # The SQS queues the event start mode reads: an EventBridge rule sends each marker-driven
    # pipeline's "Object Created" events under batch-completion/ to its queue (MARKER_QUEUES).
    "queues": {
        "orders_markers": "etl-orders-markers",
        "shipping_markers": "etl-shipping-markers",
        "ecommerce_markers": "etl-ecommerce-markers",
        "totesys_markers": "etl-totesys-markers",
        "supplychain_markers": "etl-supplychain-markers",
    },
    "glue_role_arn": f"arn:aws:iam::{ACCOUNT_ID}:role/etl-glue-job-role",
    # The warehouse's database name, as the JDBC crawler's paths name it (<database>/<schema>/<table>).
    "warehouse_database": "warehouse",
}
NAME_SECTIONS = ("buckets", "topics", "catalog_databases", "glue_connections", "secrets", "queues")
# Which landing bucket each marker queue hears from (queue key -> bucket key). Each queue has a
# dead-letter queue named "<queue>-dlq" beside it, and the rule that feeds it has the queue's name.
MARKER_QUEUES = {
    "orders_markers": "orders_landing",
    "shipping_markers": "shipping_landing",
    "ecommerce_markers": "ecommerce_raw",
    "totesys_markers": "totesys_ingestion",
    "supplychain_markers": "supplychain_landing",
}
DEAD_LETTER_SUFFIX = "-dlq"
_log = logging.getLogger(__name__)
_ENVIRONMENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


class ConfigError(AirflowFailException):
    """The environment's Variable is not valid JSON or breaks its shape: the same on every retry."""


@dataclass(frozen=True)
class Environment:
    name: str
    buckets: Mapping[str, str]
    topics: Mapping[str, str]
    catalog_databases: Mapping[str, str]
    glue_connections: Mapping[str, str]
    secrets: Mapping[str, str]
    queues: Mapping[str, str]
    glue_role_arn: str
    warehouse_database: str

    @property
    def glue_prefix(self) -> str:
        """What Glue job and crawler names start with: the environment's name, so that two
        environments can share an account; the local environment keeps the contract's names."""
        return "" if self.name == LOCAL_NAME else f"{self.name}-"

    def bucket(self, key: str) -> str:
        return _lookup(self.buckets, "buckets", key)

    def topic(self, key: str) -> str:
        return _lookup(self.topics, "topics", key)

    def catalog_database(self, key: str) -> str:
        return _lookup(self.catalog_databases, "catalog_databases", key)

    def glue_connection(self, key: str) -> str:
        return _lookup(self.glue_connections, "glue_connections", key)

    def secret(self, key: str) -> str:
        return _lookup(self.secrets, "secrets", key)

    def queue(self, key: str) -> str:
        return _lookup(self.queues, "queues", key)

    def glue_name(self, base: str) -> str:
        return f"{self.glue_prefix}{base}"

    def names(self) -> dict[str, dict[str, str]]:
        """Every resource name this environment resolves, by section (for checks and docs)."""
        return {section: dict(getattr(self, section)) for section in NAME_SECTIONS}


def _lookup(section: Mapping[str, Any], section_name: str, key: str) -> Any:
    try:
        return section[key]
    except KeyError:
        raise KeyError(f"{section_name}.{key} is not a name the environment defines: {sorted(section)}") from None


# -- reading and validating the Variable --------------------------------------------------------------


def parse(text: str | None, *, source: str = f"Airflow Variable {VARIABLE}") -> Environment:
    """The environment a Variable's text describes (None or empty: the local defaults).

    Raises ConfigError naming the Variable and the first missing or malformed key."""
    if text is None or not str(text).strip():
        return _build(LOCAL)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{source} is not valid JSON: {error}") from None
    return validate(data, source=source)


def validate(data: Any, *, source: str = f"Airflow Variable {VARIABLE}") -> Environment:
    def bad(key: str, reason: str) -> ConfigError:
        return ConfigError(f"{source}: {key} {reason}")

    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a JSON object, got {type(data).__name__}")
    known = set(LOCAL)
    for key in data:
        if key not in known:
            raise bad(key, f"is not a known key (known: {', '.join(sorted(known))})")
    if "name" not in data:
        raise bad("name", "is missing")
    if not isinstance(data["name"], str) or not _ENVIRONMENT_NAME.match(data["name"]):
        raise bad("name", f"must be 1-20 lower-case letters, digits or hyphens from a letter; got {data['name']!r}")
    for section in NAME_SECTIONS:
        if section not in data:
            raise bad(section, "is missing")
        given = data[section]
        if not isinstance(given, dict):
            raise bad(section, f"must be a JSON object, got {type(given).__name__}")
        for key in LOCAL[section]:
            if key not in given:
                raise bad(f"{section}.{key}", "is missing")
            if not isinstance(given[key], str) or not given[key].strip():
                raise bad(f"{section}.{key}", f"must be a non-empty string, got {given[key]!r}")
        for key in given:
            if key not in LOCAL[section]:
                raise bad(f"{section}.{key}", f"is not a known key (known: {', '.join(sorted(LOCAL[section]))})")
    if not isinstance(data.get("glue_role_arn"), str) or not data["glue_role_arn"].startswith("arn:"):
        raise bad("glue_role_arn", "is missing" if "glue_role_arn" not in data else "must be an IAM role ARN")
    if "warehouse_database" not in data:
        raise bad("warehouse_database", "is missing")
    if not isinstance(data["warehouse_database"], str) or not data["warehouse_database"].strip():
        raise bad("warehouse_database", f"must be a non-empty string, got {data['warehouse_database']!r}")
    return _build(data)


def _build(data: Mapping[str, Any]) -> Environment:
    # Read-only sections: one parsed environment is shared by every caller in the process.
    return Environment(
        name=data["name"],
        **{section: MappingProxyType(dict(data[section])) for section in NAME_SECTIONS},
        glue_role_arn=data["glue_role_arn"],
        warehouse_database=data["warehouse_database"],
    )


_parsed: dict[str | None, Environment] = {}


def current() -> Environment:
    """This run's environment: the Variable's, else the local defaults. Read when a task runs, once
    per try (``etl_toolkit.task_cache``): its templates and its code ask for it again and again."""
    from airflow.sdk import Variable

    text = once_per_try(VARIABLE, lambda: Variable.get(VARIABLE, default=None))
    if text not in _parsed:  # one parse per text per process: the Variable may change between runs
        _parsed[text] = parse(text)
    return _parsed[text]


def failure_topic() -> str:
    """The failure topic even when the Variable is broken or cannot be read, so that the error is
    still announced: the Variable's ``topics.failure`` if that much can be read, else Airflow's
    ``[etl] failure_topic`` (the deployment sets it), else the local default."""
    from airflow.sdk import Variable
    from airflow.sdk.configuration import conf

    try:
        return current().topic("failure")
    except Exception as error:  # a broken Variable, or the secrets backend failing
        _log.error("The environment's failure topic cannot be resolved (%s): using a fallback", error)
    try:
        topic = json.loads(Variable.get(VARIABLE, default=None) or "{}")["topics"]["failure"]
        if isinstance(topic, str) and topic.strip():
            return topic
    except Exception:
        pass
    # settings.CONFIG_SECTION (a module of the same layer, so not imported here)
    return conf.get("etl", "failure_topic", fallback=None) or LOCAL["topics"]["failure"]


# -- templates ------------------------------------------------------------------------------------


class _Macros:
    """The ``etl`` object templates call: each call resolves through ``current()``."""

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        return getattr(current(), method)

    @property
    def name(self) -> str:
        return current().name

    @property
    def glue_role_arn(self) -> str:
        return current().glue_role_arn

    @property
    def warehouse_database(self) -> str:
        return current().warehouse_database


MACRO = "etl"
DAG_MACROS = {MACRO: _Macros()}


def _template(method: str, section: str | None, key: str) -> str:
    if section is not None and key not in LOCAL[section]:
        raise KeyError(f"{section}.{key} is not a name the environment defines; it has {sorted(LOCAL[section])}")
    return f"{{{{ {MACRO}.{method}('{key}') }}}}"


def bucket(key: str) -> str:
    return _template("bucket", "buckets", key)


def topic(key: str) -> str:
    return _template("topic", "topics", key)


def catalog_database(key: str) -> str:
    return _template("catalog_database", "catalog_databases", key)


def glue_connection(key: str) -> str:
    return _template("glue_connection", "glue_connections", key)


def secret(key: str) -> str:
    return _template("secret", "secrets", key)


def glue_name(base: str) -> str:
    return _template("glue_name", None, base)


GLUE_ROLE_ARN = f"{{{{ {MACRO}.glue_role_arn }}}}"
WAREHOUSE_DATABASE = f"{{{{ {MACRO}.warehouse_database }}}}"
_TEMPLATE = re.compile(r"{{.*?}}")


def render(value: Any) -> Any:
    """A value holding the templates above, resolved for this run (what the task factories' own
    code calls on the names given to them); any other value as it is."""
    if isinstance(value, str) and _TEMPLATE.search(value):
        import jinja2

        return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(value).render(DAG_MACROS)
    if isinstance(value, dict):
        return {k: render(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v) for v in value] if isinstance(value, list) else tuple(render(v) for v in value)
    return value


def asset_uri(bucket_key: str, path: str = "") -> str:
    """An Asset's URI: assets are identities fixed when the DAG is parsed, so they name the local
    bucket (the same in every environment); the data itself is where the environment says."""
    return f"s3://{_lookup(LOCAL['buckets'], 'buckets', bucket_key)}/{path}"
