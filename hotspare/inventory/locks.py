"""Per-service leases with fencing tokens: one replication, backup, failover or rebuild at a time.

A conditional UPDATE takes the lock, so it works across processes and machines sharing the
inventory. Every expiry is written and judged by the **inventory's clock** (``clock.py``: SQL
``database_time`` inside the deciding statement), never by a process's own: two workers whose
clocks differ by 20 minutes still exclude each other. Every acquisition increments the service's **fencing token**. A lease is short
(``LEASE``) and renewed by a thread while the holding process lives, so a killed run's lock
frees itself within ``LEASE``. Before every side effect a run calls ``Lease.check(action)``;
a run whose lease expired or was taken over stops there (``LeaseLost``) and changes nothing more.

A failover or rebuild never waits on routine work of the same service: it **takes over** the
lock of a replication, backup, verification or restore proof (``PREEMPTIBLE``), whose next
check then fails, so its half-made copy is never promoted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update

from hotspare.adapters.errors import Busy, NotFound
from hotspare.inventory.clock import database_time
from hotspare.inventory.db import session
from hotspare.inventory.models import ServiceRow, as_utc

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=30)


def lease_length() -> timedelta:
    """``LEASE``, or ``HOTSPARE_LEASE_SECONDS`` (tests and very slow inventories)."""
    return timedelta(seconds=float(os.environ.get("HOTSPARE_LEASE_SECONDS") or LEASE.total_seconds()))


# Routine runs (and drills) a failover or rebuild of the same service takes the lock from at once.
PREEMPTIBLE = ("replicate:", "backup:", "verify:", "restore-proof:", "drill:")


class ServiceBusy(Busy):
    """Another run holds the service's lock."""


class LeaseLost(Busy):
    """This run no longer holds the service's lock: it stops before its next side effect."""


@dataclass
class Lease:
    """A held lock: the fencing ``token`` identifies this holding among all of the service's."""

    service: str
    holder: str
    token: int
    lost: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def check(self, action: str) -> None:
        """Raise ``LeaseLost`` unless this run still holds the lock (read from the inventory)."""
        with session() as db:
            holder, token, live = db.execute(
                select(ServiceRow.lock_holder, ServiceRow.lock_token, ServiceRow.lock_expires > database_time()).where(
                    ServiceRow.name == self.service
                )
            ).one()
        if holder == self.holder and token == self.token and live:
            return
        now_held = f"{holder} holds it now (token {token})" if holder and holder != self.holder else "its lease ran out"
        raise LeaseLost(
            f"{self.holder} no longer holds the lock of {self.service} ({now_held}): "
            f"not going to {action}; nothing more was changed by this run"
        )

    def renew(self) -> bool:
        """Extend the lease if this holding is still the current one."""
        with session() as db:
            result = db.exec(
                update(ServiceRow)
                .where(
                    ServiceRow.name == self.service,
                    ServiceRow.lock_holder == self.holder,
                    ServiceRow.lock_token == self.token,
                    ServiceRow.lock_expires > database_time(),
                )
                .values(lock_expires=database_time(lease_length()))
            )
        if result.rowcount != 1 and self.lost is None:
            self.lost = f"lease of {self.service} lost (by the inventory's clock)"
            log.warning("%s: %s; the run stops before its next side effect", self.holder, self.lost)
        return self.lost is None


_held: dict[str, Lease] = {}  # holder -> lease held by this process
_held_lock = threading.Lock()


def acquire(service: str, holder: str, preempt: tuple[str, ...] = ()) -> Lease:
    """Take the service's lock for ``holder``: free, expired, already ours, or held by a run
    whose holder name starts with one of ``preempt`` (taken over). Otherwise ``ServiceBusy``."""
    free = [ServiceRow.lock_holder.is_(None), ServiceRow.lock_expires < database_time(), ServiceRow.lock_holder == holder]
    free += [ServiceRow.lock_holder.startswith(prefix) for prefix in preempt]
    with session() as db:  # a read first, in its own transaction: SQLite cannot upgrade a read to a write
        previous = db.execute(
            select(ServiceRow.lock_holder, ServiceRow.lock_expires > database_time()).where(ServiceRow.name == service)
        ).one_or_none()
        if previous is None:
            raise NotFound(f"no service {service!r} in the inventory: check the name or load the fleet file first")
        previous_holder, previous_live = previous
    with session() as db:
        result = db.exec(
            update(ServiceRow)
            .where(ServiceRow.name == service)
            .where(or_(*free))
            .values(
                lock_holder=holder,
                lock_expires=database_time(lease_length()),
                lock_since=database_time(),
                lock_token=func.coalesce(ServiceRow.lock_token, 0) + 1,
            )
        )
        if result.rowcount == 1:
            db.flush()
            db.expire_all()
            token = db.get(ServiceRow, service).lock_token
        else:
            row = db.get(ServiceRow, service)
            raise busy(service, row.lock_holder, row.lock_since)
    if previous_holder and previous_holder != holder and previous_live:
        log.warning("%s took over the lock of %s from %s (token %d)", holder, service, previous_holder, token)
    return Lease(service, holder, token)


