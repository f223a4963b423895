"""Local secrets at rest: hotspare's home, its databases and the lab's keys are owner-only.

Modes are read after real use: a fleet loaded into a real SQLite inventory, a real lab up, a
database opened the way Prefect's server opens it (WAL mode).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hotspare.lab.topology import HOSTS


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def sqlite_files(database: Path) -> list[Path]:
    """The database and whichever of its companion files exist now."""
    names = [database.name + suffix for suffix in ("", "-wal", "-shm", "-journal")]
    return [database.with_name(name) for name in names if database.with_name(name).exists()]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A HOTSPARE_HOME of its own, with Prefect's home inside it as scripts/setup.sh lays out."""
    path = tmp_path / "home"
    monkeypatch.setenv("HOTSPARE_HOME", str(path))
    monkeypatch.setenv("PREFECT_HOME", str(path / "prefect"))
    monkeypatch.delenv("HOTSPARE_DB_URL", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", raising=False)
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    return path


def test_session_home_and_inventory_are_private_after_loading_the_fleet(fleet):
    home = Path(os.environ["HOTSPARE_HOME"])
    assert mode(home) == 0o700
    database_files = sqlite_files(home / "inventory.db")
    if os.environ.get("HOTSPARE_DB_URL", "").startswith("postgresql"):
        # HOTSPARE_TEST_DB=postgresql: the session's inventory is a PostgreSQL database, so loading
        # the fleet must have written no SQLite file into the home (the SQLite modes are tested
        # below with a home of the test's own).
        assert database_files == [], "the fleet went into a SQLite file though HOTSPARE_DB_URL names PostgreSQL"
        return
    assert database_files, "the fleet fixture loaded no inventory"
    assert {path.name: mode(path) for path in database_files} == {path.name: 0o600 for path in database_files}


def test_lab_keys_and_secrets_are_private_in_private_folders(lab_env):
    lab = Path(lab_env["directory"])
    folders = [lab, lab / "dns", *[lab / "hosts" / host.name / "ssh" for host in HOSTS]]
    secrets = [
        lab / "client_key",
        lab / "secrets.json",
        lab / "dns" / "tsig.key",
        *[lab / "hosts" / host.name / "ssh" / "ssh_host_ed25519_key" for host in HOSTS],
    ]
    assert {str(folder): oct(mode(folder)) for folder in folders} == {str(folder): oct(0o700) for folder in folders}
    assert {str(secret): oct(mode(secret)) for secret in secrets} == {str(secret): oct(0o600) for secret in secrets}
    assert Path(lab_env["ssh"]["key"]) in secrets and Path(lab_env["secrets_file"]) in secrets
