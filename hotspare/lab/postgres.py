"""A private PostgreSQL server for tests and the lab's control site, started and stopped by PID.

PostgreSQL refuses to run as root, so the cluster folder belongs to the ``postgres`` account
(Debian's package creates it) and the server runs under it through ``setpriv``, which execs
(the PID we record is the postmaster's own). Nothing listens on a Unix socket; TCP only, on
the address given (loopback for tests, the control site's lab address in the lab). Clients log
in as the superuser ``hotspare`` with a random password (scram-sha-256), carried in the URL
handed to clients through the environment, never on a command line.

    server = PostgresServer(Path("/var/tmp/x/pg"), "127.0.0.1", free_port())
    server.start()                      # initdb on first use, then the postmaster
    server.create_database("inventory")
    os.environ["HOTSPARE_DB_URL"] = server.url("inventory")
    server.stop()
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from hotspare.lab.errors import LabError
from hotspare.lab.processes import Daemon, is_running, run, start_daemon, stop_daemon

log = logging.getLogger("hotspare.lab")

BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "hotspare"
ACCOUNT = "postgres"
START_SECONDS = 60.0


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now at ``address``."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One cluster in ``directory`` (``data/``, ``password``, ``postgres.log``), served on
    ``address:port``, optionally inside a network namespace."""

    def __init__(self, directory: Path, address: str, port: int, netns: str | None = None) -> None:
        self.directory = Path(directory).absolute()
        self.address = address
        self.port = port
        self.netns = netns
        self.daemon: Daemon | None = None
        self._process: subprocess.Popen | None = None

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    @property
    def password(self) -> str:
        return (self.directory / "password").read_text().strip()

    def url(self, database: str, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of ``database`` (``psycopg`` for hotspare, ``asyncpg`` for Prefect)."""
        return f"postgresql+{driver}://{SUPERUSER}:{self.password}@{self.address}:{self.port}/{database}"

    def start(self) -> Daemon:
        """initdb on first use, then run the postmaster and wait until it accepts logins."""
        _require_binaries()
        account = pwd.getpwnam(ACCOUNT)
        if not (self.data / "PG_VERSION").exists():
            self._initdb(account)
        argv = [
            str(BIN / "postgres"),
            "-D",
            str(self.data),
            "-h",
            self.address,
            "-p",
            str(self.port),
            "-c",
            "unix_socket_directories=",
            "-c",
            "timezone=UTC",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
            "-c",
            "listen_addresses=" + self.address,
        ]
        launch = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups", "--"] + argv
        if self.netns:
            launch = ["ip", "netns", "exec", self.netns] + launch
        self.log_path.touch()
        os.chown(self.log_path, account.pw_uid, account.pw_gid)
        self.daemon, self._process = start_daemon("postgres", launch, argv, self.log_path)
        self._wait_ready()
        return self.daemon

    def stop(self) -> str:
        """Stop the postmaster by its PID (SIGTERM: smart shutdown, then SIGKILL)."""
        if self.daemon is None:
            return "postgres was not started here"
        sentence = stop_daemon(self.daemon, self._process)
        self.daemon = None
        return sentence

    def create_database(self, name: str) -> None:
        """Create ``name`` unless it exists (idempotent)."""
        import psycopg

        with psycopg.connect(self._dsn("postgres"), autocommit=True, connect_timeout=10) as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{name}"')

    def set_password(self, password: str) -> None:
        """A new password for the superuser (a cluster copied from a template gets its own)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._dsn("postgres"), autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(SUPERUSER), sql.Literal(password)))
        path = self.directory / "password"
        path.unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(password + "\n")

    def _dsn(self, database: str) -> str:
        return f"host={self.address} port={self.port} user={SUPERUSER} password={self.password} dbname={database}"

    def role_url(self, role: str, password: str, database: str, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of ``database`` for one of the roles ``apply_roles`` made."""
        return f"postgresql+{driver}://{role}:{password}@{self.address}:{self.port}/{database}"

    def apply_roles(self, migrate_inventory) -> dict[str, str]:
        """Users per role (``planning/database_roles.py``) with fresh random passwords, returned
        as {role: password}. ``migrate_inventory(url)`` creates the inventory's tables as the
        control user (their owner) before the grants on them are made. Idempotent."""
        import psycopg
        from psycopg import sql

        from hotspare.planning import database_roles as plan

        passwords = {role: secrets.token_urlsafe(24) for role in plan.ROLES}
        with psycopg.connect(self._dsn("postgres"), autocommit=True, connect_timeout=10) as connection:
            existing = {row[0] for row in connection.execute("SELECT rolname FROM pg_roles")}
            for statement in plan.cluster_statements(existing):
                connection.execute(statement)
            for role, password in passwords.items():
                connection.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
        with psycopg.connect(self._dsn(plan.PREFECT_DATABASE), autocommit=True, connect_timeout=10) as connection:
            tables = [
                row[0]
                for row in connection.execute(
                    "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r','p','v','m')"
                )
            ]
            # sequences that belong to a table follow it; only free-standing ones are altered alone
            sequences = [
                row[0]
                for row in connection.execute(
                    "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'S' "
                    "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))"
                )
            ]
            with connection.transaction():
                for statement in plan.prefect_statements(tables, sequences):
                    connection.execute(statement)
        with psycopg.connect(self._dsn(plan.INVENTORY_DATABASE), autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(plan.CONTROL)))
        migrate_inventory(self.role_url(plan.CONTROL, passwords[plan.CONTROL], plan.INVENTORY_DATABASE))
        with psycopg.connect(self._dsn(plan.INVENTORY_DATABASE), autocommit=True, connect_timeout=10) as connection:
            tables = [row[0] for row in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            with connection.transaction():
                # the grants are made by the tables' owner, so they are the ones ALTER DEFAULT matches
                connection.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(plan.CONTROL)))
                for statement in plan.inventory_statements(tables):
                    connection.execute(statement)
        return passwords

    def _initdb(self, account: pwd.struct_passwd) -> None:
        """A fresh cluster owned by the postgres account, with a random superuser password."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o711)  # the postgres account passes through; only root lists it
        shutil.rmtree(self.data, ignore_errors=True)
        password_file = self.directory / "password"
        password_file.unlink(missing_ok=True)
        descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(24) + "\n")
        os.chown(password_file, account.pw_uid, account.pw_gid)  # initdb reads it as postgres
        self.data.mkdir(mode=0o700)
        os.chown(self.data, account.pw_uid, account.pw_gid)
        run(
            [
                "setpriv",
                f"--reuid={account.pw_uid}",
                f"--regid={account.pw_gid}",
                "--init-groups",
                "--",
                str(BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(password_file),
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            f"initdb in {self.data}",
            timeout=120,
        )
        os.chown(password_file, 0, 0)
        # Clients come from the lab's subnet and loopback; pg_hba's defaults cover loopback only.
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write("host all all 10.211.0.0/16 scram-sha-256\n")

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_SECONDS
        last_error = ""
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            try:
                with psycopg.connect(self._dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as error:
                last_error = str(error).strip()
            time.sleep(0.1)
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        raise LabError(
            f"PostgreSQL on {self.address}:{self.port} did not accept logins within "
            f"{START_SECONDS:g} s ({last_error}); its log ends:\n{tail}"
        )

    def running(self) -> bool:
        return self.daemon is not None and is_running(self.daemon)


def _require_binaries() -> None:
    if not (BIN / "postgres").exists():
        raise LabError(
            f"PostgreSQL 15 is not installed ({BIN}/postgres missing): apt-get install postgresql (bash scripts/setup.sh does)"
        )
    try:
        pwd.getpwnam(ACCOUNT)
    except KeyError as error:
        raise LabError(f"no {ACCOUNT!r} account on this machine: apt-get install postgresql creates it") from error
