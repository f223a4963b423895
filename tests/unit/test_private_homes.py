"""Private homes without the lab: a new home and its databases are created private, a loose one is
tightened with a log sentence, Prefect's database keeps its mode (the lab's keys and the session
home are tests/test_local_secrets.py)."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from test_local_secrets import home, mode, sqlite_files  # home: a HOTSPARE_HOME of its own (fixture)

from hotspare.cli import main
from hotspare.local_secrets import prefect_database, private_home

EXAMPLE = Path(__file__).parents[1] / "data" / "fleet-basic.yaml"


def test_a_new_home_is_created_private_with_private_databases(home, caplog):
    caplog.set_level(logging.WARNING, logger="hotspare")
    assert main(["fleet", "load", str(EXAMPLE)]) == 0
    assert mode(home) == 0o700
    assert mode(home / "prefect") == 0o700
    assert mode(home / "inventory.db") == 0o600
    assert mode(home / "prefect" / "prefect.db") == 0o600  # made before any Prefect server opens it
    assert "tightened" not in caplog.text  # created right, nothing to tighten


def test_a_loose_home_is_tightened_on_use_with_a_log_sentence(home, caplog):
    (home / "prefect").mkdir(parents=True)
    for folder in (home, home / "prefect"):
        folder.chmod(0o755)
    for database in (home / "inventory.db", home / "prefect" / "prefect.db"):
        sqlite3.connect(database).close()
        database.chmod(0o644)
    (home / "prefect" / "prefect.db-wal").write_bytes(b"")
    (home / "prefect" / "prefect.db-wal").chmod(0o644)
    caplog.set_level(logging.WARNING, logger="hotspare")

    assert main(["fleet", "load", str(EXAMPLE)]) == 0

    for path in (home, home / "prefect"):
        assert mode(path) == 0o700, path
    for path in (home / "inventory.db", home / "prefect" / "prefect.db", home / "prefect" / "prefect.db-wal"):
        assert mode(path) == 0o600, path
    assert f"HOTSPARE_HOME {home} had mode 0755, open to other users; tightened it to 0700" in caplog.text
    assert f"the inventory database {home / 'inventory.db'} had mode 0644" in caplog.text
    assert f"the Prefect database {home / 'prefect' / 'prefect.db'}-wal had mode 0644" in caplog.text


def test_prefect_database_keeps_its_mode_in_wal_mode(home):
    """Prefect's server opens its SQLite database in WAL mode; the files SQLite adds for it
    (-wal, -shm) take the mode of the 0600 database file hotspare created."""
    private_home()
    database = prefect_database()
    assert database == home / "prefect" / "prefect.db"
    old_umask = os.umask(0o022)
    try:
        connection = sqlite3.connect(database)
        try:
            assert connection.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
            connection.execute("CREATE TABLE flow_run (id TEXT)")
            connection.execute("INSERT INTO flow_run VALUES ('1')")
            connection.commit()
            files = sqlite_files(database)
            assert {path.name for path in files} == {"prefect.db", "prefect.db-wal", "prefect.db-shm"}
            assert {path.name: mode(path) for path in files} == {path.name: 0o600 for path in files}
        finally:
            connection.close()
    finally:
        os.umask(old_umask)


def test_prefect_database_location_follows_prefects_settings(home, monkeypatch):
    assert prefect_database() == home / "prefect" / "prefect.db"
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{home}/other.db")
    assert prefect_database() == home / "other.db"
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", "postgresql+asyncpg://prefect@db/prefect")
    assert prefect_database() is None


def test_a_prefect_home_outside_hotspare_home_is_left_alone(home, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    elsewhere.chmod(0o755)
    monkeypatch.setenv("PREFECT_HOME", str(elsewhere))
    private_home()
    assert mode(home) == 0o700
    assert mode(elsewhere) == 0o755 and not (elsewhere / "prefect.db").exists()
