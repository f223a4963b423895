"""Incidents: what went wrong, who was paged, who took it, and when it was over.

The written plan sorts emergencies into three categories: 1 = a server, 2 = programming,
3 = a customer's day-to-day problem. An incident moves ``triggered → acknowledged →
resolved``; its timeline (``IncidentEventRow``) records every detection, page, acknowledgement,
note, failover, customer notice and status-page publication, so the history of an outage can be
read back (and the time from opening to the first call measured).

A detection carries a *dedup key* (e.g. ``health:server:prod1``): while an incident with that
key is open, the same detection folds into it as one more ``detection`` event instead of
opening (and paging for) a second incident. The key of an open incident sits in ``open_key``,
which is unique and cleared on resolve, so two processes detecting the same failure at the
same moment still open one incident (the loser of the insert folds).

What an incident affects (every service its servers hold, by role) and whether customers may
read about it are recorded when it opens (``inventory/incident_scope.py``) and kept.

Public functions (stable names, used by the paging, notice and status-page flows):
``open_or_fold``, ``open_incident``, ``acknowledge``, ``add_event``, ``resolve``, ``publish``,
``list_incidents``, ``get_incident``. They return plain dicts with ISO 8601 UTC times, ready
for JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import JSON, Column, Field, SQLModel, select

# db imports this module (through table_modules) before it defines session(): look it up at call time.
from hotspare.adapters import events
from hotspare.inventory import db as inventory_db
from hotspare.inventory import incident_scope
from hotspare.inventory.models import as_utc, utcnow

CATEGORIES = {1: "server", 2: "programming", 3: "customer problem"}
SEVERITIES = ("high", "low")
STATUSES = ("triggered", "acknowledged", "resolved")
EVENT_KINDS = (
    "detection",
    "page",
    "acknowledgement",
    "note",
    "failover",
    "notice",
    "status_publish",
    "error",
    "notice_held",  # a customer notice that did not go out although customers are affected
    "approval",  # an approver approved a waiting failover from the phone
)


class IncidentError(Exception):
    """An incident request that cannot be done (unknown incident, resolved twice, bad value)."""


class IncidentRow(SQLModel, table=True):
    """One incident: category, severity and where it stands in triggered → acknowledged → resolved."""

    __tablename__ = "incident"
    id: int | None = Field(default=None, primary_key=True)
    category: int = Field(index=True)  # 1 server | 2 programming | 3 customer problem
    severity: str = "high"  # high | low
    title: str
    status: str = Field(default="triggered", index=True)  # triggered | acknowledged | resolved
    opened_at: datetime = Field(default_factory=utcnow)
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    dedup_key: str | None = Field(default=None, index=True)
    open_key: str | None = Field(default=None, unique=True)  # dedup_key while open, else NULL
    detections: int = 1  # how many detections folded into it


class IncidentAffectedRow(SQLModel, table=True):
    """A service or server an incident affects (many per incident)."""

    __tablename__ = "incident_affected"
    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(index=True, foreign_key="incident.id")
    kind: str  # service | server
    name: str = Field(index=True)


class IncidentEventRow(SQLModel, table=True):
    """One entry of an incident's timeline."""

    __tablename__ = "incident_event"
    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(index=True, foreign_key="incident.id")
    at: datetime = Field(default_factory=utcnow)
    kind: str  # one of EVENT_KINDS
    actor: str = "hotspare"
    text: str = ""
    details: dict | None = Field(default=None, sa_column=Column(JSON))


@dataclass(frozen=True)
class IncidentOpening:
    """What ``open_incident`` did: the incident's id and whether it is new (False: folded)."""

    incident_id: int
    created: bool


def _check(category: int, severity: str) -> None:
    if category not in CATEGORIES:
        raise IncidentError(f"category {category!r} is not one of 1 (server), 2 (programming), 3 (customer problem)")
    if severity not in SEVERITIES:
        raise IncidentError(f"severity {severity!r} is not one of: {', '.join(SEVERITIES)}")


