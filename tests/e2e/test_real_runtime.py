"""The orders pipeline on a real Airflow: ``python -m devstack airflow`` (what ``make airflow`` runs).

Unlike ``dag.test()``, this is the runtime MWAA gives: an API server, a scheduler with the
LocalExecutor, a DAG processor and a triggerer as separate processes, the ``@continuous``
schedule, the sensor deferred in the triggerer while no marker exists, task processes that talk
to the execution API and publish their own failure notifications. The tests drive it the way a
person does, through the REST API and the UI, and read the SNS messages back from the stack's
inbox queues.

One Airflow serves the whole module (it takes most of a minute to start), so the tests build on
each other, in file order: the good batch's run is the one the trigger test reprocesses and the
UI test looks at. The runtime and its clients are ``tests/e2e/airflow_runtime.py``'s.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import socket
import time
from datetime import UTC, datetime

import pytest

from devstack.sample_data.orders import write_marker, write_orders_batch
from etl_toolkit.settings import MARKER_POKE_SECONDS
from tests.e2e.airflow_runtime import (
    DAG_ID,
    REPO,
    SENSOR_TIMEOUT,
    Runtime,
    _at,
    finished,
    message,
    started_runtime,
    trigger_polling,
    wait_for,
    waiting_run,
)

pytestmark = pytest.mark.e2e

SCREENSHOT = REPO / ".local" / "ui-orders-grid.png"
LANDING = "fo-to-dw-orders-landing-area"
GOOD_BATCH = "rt-good"
BAD_BATCH = "rt-bad"
CLEARED_BATCH = "rt-cleared"

POKE = MARKER_POKE_SECONDS

# What the tests pass on to each other (the module shares one Airflow).
shared: dict[str, str] = {}


# -- the runtime ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime(request):
    if importlib.util.find_spec("aiobotocore") is None:
        pytest.fail(
            "aiobotocore is not installed, so the triggerer cannot run the deferred S3KeySensor's trigger: "
            "install apache-airflow-providers-amazon[aiobotocore]"
        )
    with started_runtime(request) as runtime:
        yield runtime


def key_exists(runtime: Runtime, key: str) -> bool:
    return "Contents" in runtime.aws("s3").list_objects_v2(Bucket=LANDING, Prefix=key)


def test_every_pipeline_is_listed_without_import_errors(runtime):
    from airflow.dag_processing.dagbag import DagBag

    expected = set(DagBag(dag_folder=str(REPO / "dags")).dag_ids)
    assert DAG_ID in expected

    def listed():
        dag_ids = {dag["dag_id"] for dag in runtime.get("/dags", limit=100)["dags"]}
        return dag_ids if expected <= dag_ids else None

    assert wait_for(f"the DAG processor to list {sorted(expected)}", listed, 120, runtime) == expected
    assert runtime.get("/importErrors")["import_errors"] == []
    assert runtime.get(f"/dags/{DAG_ID}")["is_paused"], "DAGs stay paused at creation (Airflow's default)"


def test_a_batch_dropped_while_the_sensor_waits_loads_and_reports_success(runtime, capsys):
    runtime.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    run_id = waiting_run(runtime, after=set())
    trigger_polling(runtime, run_id)

    marker = write_orders_batch(
        runtime.aws("s3"), LANDING, GOOD_BATCH, orders=200, seed=31, started_at=datetime(2024, 6, 3, 8, tzinfo=UTC)
    )
    marker_written = datetime.now(UTC)  # the marker is the last object write_orders_batch puts

    run = finished(runtime, run_id)
    tis = runtime.task_instances(run_id)
    assert run["state"] == "success", runtime.diagnostics(run_id)
    assert {task: ti["state"] for task, ti in tis.items() if ti["state"] != "success"} == {}

    success = message(runtime, "etl-success-inbox", f"SUCCESS orders {GOOD_BATCH}", run_id)
    assert success["counts"]["landing"] == marker["expected_counts"]
    assert success["counts"]["final"] == {"order_lines": marker["expected_counts"]["order_lines"]}
    assert key_exists(runtime, f"batch-archive/loaded/{GOOD_BATCH}.json")

    to_claim = (_at(tis["claim_batch"]["start_date"]) - marker_written).total_seconds()
    to_glue = (_at(tis["audit_landing"]["start_date"]) - marker_written).total_seconds()
    to_end = (_at(run["end_date"]) - marker_written).total_seconds()
    with capsys.disabled():
        print(
            f"\n[real runtime] marker -> claim_batch start {to_claim:.1f} s; marker -> audit_landing "
            f"(first Glue job) start {to_glue:.1f} s; marker -> run success {to_end:.1f} s "
            f"(the marker landed just after the deferred sensor's S3 check: poke_interval {POKE:.0f} s, the worst case)"
        )
    assert 0 < to_claim < to_glue
    shared["good_run"] = run_id


def test_a_marker_that_is_not_json_fails_and_its_task_process_publishes_the_failure(runtime):
    run_id = waiting_run(runtime, after={shared.get("good_run", "")})

    write_marker(runtime.aws("s3"), LANDING, BAD_BATCH, "{nope")

    run = finished(runtime, run_id)
    tis = runtime.task_instances(run_id)
    assert run["state"] == "failed", runtime.diagnostics(run_id)
    assert tis["claim_batch"]["state"] == "failed"
    assert tis["landing_to_staging"]["state"] == "upstream_failed"

    failure = message(runtime, "etl-failure-inbox", f"FAILURE orders {BAD_BATCH}", run_id)
    assert failure["task_id"] == "claim_batch"
    assert f"batch-completion/{BAD_BATCH}.json" in failure["error"] and "not valid JSON" in failure["error"]
    assert failure["log_url"].startswith(f"{runtime.base_url}/dags/{DAG_ID}/runs/")
    # Set aside by the notifier, so the marker never blocks the batches behind it.
    assert key_exists(runtime, f"batch-archive/failed/{BAD_BATCH}.json")
    assert not key_exists(runtime, f"batch-completion/{BAD_BATCH}.json")
    shared["bad_run"] = run_id


def test_the_trigger_form_validates_params_and_reprocesses_a_loaded_batch(runtime, capsys):
    good_run = shared.get("good_run") or pytest.skip("needs the good batch's run")
    form = {"Referer": f"{runtime.base_url}/dags/{DAG_ID}"}  # what the UI sends: triggered_by=ui
    runs_before = {run["dag_run_id"] for run in runtime.runs()}

    # An invalid batch id: the API refuses it (param validation), and no run is created.
    rejected = runtime.api(
        "POST",
        f"/dags/{DAG_ID}/dagRuns",
        expect=None,
        headers=form,
        json={"logical_date": datetime.now(UTC).isoformat(), "conf": {"batch_id": "bad id!", "reprocess": False}},
    )
    assert rejected.status_code == 400, rejected.text
    assert "batch_id" in rejected.json()["detail"] and "does not match" in rejected.json()["detail"]
    assert {run["dag_run_id"] for run in runtime.runs()} == runs_before

    # Airflow 3's trigger body requires logical_date (null is allowed); the form sends "now".
    waiting = waiting_run(runtime, after={good_run, shared.get("bad_run", "")})
    triggered = runtime.api(
        "POST",
        f"/dags/{DAG_ID}/dagRuns",
        headers=form,
        json={"logical_date": datetime.now(UTC).isoformat(), "conf": {"batch_id": GOOD_BATCH, "reprocess": True}},
    ).json()
    run_id = triggered["dag_run_id"]
    assert triggered["conf"] == {"batch_id": GOOD_BATCH, "reprocess": True}
    assert triggered["triggered_by"] == "ui"
    # A continuous DAG has one active run at a time, so the triggered run queues behind the run that
    # waits for a marker. The waiting sensor's trigger sees the queued run at its next poke and ends
    # the wait: that run ends with its sensor skipped, and the triggered run starts.
    assert triggered["state"] == "queued"
    triggered_at = datetime.now(UTC)
    made_way = finished(runtime, waiting, timeout=SENSOR_TIMEOUT)
    assert made_way["state"] == "success", runtime.diagnostics(waiting)
    waiting_tis = runtime.task_instances(waiting)
    assert waiting_tis["wait_for_marker"]["state"] == "skipped"
    assert {ti["state"] for task, ti in waiting_tis.items() if task != "wait_for_marker"} == {"skipped"}

    run = finished(runtime, run_id)
    tis = runtime.task_instances(run_id)
    assert run["state"] == "success", runtime.diagnostics(run_id)
    assert tis["wait_for_marker"]["state"] == "success"  # a run for a given batch does not wait
    queued_for = (_at(run["start_date"]) - triggered_at).total_seconds()
    with capsys.disabled():
        print(f"\n[real runtime] a triggered run queued {queued_for:.1f} s behind the waiting run (poke {POKE:.0f} s)")
    assert tis["load_final_table"]["state"] == "success"  # reprocess: loaded again, not a no-op
    success = message(runtime, "etl-success-inbox", f"SUCCESS orders {GOOD_BATCH}", run_id)
    assert "note" not in success
    assert success["counts"]["final"]["order_lines"] > 0


def test_clearing_a_failed_runs_failed_tasks_loads_its_batch(runtime):
    """The warehouse password is rotated behind the pipeline's back: the load job fails, the batch
    is set aside. Once the secret is right again, "Clear" on the failed tasks (what the UI's Clear
    button sends) resumes the same run, which finds the marker in the failed archive and loads."""
    secrets = runtime.aws("secretsmanager")
    good = secrets.get_secret_value(SecretId="etl/warehouse")["SecretString"]
    finished_runs = {run["dag_run_id"] for run in runtime.runs() if run["state"] != "running"}
    run_id = waiting_run(runtime, after=finished_runs)
    secrets.put_secret_value(SecretId="etl/warehouse", SecretString=json.dumps({**json.loads(good), "password": "x"}))
    try:
        marker = write_orders_batch(runtime.aws("s3"), LANDING, CLEARED_BATCH, orders=100, seed=33,
                                    started_at=datetime(2024, 6, 5, 8, tzinfo=UTC))  # fmt: skip
        run = finished(runtime, run_id)
        assert run["state"] == "failed", runtime.diagnostics(run_id)
        assert runtime.task_instances(run_id)["staging_to_warehouse_staging"]["state"] == "failed"
        failure = message(runtime, "etl-failure-inbox", f"FAILURE orders {CLEARED_BATCH}", run_id)
        assert "password authentication failed" in failure["error"]
        assert key_exists(runtime, f"batch-archive/failed/{CLEARED_BATCH}.json")
    finally:
        secrets.put_secret_value(SecretId="etl/warehouse", SecretString=good)

    runtime.api("POST", f"/dags/{DAG_ID}/clearTaskInstances",
                json={"dry_run": False, "dag_run_id": run_id, "only_failed": True})  # fmt: skip
    wait_for("the cleared run to start again", lambda: runtime.run(run_id)["state"] != "failed",
             SENSOR_TIMEOUT, runtime, run_id)  # fmt: skip
    run = finished(runtime, run_id)

    assert run["state"] == "success", runtime.diagnostics(run_id)
    success = message(runtime, "etl-success-inbox", f"SUCCESS orders {CLEARED_BATCH}", run_id)
    assert success["counts"]["final"] == {"order_lines": marker["expected_counts"]["order_lines"]}
    assert key_exists(runtime, f"batch-archive/loaded/{CLEARED_BATCH}.json")
    assert not key_exists(runtime, f"batch-archive/failed/{CLEARED_BATCH}.json")


def test_the_ui_grid_shows_the_pipeline_and_its_successful_run(runtime, tmp_path):
    good_run = shared.get("good_run") or pytest.skip("needs the good batch's run")
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("chromium not installed: run `apt-get install chromium chromium-driver`, as .ci/run does")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1600,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):  # fmt: skip
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(driver_path))  # no Selenium Manager download
    try:
        browser.set_page_load_timeout(120)
        browser.get(f"{runtime.base_url}/dags/{DAG_ID}")
        wait = WebDriverWait(browser, 120, poll_frequency=0.5)
        # The grid: one column per run (data-run-id), one cell per task instance.
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f'[data-run-id="{good_run}"]')))
        last_cell = f'[data-testid="grid-{good_run}-notify_success"] [data-testid="task-state-badge"]'
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, last_cell)))
        wait.until(lambda b: "Latest Run" in b.find_element(By.TAG_NAME, "body").text)
        assert DAG_ID in browser.find_element(By.TAG_NAME, "body").text
        _save_when_rendered(browser)

        # The run's own page (a click on its bar in the grid) says it succeeded.
        browser.find_element(By.CSS_SELECTOR, f'[data-run-id="{good_run}"] a').click()
        wait.until(lambda b: good_run in b.find_element(By.TAG_NAME, "body").text)
        wait.until(lambda b: "Success" in b.find_element(By.TAG_NAME, "body").text)
        assert f"/dags/{DAG_ID}/runs/" in browser.current_url
    finally:
        browser.quit()
    # The README's picture (docs/ui-orders-grid.png) is a copy of this file, refreshed by hand: a
    # test run leaves the work tree as it found it.


def _save_when_rendered(browser, timeout: float = 15) -> None:
    """Screenshot once two consecutive frames are identical (charts and the grid animate in)."""
    deadline = time.monotonic() + timeout
    previous = browser.get_screenshot_as_png()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = browser.get_screenshot_as_png()
        if current == previous:
            break
        previous = current
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(previous)


def test_ctrl_c_stops_every_process_it_started(runtime):
    import psutil

    supervisor = psutil.Process(runtime.process.pid)
    started = [supervisor, *supervisor.children(recursive=True)]
    postmaster = runtime.state_dir / "postgres" / "data" / "postmaster.pid"
    postgres = psutil.Process(int(postmaster.read_text().split()[0]))
    assert len(started) >= 5, [p.cmdline() for p in started]  # the four Airflow processes and their workers

    assert runtime.stop(signal.SIGINT) == 0, runtime.diagnostics()

    output = runtime.output.read_text()
    assert "SIGINT: stopping" in output and "stopped: nothing left running" in output, output[-3000:]
    still_running = [p for p in [*started, postgres] if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert still_running == [], [p.cmdline() for p in still_running]
    assert not postmaster.exists()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", runtime.port)) != 0, "the API server still listens"