def busy(service: str, holder: str | None, since: datetime | None) -> ServiceBusy:
    """The "busy" error: who holds the lock, since when, and what the operator can do."""
    since_text = f"since {as_utc(since):%Y-%m-%d %H:%M:%S} UTC" if since else ""
    return ServiceBusy(
        f"service {service} is busy: {holder} holds its lock {since_text}. Wait for it to finish; "
        f"a run that died frees the lock within {lease_length().total_seconds():g} s; a failover or rebuild takes it over from "
        f"a replication, backup or verification at once. If you are sure the holder is gone: "
        f"`hotspare unlock {service} --holder {holder}`.",
        service=service,
        holder=holder or "",
        since=since,
    )


def release(lease: Lease) -> None:
    with session() as db:
        db.exec(
            update(ServiceRow)
            .where(ServiceRow.name == lease.service, ServiceRow.lock_holder == lease.holder, ServiceRow.lock_token == lease.token)
            .values(lock_holder=None, lock_expires=None, lock_since=None)
        )


def holder_of(service: str) -> str | None:
    """The live holder of the service's lock, or None."""
    with session() as db:
        row = db.execute(
            select(ServiceRow.lock_holder).where(
                ServiceRow.name == service, ServiceRow.lock_holder.is_not(None), ServiceRow.lock_expires > database_time()
            )
        ).one_or_none()
    return row[0] if row else None


@dataclass(frozen=True)
class Holding:
    """Who holds a service's lock with a lease that has not expired: a live run (it renews)."""

    holder: str
    token: int
    expires: datetime

    def sentence(self) -> str:
        return f"{self.holder} (token {self.token}, lease renewed until {as_utc(self.expires):%H:%M:%S} UTC)"


def live_holding(service: str) -> Holding | None:
    """The service's lock as held now, or None when it is free or its lease expired (holder gone)."""
    with session() as db:  # judged by the inventory's clock, as every lease is
        row = db.execute(
            select(ServiceRow.lock_holder, ServiceRow.lock_token, ServiceRow.lock_expires).where(
                ServiceRow.name == service, ServiceRow.lock_holder.is_not(None), ServiceRow.lock_expires > database_time()
            )
        ).one_or_none()
    return Holding(row[0], row[1] or 0, row[2]) if row else None


def wait_while_held(service: str, seconds: float, held_by=lambda holder: True, poll_seconds: float = 0.5) -> Holding | None:
    """Wait up to ``seconds`` while a live lease whose holder ``held_by`` accepts holds the lock.

    The wait ends when that run releases the lock or dies: a dead run stops renewing, so its
    lease expires within ``lease_length()``. Returns the holding still live at the deadline
    (a live run: never taken over), or None once the lock is free or held by someone else."""
    deadline = time.monotonic() + seconds
    while True:
        holding = live_holding(service)
        if holding is None or not held_by(holding.holder) or time.monotonic() >= deadline:
            return holding if holding is not None and held_by(holding.holder) else None
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))


def unlock(service: str, holder: str) -> bool:
    """Clear the lock if ``holder`` (named by the operator) holds it; False if it does not."""
    with session() as db:
        result = db.exec(
            update(ServiceRow)
            .where(ServiceRow.name == service, ServiceRow.lock_holder == holder)
            .values(lock_holder=None, lock_expires=None, lock_since=None)
        )
    return result.rowcount == 1


def held(holder: str) -> Lease | None:
    """The lease this process holds for ``holder`` (for a run nested inside its caller's lock)."""
    with _held_lock:
        return _held.get(holder)


def _renew_until_released(lease: Lease) -> None:
    while not lease._stop.wait(lease_length().total_seconds() / 3):
        try:
            if not lease.renew():
                return
        except Exception as error:  # the inventory is briefly unreachable: the next round retries
            log.warning("could not renew the lease of %s: %s", lease.service, error)


@contextmanager
def service_lock(service: str, holder: str, preempt: tuple[str, ...] = ()) -> Iterator[Lease]:
    """Hold the service's lock for the block, renewed in the background. Re-entrant for the same
    holder: an inner use (a final sync inside a failover) shares the outer one's lease."""
    outer = held(holder)
    if outer is not None and outer.service != service:
        raise ValueError(
            f"{holder} holds the lock of {outer.service} and asks for {service}'s: each service needs a holder of its own"
        )  # sharing would leave the second service unlocked
    if outer is not None:
        yield outer
        return
    lease = acquire(service, holder, preempt)
    renewer = threading.Thread(target=_renew_until_released, args=(lease,), name=f"lease-{service}", daemon=True)
    with _held_lock:
        _held[holder] = lease
    renewer.start()
    try:
        yield lease
    finally:
        lease._stop.set()
        with _held_lock:
            _held.pop(holder, None)
        try:
            release(lease)
        except Exception as error:  # never replace the run's own outcome; the lease expires anyway
            log.warning(
                "could not release the lock of %s (it frees itself within %g s): %s",
                service,
                lease_length().total_seconds(),
                error,
            )