def open_incident(
    category: int,
    severity: str,
    title: str,
    services: Iterable[str] = (),
    servers: Iterable[str] = (),
    dedup_key: str | None = None,
    detection_text: str = "",
    actor: str = "hotspare",
    details: dict | None = None,
    outage: bool | None = None,
    internal: bool = False,
    holders: Iterable[str] | None = None,
) -> IncidentOpening:
    """Open an incident, or fold this detection into the open incident with the same dedup key.

    A folded detection adds a ``detection`` event (and any new affected names) to the open
    incident; it raises the severity to ``high`` if this one is high, never lowers it.

    What it affects is recorded now: every service ``holders`` (default: ``servers``) hold, by
    role, and the ``services`` named. ``outage`` (default: high severity) says whether they are
    unavailable (customers affected) or only at risk. ``internal``: kept from customers until
    ``publish`` (a record-only incident, a redundant part).
    """
    _check(category, severity)
    if not title.strip():
        raise IncidentError("an incident needs a title (what is wrong, in a few words)")
    services, servers = sorted(set(services)), sorted(set(servers))
    holders = servers if holders is None else sorted(set(holders))
    outage = severity == "high" if outage is None else outage
    text = detection_text or title
    for _attempt in range(3):
        if dedup_key:
            folded = _fold(dedup_key, severity, services, servers, text, actor, details, holders, outage)
            if folded is not None:
                return IncidentOpening(folded, created=False)
        try:
            with inventory_db.session() as db:
                row = IncidentRow(
                    category=category, severity=severity, title=title.strip(), dedup_key=dedup_key, open_key=dedup_key
                )
                db.add(row)
                db.flush()
                impact = incident_scope.record_impact(db, row.id, holders, services, outage)
                _add_affected(db, row.id, sorted({*services, *(item.service for item in impact)}), servers)
                incident_scope.record_audience(db, row.id, internal, actor)
                db.add(
                    IncidentEventRow(
                        incident_id=row.id,
                        kind="detection",
                        actor=actor,
                        text=text,
                        details=_with_impact(details, impact, internal),
                        at=row.opened_at,
                    )
                )
                return IncidentOpening(row.id, created=True)
        except IntegrityError:
            continue  # another process opened it first: fold into theirs
    raise IncidentError(f"could not open or fold the incident {dedup_key!r}: the inventory kept refusing")


def open_or_fold(
    category: int,
    severity: str,
    title: str,
    services: Iterable[str] = (),
    servers: Iterable[str] = (),
    dedup_key: str | None = None,
    detection_text: str = "",
) -> int:
    """The id of the new incident, or of the open one this detection folded into."""
    return open_incident(category, severity, title, services, servers, dedup_key, detection_text).incident_id


def _fold(dedup_key, severity, services, servers, text, actor, details, holders, outage) -> int | None:
    with inventory_db.session() as db:
        row = db.exec(select(IncidentRow).where(IncidentRow.open_key == dedup_key)).first()
        if row is None:
            return None
        row.detections += 1
        if severity == "high":
            row.severity = "high"
        impact = incident_scope.record_impact(db, row.id, holders, services, outage)
        _add_affected(db, row.id, sorted({*services, *(item.service for item in impact)}), servers)
        db.add(
            IncidentEventRow(
                incident_id=row.id,
                kind="detection",
                actor=actor,
                text=text,
                details={**_with_impact(details, impact, False), "folded": True},
            )
        )
        return row.id


def _with_impact(details: dict | None, impact, internal: bool) -> dict | None:
    """The detection's details plus the sentence of what it affects (for the timeline)."""
    from hotspare.planning.incident_rules import impact_text

    if not impact and not internal:
        return details
    extra = {"affects": impact_text(impact)} if impact else {}
    return {**(details or {}), **extra, **({"internal": True} if internal else {})}


def _add_affected(db, incident_id: int, services: list[str], servers: list[str]) -> None:
    present = {
        (affected.kind, affected.name)
        for affected in db.exec(select(IncidentAffectedRow).where(IncidentAffectedRow.incident_id == incident_id))
    }
    for kind, names in (("service", services), ("server", servers)):
        for name in names:
            if (kind, name) not in present:
                db.add(IncidentAffectedRow(incident_id=incident_id, kind=kind, name=name))


