"""The task processes of ``make airflow`` and of the compose stack start with the heavy libraries imported.

The scheduler's LocalExecutor forks its workers from a forkserver, and the forkserver imports the
``[core] mp_forkserver_preload`` modules once. A preload module the forkserver cannot import is
skipped without a word, so these tests start a forkserver exactly as the scheduler does (Airflow's
own ``set_component_mp_start_method``, under the environment ``make airflow`` gives it) and look
at what a process forked from it has loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from devstack.airflow import FORKSERVER_PRELOAD, PLUGINS_FOLDER, airflow_settings

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, multiprocessing, sys
from airflow.utils.process_utils import set_component_mp_start_method

def loaded(queue):
    import sys
    modules = sorted(m for m in ("etl_toolkit.preload", "etl_toolkit.pipeline", "great_expectations",
                                 "airflow.providers.amazon.aws.operators.glue") if m in sys.modules)
    preload, sessions = sys.modules.get("etl_toolkit.preload"), sys.modules.get("etl_toolkit.aws_session")
    parsed = sorted({key[1] for key in sessions.shared_loader()._cache if key[0] == "load_service_model"}
                    ) if sessions else []
    queue.put({"modules": modules, "parsed_models": parsed,
               "services": sorted(preload.AWS_SERVICES) if preload else None})

if __name__ == "__main__":
    set_component_mp_start_method("scheduler")
    queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=loaded, args=(queue,))
    child.start()
    print(json.dumps({"method": multiprocessing.get_start_method(), "loaded": queue.get(timeout=120)}))
    child.join()
"""


def test_a_process_forked_by_the_schedulers_forkserver_has_the_heavy_libraries_and_models_but_not_the_toolkit(
    tmp_path,
):
    settings = airflow_settings(port=8080)
    names = ("AIRFLOW__SCHEDULER__MP_START_METHOD", "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD", "PYTHONPATH")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update({name: settings[name] for name in names}, AIRFLOW_HOME=str(tmp_path))
    # From a folder where nothing of the project is importable by accident, as the scheduler's
    # forkserver runs: the plugins folder must come from the settings.
    (tmp_path / "probe.py").write_text(PROBE)  # a file: the forked child finds ``loaded`` in it
    answer = subprocess.run(
        [sys.executable, "probe.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert answer.returncode == 0, answer.stderr[-3000:]
    probe = json.loads(answer.stdout.strip().splitlines()[-1])
    # The toolkit itself is imported by each task from disk, so that an edit needs no restart.
    assert probe["method"] == "forkserver"
    assert probe["loaded"]["modules"] == [
        "airflow.providers.amazon.aws.operators.glue", "etl_toolkit.preload", "great_expectations",
    ]  # fmt: skip
    # The AWS service models its clients need are parsed already, in the loader its sessions share.
    assert probe["loaded"]["parsed_models"] == probe["loaded"]["services"]


def test_the_compose_stack_preloads_the_same_module_with_the_plugins_folder_it_mounts_on_the_path():
    scheduler = yaml.safe_load((REPO / "docker-compose.yaml").read_text())["services"]["airflow-scheduler"]
    env = scheduler["environment"]
    assert env["AIRFLOW__SCHEDULER__MP_START_METHOD"] == "forkserver"
    assert env["AIRFLOW__CORE__MP_FORKSERVER_PRELOAD"] == FORKSERVER_PRELOAD
    plugins_mount = next(v.split(":")[1] for v in scheduler["volumes"] if v.startswith(f"./{PLUGINS_FOLDER.name}:"))
    assert env["PYTHONPATH"].split(os.pathsep)[0] == plugins_mount
