"""Runbook: fail a service over to its mirror — planned switchover or emergency.

    plan -> approval -> [planned: lower TTL, stop app, final sync + verify | emergency: fence,
         alongside the activation (app stop over SSH, else BMC power-off)]
         -> activate copy -> start app -> [wait for the fence] -> health check
         -> DNS cutover (CAS) -> check via DNS -> inventory

One failover per service at a time (Prefect global concurrency limit + inventory lock). A run
that crashed midway is continued with ``resume=True``: every step is idempotent and the
activation is not repeated once done.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.approval import await_approval, cancelled_state
from flows.failover_signals import changes_before_cutover, fence_outcome, fence_production, say_what_was_undone, unfenced_warning
from flows.failover_undo import back_to_production, undo_activated_copy
from flows.replicate import replicate_one
from flows.unattended_gate import unattended_approval
from hotspare import access
from hotspare.adapters import dns
from hotspare.adapters.errors import DnsPrerequisiteFailed
from hotspare.fleet.context import ServiceContext
from hotspare.inventory import failovers, locks, runs
from hotspare.inventory.clock import database_now
from hotspare.inventory.models import utcnow
from hotspare.planning.approval import Approval, PlanRejected, same_plan
from hotspare.planning.failover import FailoverPlan, plan_failover
from tasks.account_merge import apply_accounts
from tasks.dns_cutover import cutover_dns
from tasks.failover import activate_copy, check_room, check_through_dns, gather_facts, health_check_direct, run_app_commands
from tasks.orchestrator import require_orchestrator
from tasks.replication import Refused


@flow(name="failover", log_prints=True)
def failover(
    service: str,
    planned: bool = False,
    copy_id: str | None = None,
    dry_run: bool = False,
    yes: bool = False,
    approved_plan_digest: str | None = None,
    force: bool = False,
    resume: bool = False,
    max_copy_age_hours: float = 24.0,
    approval_timeout_seconds: int = 3600,
    approval_expires_at: datetime | None = None,
    unattended: bool = False,
) -> dict:
    """Move ``service`` to its mirror and repoint its DNS record; see the module docstring.

    Args:
        service: Service name, as in the fleet file.
        planned: Planned switchover: stop the app, final sync and verification, no data loss.
        copy_id: Make this copy live instead of the newest verified one.
        dry_run: Make the plan and show it with its digest; change nothing.
        yes: Approve the plan up front, without pausing for approval.
        approved_plan_digest: Run without pausing only if the plan's digest is this one (the digest the operator reviewed).
        force: Accept an unverified or too old copy.
        resume: Continue a failover whose process died midway (every step is idempotent).
        max_copy_age_hours: A copy older than this many hours is refused unless force is set.
        approval_timeout_seconds: How long the run waits at the approval pause before it stops (nothing changed).
        approval_expires_at: An up-front approval (yes, approved_plan_digest) counts only if the run starts before this
            time (UTC); later, the run ends cancelled. Default: 5 minutes after the run was due to start.
        unattended: Approved by the fleet's health policy (``automatic_failover: unattended``; set by the
            health runbook when the quorum declares production down), recorded as that policy, not as a person.
            Counts only when the facts say so (``flows/unattended_gate.py``): else refused, nothing changed.
    """
    require_orchestrator(None, f"failover {service}")  # one orchestrator per fleet
    logger = get_run_logger()
    # resolved once and handed to every step: the whole run acts on one version of the fleet, and
    # undoing a step never needs the inventory
    context = ServiceContext.of(access.loaded_fleet(), service)
    # the parameter is a claim: the policy, the health records and who started the run decide, before anything
    unattended_ok = unattended_approval(context.fleet, service, "") if unattended and not dry_run else None
    plan = _plan(context, planned, copy_id, force, max_copy_age_hours)
    create_markdown_artifact(plan.markdown(), key=f"failover-plan-{service}", description=f"Failover plan for {service}")
    logger.info("plan %s: %s %s -> %s, copy %s", plan.digest, plan.mode, plan.source, plan.target, plan.copy_id or "final sync")
    if plan.already_done:
        logger.info(plan.refusal)
        return {"service": service, "outcome": "already-done", "detail": plan.refusal}
    if plan.refusal:
        raise Refused(f"failover of {service} refused: {plan.refusal}")
    if dry_run:
        return {"service": service, "outcome": "dry-run", "plan_digest": plan.digest, "plan": plan.markdown()}
    try:
        approval = (
            replace(unattended_ok, digest=plan.digest)
            if unattended_ok is not None
            else await_approval(
                f"failover of {service}",
                plan.digest,
                plan.markdown(),
                yes,
                approved_plan_digest,
                approval_timeout_seconds,
                approval_expires_at,
                phone=(service, plan.spoken()),
            )
        )
    except PlanRejected as error:
        return cancelled_state(error)
    logger.info(approval.sentence())
    holder = f"failover:{flow_run.get_id() or 'local'}"
    # Never wait on routine work: take the lock over from a replication, backup or verification
    # (their next step then refuses to act). A resume continues only a failover whose run is
    # gone (its lease expired): a live one is never taken over, or two runs act on one mirror.
    if resume:
        _wait_for_a_gone_failover(service, holder)
    with locks.service_lock(service, holder, preempt=locks.PREEMPTIBLE) as lease, _prefect_slot(service, takeover=resume):
        _same_plan_under_lock(plan, _plan(context, planned, copy_id, force, max_copy_age_hours))
        check_room(context, plan.target, plan.copy_id)  # before any change: refuses with the host's numbers
        return execute(plan, holder, approval, lease, context)


def _wait_for_a_gone_failover(service: str, holder: str) -> None:
    """Before a resume: the failover holding the lock must be gone. A run that died stops renewing
    its lease, which expires within one lease length, so wait that long; a holder still renewing
    after it is alive and handles the failover itself: ``ServiceBusy`` naming it."""
    holding = locks.live_holding(service)
    if holding is None or holding.holder == holder or holding.holder.startswith(locks.PREEMPTIBLE):
        return
    seconds = locks.lease_length().total_seconds() + 2
    get_run_logger().info(
        "%s holds the lock of %s: waiting up to %g s for its lease to expire (a run that is gone "
        "stops renewing it); a live run is never taken over",
        holding.sentence(),
        service,
        seconds,
    )
    still = locks.wait_while_held(service, seconds, lambda name: not name.startswith(locks.PREEMPTIBLE))
    if still is not None:
        raise locks.ServiceBusy(
            f"not resuming the failover of {service}: {still.sentence()} is alive (it kept renewing its lease for "
            f"{seconds:g} s) and is acting on it; let it finish (`hotspare status`), nothing was changed by this run",
            service=service,
            holder=still.holder,
            since=None,
        )


def _plan(context: ServiceContext, planned: bool, copy_id: str | None, force: bool, max_copy_age_hours: float) -> FailoverPlan:
    return plan_failover(
        gather_facts(context), planned=planned, now=utcnow(), copy_id=copy_id, force=force, max_copy_age_hours=max_copy_age_hours
    )


def _same_plan_under_lock(approved: FailoverPlan, current: FailoverPlan) -> None:
    """The facts gathered again under the lock must give the plan that was approved."""
    if current.digest == approved.digest:
        get_run_logger().info("facts gathered again under the lock: the plan is unchanged (%s)", approved.digest)
        return
    create_markdown_artifact(
        current.markdown(),
        key=f"failover-plan-{current.service}",
        description=f"Failover plan for {current.service} (changed since approval)",
    )
    same_plan(f"failover of {approved.service}", approved.digest, current.digest, current.markdown(), current.refusal or "")


SLOT_LEASE_SECONDS = 60
SLOT_WAIT_SECONDS = 5  # a holder that is just finishing releases within this


@contextmanager
def _prefect_slot(service: str, takeover: bool):
    """The Prefect global concurrency limit ``hotspare-failover-SERVICE`` (limit 1), which shows
    a running failover in Prefect and stops a second one launched beside it.

    Taken while holding the service's inventory lock, so a slot still held belongs to a run that
    is gone (crashed: its lease lasts another minute) or stalled without its lock (it stops at
    its next step, ``LeaseLost``): after a short wait the slot is taken over with a logged
    sentence, never waited out — a crashed failover must not delay the next one by a minute, nor
    fail it. A resumed run, whose operator asserted the earlier run is gone, takes it at once.

    The slot is bookkeeping: the inventory lock (fencing token, a check before every side effect)
    is what excludes two runs. So a slot lease Prefect fails to renew (a takeover or a server
    restart revoked it) is logged and never ends the failover midway.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
    from prefect.concurrency.sync import concurrency

    name = f"hotspare-failover-{service}"

    def take_over() -> None:
        with get_client(sync_client=True) as client:
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=0))

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, limit=1)
    if takeover:
        take_over()
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(
                    name,
                    occupy=1,
                    timeout_seconds=SLOT_WAIT_SECONDS,
                    strict=True,
                    lease_duration=SLOT_LEASE_SECONDS,
                    raise_on_lease_renewal_failure=False,
                )
            )
        except TimeoutError:
            get_run_logger().warning(
                "the Prefect slot %s is still held although this run holds %s's inventory lock: the run that took "
                "it is gone (or stalled without the lock, and stops at its next step); taken over",
                name,
                service,
            )
            take_over()
            stack.enter_context(
                concurrency(
                    name,
                    occupy=1,
                    timeout_seconds=SLOT_WAIT_SECONDS * 3,
                    strict=True,
                    lease_duration=SLOT_LEASE_SECONDS,
                    raise_on_lease_renewal_failure=False,
                )
            )
        yield


