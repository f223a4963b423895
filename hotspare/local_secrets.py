"""Local files at rest readable by their owner only: hotspare's home, its databases, lab keys.

``$HOTSPARE_HOME`` holds the inventory (server addresses, pinned host keys, failover records)
and, in the layout ``scripts/setup.sh`` makes, Prefect's home, whose SQLite database stores the
credential blocks with their encryption key beside them (prefect-facts.md). So folders are
created 0700 and database and key files 0600, and an existing one with a looser mode is
tightened when hotspare next uses it, with a log sentence saying so.

SQLite creates a database's ``-wal``, ``-shm`` and ``-journal`` files with the permissions of
the database file itself, so creating the (empty) database file 0600 before SQLite or Prefect
opens it keeps every file of that database private.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from hotspare.settings import hotspare_home

log = logging.getLogger("hotspare")

FOLDER_MODE = 0o700
FILE_MODE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_folder(path: Path, what: str) -> Path:
    """``path`` as a folder only its owner can use: missing ones (parents too) are made 0700,
    an existing one readable by others is tightened."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            pass  # made by a concurrent process; tightened below like any existing folder
        else:
            folder.chmod(FOLDER_MODE)  # mkdir's mode passes through the umask
    _tighten(path, FOLDER_MODE, what)
    return path


def private_file(path: Path, what: str, create: bool = False) -> None:
    """Tighten ``path`` to 0600 if others may read it; with ``create``, make it empty and 0600
    when it does not exist (never briefly wider)."""
    if create:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        except FileExistsError:
            pass
    _tighten(path, FILE_MODE, what)


def private_sqlite(database: Path, what: str) -> None:
    """A SQLite database created 0600 before first use, and its existing companions tightened."""
    private_file(database, what, create=True)
    for suffix in SQLITE_COMPANIONS:
        private_file(database.with_name(database.name + suffix), what)


def private_home() -> Path:
    """``$HOTSPARE_HOME`` made private, and the Prefect database that lives inside it."""
    home = private_folder(hotspare_home(), "HOTSPARE_HOME")
    database = prefect_database()
    if database is not None and home in database.parents:
        private_folder(database.parent, "Prefect's home")
        private_sqlite(database, "the Prefect database")
    return home


def prefect_database() -> Path | None:
    """The SQLite file a Prefect server started with this environment uses, if any.

    Read from the environment as Prefect reads it (connection URL, else ``$PREFECT_HOME/
    prefect.db``) without importing Prefect, which takes over a second.
    """
    url = os.environ.get("PREFECT_SERVER_DATABASE_CONNECTION_URL") or os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL")
    if url:
        prefix = "sqlite+aiosqlite:///"
        if not url.startswith(prefix) or ":memory:" in url:
            return None
        return Path(url[len(prefix) :].split("?", 1)[0]).absolute()
    prefect_home = os.environ.get("PREFECT_HOME") or str(Path.home() / ".prefect")
    return Path(prefect_home).expanduser().absolute() / "prefect.db"


def _tighten(path: Path, wanted: int, what: str) -> None:
    """Set an existing ``path`` that group or others may use to ``wanted``, with a log sentence."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & 0o077:
        path.chmod(wanted)
        log.warning("%s %s had mode %04o, open to other users; tightened it to %04o", what, path, current, wanted)


def write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only (created 0600, never briefly wider)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