def _row(db, incident_id: int) -> IncidentRow:
    row = db.get(IncidentRow, incident_id)
    if row is None:
        raise IncidentError(f"there is no incident {incident_id} (hotspare incident list shows them)")
    return row


def add_event(incident_id: int, kind: str, text: str, actor: str = "hotspare", details: dict | None = None) -> int:
    """Append one entry to an incident's timeline; returns the entry's id."""
    if kind not in EVENT_KINDS:
        raise IncidentError(f"event kind {kind!r} is not one of: {', '.join(EVENT_KINDS)}")
    with inventory_db.session() as db:
        _row(db, incident_id)
        event = IncidentEventRow(incident_id=incident_id, kind=kind, actor=actor, text=text, details=details)
        db.add(event)
        db.flush()
        return event.id


def acknowledge(incident_id: int, by: str, via: str = "", details: dict | None = None) -> bool:
    """Mark the incident acknowledged by ``by``; paging stops. False if it already was.

    A second acknowledgement is recorded in the timeline but changes nothing else; a resolved
    incident cannot be acknowledged.
    """
    if not by.strip():
        raise IncidentError("say who acknowledges the incident (a contact's name)")
    with inventory_db.session() as db:
        row = _row(db, incident_id)
        if row.status == "resolved":
            raise IncidentError(f"incident {incident_id} is already resolved; nothing to acknowledge")
        first = row.status == "triggered"
        if first:
            row.status, row.acknowledged_at, row.acknowledged_by = "acknowledged", utcnow(), by
        text = f"acknowledged by {by}" + (f" via {via}" if via else "")
        if not first:
            text += f" (already acknowledged by {row.acknowledged_by})"
        db.add(
            IncidentEventRow(
                incident_id=incident_id,
                kind="acknowledgement",
                actor=by,
                text=text,
                details={**(details or {}), "via": via, "first": first},
            )
        )
        return first


def resolve(incident_id: int, by: str, text: str = "") -> None:
    """Close the incident; its dedup key is free again, so a new failure opens a new incident."""
    with inventory_db.session() as db:
        row = _row(db, incident_id)
        if row.status == "resolved":
            raise IncidentError(f"incident {incident_id} was already resolved at {_iso(row.resolved_at)} by {row.resolved_by}")
        now = utcnow()
        if row.acknowledged_at is None:
            row.acknowledged_at, row.acknowledged_by = now, by
        row.status, row.resolved_at, row.resolved_by, row.open_key = "resolved", now, by, None
        db.add(
            IncidentEventRow(
                incident_id=incident_id,
                kind="note",
                actor=by,
                text=f"resolved by {by}" + (f": {text}" if text else ""),
                details={"resolved": True},
            )
        )


def publish(incident_id: int, by: str) -> bool:
    """Let customers read about an internal incident (notices, status page); False if it was public."""
    if not by.strip():
        raise IncidentError("say who publishes the incident (a contact's name)")
    with inventory_db.session() as db:
        _row(db, incident_id)
        changed = incident_scope.set_internal(db, incident_id, False, by)
        if changed:
            db.add(
                IncidentEventRow(
                    incident_id=incident_id,
                    kind="note",
                    actor=by,
                    text=f"published for customers by {by}",
                    details={"published": True},
                )
            )
        return changed


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment else None


def _as_dict(
    row: IncidentRow, affected: list[IncidentAffectedRow], impact: list[dict] | None = None, internal: bool | None = None
) -> dict:
    """``internal`` None: an incident from before impacts were recorded (``impact_recorded`` False)."""
    impact = impact or []
    return {
        "id": row.id,
        "category": row.category,
        "category_name": CATEGORIES.get(row.category, "?"),
        "severity": row.severity,
        "title": row.title,
        "status": row.status,
        "opened_at": _iso(row.opened_at),
        "acknowledged_at": _iso(row.acknowledged_at),
        "acknowledged_by": row.acknowledged_by,
        "resolved_at": _iso(row.resolved_at),
        "resolved_by": row.resolved_by,
        "dedup_key": row.dedup_key,
        "detections": row.detections,
        "services": sorted(item.name for item in affected if item.kind == "service"),
        "servers": sorted(item.name for item in affected if item.kind == "server"),
        # Recorded at opening: every service affected, by role; whose customers are told; public?
        "impact": impact,
        "customer_services": sorted({item["service"] for item in impact if item["tell"]}),
        "internal": bool(internal),
        "impact_recorded": internal is not None,
    }


