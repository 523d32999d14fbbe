"""Settings every pipeline shares: connection ids, Variable names, Glue and retry defaults.

The bottom layer of the toolkit: it imports nothing of the toolkit. Each value is the local
default; a real deployment overrides the names with Airflow Variables (read in templates or
inside tasks, never at parse time) and the tuning knobs with environment variables.
"""

from __future__ import annotations

import os
from datetime import timedelta

AWS_CONN_ID = "aws_default"
WAREHOUSE_CONN_ID = "warehouse_db"
TOTESYS_CONN_ID = "totesys_db"

# SNS topics (names or full ARNs), overridable with the Airflow Variables of the same name.
SUCCESS_TOPIC_VARIABLE, SUCCESS_TOPIC_DEFAULT = "etl_success_topic", "etl-success"
FAILURE_TOPIC_VARIABLE, FAILURE_TOPIC_DEFAULT = "etl_failure_topic", "etl-failure"
FAILURE_TOPIC = f"{{{{ var.value.get('{FAILURE_TOPIC_VARIABLE}', '{FAILURE_TOPIC_DEFAULT}') }}}}"

# Glue: where GlueJobOperator uploads the scripts versioned beside the DAGs, and the
# role the jobs and crawlers assume. Both overridable with Airflow Variables.
GLUE_ARTIFACTS_BUCKET = "{{ var.value.get('glue_artifacts_bucket', 'etl-glue-artifacts') }}"
GLUE_ROLE_ARN = "{{ var.value.get('glue_role_arn', 'arn:aws:iam::123456789012:role/etl-glue-job-role') }}"
GLUE_VERSION = "5.0"
GLUE_CATALOG_DATABASE = "{{ var.value.get('glue_catalog_database', 'etl_catalog') }}"
# How often to poll Glue: AWS runs take minutes, so seconds don't matter there; the local stack
# sets it lower so that tests and the demo don't wait on the poll.
GLUE_POLL_SECONDS = float(os.environ.get("ETL_GLUE_POLL_SECONDS", "6"))

# The Secrets Manager secret holding the warehouse credentials for the Glue jobs that load it.
WAREHOUSE_SECRET_ID = "{{ var.value.get('warehouse_secret_id', 'etl/warehouse') }}"

# How often a waiting run looks for a marker: the worst case of marker-to-start latency, for one
# S3 LIST per DAG per interval (a few cents a month).
MARKER_POKE_SECONDS = float(os.environ.get("ETL_MARKER_POKE_SECONDS", "10"))

# How many times a batch is claimed without finishing (its runs died, or its failure could not be
# recorded) before it is set aside as failed so that the batches behind it can run.
MAX_ATTEMPTS = 3

DEFAULT_RETRIES = 2
# Environment-tunable so the test suite need not wait out production back-offs.
DEFAULT_RETRY_DELAY = timedelta(seconds=float(os.environ.get("ETL_RETRY_DELAY_SECONDS", "30")))
