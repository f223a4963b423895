"""Inventory of health checks: each component's judged state with its counters, the history of
state changes, and replacement requests for hot-swappable parts (open -> closed, with duration).

The judge (``hotspare/planning/health.py``) is pure; these functions load its previous state
and store its new one, so every run (and every worker) continues from the same counters.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import JSON, Column, Field, SQLModel, select

from hotspare.inventory import db as inventory_db  # db imports this module first: look session() up at call time
from hotspare.inventory.models import as_utc, utcnow
from hotspare.planning.health import Change, ComponentStatus, status_text, worst_component
from hotspare.planning.readings import ComponentKind, ComponentState
from hotspare.planning.replacements import ReplacementRequest


class HealthComponentRow(SQLModel, table=True):
    """A component's current judged state (``subject``: a server name or ``service:<name>``)."""

    __tablename__ = "health_component"
    subject: str = Field(primary_key=True)
    component: str = Field(primary_key=True)
    kind: str
    state: str = "ok"
    worse_rounds: int = 0
    better_rounds: int = 0
    failed_rounds: int = 0
    good_rounds: int = 0
    evidence: str = ""
    sites: list = Field(default_factory=list, sa_column=Column(JSON))
    part: dict = Field(default_factory=dict, sa_column=Column(JSON))
    since: datetime = Field(default_factory=utcnow)  # when it entered its state
    checked_at: datetime = Field(default_factory=utcnow)


class HealthHistoryRow(SQLModel, table=True):
    """One change of a component's judged state."""

    __tablename__ = "health_history"
    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(index=True)
    component: str
    kind: str
    previous: str
    state: str
    evidence: str = ""
    sites: list = Field(default_factory=list, sa_column=Column(JSON))
    at: datetime = Field(default_factory=utcnow)
    flow_run_id: str | None = None


class ReplacementRow(SQLModel, table=True):
    """A request to a facility's remote hands to swap a part."""

    __tablename__ = "replacement_request"
    id: int | None = Field(default=None, primary_key=True)
    server: str = Field(index=True)
    component: str
    facility: str
    location: str = ""
    part_kind: str
    slot: str = ""
    serial: str = ""
    model: str = ""
    evidence: str = ""
    status: str = "open"  # open | closed
    opened_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    duration_s: float | None = None
    mailed_to: str = ""
    mail_outcome: str = ""  # sent | not sent: <reason>


def load_statuses() -> dict[tuple[str, str], ComponentStatus]:
    """The judge's previous state, as stored by the last round."""
    with inventory_db.session() as db:
        rows = list(db.exec(select(HealthComponentRow)))
    return {(row.subject, row.component): _status(row) for row in rows}


def _status(row: HealthComponentRow) -> ComponentStatus:
    return ComponentStatus(
        subject=row.subject,
        component=row.component,
        kind=ComponentKind(row.kind),
        state=ComponentState(row.state),
        worse_rounds=row.worse_rounds,
        better_rounds=row.better_rounds,
        failed_rounds=row.failed_rounds,
        good_rounds=row.good_rounds,
        evidence=row.evidence,
        sites=tuple(row.sites or ()),
        part=dict(row.part or {}),
    )


def store_round(statuses: dict[tuple[str, str], ComponentStatus], changes: tuple[Change, ...], flow_run_id: str | None) -> None:
    """Store every status and one history row per change, in one transaction."""
    now = utcnow()
    changed = {(change.subject, change.component) for change in changes}
    with inventory_db.session() as db:
        for key, status in statuses.items():
            row = db.get(HealthComponentRow, key) or HealthComponentRow(subject=key[0], component=key[1], kind=status.kind.value)
            row.kind, row.state = status.kind.value, status.state.value
            row.worse_rounds, row.better_rounds = status.worse_rounds, status.better_rounds
            row.failed_rounds, row.good_rounds = status.failed_rounds, status.good_rounds
            row.evidence, row.sites, row.part = status.evidence[:2000], list(status.sites), dict(status.part)
            row.checked_at = now
            if key in changed:
                row.since = now
            db.add(row)
        for change in changes:
            db.add(
                HealthHistoryRow(
                    subject=change.subject,
                    component=change.component,
                    kind=change.kind.value,
                    previous=change.previous.value,
                    state=change.state.value,
                    evidence=change.evidence[:2000],
                    sites=list(change.sites),
                    at=now,
                    flow_run_id=flow_run_id,
                )
            )


