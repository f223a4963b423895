"""The inventory's clock: the one time every process sharing the inventory agrees on.

Leases, fencing and up-front approval deadlines compare times written by one process with
times read by another, often on another machine. Each machine's clock drifts on its own (a
worker 20 minutes fast would think every live lease expired), so these comparisons never use
the process's clock: the database computes "now" itself, inside the statement that decides.

- **PostgreSQL** (several machines): the server's ``clock_timestamp()`` in UTC.
- **SQLite** (one machine): SQLite's ``'now'``, computed by the SQLite library inside whichever
  process runs the statement, so it is that machine's clock. A SQLite file is shared only by
  processes of one machine (its locking does not work over network file systems), and those
  share one kernel clock.

``database_time(seconds)`` is the SQL expression (a UTC time without zone, the way every time
is stored), usable in a WHERE or VALUES of a conditional UPDATE; ``database_now()`` reads it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import DateTime, Float, bindparam, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from hotspare.inventory.db import session
from hotspare.inventory.models import as_utc


class database_time(FunctionElement):  # noqa: N801 - an SQL function, named like one
    """The database's current UTC time plus ``seconds`` (which may be negative), in SQL."""

    type = DateTime()
    name = "database_time"
    inherit_cache = True

    def __init__(self, seconds: float | timedelta = 0.0) -> None:
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        super().__init__(bindparam(None, float(seconds), type_=Float()))


@compiles(database_time, "sqlite")
def _sqlite_time(element: database_time, compiler, **kw) -> str:
    # The text form SQLAlchemy stores SQLite datetimes in ("YYYY-MM-DD HH:MM:SS.fff"), so stored
    # and computed times compare as text in time order.
    seconds = compiler.process(element.clauses, **kw)
    return f"strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', {seconds}))"


@compiles(database_time, "postgresql")
def _postgresql_time(element: database_time, compiler, **kw) -> str:
    # clock_timestamp(), not now(): now() is the transaction's start, which a long transaction
    # would hold back.
    seconds = compiler.process(element.clauses, **kw)
    return f"(timezone('UTC', clock_timestamp()) + ({seconds}) * interval '1 second')"


@compiles(database_time)
def _other_time(element: database_time, compiler, **kw) -> str:
    raise NotImplementedError(
        f"the inventory's clock is known for SQLite and PostgreSQL only, not "
        f"{compiler.dialect.name}: use one of those for HOTSPARE_DB_URL"
    )


def database_now(later: float | timedelta = 0.0) -> datetime:
    """The inventory's current time (UTC, aware), plus ``later``."""
    with session() as db:
        return as_utc(db.execute(select(database_time(later))).scalar_one())
