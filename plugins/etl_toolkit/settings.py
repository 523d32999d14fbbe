"""Settings every pipeline shares: connection ids, Glue and retry defaults, tuning knobs.

The bottom layer of the toolkit: it imports nothing of the toolkit. Names that differ between
environments (buckets, topics, the Glue role ...) are not here: they live in ``environment``,
resolved at run time. The knobs read at parse time come from Airflow's own configuration, section
``[etl]`` (``AIRFLOW__ETL__<KEY>`` in the environment; on MWAA the environment's Airflow
configuration options ``etl.<key>``), so every Airflow component of an environment sees the same.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk.configuration import conf

AWS_CONN_ID = "aws_default"
WAREHOUSE_CONN_ID = "warehouse_db"
TOTESYS_CONN_ID = "totesys_db"
SUPPLYCHAIN_CONN_ID = "supplychain_db"

CONFIG_SECTION = "etl"
# Every option of the section (what the DAGs and the toolkit read); a typo'd option is not found.
CONFIG_OPTIONS = (
    "glue_poll_seconds",
    "marker_poke_seconds",
    "retry_delay_seconds",
    "totesys_ingest_schedule",
    "failure_topic",  # where a failure goes when the environment's Variable cannot be read
    "start_mode",  # how every marker-driven pipeline starts: sensor (default) or event
    # one pipeline's
    *(f"{pipeline}_start_mode" for pipeline in ("orders", "shipping", "ecommerce", "totesys", "supplychain")),
    "marker_sweep_minutes",
)


def knob(key: str, default: float) -> float:
    """A number from ``[etl] <key>``, else ``default``; a value that is not a number fails the import
    with the option's name, not later with a bare ValueError."""
    if key not in CONFIG_OPTIONS:
        raise KeyError(f"[{CONFIG_SECTION}] {key} is not one of the project's options {CONFIG_OPTIONS}")
    text = conf.get(CONFIG_SECTION, key, fallback=None)
    if text is None or not str(text).strip():
        return default
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"Airflow configuration [{CONFIG_SECTION}] {key} must be a number, got {text!r}") from None


GLUE_VERSION = "5.0"
# How often to poll Glue: AWS runs take minutes, so seconds don't matter there; the local stack
# sets it lower so that tests and the demo don't wait on the poll.
GLUE_POLL_SECONDS = knob("glue_poll_seconds", 6)

# How often a waiting run looks for a marker: the worst case of marker-to-start latency, for one
# S3 LIST per DAG per interval (a few cents a month).
MARKER_POKE_SECONDS = knob("marker_poke_seconds", 10)

# How a marker-driven pipeline's runs start (``[etl] start_mode``, or ``[etl] <pipeline>_start_mode``
# for one pipeline; read when the DAG is parsed):
# - sensor: each run waits for the next marker with a deferrable S3 sensor that lists the landing
#   prefix every MARKER_POKE_SECONDS (the schedule is @continuous);
# - event: the DAG is scheduled on the marker's S3 event (EventBridge -> SQS -> an AssetWatcher,
#   see etl_toolkit.tasks.marker_events), and a sweep every MARKER_SWEEP_MINUTES claims any pending
#   marker whose event was lost.
START_MODES = ("sensor", "event")


def start_mode(pipeline: str) -> str:
    text = conf.get(CONFIG_SECTION, f"{pipeline}_start_mode", fallback=None) or conf.get(
        CONFIG_SECTION, "start_mode", fallback=None
    )
    mode = (text or "sensor").strip().lower()
    if mode not in START_MODES:
        raise ValueError(f"Airflow configuration [{CONFIG_SECTION}] start_mode for {pipeline} must be one of "
                         f"{START_MODES}, got {text!r}")  # fmt: skip
    return mode


MARKER_SWEEP_MINUTES = knob("marker_sweep_minutes", 15)
# SQS long polling: a receive returns as soon as a message arrives, or after this long (SQS's maximum).
MARKER_QUEUE_WAIT_SECONDS = 20
# How long a received marker event stays invisible: longer than the triggerer's shared-stream ack
# timeout (300 s by default), so that a message cannot come back while the asset event made from it
# is still on its way to the database; no longer, so that one a dead triggerer held comes back soon.
MARKER_QUEUE_VISIBILITY_SECONDS = int(conf.getfloat("triggerer", "shared_stream_ack_timeout", fallback=300.0)) + 30

# How many times a batch is claimed without finishing (its runs died, or its failure could not be
# recorded) before it is set aside as failed so that the batches behind it can run.
MAX_ATTEMPTS = 3

DEFAULT_RETRIES = 2
# Tunable so the test suite need not wait out production back-offs.
DEFAULT_RETRY_DELAY = timedelta(seconds=knob("retry_delay_seconds", 30))
