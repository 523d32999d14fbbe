"""``make airflow``: the local stack plus Airflow 3.3 as real processes, in the foreground.

One command starts, on this machine only (everything listens on 127.0.0.1):

- the local stack of ``make stack`` (``devstack.stack.LocalStack``, in this process): the AWS
  emulator, the embedded PostgreSQL with the ``airflow`` metadata database (migrated on start),
  ``<state-dir>/stack.env``;
- ``airflow api-server`` (UI, REST API and the execution API the task processes call),
  ``airflow scheduler`` (LocalExecutor), ``airflow dag-processor`` and ``airflow triggerer``, each in
  a process group of its own, logging to ``<state-dir>/airflow/logs/<process>.log``.

The UI has no login: the simple auth manager with everyone admin, for a local machine only. DAGs
stay paused at creation (Airflow's default): unpause one in the UI to let it run.

Ctrl-C (SIGINT) or SIGTERM stops the Airflow processes (with every task process and Glue job run
they started), then the stack, and checks that nothing is left running.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devstack.airflow_config import LOCAL_GLUE_POLL_SECONDS, local_airflow_config
from devstack.stack import DEFAULT_STATE_DIR, PLUGINS_FOLDER, REPO_ROOT, LocalStack, StackOptions, stack_answers

# Started in two waves: the UI and the DAG parsing first (on two cores, four processes importing
# Airflow at once would delay the UI by half a minute), then, once the API server answers, the
# processes whose task and trigger runners call its execution API. Stopped the other way round,
# the API server last: task processes that are shutting down still report to it.
FIRST_WAVE = ("api-server", "dag-processor")
SECOND_WAVE = ("scheduler", "triggerer")
PROCESSES = FIRST_WAVE + SECOND_WAVE
STOP_ORDER = ("scheduler", "triggerer", "dag-processor")  # together, then the API server
# Started again when they die (a killed triggerer's triggers move to the new one); any other
# process that dies stops everything.
RESTARTED = ("triggerer",)
MAX_RESTARTS = 5
FORKSERVER_PRELOAD = "etl_toolkit.preload"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
STARTUP_TIMEOUT = 180  # seconds from the stack being ready to the API server answering
STOP_TIMEOUT = 20  # seconds each step of the shutdown waits before it kills


@dataclass
class AirflowOptions:
    state_dir: Path = DEFAULT_STATE_DIR
    port: int = 8080
    aws_port: int = 5555
    pg_port: int = 5433
    exit_with_parent: bool = False


def airflow_settings(port: int) -> dict[str, str]:
    """What every Airflow process of ``make airflow`` shares, on top of the stack's stack.env."""
    base_url = f"http://127.0.0.1:{port}"
    return {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # No login, everyone admin: a local, loopback-only UI.
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,  # the log_url in failure notifications
        "AIRFLOW__API__WORKERS": "1",
        # Task processes report to the API server's execution API, with JWTs the scheduler signs:
        # every process gets the same secret. Fresh for each start: tokens are short-lived anyway.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),  # HS512 wants 64 bytes or more
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        # LocalExecutor forks this many workers up front; one laptop needs no 32 (the default).
        "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "8"),
        # A task process is forked from a LocalExecutor worker, and the workers from a forkserver
        # that imported Great Expectations (seconds) and the libraries the toolkit uses (half a
        # second) once: every task starts with them loaded (etl_toolkit/preload.py).
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD": FORKSERVER_PRELOAD,
        # Airflow puts the plugins folder on sys.path itself, but the forkserver does not inherit
        # that sys.path (and skips a preload module it cannot import, silently).
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS_FOLDER), os.environ.get("PYTHONPATH")])),
        # An idle scheduler looks for work (a new asset event, a finished task) every tenth of a
        # second instead of every second: each step of a run starts that much sooner, for a few
        # more metadata queries a second.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.1",
        # Glue polled often, one parsed copy of the AWS models per process (devstack/airflow_config.py).
        **local_airflow_config(),
        "AIRFLOW__ETL__GLUE_POLL_SECONDS": os.environ.get("AIRFLOW__ETL__GLUE_POLL_SECONDS", LOCAL_GLUE_POLL_SECONDS),
    }


