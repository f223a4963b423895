"""Inventory database: SQLite by default, any SQLAlchemy URL via ``HOTSPARE_DB_URL``.

Several processes (CLI, Prefect workers in each facility) share one inventory, so nothing here
caches state in memory; each unit of work opens a short session. Schema changes go through
``MIGRATIONS`` so an existing inventory is upgraded in place, never recreated.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session, SQLModel, create_engine, select

from hotspare.adapters.errors import TransientError
from hotspare.inventory import (
    backup_models,  # noqa: F401  (so create_all sees the backup tables)
    models,
)
from hotspare.local_secrets import private_home, private_sqlite
from hotspare.settings import hotspare_home


def database_url() -> str:
    """``HOTSPARE_DB_URL`` or SQLite at ``$HOTSPARE_HOME/inventory.db``."""
    url = os.environ.get("HOTSPARE_DB_URL")
    if url:
        return url
    return f"sqlite:///{hotspare_home() / 'inventory.db'}"


def _private_sqlite_file(url: str) -> None:
    """Create a SQLite inventory 0600 (in a 0700 home) before SQLite does, tighten an old one.

    The inventory names every server, its address and pinned host key: others on the machine
    have no business reading it. SQLite gives its WAL and shared-memory files the database
    file's mode, so they stay private too.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).absolute()
    if hotspare_home() in path.parents:
        private_home()
    if path.parent.is_dir():  # else SQLite itself reports the missing folder
        private_sqlite(path, "the inventory database")


def _create_v1(connection: Connection) -> None:
    SQLModel.metadata.create_all(connection)


def _add_lock_fencing_v2(connection: Connection) -> None:
    """Fencing token and start time of the service lock (new inventories have them from v1)."""
    present = {column["name"] for column in inspect(connection).get_columns("service")}
    for name, kind in (("lock_token", "INTEGER"), ("lock_since", "TIMESTAMP")):
        if name not in present:
            connection.exec_driver_sql(f"ALTER TABLE service ADD COLUMN {name} {kind}")


def _add_run_operator_v3(connection: Connection) -> None:
    """Who ran each run (``HOTSPARE_OPERATOR`` or the login name): readiness counts who has
    performed each procedure. Older runs keep an empty operator."""
    present = {column["name"] for column in inspect(connection).get_columns("run")}
    if "operator" not in present:
        connection.exec_driver_sql("ALTER TABLE run ADD COLUMN operator VARCHAR NOT NULL DEFAULT ''")


# Ordered (version, step). Append new steps; never edit a released one. A step receives a
# connection inside the migration transaction.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _create_v1),
    (2, _add_lock_fencing_v2),
    (3, _add_run_operator_v3),
]


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        _private_sqlite_file(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    elif url.startswith("postgresql"):
        # Every stored time is UTC in a column without a zone: the session's zone must be UTC
        # too, or PostgreSQL shifts aware datetimes by the server's local offset on the way in.
        engine = create_engine(url, pool_pre_ping=True, connect_args={"options": "-c timezone=UTC", **_bounded(url)})
    else:
        engine = create_engine(url, pool_pre_ping=True)
    migrate(engine)
    return engine


def _bounded(url: str) -> dict:
    """Deadlines for a PostgreSQL inventory whose path is cut (no answer, not a refusal): a connect
    gives up after 10 s and a sent statement no one acknowledges after 15 s (``tcp_user_timeout``),
    instead of the kernel's minutes of retries. Values in the URL's query win."""
    given = make_url(url).query
    return {name: value for name, value in (("connect_timeout", 10), ("tcp_user_timeout", 15000)) if name not in given}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def engine() -> Engine:
    """The engine for the configured inventory, migrated to the current schema."""
    return _engine_for(database_url())


def schema_version(connection: Connection) -> int:
    if not inspect(connection).has_table("schema_version"):
        return 0
    row = connection.execute(select(models.SchemaVersion.version)).first()
    return row[0] if row else 0


def migrate(target: Engine) -> int:
    """Apply pending migrations in one transaction each; return the resulting version."""
    # Imported here, not at the top: table modules also hold their queries and import
    # ``session`` from this module.
    from hotspare.inventory import table_modules  # noqa: F401  (every module that defines tables)

    version = 0
    for step_version, step in MIGRATIONS:
        with target.begin() as connection:
            version = schema_version(connection)
            if version >= step_version:
                continue
            step(connection)
            connection.execute(models.SchemaVersion.__table__.delete())
            connection.execute(models.SchemaVersion.__table__.insert().values(id=1, version=step_version))
            version = step_version
    with target.begin() as connection:
        # A new table (a new subsystem's rows) needs no numbered step: created when missing.
        # Changes to existing tables still go through MIGRATIONS. One query lists the tables
        # there are (``create_all`` alone asks once per table: ~40 round trips to a PostgreSQL
        # inventory at every command's start).
        present = set(inspect(connection).get_table_names())
        missing = [table for name, table in SQLModel.metadata.tables.items() if name not in present]
        if missing:
            SQLModel.metadata.create_all(connection, tables=missing, checkfirst=True)
    return version


class InventoryUnreachable(TransientError):
    """The inventory's database did not answer (server down, address unreachable, file gone).

    Its own exit code: the operator restores the database, not a host; runs it interrupted
    are closed when it answers again (``inventory/late_outcomes.py``)."""


# SQLSTATE classes of a database that is gone rather than one that refused a statement:
# 08 connection exception, 57P01-57P03 the server shutting down or not accepting connections.
_UNREACHABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
_SQLITE_UNREACHABLE = ("unable to open database file", "disk i/o error")


def is_unreachable(error: BaseException) -> bool:
    """True when a SQLAlchemy error means the database did not answer (not a refused statement,
    a deadlock or a lock timeout, which the database did answer)."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    if type(original).__module__.startswith("sqlite3"):
        return any(text in str(original).lower() for text in _SQLITE_UNREACHABLE)
    state = getattr(original, "sqlstate", None)
    if state is None:  # no answer from a server at all (refused, timed out, closed)
        return type(original).__name__ in ("OperationalError", "InterfaceError")
    return state.startswith(_UNREACHABLE_SQLSTATES)


def unreachable_error(error: BaseException) -> InventoryUnreachable:
    """The operator's sentence: which inventory (no password), what the driver said."""
    location = make_url(database_url()).render_as_string(hide_password=True)
    cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0][:300]
    return InventoryUnreachable(f"the inventory at {location} is unreachable ({cause})")


@contextmanager
def session() -> Iterator[Session]:
    """A short unit of work that commits on success and rolls back on error. A database that
    does not answer is an ``InventoryUnreachable``, whichever statement found out."""
    try:
        with Session(engine(), expire_on_commit=False) as db:
            try:
                yield db
                db.commit()
            except BaseException as error:
                try:
                    db.rollback()
                except Exception:  # the connection is gone: the first error is the one to report
                    if not is_unreachable(error):
                        raise
                raise
    except Exception as error:
        if is_unreachable(error):
            raise unreachable_error(error) from error
        raise
