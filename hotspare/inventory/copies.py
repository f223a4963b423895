"""Point-in-time copies in the inventory: which exist, which is current, what verified."""

from __future__ import annotations

from sqlmodel import select

from hotspare.inventory.db import session
from hotspare.inventory.models import CopyRow, ServiceRow, utcnow


def copies_of(service: str, target: str | None = None) -> list[CopyRow]:
    """All copies of a service (optionally on one server), newest first, pruned ones excluded."""
    with session() as db:
        query = select(CopyRow).where(CopyRow.service == service).where(CopyRow.status != "pruned")
        if target:
            query = query.where(CopyRow.target_server == target)
        return list(db.exec(query.order_by(CopyRow.id.desc())))


def newest_verified(service: str, target: str | None = None) -> CopyRow | None:
    return next((row for row in copies_of(service, target) if row.status == "verified"), None)


def current_copy(service: str) -> CopyRow | None:
    with session() as db:
        row = db.get(ServiceRow, service)
        return db.get(CopyRow, row.current_copy_id) if row and row.current_copy_id else None


def add_copy(row: CopyRow) -> None:
    with session() as db:
        db.add(row)


def update_copy(copy_id: str, **values) -> CopyRow:
    with session() as db:
        row = db.get(CopyRow, copy_id)
        for field, value in values.items():
            setattr(row, field, value)
        return row


def make_current(service: str, copy_id: str) -> None:
    with session() as db:
        row = db.get(ServiceRow, service)
        row.current_copy_id = copy_id
        row.updated_at = utcnow()


def service_row(service: str) -> ServiceRow:
    return service_rows([service])[0]


def service_rows(services: list[str]) -> list[ServiceRow]:
    """The services' rows in the order asked, read in one query (a fleet run plans a hundred)."""
    with session() as db:
        rows = {row.name: row for row in db.exec(select(ServiceRow).where(ServiceRow.name.in_(services)))}  # type: ignore[attr-defined]
    missing = next((service for service in services if service not in rows), None)
    if missing is not None:
        from hotspare.adapters.errors import PermanentError

        raise PermanentError(f"no service {missing!r} in the inventory: run `hotspare fleet load` first")
    return [rows[service] for service in services]