def _caching_bytecode(env: dict[str, str], cache_dir: Path) -> dict[str, str]:
    """``env`` with Python's bytecode cache on, in ``cache_dir``: every task process imports the
    toolkit and its DAG file again, and compiling them from source each time (where the shell sets
    PYTHONDONTWRITEBYTECODE) cost a task a few hundred milliseconds. Outside the source tree, so the
    checkout stays clean."""
    env = {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(cache_dir)}


def _command(process: str) -> list[str]:
    argv = [sys.executable, "-m", "airflow", process]
    if process in ("scheduler", "triggerer"):
        # Their log servers would listen on every interface; all logs are local files here, which
        # the API server reads directly.
        argv.append("--skip-serve-logs")
    return argv


class AirflowProcesses:
    """The four Airflow processes, each the leader of its own process group."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.children: dict[str, subprocess.Popen] = {}
        self._seen: dict[int, object] = {}  # pid -> psutil.Process, every descendant ever seen

    def start(self, names: tuple[str, ...]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            with (self.log_dir / f"{name}.log").open("ab") as log:
                log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(_command(name))}\n".encode())
                log.flush()
                self.children[name] = subprocess.Popen(
                    _command(name),
                    cwd=REPO_ROOT,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: Ctrl-C reaches us, and we stop it
                )

    def dead(self) -> str | None:
        """The first process that exited, if any."""
        for name, child in self.children.items():
            if child.poll() is not None:
                return name
        return None

    def log_tail(self, name: str, size: int = 3000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def remember_descendants(self) -> None:
        """Note every process below ours now: a task process whose supervisor dies is reparented
        to init and could not be found through the tree any more."""
        import psutil

        for child in self.children.values():
            try:
                parent = psutil.Process(child.pid)
                for process in [parent, *parent.children(recursive=True)]:
                    self._seen.setdefault(process.pid, process)
            except psutil.NoSuchProcess:
                continue

    def stop(self) -> list[str]:
        """Stop every process group (children first), then anything left; returns survivors."""
        self.remember_descendants()
        for group in (STOP_ORDER, ("api-server",)):
            group = [name for name in group if name in self.children]
            for name in group:
                _signal_group(self.children[name], signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            for name in group:
                child = self.children[name]
                while child.poll() is None and time.monotonic() < deadline:
                    self.remember_descendants()
                    time.sleep(0.2)
                if child.poll() is None:
                    print(f"  {name} did not stop in {STOP_TIMEOUT} s: killing it", flush=True)
                _signal_group(child, signal.SIGKILL)  # whatever is left of its group
                child.wait()
        return self._kill_survivors()

    def _kill_survivors(self) -> list[str]:
        import psutil

        alive = [p for p in self._seen.values() if _running(p)]
        for process in alive:
            _signal_pgid(process, signal.SIGTERM)
        _, alive = psutil.wait_procs(alive, timeout=5)
        for process in alive:
            _signal_pgid(process, signal.SIGKILL)
        _, alive = psutil.wait_procs(alive, timeout=5)
        return [_describe(p) for p in alive if _running(p)]


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(child.pid, sig)  # start_new_session: the group id is the leader's pid
    except (ProcessLookupError, PermissionError):
        pass


def _signal_pgid(process, sig: int) -> None:
    """Signal a process and its process group, unless that group is ours (a Glue job run of the
    in-process emulator is in it, and so may be `make`)."""
    import psutil

    try:
        process.send_signal(sig)
        group = os.getpgid(process.pid)
        if group != os.getpgrp():
            os.killpg(group, sig)
    except (psutil.Error, ProcessLookupError, PermissionError):
        pass


def _running(process) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:120]}"
    except Exception:
        return str(process.pid)


def _own_descendants() -> list:
    """Processes below this one (Glue job runs of the in-process emulator, pg_ctl, ...)."""
    import psutil

    return psutil.Process().children(recursive=True)


# -- the API ----------------------------------------------------------------------------------


def api_get(base_url: str, path: str, timeout: float = 5) -> dict:
    """GET a JSON resource; with all-admins, the API needs no token."""
    with urllib.request.urlopen(f"{base_url}{path}", timeout=timeout) as response:
        return json.loads(response.read())


def _api_answers(base_url: str) -> bool:
    try:
        api_get(base_url, "/api/v2/monitor/health", timeout=3)
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the servers do: connections of a previous run in TIME_WAIT do not make the port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# -- the foreground command -------------------------------------------------------------------


class _Interrupted(Exception):
    pass


def _interrupt(signum, _frame):
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the stop has begun: a second Ctrl-C must not cut it short
    raise _Interrupted(signal.Signals(signum).name)


def run_foreground(options: AirflowOptions) -> int:
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:5.1f} s] {text}", flush=True)

    state_dir = options.state_dir
    if stack_answers(state_dir / "stack.env"):
        print(
            f"a local stack is already running from {state_dir} (make stack?): stop it first, "
            "or pass --state-dir; make airflow starts the stack itself.",
            file=sys.stderr,
        )
        return 2
    if options.port and not _port_is_free(options.port):
        print(f"port {options.port} on 127.0.0.1 is in use: pass --port", file=sys.stderr)
        return 2
    port = options.port or _free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = airflow_settings(port)
    log_dir = state_dir / "airflow" / "logs"

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    parent = os.getppid()
    stack = LocalStack(
        StackOptions(
            state_dir=state_dir,
            aws_port=options.aws_port,
            pg_port=options.pg_port,
            # stack.env then describes this Airflow too: `source` it to use the airflow CLI on it.
            extra_env=settings,
        )
    )
    airflow: AirflowProcesses | None = None
    status = 0
    try:
        say("starting the local stack: PostgreSQL, AWS emulator, airflow db migrate ...")
        env = stack.start()
        say(f"stack ready (AWS emulator {env['AWS_ENDPOINT_URL']}); starting {' and '.join(FIRST_WAVE)}")
        say(f"process logs: {log_dir}/<process>.log")
        airflow = AirflowProcesses(_caching_bytecode({**os.environ, **env}, state_dir / "pycache"), log_dir)
        airflow.start(FIRST_WAVE)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        next_progress = time.monotonic() + 5
        while not _api_answers(base_url):
            if options.exit_with_parent and os.getppid() != parent:
                raise RuntimeError("the parent process is gone")
            if (name := airflow.dead()) is not None:
                raise RuntimeError(f"{name} exited while starting; its log:\n{airflow.log_tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the API server did not answer in {STARTUP_TIMEOUT} s; its log:\n{airflow.log_tail('api-server')}"
                )
            if time.monotonic() >= next_progress:
                say(f"waiting for the API server on {base_url} ...")
                next_progress += 5
            time.sleep(0.5)
        say(
            f"Airflow UI ready: {base_url} (no login: simple auth manager, everyone admin, local only). "
            "Ctrl-C stops everything."
        )
        say(f"starting {' and '.join(SECOND_WAVE)}")
        airflow.start(SECOND_WAVE)
        _supervise(airflow, base_url, say, parent if options.exit_with_parent else None)
    except _Interrupted as signal_name:
        say(f"{signal_name}: stopping")
    except RuntimeError as error:
        say(f"failed: {error}")
        status = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        status = _stop_everything(airflow, stack, say) or status
    return status


def _supervise(airflow: AirflowProcesses, base_url: str, say, parent: int | None) -> None:
    """Until a signal: report the DAGs once parsed, watch the processes and the parent."""
    reported_dags = reported_health = False
    next_check = time.monotonic()
    give_up_at = next_check + 120  # then list whatever has been parsed
    restarts = 0
    while True:
        if (name := airflow.dead()) is not None:
            code = airflow.children[name].returncode
            if name in RESTARTED and restarts < MAX_RESTARTS:
                # As MWAA restarts a failed container: the triggers it ran go to the new one.
                restarts += 1
                say(f"{name} exited (code {code}): starting it again ({restarts} of {MAX_RESTARTS} restarts)")
                airflow.start((name,))
                continue
            raise RuntimeError(f"{name} exited (code {code}); its log:\n{airflow.log_tail(name)}")
        if parent is not None and os.getppid() != parent:
            say("the parent process is gone: stopping")
            return
        if time.monotonic() >= next_check and not (reported_dags and reported_health):
            next_check = time.monotonic() + 2
            try:
                if not reported_health:
                    health = api_get(base_url, "/api/v2/monitor/health")
                    states = {part: (info or {}).get("status") for part, info in health.items()}
                    if all(state == "healthy" for state in states.values()):
                        say("scheduler, triggerer, DAG processor and metadata database healthy")
                        reported_health = True
                if not reported_dags:
                    reported_dags = _report_dags(base_url, say, give_up_at)
            except (urllib.error.URLError, OSError, ValueError):
                pass
        airflow.remember_descendants()
        time.sleep(0.5)


def _report_dags(base_url: str, say, give_up_at: float) -> bool:
    """Once every DAG file has been parsed (or after a while, whatever is there): the DAGs and
    any import errors. Returns whether it reported."""
    dags = api_get(base_url, "/api/v2/dags?limit=100&order_by=dag_id")["dags"]
    errors = api_get(base_url, "/api/v2/importErrors?limit=100")["import_errors"]
    parsed = {d["relative_fileloc"] for d in dags} | {_relative(e["filename"]) for e in errors}
    if not _dag_files() <= parsed and time.monotonic() < give_up_at:
        return False
    listed = ", ".join(f"{d['dag_id']} ({'paused' if d['is_paused'] else 'active'})" for d in dags)
    say(f"DAGs: {listed or 'none'}")
    for error in errors:
        say(f"IMPORT ERROR in {error['filename']}:\n{error['stack_trace']}")
    if not errors:
        say("no import errors")
    if any(d["is_paused"] for d in dags):
        say("paused DAGs run nothing: unpause them with the toggle in the UI")
    return True


def _relative(filename: str) -> str:
    path = Path(filename)
    return str(path.relative_to(REPO_ROOT / "dags")) if path.is_relative_to(REPO_ROOT / "dags") else filename


def _dag_files() -> set[str]:
    """The files the DAG processor parses: Python files that mention both "airflow" and "dag"."""
    folder = REPO_ROOT / "dags"
    return {
        str(path.relative_to(folder))
        for path in folder.rglob("*.py")
        if all(word in path.read_bytes().lower() for word in (b"airflow", b"dag"))
    }


def _stop_everything(airflow: AirflowProcesses | None, stack: LocalStack, say) -> int:
    survivors: list[str] = []
    if airflow is not None:
        say(f"stopping {', '.join(name for name in (*STOP_ORDER, 'api-server') if name in airflow.children)} ...")
        survivors += airflow.stop()
    say("stopping the local stack ...")
    try:
        stack.stop()
    except Exception as error:  # a stack interrupted half-way through starting
        say(f"stopping the stack: {type(error).__name__}: {error}")
        if stack._postgres is not None:  # stop() gave up before PostgreSQL, which outlives us
            stack._postgres.stop()
    # Glue job runs (children of the in-process emulator) that were still running.
    import psutil

    leftovers = _own_descendants()
    for process in leftovers:
        _signal_pgid(process, signal.SIGTERM)
    _, leftovers = psutil.wait_procs(leftovers, timeout=5)
    for process in leftovers:
        _signal_pgid(process, signal.SIGKILL)
    survivors += [_describe(p) for p in leftovers if _running(p)]
    if survivors:
        say("still running after the stop (kill them by hand):\n  " + "\n  ".join(survivors))
        return 1
    say("stopped: nothing left running")
    return 0


def _free_port() -> int:
    from devstack.stack import free_port

    return free_port()
