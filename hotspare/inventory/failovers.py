"""A failover's records in the inventory: in flight, the copy it made live, stopped, moved.

The failover runbook changes the service's row only through these functions, each one short
session and one state move (``service_states``), so what a failover may do to the inventory is
read in one place. ``logger`` receives the state move's sentence (the run's logger).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from hotspare.inventory import runs
from hotspare.inventory.clock import database_now
from hotspare.inventory.db import session
from hotspare.inventory.models import ServerRow, ServiceRow, utcnow
from hotspare.inventory.service_states import Event, ServiceState, move
from hotspare.planning.failover import FailoverPlan


@dataclass(frozen=True)
class Began:
    """When the failover began: this run's start, or a dead run's that this one resumes."""

    first_started_at: datetime
    resumed: bool


def mark_in_flight(plan: FailoverPlan, run_id: int, logger) -> Began:
    """The service is failing over in run ``run_id``. A resume keeps the first run's start (the
    inventory's clock, as every run of any machine writes it), so the RTO counts the whole
    outage, and closes the run it continues as interrupted."""
    now = database_now()
    with session() as db:
        row = db.get(ServiceRow, plan.service)
        earlier = row.failover if row.state == ServiceState.failing_over and row.failover else None
        interrupted = (earlier or {}).get("run_id")
        move(row, Event.failover_started, logger)
        first = now
        if earlier and earlier.get("target") == plan.target:
            try:
                first = min(now, datetime.fromisoformat(earlier.get("first_started_at") or earlier["started_at"]))
            except (KeyError, TypeError, ValueError):
                first = now
        if first.tzinfo is None:
            first = first.replace(tzinfo=timezone.utc)
        row.failover = {
            "source": plan.source,
            "target": plan.target,
            "mode": plan.mode,
            "copy_id": plan.copy_id,
            "run_id": run_id,
            "started_at": now.isoformat(),
            "first_started_at": first.isoformat(),
        }
    if interrupted and interrupted != run_id:  # a resume: the run it continues is gone (its lease expired)
        runs.close_interrupted(
            interrupted, f"{plan.service}: its run stopped midway (its lease expired); run {run_id} resumed the failover"
        )
    return Began(first, first < now)


def record_copy(service: str, copy_id: str) -> None:
    """The copy this failover makes live (a resume must not pick another)."""
    with session() as db:
        row = db.get(ServiceRow, service)
        row.failover = {**(row.failover or {}), "copy_id": copy_id}


def clear_in_flight(service: str, logger) -> None:
    """Back to the state before the failover (it stopped with nothing moved). Once is enough: a
    switchover stopped by a refused DNS cutover reaches here twice."""
    with session() as db:
        row = db.get(ServiceRow, service)
        if row.state != ServiceState.failing_over:
            return
        move(row, Event.failover_stopped, logger)
        row.failover = None


def record_new_layout(plan: FailoverPlan, copy_id: str, fenced: bool, logger) -> None:
    """Users are on the target now; the old production needs reprotecting."""
    with session() as db:
        row = db.get(ServiceRow, plan.service)
        move(row, Event.users_moved, logger)
        row.active_server, row.mirror_server = plan.target, None
        row.failover = {
            **(row.failover or {}),
            "copy_id": copy_id,
            "finished_at": utcnow().isoformat(),
            "previous_production": plan.source,
            "fenced": fenced,
        }
        row.updated_at = utcnow()
        old = db.get(ServerRow, plan.source)
        old.state, old.state_reason = "needs-reprotect", f"{plan.service} failed over to {plan.target}"
