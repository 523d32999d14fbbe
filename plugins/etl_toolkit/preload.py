"""What a task process of the local runtime finds imported when it starts.

``make airflow`` and the compose stack run the LocalExecutor with ``mp_start_method = forkserver``
and ``[core] mp_forkserver_preload = etl_toolkit.preload``: the forkserver imports this module
once, the executor's workers fork from it, and every task process forks from a worker. A task
then starts with Great Expectations (seconds to import) and the toolkit its DAG file uses
(about half a second) already loaded, instead of paying both on every try of every task.

Like any plugin code, a change here or in the toolkit reaches the task processes when the
scheduler restarts. Nothing in this module may start a thread or open a connection: both would
be copied, half-alive, into every fork.
"""

from __future__ import annotations

import great_expectations  # noqa: F401  (the schema checks)

from etl_toolkit import pipeline  # noqa: F401  (what every DAG file imports)
from etl_toolkit.tasks import archive, athena, audit, glue, producing, quality, warehouse  # noqa: F401
