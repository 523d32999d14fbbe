"""Airflow settings that every way of running Airflow on the local stack shares: ``make airflow``,
the compose stack, ``make demo``, the tests and the benchmarks. Nothing here imports Airflow, so a
caller can put these in the environment before Airflow reads its configuration.
"""

from __future__ import annotations

# How often Glue job runs and crawlers are polled: a local run takes a second or two, a crawl a few
# milliseconds and a poll of the emulator a few milliseconds, so a task should not wait long after
# its job ended. 0.1 s rather than 0.25 s: 0.2-0.3 s less of Glue operators per orders batch in
# paired benchmark runs, for three emulator calls a poll (the state and two log streams).
# (MWAA's default is the toolkit's: [etl] glue_poll_seconds.)
LOCAL_GLUE_POLL_SECONDS = "0.1"

# The Amazon provider's session factory, here as on MWAA: every AWS client of a process on one
# parsed copy of the service models (etl_toolkit/aws_session.py).
AWS_SESSION_FACTORY = "etl_toolkit.aws_session.SharedLoaderSessionFactory"


def local_airflow_config() -> dict[str, str]:
    """The settings above as environment variables."""
    return {
        "AIRFLOW__ETL__GLUE_POLL_SECONDS": LOCAL_GLUE_POLL_SECONDS,
        "AIRFLOW__AWS__SESSION_FACTORY": AWS_SESSION_FACTORY,
    }