def execute(plan: FailoverPlan, holder: str, approval: Approval, lease: locks.Lease, context: ServiceContext) -> dict:
    """Carry out an approved plan, recording each step; see the module docstring for the order.
    ``context``: as resolved when the run started (undo steps use it, never the inventory)."""
    logger = get_run_logger()
    service = plan.service
    run_id = runs.start_run("failover", service, flow_run.get_id())
    copy_id = plan.copy_id
    lease.check("mark the service as failing over")
    began = failovers.mark_in_flight(plan, run_id, get_run_logger())
    details: dict = {
        "plan_digest": plan.digest,
        "approved_by": approval.operator,
        "approval": approval.sentence(),
        "mode": plan.mode,
    }
    fencing = None
    artifact_lines: list[str] = []  # what activation neutralised and kept aside
    activating = False  # between the first change on the target and the app's start: undone on failure
    try:
        if plan.mode == "planned" and copy_id is None:
            copy_id = _planned_preparation(plan, holder, run_id, details, context)
        elif plan.mode == "planned":
            logger.info("resuming after the final sync: copy %s is the one to make live", copy_id)
        else:  # the fence runs alongside the activation; the DNS cutover waits for its outcome
            fencing = fence_production.submit(service, plan.source)
        failovers.record_copy(service, copy_id)
        with runs.step(run_id, "activate copy"):
            lease.check(f"make copy {copy_id} live on {plan.target}")
            activating = True
            activation = activate_copy(context, plan.target, copy_id)
            artifact_lines += activation.pop("markdown", [])
            details["activation"] = activation
            apply_accounts(service, copy_id, plan.target)
            run_app_commands(context, plan.target, "activate")
            activating = False
        if fencing is not None:
            with runs.step(run_id, "fence production") as step:
                details["fencing"] = fence_outcome(fencing)
                if not details["fencing"]["fenced"]:
                    step.detail = f"UNFENCED: {details['fencing']['detail']}"[:500]
        with runs.step(run_id, "health check"):
            health_check_direct(context, plan.target_address)
        with runs.step(run_id, "dns cutover"):
            lease.check(f"move {plan.dns_name} to {plan.target_address}")
            details["dns"] = _cutover(plan, copy_id, details, context)
        with runs.step(run_id, "check through dns"):
            check_through_dns(context, plan.target_address)
        with runs.step(run_id, "inventory"):
            lease.check("record the new layout in the inventory")
            failovers.record_new_layout(plan, copy_id, details.get("fencing", {}).get("fenced", True), get_run_logger())
    except Exception as error:
        made_live = details.get("activation") or getattr(error, "activation", None)
        if activating and made_live and made_live.get("copied", True):
            undo_activated_copy(plan, copy_id, made_live, fencing, details, error, context, run_id)
        elif plan.mode == "planned" and "dns" not in details and copy_id is not None:
            say_what_was_undone(
                error,
                f"the switchover was undone (copy {copy_id} was made live on {plan.target}): "
                + back_to_production(plan, context, run_id),
            )
        reason = str(error)
        runs.record_outcome(
            lambda: runs.finish_run(run_id, "failed", f"{service}: failover stopped: {reason}", details),
            lambda: _publish(plan, run_id, "FAILED", reason, artifact_lines),
        )
        raise
    timings = runs.step_timings(run_id)
    details["rto_seconds"] = round(sum(step["seconds"] or 0 for step in timings), 3)
    rto_text = f"RTO {details['rto_seconds']} s"
    if began.resumed:  # the outage did not start with this run: count from the first run's start
        details["this_run_seconds"] = details["rto_seconds"]
        details["rto_seconds"] = round((database_now() - began.first_started_at).total_seconds(), 3)
        details["failover_began_at"] = began.first_started_at.isoformat()
        rto_text = (
            f"RTO {details['rto_seconds']} s since the failover began at {began.first_started_at:%Y-%m-%d %H:%M:%S} "
            f"UTC (resumed; this run {details['this_run_seconds']} s)"
        )
    details["data_loss_seconds"] = 0.0 if plan.mode == "planned" else plan.copy_age_seconds
    summary = (
        f"{service} now runs on {plan.target} ({plan.target_address}); {rto_text}; "
        f"data-loss window {_loss(plan)}" + unfenced_warning(plan, details)
    )
    runs.record_outcome(
        lambda: runs.finish_run(run_id, "ok", summary, details),
        lambda: _publish(
            plan,
            run_id,
            "done" if not unfenced_warning(plan, details) else "done, old production UNFENCED",
            summary,
            artifact_lines,
        ),
    )
    logger.info(summary)
    if plan.mode == "planned":
        details["reprotect"] = _reprotect_after_switchover(plan, holder)
    return {"service": service, "outcome": "ok", "copy_id": copy_id, **details}


