"""Per-service lease lock in the inventory: one replication, failover or rebuild at a time.

A conditional UPDATE takes the lock, so it works across processes and machines sharing the
inventory. A lease expires so that a crashed holder cannot block the service forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import or_, update

from hotspare.adapters.errors import PermanentError
from hotspare.inventory.db import session
from hotspare.inventory.models import ServiceRow, utcnow


class ServiceBusy(PermanentError):
    """Another run holds the service's lock."""


def acquire(service: str, holder: str, lease: timedelta) -> None:
    now = utcnow()
    with session() as db:
        result = db.exec(
            update(ServiceRow)
            .where(ServiceRow.name == service)
            .where(or_(ServiceRow.lock_holder.is_(None), ServiceRow.lock_expires < now, ServiceRow.lock_holder == holder))
            .values(lock_holder=holder, lock_expires=now + lease)
        )
        if result.rowcount == 1:
            return
        row = db.get(ServiceRow, service)
    if row is None:
        raise PermanentError(f"no service {service!r} in the inventory: load the fleet file first")
    raise ServiceBusy(
        f"service {service} is busy: {row.lock_holder} holds its lock until {row.lock_expires:%Y-%m-%d %H:%M:%S} UTC. "
        "Wait for that run to finish (or for the lease to expire if it crashed)."
    )


def release(service: str, holder: str) -> None:
    with session() as db:
        db.exec(
            update(ServiceRow)
            .where(ServiceRow.name == service)
            .where(ServiceRow.lock_holder == holder)
            .values(lock_holder=None, lock_expires=None)
        )


def holder_of(service: str) -> str | None:
    with session() as db:
        row = db.get(ServiceRow, service)
        return row.lock_holder if row and row.lock_expires and row.lock_expires.replace(tzinfo=None) > utcnow().replace(tzinfo=None) else None


def break_stale(service: str, only_from_prefix: str) -> str | None:
    """Clear the lock if a run whose holder name starts with ``only_from_prefix`` holds it.

    For resuming a crashed run of the same kind, as the operator asserts by resuming; a lock
    held by any other kind of run is left alone (ServiceBusy). Returns the cleared holder.
    """
    previous = holder_of(service)
    if previous and not previous.startswith(only_from_prefix):
        raise ServiceBusy(f"service {service} is locked by {previous}, which is not a {only_from_prefix.rstrip(':')} run: not taking it over")
    if previous:
        release(service, previous)
    return previous


@contextmanager
def service_lock(service: str, holder: str, lease: timedelta) -> Iterator[None]:
    """Hold the service's lock for the block. Re-entrant for the same holder: an inner use
    (a final sync inside a failover) neither fails nor releases the outer one's lock."""
    if holder_of(service) == holder:
        yield
        return
    acquire(service, holder, lease)
    try:
        yield
    finally:
        release(service, holder)
