"""A PostgreSQL server for the test session, and the option to run the suite's inventory on it.

``HOTSPARE_TEST_DB=postgresql`` (what ``scripts/test.sh`` sets unless told otherwise; plain
``pytest`` keeps SQLite) runs every test that uses the default inventory (``HOTSPARE_DB_URL``
unset by the test) against a PostgreSQL the session starts
itself: initdb in a temporary folder, the postmaster on a free loopback port, stopped by its
PID when the session ends. ``tests/test_inventory_postgres.py`` uses the same server in every
run, so both databases are tested in every CI run.

Loaded as a pytest plugin from ``conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_server = None  # the session's PostgresServer, started on first use


def session_postgres():
    """The session's PostgreSQL server (started on first use); skips without root or PostgreSQL."""
    global _server
    if _server is None:
        from hotspare.lab.postgres import BIN, PostgresServer, free_port

        if os.geteuid() != 0:
            pytest.skip("the test PostgreSQL runs under the postgres account: needs root")
        if not (BIN / "postgres").exists():
            pytest.skip(f"PostgreSQL 15 is not installed ({BIN})")
        # Not under HOTSPARE_HOME: that folder is 0700 root, and the postgres account must pass.
        server = PostgresServer(Path(tempfile.mkdtemp(prefix="hotspare-test-pg.")), "127.0.0.1", free_port())
        server.start()
        _server = server
    return _server


def fresh_database(name: str) -> str:
    """Drop and create ``name`` on the session server; return its hotspare (psycopg) URL."""
    import psycopg

    server = session_postgres()
    with psycopg.connect(server._dsn("postgres"), autocommit=True, connect_timeout=10) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


def pytest_configure(config) -> None:
    """With ``HOTSPARE_TEST_DB=postgresql``, the session inventory lives on PostgreSQL."""
    choice = os.environ.get("HOTSPARE_TEST_DB", "sqlite").lower()
    if choice in ("", "sqlite"):
        return
    if choice not in ("postgresql", "postgres"):
        raise pytest.UsageError(f"HOTSPARE_TEST_DB={choice!r}: use sqlite or postgresql")
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # the xdist controller runs no test: each worker process starts its own server
    os.environ["HOTSPARE_DB_URL"] = fresh_database("session_inventory")


def pytest_unconfigure(config) -> None:
    """Stop the session's PostgreSQL by its PID and remove its folder."""
    global _server
    if _server is not None:
        _server.stop()
        shutil.rmtree(_server.directory, ignore_errors=True)
        _server = None
