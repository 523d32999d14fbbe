"""``make stack``: the AWS emulator and the embedded PostgreSQL, provisioned and described in
``.local/stack.env`` for any shell, script or Airflow process to source.

The stack runs in the foreground until Ctrl-C (or SIGTERM); stopping it stops PostgreSQL and
removes ``stack.env``, so a stale file never points at a stack that is gone.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from devstack import resources

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS_FOLDER = REPO_ROOT / "plugins"
DEFAULT_STATE_DIR = REPO_ROOT / ".local"
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class StackOptions:
    state_dir: Path = DEFAULT_STATE_DIR
    aws_host: str = "127.0.0.1"
    aws_port: int = 5555
    pg_port: int = 5433
    warehouse_url: str | None = None  # any PostgreSQL instead of the embedded one
    totesys_url: str | None = None
    supplychain_url: str | None = None
    airflow_url: str | None = None  # Airflow metadata database; default: the stack's PostgreSQL
    migrate_airflow_db: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalStack:
    """Starts, provisions and stops the stack; usable as a context manager."""

    def __init__(self, options: StackOptions):
        self.options = options
        self.env_file = options.state_dir / "stack.env"
        self._postgres = None
        self._emulator = None
        self._lock = None

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> dict[str, str]:
        from devstack.emulator import Emulator

        opts = self.options
        opts.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_state_dir()
        self.env_file.unlink(missing_ok=True)
        urls = {
            "warehouse_db": opts.warehouse_url,
            "totesys_db": opts.totesys_url,
            "supplychain_db": opts.supplychain_url,
            "airflow": opts.airflow_url,
        }
        if not all(urls.values()):
            from devstack.warehouse import EmbeddedPostgres

            self._postgres = EmbeddedPostgres(opts.state_dir, opts.pg_port or free_port())
            self._postgres.start()
            embedded = {
                "warehouse_db": "warehouse",
                "totesys_db": "totesys",
                "supplychain_db": "supplychain",
                "airflow": "airflow",
            }
            for key, database in embedded.items():
                urls[key] = urls[key] or self._postgres.url(database).uri()

        self._emulator = Emulator(opts.aws_host, opts.aws_port)
        endpoint = self._emulator.start()

        import boto3

        session = boto3.Session(region_name=resources.REGION, **_boto_credentials())
        resources.provision(_EndpointSession(session, endpoint), urls)

        self.env = stack_environment(endpoint, urls, opts.state_dir) | opts.extra_env
        if opts.migrate_airflow_db:
            migrate_airflow_db(self.env)
        write_env_file(self.env_file, self.env)
        return self.env

    def stop(self) -> None:
        self.env_file.unlink(missing_ok=True)
        try:
            if self._emulator:
                self._emulator.stop()
        finally:  # PostgreSQL is stopped even if the emulator would not stop cleanly
            if self._postgres:
                self._postgres.stop()
            if self._lock:
                self._lock.close()  # releases the lock
                self._lock = None

    def _lock_state_dir(self) -> None:
        """One stack per state folder: a second one would stop the first one's PostgreSQL (which
        it takes for a server left behind by a killed stack) and overwrite its stack.env."""
        import fcntl

        lock = (self.options.state_dir / "stack.lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise RuntimeError(
                f"another stack (pid {holder}) is running with the state folder {self.options.state_dir}: "
                "stop it first (Ctrl-C where it runs), or give this one its own --state-dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._lock = lock


class _EndpointSession:
    """A boto3 session whose clients all reach the emulator."""

    def __init__(self, session, endpoint_url: str):
        self._session, self._endpoint = session, endpoint_url
        self.region_name = session.region_name

    def client(self, service: str):
        return self._session.client(service, endpoint_url=self._endpoint)


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID", DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"]),
        "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY", DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]),
    }


def stack_answers(env_file: Path) -> bool:
    """Whether the stack that wrote ``env_file`` is up: its emulator answers."""
    import urllib.request

    if not env_file.exists():
        return False
    try:
        endpoint = read_env_file(env_file)["AWS_ENDPOINT_URL"]
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
        return True
    except Exception:
        return False


def stack_environment(endpoint: str, urls: dict[str, str], state_dir: Path) -> dict[str, str]:
    """Everything a process needs to use the stack: AWS, the Airflow connections and config."""
    aws_conn = {
        "conn_type": "aws",
        "login": DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "password": DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "extra": {"region_name": resources.REGION, "endpoint_url": endpoint},
    }
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": resources.REGION,
        "AWS_REGION": resources.REGION,
        **DUMMY_CREDENTIALS,
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws_conn),
        "AIRFLOW_CONN_WAREHOUSE_DB": _postgres_conn_json(urls["warehouse_db"]),
        "AIRFLOW_CONN_TOTESYS_DB": _postgres_conn_json(urls["totesys_db"]),
        "AIRFLOW_CONN_SUPPLYCHAIN_DB": _postgres_conn_json(urls["supplychain_db"]),
        "AIRFLOW_HOME": str(state_dir / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": urls["airflow"].replace("postgresql://", "postgresql+psycopg2://", 1),
        "ETL_INCLUDE_DIR": str(REPO_ROOT / "include"),
    }
    return env


def _postgres_conn_json(url: str) -> str:
    parts = urlsplit(url)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": parts.hostname,
            "port": parts.port or 5432,
            "schema": parts.path.lstrip("/"),
            "login": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
        }
    )


def migrate_airflow_db(env: dict[str, str]) -> None:
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def write_env_file(path: Path, env: dict[str, str]) -> None:
    lines = ["# Written by the local stack (python -m devstack up); removed when it stops."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def run_foreground(options: StackOptions, exit_with_parent: bool = False) -> None:
    started = time.monotonic()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = LocalStack(options)
    try:
        env = stack.start()
        print(
            f"local stack ready in {time.monotonic() - started:.1f} s\n"
            f"  AWS emulator   {env['AWS_ENDPOINT_URL']}\n"
            f"  warehouse      {_redacted(env['AIRFLOW_CONN_WAREHOUSE_DB'])}\n"
            f"  environment    source {stack.env_file}\n"
            "Ctrl-C stops it.",
            flush=True,
        )
        parent = os.getppid()
        while not stop.wait(0.5):
            if exit_with_parent and os.getppid() != parent:
                break
    finally:
        stack.stop()
        print("local stack stopped", flush=True)


def _redacted(conn_json: str) -> str:
    conn = json.loads(conn_json)
    return f"postgresql://{conn['login']}:***@{conn['host']}:{conn['port']}/{conn['schema']}"
