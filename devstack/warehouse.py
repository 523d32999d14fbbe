"""The embedded PostgreSQL 16 server that stands in for the warehouse (and the totesys source).

The binaries come from the ``pgserver`` wheel, so nothing is installed by hand. pgserver's own
``get_server()`` listens on a Unix socket only and trusts every local user; the stack needs what
RDS gives: a TCP port on loopback and passwords that are checked. So this module drives the same
binaries itself: ``initdb`` with scram-sha-256 for host connections, ``pg_ctl start`` listening on
127.0.0.1 only, one role with its own generated password per database. Data and passwords live in
the state folder (``.local/postgres`` by default); as root, PostgreSQL runs as the ``pgserver``
system user that pgserver creates.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

# One role per database, so each connection has credentials of its own to leak or not.
DATABASE_ROLES = {
    "warehouse": "etl_warehouse",
    "totesys": "totesys_app",
    "supplychain": "supplychain_app",
    "airflow": "airflow",
}


@dataclass(frozen=True)
class DatabaseUrl:
    host: str
    port: int
    database: str
    user: str
    password: str

    def uri(self, scheme: str = "postgresql") -> str:
        return f"{scheme}://{quote(self.user)}:{quote(self.password, safe='')}@{self.host}:{self.port}/{self.database}"


class EmbeddedPostgres:
    def __init__(self, state_dir: Path, port: int):
        self.root = state_dir / "postgres"
        self.data = self.root / "data"
        self.port = port
        self._passwords_file = self.root / "passwords.json"
        self._run_as = None
        if os.geteuid() == 0:
            from pgserver.utils import ensure_user_exists

            self._run_as = "pgserver"
            ensure_user_exists(self._run_as)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._run_as:  # the server writes its log beside the data folder
            shutil.chown(self.root, self._run_as, self._run_as)
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self._pg_ctl("stop", "-m", "fast", check=False)  # a server left behind by a killed stack
        self._pg_ctl("start", "-w", "-t", "30", "-l", str(self.root / "server.log"), "-o", f"-p {self.port}")
        self._ensure_databases()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "fast", "-w", check=False)

    def url(self, database: str) -> DatabaseUrl:
        role = DATABASE_ROLES[database]
        return DatabaseUrl("127.0.0.1", self.port, database, role, self._passwords()[role])

    # -- internals ---------------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        from pgserver._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _as_server_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self._run_as, "--", *argv] if self._run_as else argv

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = self._as_server_user([self._bin("pg_ctl"), "-D", str(self.data), *args])
        result = subprocess.run(argv, capture_output=True, text=True)
        if check and result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl {args[0]} failed: {result.stderr.strip()}\n{tail}")
        return result

    def _passwords(self) -> dict[str, str]:
        passwords = json.loads(self._passwords_file.read_text()) if self._passwords_file.exists() else {}
        missing = [role for role in ["postgres", *DATABASE_ROLES.values()] if role not in passwords]
        if not missing:
            return passwords
        # A state folder from before a role was added keeps its passwords and gains the new role's.
        passwords |= {role: secrets.token_urlsafe(18) for role in missing}
        self._passwords_file.write_text(json.dumps(passwords))
        self._passwords_file.chmod(0o600)
        return passwords

    def _initdb(self) -> None:
        if self.data.exists():
            shutil.rmtree(self.data)
        self.data.mkdir(parents=True)
        pwfile = self.root / "initdb.pw"
        pwfile.write_text(self._passwords()["postgres"])
        if self._run_as:
            from pgserver._commands import POSTGRES_BIN_PATH
            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions

            ensure_prefix_permissions(self.data)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            shutil.chown(self.data, self._run_as, self._run_as)
            shutil.chown(pwfile, self._run_as, self._run_as)
        try:
            argv = [
                self._bin("initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                "--auth-local=reject", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
            ]  # fmt: skip
            subprocess.run(self._as_server_user(argv), check=True, capture_output=True, text=True)
        finally:
            pwfile.unlink()
        with (self.data / "postgresql.conf").open("a") as conf:
            # Loopback TCP only (no Unix socket whose path length depends on the checkout).
            # A development database: durability across a power cut is not worth the fsyncs.
            conf.write(
                "\nlisten_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )

    def _ensure_databases(self) -> None:
        import psycopg2
        from psycopg2 import sql

        admin = DatabaseUrl("127.0.0.1", self.port, "postgres", "postgres", self._passwords()["postgres"])
        deadline = time.monotonic() + 15
        while True:
            try:
                conn = psycopg2.connect(admin.uri())
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        conn.autocommit = True
        passwords = self._passwords()
        with conn.cursor() as cur:
            for database, role in DATABASE_ROLES.items():
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if not cur.fetchone():
                    cur.execute(
                        sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)),
                        (passwords[role],),
                    )
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if not cur.fetchone():
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role))
                    )
        conn.close()