def list_incidents(status: str | None = None, open_only: bool = False, limit: int = 100) -> list[dict]:
    """Newest first; ``status`` filters one state, ``open_only`` keeps the unresolved ones."""
    if status is not None and status not in STATUSES:
        raise IncidentError(f"status {status!r} is not one of: {', '.join(STATUSES)}")
    with inventory_db.session() as db:
        query = select(IncidentRow).order_by(IncidentRow.id.desc()).limit(limit)
        if status:
            query = query.where(IncidentRow.status == status)
        if open_only:
            query = query.where(IncidentRow.status != "resolved")
        rows = db.exec(query).all()
        ids = [row.id for row in rows]
        affected = db.exec(select(IncidentAffectedRow).where(IncidentAffectedRow.incident_id.in_(ids))).all() if ids else []
        impact = incident_scope.impacts(db, ids)
        audience = incident_scope.audiences(db, ids)
    return [
        _as_dict(row, [item for item in affected if item.incident_id == row.id], impact.get(row.id), audience.get(row.id))
        for row in rows
    ]


def get_incident(incident_id: int) -> dict:
    """One incident with its affected services/servers and its timeline (``events``, oldest first)."""
    with inventory_db.session() as db:
        row = _row(db, incident_id)
        affected = db.exec(select(IncidentAffectedRow).where(IncidentAffectedRow.incident_id == incident_id)).all()
        events = db.exec(
            select(IncidentEventRow)
            .where(IncidentEventRow.incident_id == incident_id)
            .order_by(IncidentEventRow.at, IncidentEventRow.id)
        ).all()
        impact = incident_scope.impacts(db, [incident_id]).get(incident_id)
        internal = incident_scope.audiences(db, [incident_id]).get(incident_id)
    result = _as_dict(row, affected, impact, internal)
    result["events"] = [
        {
            "id": event.id,
            "at": _iso(event.at),
            "kind": event.kind,
            "actor": event.actor,
            "text": event.text,
            "details": event.details or {},
        }
        for event in events
    ]
    return result


def open_for_failed_run(run_id: int, kind: str, service: str, summary: str) -> int | None:
    """Open (or fold into) the incident of a failed failover, rebuild or replication run, and
    announce a new one so the paging automation starts; None for runs that open no incident."""
    from hotspare.planning.incident_rules import from_failed_run

    request = from_failed_run(run_id, kind, service, summary)
    if request is None:
        return None
    opening = open_incident(
        request.category,
        request.severity,
        request.title,
        request.services,
        request.servers,
        request.dedup_key,
        request.detection_text,
        details=request.details,
        outage=request.outage,
        internal=request.internal,
        holders=request.holders,
    )
    if opening.created:
        announce("opened", opening.incident_id)
    return opening.incident_id


def announce(kind: str, incident_id: int, paging: str = "requested") -> None:
    """Emit ``hotspare.incident.<kind>`` about ``hotspare.incident.<id>`` (best effort).

    Customer notices and the status page react to it. The label ``hotspare.paging`` is
    ``requested`` when the opener leaves paging to the automation, ``started`` when the opener
    walks the chain itself.
    """
    incident = get_incident(incident_id)
    incident.pop("events", None)
    events.emit(
        f"hotspare.incident.{kind}",
        {
            "prefect.resource.id": f"hotspare.incident.{incident_id}",
            "prefect.resource.name": incident["title"][:100],
            "hotspare.category": str(incident["category"]),
            "hotspare.severity": incident["severity"],
            "hotspare.paging": paging,
        },
        incident,
    )
