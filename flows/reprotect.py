"""Runbook: reprotect a failed-over service — the old production becomes its new mirror.

    plan (artifact, digest) -> approval -> lock -> the plan made again must be the approved one
        -> assign the mirror -> reverse replication, verified -> protected

Refuses while the old production still serves the app (two productions for one service);
otherwise assigns it as mirror and replicates in the reverse direction, verified. Failback is
then an ordinary planned failover. The plan is ``hotspare/planning/reprotect.py``; the gate is
the one every runbook shares (``flows/approval.py``).
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.approval import await_approval, cancelled_state
from flows.backup import artifact_key
from flows.replicate import replicate_one
from hotspare import access
from hotspare.fleet.context import ServiceContext
from hotspare.inventory import copies, locks
from hotspare.inventory.db import session
from hotspare.inventory.models import ServerRow, ServiceRow, utcnow
from hotspare.inventory.service_states import Event, move
from hotspare.planning.approval import PlanRejected, same_plan
from hotspare.planning.reprotect import REPROTECTABLE, ReprotectPlan, plan_reprotect
from tasks.failover import serves_app
from tasks.orchestrator import require_orchestrator
from tasks.replication import Refused


@flow(name="reprotect", log_prints=True)
def reprotect(
    service: str,
    mirror: str | None = None,
    lock_holder: str | None = None,
    dry_run: bool = False,
    yes: bool = False,
    approved_plan_digest: str | None = None,
    approval_timeout_seconds: int = 3600,
    approval_expires_at: datetime | None = None,
) -> dict:
    """Make ``mirror`` (default: the server the service failed over from) its new mirror.

    ``lock_holder``: a switchover reprotecting under the lock it already holds.

    Args:
        service: Service name, as in the fleet file.
        mirror: Server to use as the new mirror (default: the server the service failed over from).
        lock_holder: Run under this lock holder (set when a failover reprotects within its own run).
        dry_run: Make the plan and show it with its digest; change nothing.
        yes: Approve the plan up front, without pausing for approval.
        approved_plan_digest: Run without pausing only if the plan's digest is this one (the digest the operator reviewed).
        approval_timeout_seconds: How long the run waits at the approval pause before it stops (nothing changed).
        approval_expires_at: An up-front approval (yes, approved_plan_digest) counts only if the run starts before this
            time (UTC); later, the run ends cancelled. Default: 5 minutes after the run was due to start.
    """
    require_orchestrator(None, f"reprotect {service}")  # one orchestrator per fleet
    logger = get_run_logger()
    plan = gather_plan(service, mirror)
    create_markdown_artifact(
        plan.markdown(), key=artifact_key("reprotect-plan", service), description=f"Reprotect plan for {service}"
    )
    if plan.refusal:
        raise Refused(plan.refusal)
    if dry_run:
        return {"service": service, "outcome": "dry-run", "plan_digest": plan.digest, "plan": plan.markdown()}
    try:
        approval = await_approval(
            f"reprotect of {service}",
            plan.digest,
            plan.markdown(),
            yes,
            approved_plan_digest,
            approval_timeout_seconds,
            approval_expires_at,
        )
    except PlanRejected as error:
        return cancelled_state(error)
    logger.info(approval.sentence())
    holder = lock_holder or f"reprotect:{flow_run.get_id() or 'local'}"
    with locks.service_lock(service, holder):
        current = gather_plan(service, mirror)
        same_plan(f"reprotect of {service}", plan.digest, current.digest, current.markdown(), current.refusal or "")
        return {**reprotect_under_lock(service, plan.new_mirror, holder), "approved_by": approval.operator}


def gather_plan(service: str, mirror: str | None) -> ReprotectPlan:
    """The facts now (inventory, fleet, whether the chosen server answers for the app) as a plan."""
    fleet = access.loaded_fleet()
    row = copies.service_row(service)
    facility_of = {server.name: server.facility for server in fleet.servers}
    new_mirror = mirror or (row.failover or {}).get("previous_production")
    serving = False
    if row.state in REPROTECTABLE and new_mirror in facility_of and new_mirror != row.active_server:
        serving = serves_app(ServiceContext.of(fleet, service), fleet.server(new_mirror).address)
    return plan_reprotect(
        service, row.state, row.active_server, mirror, (row.failover or {}).get("previous_production"), facility_of, serving
    )


def reprotect_under_lock(service: str, mirror: str | None, holder: str) -> dict:
    """The reprotect runbook inside the calling flow run, which holds the service lock as ``holder``."""
    logger = get_run_logger()
    plan = gather_plan(service, mirror)
    if plan.refusal:
        raise Refused(plan.refusal)
    new_mirror = plan.new_mirror
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
    logger.info("%s is protected again: %s -> %s, copy %s verified", service, plan.production, new_mirror, result["copy_id"])
    return {"service": service, "production": plan.production, "mirror": new_mirror, "copy_id": result["copy_id"]}


def _assign_mirror(service: str, mirror: str) -> None:
    with session() as db:
        row = db.get(ServiceRow, service)
        move(row, Event.reprotect_started, get_run_logger())
        row.mirror_server, row.updated_at = mirror, utcnow()