def _reprotect_after_switchover(plan: FailoverPlan, holder: str) -> dict:
    """After a clean switchover the old production is healthy and stopped: make it the mirror.

    Runs inside this flow run under the lock it holds. A failure here does not undo the
    switchover; the service is then left failed-over and the operator runs ``hotspare reprotect``.
    """
    from flows.reprotect import reprotect_under_lock

    try:
        return {"outcome": "ok", **reprotect_under_lock(plan.service, plan.source, holder)}
    except Exception as error:
        get_run_logger().error("switchover done, but reprotect failed: %s. Run `hotspare reprotect %s`.", error, plan.service)
        return {"outcome": "failed", "detail": str(error)}


def _planned_preparation(plan: FailoverPlan, holder: str, run_id: int, details: dict, context: ServiceContext) -> str:
    """Lower the TTL, stop the app, final sync and verify. On error: the app runs on production again."""
    service = plan.service
    with runs.step(run_id, "lower ttl"):
        details["ttl"] = _lower_ttl(context)
    try:  # from here on, any failure (the inventory's too) starts the app on production again
        with runs.step(run_id, "stop app on production"):
            run_app_commands(context, plan.source, "deactivate")
        with runs.step(run_id, "final sync and verify"):
            result = replicate_one(service, lock_holder=holder)
    except Exception as error:
        get_run_logger().error(
            "switchover stopped before the final sync completed (%s): starting the app on %s again; "
            "everything stays on production",
            error,
            plan.source,
        )
        say_what_was_undone(
            error,
            f"the app on {plan.source} was stopped for the final sync; "
            + back_to_production(plan, context, run_id, stop_target=False),
        )
        raise
    return result["copy_id"]


