"""Names every pipeline shares: connections, topics, the Glue defaults, DAG defaults.

Each value here is the local default from CONTRACTS.md; a real deployment overrides them
with Airflow Variables (read in templates or inside tasks, never at parse time) or
environment variables.
"""

from __future__ import annotations

from datetime import timedelta

AWS_CONN_ID = "aws_default"
WAREHOUSE_CONN_ID = "warehouse_db"
TOTESYS_CONN_ID = "totesys_db"

# SNS topics (names or full ARNs), overridable with the Airflow Variables of the same name.
SUCCESS_TOPIC_VARIABLE = "etl_success_topic"
FAILURE_TOPIC_VARIABLE = "etl_failure_topic"
DEFAULT_SUCCESS_TOPIC = "etl-success"
DEFAULT_FAILURE_TOPIC = "etl-failure"

# Glue: where GlueJobOperator uploads the scripts versioned beside the DAGs, and the
# role the jobs and crawlers assume. Both overridable with Airflow Variables.
GLUE_ARTIFACTS_BUCKET = "{{ var.value.get('glue_artifacts_bucket', 'etl-glue-artifacts') }}"
GLUE_ROLE_ARN = (
    "{{ var.value.get('glue_role_arn', 'arn:aws:iam::123456789012:role/etl-glue-job-role') }}"
)
GLUE_VERSION = "5.0"
GLUE_CATALOG_DATABASE = "{{ var.value.get('glue_catalog_database', 'etl_catalog') }}"

# The Secrets Manager secret holding the warehouse credentials for the Glue jobs that load it.
WAREHOUSE_SECRET_ID = "{{ var.value.get('warehouse_secret_id', 'etl/warehouse') }}"

BATCH_MARKER_PREFIX = "batch-completion/"
BATCH_ID_PATTERN = r"[A-Za-z0-9_.-]{1,128}"

DEFAULT_RETRIES = 2
DEFAULT_RETRY_DELAY = timedelta(seconds=30)
