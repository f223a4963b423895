"""``fleet load``: bring the inventory's static part in line with a fleet file.

Idempotent: loading the same file twice changes nothing the second time. Dynamic state (which
server is active, copies, runs, locks) of services still in the file is kept; a service that
left the file is marked retired, not deleted, so its history stays.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from hotspare.fleet import Fleet
from hotspare.inventory.models import FacilityRow, FleetDocumentRow, ServerRow, ServiceRow, utcnow


@dataclass(frozen=True)
class Change:
    """One line of what a load did: ``added``, ``changed``, ``retired`` or ``kept``."""

    action: str
    kind: str
    name: str
    detail: str = ""

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.action:8} {self.kind} {self.name}{detail}"


def load_into_inventory(db: Session, fleet: Fleet, text: str, filename: str) -> list[Change]:
    """Upsert ``fleet`` (parsed from ``text``) into the inventory in ``db``; return what changed."""
    changes = [*_load_facilities(db, fleet), *_load_servers(db, fleet), *_load_services(db, fleet)]
    document = db.get(FleetDocumentRow, 1)
    if document is None:
        db.add(FleetDocumentRow(id=1, filename=filename, text=text))
    elif document.text != text or document.filename != filename:
        document.text, document.filename, document.loaded_at = text, filename, utcnow()
    return changes


def _upsert(db: Session, row_type, key: str, values: dict, kind: str) -> list[Change]:
    row = db.get(row_type, key)
    if row is None:
        db.add(row_type(**values))
        return [Change("added", kind, key)]
    changed = sorted(field for field, value in values.items() if getattr(row, field) != value)
    for field in changed:
        setattr(row, field, values[field])
    return [Change("changed", kind, key, ", ".join(changed))] if changed else []


def _load_facilities(db: Session, fleet: Fleet) -> list[Change]:
    changes: list[Change] = []
    for facility in fleet.facilities:
        values = {"name": facility.name, "description": facility.description}
        changes += _upsert(db, FacilityRow, facility.name, values, "facility")
    return changes


def _load_servers(db: Session, fleet: Fleet) -> list[Change]:
    changes: list[Change] = []
    for server in fleet.servers:
        values = {
            "name": server.name,
            "facility": server.facility,
            "address": server.address,
            "ssh_port": server.ssh_port,
            "host_key": server.host_key,
            "planned_role": server.role.value,
            "ssh_user_block": fleet.ssh_block_of(server),
            "hardware": server.hardware.model_dump() if server.hardware else None,
        }
        changes += _upsert(db, ServerRow, server.name, values, "server")
    return changes


def _load_services(db: Session, fleet: Fleet) -> list[Change]:
    changes: list[Change] = []
    present = {service.name for service in fleet.services}
    for service in fleet.services:
        row = db.get(ServiceRow, service.name)
        spec = service.model_dump(mode="json")
        if row is None:
            db.add(
                ServiceRow(
                    name=service.name,
                    spec=spec,
                    planned_production=service.production,
                    planned_mirror=service.mirror,
                    active_server=service.production,
                    mirror_server=service.mirror,
                )
            )
            changes.append(Change("added", "service", service.name))
            continue
        changes += _update_service(row, service, spec)
    for row in db.exec(select(ServiceRow).where(ServiceRow.retired == False)):
        if row.name not in present:
            row.retired = True
            changes.append(Change("retired", "service", row.name, "no longer in the fleet file; history kept"))
    return changes


def _update_service(row: ServiceRow, service, spec: dict) -> list[Change]:
    changed = []
    if row.spec != spec:
        row.spec = spec
        changed.append("spec")
    if row.retired:
        row.retired = False
        changed.append("back in the fleet")
    if (row.planned_production, row.planned_mirror) != (service.production, service.mirror):
        row.planned_production, row.planned_mirror = service.production, service.mirror
        if row.state == "protected":
            row.active_server, row.mirror_server = service.production, service.mirror
            changed.append(f"layout now {service.production} -> {service.mirror}")
        else:
            changed.append(f"planned layout updated; active server {row.active_server} kept while {row.state}")
    if not changed:
        return []
    row.updated_at = utcnow()
    return [Change("changed", "service", row.name, "; ".join(changed))]