def history(subject: str | None = None, limit: int = 100) -> list[HealthHistoryRow]:
    """Newest state changes first."""
    with inventory_db.session() as db:
        query = select(HealthHistoryRow).order_by(HealthHistoryRow.id.desc()).limit(limit)
        if subject:
            query = query.where(HealthHistoryRow.subject == subject)
        return list(db.exec(query))


def open_request_keys() -> set[tuple[str, str]]:
    with inventory_db.session() as db:
        rows = db.exec(select(ReplacementRow).where(ReplacementRow.status == "open"))
        return {(row.server, row.component) for row in rows}


def open_request(request: ReplacementRequest) -> int:
    with inventory_db.session() as db:
        row = ReplacementRow(
            server=request.server,
            component=request.component,
            facility=request.facility,
            location=request.location,
            part_kind=request.part_kind,
            slot=request.slot,
            serial=request.serial,
            model=request.model,
            evidence=request.evidence[:2000],
        )
        db.add(row)
        db.flush()
        return row.id


def record_mail(request_id: int, mailed_to: str, outcome: str) -> None:
    with inventory_db.session() as db:
        row = db.get(ReplacementRow, request_id)
        row.mailed_to, row.mail_outcome = mailed_to, outcome[:500]


def close_request(server: str, component: str) -> ReplacementRow | None:
    """Close the open request of a part; returns it with its duration."""
    now = utcnow()
    with inventory_db.session() as db:
        row = db.exec(
            select(ReplacementRow).where(
                ReplacementRow.server == server, ReplacementRow.component == component, ReplacementRow.status == "open"
            )
        ).first()
        if row is None:
            return None
        row.status, row.closed_at = "closed", now
        row.duration_s = round((now - as_utc(row.opened_at)).total_seconds(), 1)
        db.add(row)
        db.flush()
        db.refresh(row)
        db.expunge(row)
        return row


def replacement_requests(open_only: bool = True) -> list[ReplacementRow]:
    with inventory_db.session() as db:
        query = select(ReplacementRow).order_by(ReplacementRow.id)
        if open_only:
            query = query.where(ReplacementRow.status == "open")
        return list(db.exec(query))


def health_fields(service_name: str, active_server: str | None) -> dict:
    """``health`` (worst component of the service and its active server) for ``hotspare status``.

    Never raises: an inventory without health rows shows "-"."""
    try:
        with inventory_db.session() as db:
            rows = list(
                db.exec(
                    select(HealthComponentRow).where(
                        HealthComponentRow.subject.in_([f"service:{service_name}", active_server or ""])
                    )
                )
            )
    except Exception:
        rows = []
    if not rows:
        return {"health": None, "health_text": "-"}
    worst = worst_component([_status(row) for row in rows])
    if worst is None:
        return {"health": {"state": "ok"}, "health_text": "ok"}
    return {
        "health": {
            "state": worst.state.value,
            "subject": worst.subject,
            "component": worst.component,
            "evidence": worst.evidence,
        },
        "health_text": status_text(worst),
    }


def declared_down(server: str) -> list[HealthComponentRow]:
    """The reachability components of ``server`` the health judge holds failed now (each with its
    evidence and last check): what lets an unattended failover of the service it runs proceed."""
    with inventory_db.session() as db:
        return list(
            db.exec(
                select(HealthComponentRow).where(
                    HealthComponentRow.subject == server,
                    HealthComponentRow.kind == ComponentKind.reachability.value,
                    HealthComponentRow.state == ComponentState.failed.value,
                )
            )
        )
