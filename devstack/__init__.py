"""The local stack: an AWS emulator, the databases, Airflow, the demo and the MWAA bundle.

The stack provisions the names of the toolkit's local environment (``etl_toolkit.environment``),
so the toolkit's package folder is made importable here for the commands run from the repository
(``python -m devstack``) and in the compose stack's ``aws`` service.
"""

import sys
from pathlib import Path

_PLUGINS = str(Path(__file__).resolve().parents[1] / "plugins")
if _PLUGINS not in sys.path:
    sys.path.append(_PLUGINS)
