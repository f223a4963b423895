"""Runbook: fail a reprotected service back to its planned production.

    may it fail back? (protected, running away from its planned production) -> the failover
    runbook as a planned switchover in this run: plan, approval, final sync and verification,
    activation, DNS -> the old production is the mirror again (the switchover reprotects it)

The same runbook as ``hotspare failback SERVICE``, as a run button: the failover's plan and
approval pause are this run's own, so the Prefect UI shows one run per failback.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, get_run_logger

from flows.failover import failover
from hotspare.inventory import copies
from hotspare.planning.coordination import judge_failback
from tasks.orchestrator import require_orchestrator
from tasks.replication import Refused


@flow(name="failback", log_prints=True)
def failback(
    service: str,
    dry_run: bool = False,
    yes: bool = False,
    approved_plan_digest: str | None = None,
    approval_timeout_seconds: int = 3600,
    approval_expires_at: datetime | None = None,
) -> dict:
    """Move ``service`` back to its planned production: a planned switchover, no data loss.

    Args:
        service: Service name, as in the fleet file; it must run on its mirror, reprotected (protected).
        dry_run: Make the plan and show it with its digest; change nothing.
        yes: Approve the plan up front, without pausing for approval.
        approved_plan_digest: Run without pausing only if the plan's digest is this one (the digest the operator reviewed).
        approval_timeout_seconds: How long the run waits at the approval pause before it stops (nothing changed).
        approval_expires_at: An up-front approval (yes, approved_plan_digest) counts only if the run starts before this
            time (UTC); later, the run ends cancelled. Default: 5 minutes after the run was due to start.
    """
    require_orchestrator(None, f"failback {service}")  # one orchestrator per fleet
    row = copies.service_row(service)
    decision = judge_failback(service, row.state, row.active_server, row.spec["production"], row.failover)
    if not decision.go:
        raise Refused(decision.reason)
    get_run_logger().info(decision.reason)
    # the failover runbook inside this run (not a nested run): its approval pause is this run's
    return failover.fn(
        service,
        planned=True,
        dry_run=dry_run,
        yes=yes,
        approved_plan_digest=approved_plan_digest,
        approval_timeout_seconds=approval_timeout_seconds,
        approval_expires_at=approval_expires_at,
    )
