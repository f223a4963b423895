"""Who is watching now: one lease per continuous check (the health runbook), handed from run to run.

Scheduled health runs overlap on purpose (each checks longer than the schedule's period), so
that a run that starts late — a runner's poll, a new process — leaves no gap. The overlap
must not mean two runs checking at once (every round moves the hysteresis counts): the run
that holds the lease checks, the next one waits until the lease ends and takes it over.

The holder renews its lease every round, a little ahead (``until``); a run that dies stops
renewing, and the next takes over once ``until`` has passed. ``claim`` is a conditional
UPDATE (or the first INSERT), so of two runs that try at once one wins.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from hotspare.inventory import db as inventory_db
from hotspare.inventory.models import as_utc, utcnow


class WatchRow(SQLModel, table=True):
    """The run that holds a continuous check, and until when its lease runs."""

    __tablename__ = "watch_lease"
    name: str = Field(primary_key=True)
    holder: str
    until: datetime


def claim(name: str, holder: str, until: datetime, now: datetime | None = None) -> tuple[bool, str, datetime | None]:
    """Take or renew the lease ``name`` for ``holder`` until ``until``: (taken, who holds it,
    until when). Taken when nobody holds it, the holder's lease ran out, or it is ours."""
    moment = now or utcnow()
    with inventory_db.session() as db:
        result = db.exec(
            update(WatchRow)
            .where(WatchRow.name == name, or_(WatchRow.holder == holder, WatchRow.until < moment))
            .values(holder=holder, until=until)
        )
        if result.rowcount == 1:
            return True, holder, until
        row = db.get(WatchRow, name)
        if row is not None:
            return False, row.holder, as_utc(row.until)
    try:
        with inventory_db.session() as db:
            db.add(WatchRow(name=name, holder=holder, until=until))
        return True, holder, until
    except IntegrityError:  # another run made the row first
        return claim(name, holder, until, now)


def release(name: str, holder: str) -> None:
    """End our lease now (the next run need not wait for it to run out)."""
    with inventory_db.session() as db:
        db.exec(update(WatchRow).where(WatchRow.name == name, WatchRow.holder == holder).values(until=utcnow()))