def _lower_ttl(context: ServiceContext) -> dict:
    fleet, spec = context.fleet, context.spec
    zone = fleet.zone(spec.zone.rstrip("."))
    server = access.dns_server(fleet, zone.name)
    ttl = fleet.record_ttl_of(spec)
    current = dns.read_ttl(server, spec.dns_name)
    if current is None or current <= ttl:
        return {"ttl": current, "lowered": False}
    [address] = dns.read_addresses(server, spec.dns_name)
    dns.set_ttl(server, access.tsig_key(zone.tsig_key_block), spec.dns_name, address, ttl)
    get_run_logger().warning(
        "lowered the TTL of %s from %d to %d s; resolvers may keep the old answer up to %d s",
        spec.dns_name,
        current,
        ttl,
        current,
    )
    return {"ttl": ttl, "lowered": True, "previous": current}


def _cutover(plan: FailoverPlan, copy_id: str, details: dict, context: ServiceContext) -> dict:
    """DNS compare-and-swap. If it fails, stop our app on the target again so users never see
    two productions; the activated copy stays in place for a resumed run. The error then says
    exactly what this run changed and undid (never "nothing was changed": the copy went live)."""
    try:
        return cutover_dns(context.fleet, plan.service, plan.source_address, plan.target_address)
    except Exception as error:
        logger = get_run_logger()
        logger.error(
            "DNS cutover failed (%s): stopping the app on %s again; DNS still points to %s",
            error,
            plan.target,
            plan.source_address,
        )
        run_app_commands(context, plan.target, "deactivate")
        if not isinstance(error, DnsPrerequisiteFailed):
            logger.error("the failover of %s is paused midway: fix the cause, then run it again with resume", plan.service)
            raise
        failovers.clear_in_flight(plan.service, get_run_logger())  # someone else moved the record: this failover is over
        refusal = DnsPrerequisiteFailed(
            f"failover of {plan.service} stopped at the DNS cutover: {str(error).split(' Nothing was changed')[0]}"
            + f" What this run changed and undid: {changes_before_cutover(plan, copy_id, details)}; the app on "
            f"{plan.target} was stopped again. This run did not change DNS; the inventory shows {plan.service} on "
            f"{plan.source} again."
        )
        refusal.advice = (
            "the message says what was changed and undone; find who moved the record (`hotspare status`), "
            "then decide on a new failover"
        )
        raise refusal from error


def _loss(plan: FailoverPlan) -> str:
    if plan.mode == "planned":
        return "none (final sync with the app stopped)"
    return f"{plan.copy_age_seconds:.0f} s (copy {plan.copy_id})" if plan.copy_age_seconds is not None else "unknown"


def _publish(plan: FailoverPlan, run_id: int, outcome: str, summary: str, activation_lines: list[str] = ()) -> None:
    lines = [
        f"# Failover of {plan.service}: {outcome}",
        "",
        summary,
        "",
        "| step | seconds | outcome | detail |",
        "|---|---|---|---|",
    ]
    for step in runs.step_timings(run_id):
        lines.append(f"| {step['step']} | {step['seconds']} | {step['outcome']} | {step['detail']} |")
    lines += activation_lines  # hostile data neutralised, replaced files kept aside
    create_markdown_artifact("\n".join(lines), key=f"failover-{plan.service}", description=f"Failover of {plan.service}")
