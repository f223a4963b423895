"""What an incident affects and who may read about it, recorded when it opens.

``IncidentImpactRow``: one row per service an incident affects, with the server it was held on,
the role (production, mirror, standby, storage, or a service named directly) and the effect
(customers affected, protection lost, at risk), decided by ``planning/incident_rules.impact_of``
from the layout at the moment of opening. Rows are only ever added (a folded detection may bring
more), never changed or removed: a failover right after the opening moves the service, not the
record of whom the outage hurt, so the customers to tell stay the same.

``IncidentAudienceRow``: one per incident opened since impacts are recorded (its presence says
the impact rows are the whole story, even when there are none). An incident recorded as internal
(``incident open --no-page``, a redundant part) is kept from customers — no notice, not on the
public status page — until an operator publishes it (``hotspare incident publish N``). No row:
an incident from before, public, whose notice falls back to where services run.

Both are new tables (created when missing), so no numbered migration is needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlmodel import Field, SQLModel, select

from hotspare.inventory.models import ServerRow, ServiceRow, utcnow
from hotspare.planning.incident_rules import Impact, Placement, impact_of


class IncidentImpactRow(SQLModel, table=True):
    """One service an incident affects: through which server, in which role, and how."""

    __tablename__ = "incident_impact"
    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(index=True, foreign_key="incident.id")
    service: str = Field(index=True)
    server: str = ""  # "" for a service named directly
    role: str  # production | mirror | standby | storage | service
    effect: str  # customers affected | protection lost | at risk
    tell: bool = False  # its customers get the incident's notices
    recorded_at: datetime = Field(default_factory=utcnow)


class IncidentAudienceRow(SQLModel, table=True):
    """Whether customers may read about an incident (no row: they may)."""

    __tablename__ = "incident_audience"
    incident_id: int = Field(primary_key=True, foreign_key="incident.id")
    internal: bool = True
    changed_by: str = "hotspare"
    changed_at: datetime = Field(default_factory=utcnow)


def layout(db) -> list[Placement]:
    """Where every service runs, is mirrored and backed up now (the inventory's view)."""
    placements = []
    for row in db.exec(select(ServiceRow).where(ServiceRow.retired == False)):
        storage = (row.spec or {}).get("storage")
        placements.append(Placement(row.name, row.active_server, row.mirror_server, storage))
    return placements


def record_impact(db, incident_id: int, holders: Iterable[str], services: Iterable[str], outage: bool) -> list[Impact]:
    """Add what ``holders`` (servers) and ``services`` affect now; returns the rows added."""
    standby = {row.name for row in db.exec(select(ServerRow).where(ServerRow.planned_role == "standby"))}
    present = {
        (row.service, row.server)
        for row in db.exec(select(IncidentImpactRow).where(IncidentImpactRow.incident_id == incident_id))
    }
    added = []
    named = {service for service, _server in present}
    for impact in impact_of(set(holders), list(services), layout(db), outage, standby):
        if (impact.service, impact.server) in present or (not impact.server and impact.service in named):
            continue  # already recorded (a service named again is the same service)
        db.add(
            IncidentImpactRow(
                incident_id=incident_id,
                service=impact.service,
                server=impact.server,
                role=impact.role,
                effect=impact.effect,
                tell=impact.tell,
            )
        )
        added.append(impact)
    return added


def impacts(db, incident_ids: list[int]) -> dict[int, list[dict]]:
    """incident id -> its impact rows as dicts (oldest first)."""
    if not incident_ids:
        return {}
    found: dict[int, list[dict]] = {}
    query = select(IncidentImpactRow).where(IncidentImpactRow.incident_id.in_(incident_ids)).order_by(IncidentImpactRow.id)
    seen = set()
    for row in db.exec(query):
        if (row.incident_id, row.service, row.server) in seen:
            continue  # two detections folded at the same moment may both have recorded it
        seen.add((row.incident_id, row.service, row.server))
        found.setdefault(row.incident_id, []).append(
            {"service": row.service, "server": row.server, "role": row.role, "effect": row.effect, "tell": row.tell}
        )
    return found


def audiences(db, incident_ids: list[int]) -> dict[int, bool]:
    """incident id -> internal, for the incidents among ``incident_ids`` that have a record."""
    if not incident_ids:
        return {}
    query = select(IncidentAudienceRow).where(IncidentAudienceRow.incident_id.in_(incident_ids))
    return {row.incident_id: row.internal for row in db.exec(query)}


def record_audience(db, incident_id: int, internal: bool, by: str) -> None:
    """At opening: who may read about the new incident."""
    db.add(IncidentAudienceRow(incident_id=incident_id, internal=internal, changed_by=by))


def set_internal(db, incident_id: int, internal: bool, by: str) -> bool:
    """Mark the incident internal or public; False when it already was."""
    row = db.get(IncidentAudienceRow, incident_id)
    if row is None:
        if not internal:
            return False  # no row: public already
        db.add(IncidentAudienceRow(incident_id=incident_id, internal=True, changed_by=by))
        return True
    if row.internal == internal:
        return False
    row.internal, row.changed_by, row.changed_at = internal, by, utcnow()
    return True
