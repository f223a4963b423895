"""Runbook: reprotect a failed-over service — the old production becomes its new mirror.

Refuses while the old production still serves the app (two productions for one service);
otherwise assigns it as mirror and replicates in the reverse direction, verified. Failback is
then an ordinary planned failover.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.replicate import replicate_one
from hotspare import access
from hotspare.inventory import copies, locks
from hotspare.inventory.db import session
from hotspare.inventory.models import ServerRow, ServiceRow, utcnow
from hotspare.inventory.service_states import Event, ServiceState, move
from tasks.failover import serves_app
from tasks.replication import Refused
from tasks.orchestrator import require_orchestrator


@flow(name="reprotect", log_prints=True)
def reprotect(service: str, mirror: str | None = None, lock_holder: str | None = None) -> dict:
    """Make ``mirror`` (default: the server the service failed over from) its new mirror.

    ``lock_holder``: a switchover reprotecting under the lock it already holds.

    Args:
        service: Service name, as in the fleet file.
        mirror: Server to use as the new mirror (default: the server the service failed over from).
        lock_holder: Run under this lock holder (set when a failover reprotects within its own run).
    """
    require_orchestrator(None, f"reprotect {service}")  # one orchestrator per fleet
    holder = lock_holder or f"reprotect:{flow_run.get_id() or 'local'}"
    with locks.service_lock(service, holder):
        return reprotect_under_lock(service, mirror, holder)


def reprotect_under_lock(service: str, mirror: str | None, holder: str) -> dict:
    """The reprotect runbook inside the calling flow run, which holds the service lock as ``holder``."""
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    row = copies.service_row(service)
    if row.state not in (ServiceState.failed_over, ServiceState.unprotected, ServiceState.reprotecting):
        raise Refused(f"{service} is {row.state}; reprotect is for a failed-over or unprotected service")
    new_mirror = mirror or (row.failover or {}).get("previous_production")
    if not new_mirror:
        raise Refused(f"no mirror given and no previous production known for {service}: pass mirror=SERVER")
    if new_mirror == row.active_server:
        raise Refused(f"{new_mirror} is the active production of {service}; choose another server")
    if fleet.server(new_mirror).facility == fleet.server(row.active_server).facility:
        raise Refused(f"{new_mirror} is in the same facility as the production {row.active_server}")
    address = fleet.server(new_mirror).address
    if serves_app(service, address):
        raise Refused(
            f"{new_mirror} ({address}) still serves {service}: that would be two productions (split brain). "
            "Stop the app there (its deactivate commands), then reprotect again."
        )
    lease = locks.held(holder)
    if lease:
        lease.check(f"assign {new_mirror} as the mirror of {service}")
    _assign_mirror(service, new_mirror)
    try:
        result = replicate_one(service, lock_holder=holder)
    except Exception:
        with session() as db:
            move(db.get(ServiceRow, service), Event.reprotect_failed, logger)
        raise
    with session() as db:
        stored = db.get(ServiceRow, service)
        move(stored, Event.mirror_verified, logger)
        stored.updated_at = utcnow()
        server = db.get(ServerRow, new_mirror)
        server.state, server.state_reason = "ok", f"mirror of {service} since {utcnow():%Y-%m-%d %H:%M} UTC"
    logger.info("%s is protected again: %s -> %s, copy %s verified", service, row.active_server, new_mirror, result["copy_id"])
    return {"service": service, "production": row.active_server, "mirror": new_mirror, "copy_id": result["copy_id"]}


def _assign_mirror(service: str, mirror: str) -> None:
    with session() as db:
        row = db.get(ServiceRow, service)
        move(row, Event.reprotect_started, get_run_logger())
        row.mirror_server, row.updated_at = mirror, utcnow()
