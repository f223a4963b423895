"""Inventory of failover drills: one row per drill, the evidence that a failover would work.

A drill brings a service up from its newest verified copy inside an isolated bubble on the
mirror, measures the RTO the real failover would have had and the RPO of the copy, and tears
everything down again. The readiness report reads these rows (``service``, ``started``,
``finished``, ``rto_seconds``, ``rpo_seconds``, ``operators``, ``outcome``,
``cleanup_proven``): keep those names stable.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import JSON, Column, Field, SQLModel, select

from hotspare.inventory.models import utcnow

# Outcomes: running (in progress, or killed midway), ok (healthy and cleaned up), unhealthy (the
# service did not come up from the copy), failed (the drill itself could not run), refused (a
# safety check stopped it before anything was created).
OUTCOMES = ("running", "ok", "unhealthy", "failed", "refused")


class DrillRow(SQLModel, table=True):
    """One drill of one service: what it used, what it measured, whether cleanup was proven."""

    __tablename__ = "drill"
    id: str = Field(primary_key=True)  # the drill id, also in the bubble's names and its manifest
    service: str = Field(index=True)
    flow_run_id: str | None = None
    started: datetime = Field(default_factory=utcnow)
    finished: datetime | None = None
    host: str = ""  # server the bubble ran on (the mirror, or a standby)
    copy_id: str | None = None  # the newest verified copy the drill used
    copy_name: str | None = None  # the copy's folder on the host
    rto_seconds: float | None = None  # start of the drill -> the service answered its health check
    rpo_seconds: float | None = None  # age of the copy when the drill began (the data-loss window)
    outcome: str = "running"
    cleanup_proven: bool = False  # no process, namespace, mount or scratch file left, checked after teardown
    operators: str = ""  # comma list: who ran it and who watched
    summary: str = ""
    steps: list | None = Field(default=None, sa_column=Column(JSON))  # [{step, seconds, outcome, detail}]


def _session():
    # Imported late: db.py imports this module (through table_modules) while it starts.
    from hotspare.inventory.db import session

    return session()


def add_drill(row: DrillRow) -> None:
    with _session() as db:
        db.add(row)


def update_drill(drill_id: str, **values) -> None:
    with _session() as db:
        row = db.get(DrillRow, drill_id)
        for name, value in values.items():
            setattr(row, name, value)


def drill(drill_id: str) -> DrillRow | None:
    with _session() as db:
        return db.get(DrillRow, drill_id)


def drills_of(service: str | None = None, limit: int = 50) -> list[DrillRow]:
    """Drills, newest first (of one service when given)."""
    with _session() as db:
        query = select(DrillRow)
        if service:
            query = query.where(DrillRow.service == service)
        return list(db.exec(query.order_by(DrillRow.started.desc()).limit(limit)))


def last_drill(service: str, outcome: str | None = None) -> DrillRow | None:
    """The service's newest drill (with that outcome when given), or None."""
    for row in drills_of(service):
        if outcome is None or row.outcome == outcome:
            return row
    return None
