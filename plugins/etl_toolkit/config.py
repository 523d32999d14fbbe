"""Names every pipeline shares: connections, topics, the Glue defaults, DAG defaults.

Each value here is the local default from CONTRACTS.md; a real deployment overrides them
with Airflow Variables (read in templates or inside tasks, never at parse time) or
environment variables.
"""

from __future__ import annotations

import os
from datetime import timedelta

AWS_CONN_ID = "aws_default"
WAREHOUSE_CONN_ID = "warehouse_db"
TOTESYS_CONN_ID = "totesys_db"

# SNS topics (names or full ARNs), overridable with the Airflow Variables of the same name.
SUCCESS_TOPIC = "{{ var.value.get('etl_success_topic', 'etl-success') }}"
FAILURE_TOPIC = "{{ var.value.get('etl_failure_topic', 'etl-failure') }}"

# Glue: where GlueJobOperator uploads the scripts versioned beside the DAGs, and the
# role the jobs and crawlers assume. Both overridable with Airflow Variables.
GLUE_ARTIFACTS_BUCKET = "{{ var.value.get('glue_artifacts_bucket', 'etl-glue-artifacts') }}"
GLUE_ROLE_ARN = "{{ var.value.get('glue_role_arn', 'arn:aws:iam::123456789012:role/etl-glue-job-role') }}"
GLUE_VERSION = "5.0"
GLUE_CATALOG_DATABASE = "{{ var.value.get('glue_catalog_database', 'etl_catalog') }}"

# The Secrets Manager secret holding the warehouse credentials for the Glue jobs that load it.
WAREHOUSE_SECRET_ID = "{{ var.value.get('warehouse_secret_id', 'etl/warehouse') }}"

BATCH_MARKER_PREFIX = "batch-completion/"
BATCH_ID_PATTERN = r"[A-Za-z0-9_.-]{1,128}"

# How often a waiting run looks for a marker: the worst case of marker-to-start latency, for one
# S3 LIST per DAG per interval (a few cents a month).
MARKER_POKE_SECONDS = float(os.environ.get("ETL_MARKER_POKE_SECONDS", "10"))

DEFAULT_RETRIES = 2
# Environment-tunable so the test suite need not wait out production back-offs.
DEFAULT_RETRY_DELAY = timedelta(seconds=float(os.environ.get("ETL_RETRY_DELAY_SECONDS", "30")))


def default_args(pipeline: str, landing_bucket: str | None = None) -> dict:
    """Owner, retries and the failure notifier, for every task of a pipeline's DAG."""
    from etl_toolkit.notify import BatchFailureNotifier

    return {
        "owner": "data-engineering",
        "retries": DEFAULT_RETRIES,
        "retry_delay": DEFAULT_RETRY_DELAY,
        "on_failure_callback": [BatchFailureNotifier(pipeline=pipeline, landing_bucket=landing_bucket)],
    }


def batch_params() -> dict:
    """The trigger form of every marker-driven DAG: which batch, and whether to load it again."""
    from airflow.sdk import Param

    return {
        "batch_id": Param(
            None,
            type=["null", "string"],
            pattern=f"^{BATCH_ID_PATTERN}$",
            title="Batch id",
            description="Run this batch now (its marker may be pending or set aside). Empty: wait for the next marker.",
        ),
        "reprocess": Param(
            False,
            type="boolean",
            title="Reprocess",
            description="Load the batch again even if it already loaded (the result is the same warehouse state).",
        ),
    }
