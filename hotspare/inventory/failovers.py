"""A failover's records in the inventory: in flight, the copy it made live, stopped, moved.

The failover runbook changes the service's row only through these functions, each one short
session and one state move (``service_states``), so what a failover may do to the inventory is
read in one place. ``logger`` receives the state move's sentence (the run's logger).
"""

from __future__ import annotations

from hotspare.inventory import runs
from hotspare.inventory.db import session
from hotspare.inventory.models import ServerRow, ServiceRow, utcnow
from hotspare.inventory.service_states import Event, ServiceState, move
from hotspare.planning.failover import FailoverPlan


def mark_in_flight(plan: FailoverPlan, run_id: int, logger) -> None:
    """The service is failing over in run ``run_id``; a run it continues (a resume) is closed
    as interrupted."""
    with session() as db:
        row = db.get(ServiceRow, plan.service)
        interrupted = (row.failover or {}).get("run_id") if row.state == ServiceState.failing_over else None
        move(row, Event.failover_started, logger)
        row.failover = {"source": plan.source, "target": plan.target, "mode": plan.mode, "copy_id": plan.copy_id,
                        "run_id": run_id, "started_at": utcnow().isoformat()}
    if interrupted and interrupted != run_id:  # a resume: the run it continues is gone (its lease expired)
        runs.close_interrupted(interrupted, f"{plan.service}: its run stopped midway (its lease expired); "
                                            f"run {run_id} resumed the failover")


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
        row.failover = {**(row.failover or {}), "copy_id": copy_id, "finished_at": utcnow().isoformat(),
                        "previous_production": plan.source, "fenced": fenced}
        row.updated_at = utcnow()
        old = db.get(ServerRow, plan.source)
        old.state, old.state_reason = "needs-reprotect", f"{plan.service} failed over to {plan.target}"
