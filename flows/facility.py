"""Runbooks: lose a whole facility, and take it back when it returns.

    facility-failover: gather each service's facts -> facility plan (artifact) -> one approval
        -> facility marked lost -> per wave (tier, then dependencies), at most N at a time:
           the ordinary ``failover`` runbook of each service, bound to its approved plan digest
        -> summary (markdown table: outcome, RTO, time since approval, what to do)

    facility-return: the facility answers again -> per tier: stop the app on each former
        production (it ran when the facility went dark) and reprotect the service with it as
        the mirror (the ``reprotect`` runbook: reverse replication, verified); services whose
        mirror stood there get it back -> facility marked up -> failback offered per tier

Each service's failover is its own (nested) flow run with its own lock, fencing and RTO; a
failed service never stops the others, and the run fails at the end naming the failed ones.
"""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.approval import await_approval, cancelled_state
from flows.failover import failover
from flows.failover_signals import fence_step
from flows.reprotect import reprotect
from hotspare import access
from hotspare.adapters.errors import NotFound
from hotspare.errors import SeveralFailed
from hotspare.fleet.context import ServiceContext
from hotspare.inventory import copies, locks, runs
from hotspare.inventory.db import session
from hotspare.inventory.models import FacilityRow, ServerRow, ServiceRow, utcnow
from hotspare.inventory.service_states import Event, ServiceState, move
from hotspare.planning.approval import PlanRejected, same_plan
from hotspare.planning.facility import (
    HANDLED_ELSEWHERE,
    NOT_FAILED,
    FacilityPlan,
    ServiceMove,
    ServiceStanding,
    plan_facility_failover,
    plan_facility_return,
    summary_markdown,
)
from hotspare.planning.failover import plan_failover
from tasks.failover import gather_facts
from tasks.orchestrator import require_orchestrator
from tasks.replication import Refused

LOST_REASON = "facility {facility} lost"


@flow(name="facility-failover", log_prints=True)
def facility_failover(
    facility: str,
    yes: bool = False,
    approved_plan_digest: str | None = None,
    dry_run: bool = False,
    max_copy_age_hours: float = 24.0,
    approval_timeout_seconds: int = 3600,
    approval_expires_at: datetime | None = None,
    live_run_wait_seconds: float = 600.0,
) -> dict:
    """Fail every service whose production stands in ``facility`` over to its mirror.

    Args:
        facility: Facility name, as in the fleet file.
        yes: Approve the plan up front, without pausing for approval.
        approved_plan_digest: Run without pausing only if the plan's digest is this one (the digest the operator reviewed).
        dry_run: Make the plan and show it with its digest; change nothing.
        max_copy_age_hours: A copy older than this many hours is refused unless force is set.
        approval_timeout_seconds: How long the run waits at the approval pause before it stops (nothing changed).
        approval_expires_at: An up-front approval (yes, approved_plan_digest) counts only if the run starts before this
            time (UTC); later, the run ends cancelled. Default: 5 minutes after the run was due to start.
        live_run_wait_seconds: How long to wait for a live run (a single failover, a rebuild) that holds a service's
            lock; it is never taken over: when it is still at work after this, the service is reported as handled by it.
    """
    require_orchestrator(None, f"facility failover {facility}")  # one orchestrator per fleet
    logger = get_run_logger()
    plan = gather_plan(facility, max_copy_age_hours)
    create_markdown_artifact(
        plan.markdown(), key=f"facility-plan-{facility}", description=f"Facility failover plan for {facility}"
    )
    logger.info(
        "facility plan %s: %d move(s), %d unprotected, %d to rebuild",
        plan.digest,
        len(plan.moves),
        len(plan.unprotected),
        len(plan.rebuild),
    )
    if plan.refusal:
        raise Refused(f"facility failover of {facility} refused: {plan.refusal}")
    if dry_run:
        return {"facility": facility, "outcome": "dry-run", "plan_digest": plan.digest, "plan": plan.markdown()}
    try:
        approval = await_approval(
            f"facility failover of {facility}",
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
    approved_at = time.monotonic()
    run_id = runs.start_run("facility-failover", f"facility:{facility}", flow_run.get_id())
    mark_lost(plan)
    results: dict[str, dict] = {}
    for number, wave in enumerate(plan.waves, 1):
        logger.info("wave %d (tier %d): %s", number, wave.tier, ", ".join(move.service for move in wave.moves))
        results.update(
            _in_parallel(
                wave.moves,
                plan.parallelism,
                lambda move: _fail_over_one(move, run_id, approved_at, max_copy_age_hours, live_run_wait_seconds),
            )
        )
    total = round(time.monotonic() - approved_at, 3)
    failed = sorted(name for name, result in results.items() if result["outcome"] not in NOT_FAILED)
    summary = summary_markdown(plan, results, total)
    outcome = "failed" if failed else "ok"
    details = {
        "plan_digest": plan.digest,
        "approved_by": approval.operator,
        "approval": approval.sentence(),
        "total_seconds": total,
        "results": results,
        "unprotected": [item.service for item in plan.unprotected],
        "rebuild": [offer.service for offer in plan.rebuild],
    }
    runs.record_outcome(
        lambda: runs.finish_run(
            run_id,
            outcome,
            f"facility {facility}: {len(results) - len(failed)} of {len(results)} service(s) on their mirrors after {total} s",
            details,
        ),
        lambda: create_markdown_artifact(
            summary, key=f"facility-failover-{facility}", description=f"Facility failover of {facility}"
        ),
    )
    print(summary)
    if failed:
        raise SeveralFailed(
            f"facility failover of {facility}: {', '.join(failed)} failed; the others completed "
            "(the summary says what to do for each)",
            failed,
        )
    return {"facility": facility, "outcome": "ok", **details}


def gather_plan(facility: str, max_copy_age_hours: float = 24.0) -> FacilityPlan:
    """The facts of every service, as they are now, turned into the facility plan."""
    fleet = access.loaded_fleet()
    if facility not in {item.name for item in fleet.facilities}:
        raise NotFound(f"no facility {facility!r} in the fleet (known: {', '.join(f.name for f in fleet.facilities)})")
    now = utcnow()
    standings = []
    for standing in service_standings(fleet):
        if standing.production_facility == facility:
            facts = gather_facts(ServiceContext.of(fleet, standing.service))
            failover_plan = plan_failover(facts, planned=False, now=now, max_copy_age_hours=max_copy_age_hours)
            standing = ServiceStanding(**{**standing.__dict__, "failover_plan": failover_plan})
        standings.append(standing)
    standbys = {server.name: server.facility for server in fleet.servers if server.role.value == "standby"}
    return plan_facility_failover(facility, standings, standbys, fleet.defaults.facility_parallelism)


def service_standings(fleet) -> list[ServiceStanding]:
    """Every service's layout now, from the inventory (no failover plans yet)."""
    from sqlmodel import select

    facility_of = {server.name: server.facility for server in fleet.servers}
    with session() as db:
        rows = list(db.exec(select(ServiceRow).where(ServiceRow.retired == False)))
    standings = []
    for row in sorted(rows, key=lambda r: r.name):
        spec = next((service for service in fleet.services if service.name == row.name), None)
        if spec is None:
            continue
        previous = (row.failover or {}).get("previous_production") if row.state == "failed-over" else None
        standings.append(
            ServiceStanding(
                service=row.name,
                tier=spec.tier,
                depends_on=tuple(spec.depends_on),
                state=row.state,
                production=row.active_server,
                production_facility=facility_of.get(row.active_server, "?"),
                mirror=row.mirror_server,
                mirror_facility=facility_of.get(row.mirror_server) if row.mirror_server else None,
                planned_production=spec.production,
                planned_production_facility=facility_of.get(spec.production, "?"),
                previous_production=previous,
                previous_production_facility=facility_of.get(previous) if previous else None,
            )
        )
    return standings


def _in_parallel(items, width: int, work) -> dict[str, dict]:
    """``work(item)`` for each item, at most ``width`` at a time, each in a copy of this run's
    context so nested flow runs show under this one. Results by service name."""

    def guarded(item) -> dict:
        try:
            return work(item)
        except Exception as error:  # one service's trouble never stops the others, nor hides their results
            get_run_logger().error("%s: %s", item.service, error)
            return {"outcome": "failed", "detail": str(error)[:500], "state": None}

    with ThreadPoolExecutor(max_workers=max(1, min(width, len(items)))) as pool:
        futures = {item.service: pool.submit(contextvars.copy_context().run, guarded, item) for item in items}
        return {name: future.result() for name, future in futures.items()}


def _fail_over_one(
    move: ServiceMove, run_id: int, approved_at: float, max_copy_age_hours: float, live_run_wait_seconds: float = 600.0
) -> dict:
    """The service's own failover runbook, bound to the plan digest approved with the facility.

    A live run holding the service's lock (a single failover started beside this one, a
    rebuild) is waited for, never taken over; an interrupted failover is resumed only once its
    lease has expired (its run is gone)."""
    logger = get_run_logger()
    started = utcnow()
    handled = _left_to_a_live_run(move, live_run_wait_seconds, approved_at)
    if handled is not None:
        _record_step(run_id, f"failover {move.service}", started, handled["outcome"], handled["detail"])
        return handled
    state = failover(
        move.service,
        approved_plan_digest=move.plan_digest,
        resume=move.resume,
        max_copy_age_hours=max_copy_age_hours,
        return_state=True,
    )
    since = round(time.monotonic() - approved_at, 3)
    if state.is_completed():
        result = state.result()
        outcome, detail, rto = result.get("outcome", "ok"), result.get("detail", ""), result.get("rto_seconds")
    else:
        outcome, detail, rto = "failed", str(state.message or "failed"), None
        logger.error("%s: failover failed: %s", move.service, detail)
    _record_step(run_id, f"failover {move.service}", started, outcome, detail)
    service_state = copies.service_row(move.service).state
    logger.info("%s: %s %.1f s after approval (RTO %s s)", move.service, outcome, since, rto)
    return {
        "outcome": outcome,
        "rto_seconds": rto,
        "since_approval_seconds": since,
        "detail": detail[:500],
        "state": service_state,
        "target": move.target,
    }


def _left_to_a_live_run(move: ServiceMove, seconds: float, approved_at: float) -> dict | None:
    """Wait (bounded) for a live run holding the service's lock; the result when that run
    moved the service or is still at it, None when this run should fail it over itself (the
    lock is free: the other run ended without moving it, or died and its lease expired)."""
    holding = locks.live_holding(move.service)
    if holding is None or holding.holder.startswith(locks.PREEMPTIBLE):
        return None  # free, gone, or routine work the failover takes over at once
    logger = get_run_logger()
    logger.info(
        "%s: %s holds its lock and is alive: waiting up to %g s for it instead of taking it over "
        "(two runs must never act on one mirror)",
        move.service,
        holding.sentence(),
        seconds,
    )
    still = locks.wait_while_held(move.service, seconds, lambda name: not name.startswith(locks.PREEMPTIBLE))
    since = round(time.monotonic() - approved_at, 3)
    row = copies.service_row(move.service)
    if still is not None:
        detail = (
            f"handled by the live run {still.sentence()}: still at work after {seconds:g} s, not taken over; "
            "its own record gives the outcome"
        )
        logger.warning("%s: %s", move.service, detail)
        return {
            "outcome": HANDLED_ELSEWHERE,
            "rto_seconds": None,
            "since_approval_seconds": since,
            "detail": detail,
            "state": row.state,
            "target": move.target,
            "run": still.holder,
        }
    if row.state == ServiceState.failed_over and row.active_server == move.target:
        detail = f"failed over to {move.target} by the live run {holding.holder}, which this run waited for"
        logger.info("%s: %s", move.service, detail)
        return {
            "outcome": "already-done",
            "rto_seconds": _rto_of(holding.holder, move.service),
            "since_approval_seconds": since,
            "detail": detail,
            "state": row.state,
            "target": move.target,
            "run": holding.holder,
        }
    logger.info("%s: %s no longer holds its lock (state %s): this run fails it over", move.service, holding.holder, row.state)
    return None


def _rto_of(holder: str, service: str) -> float | None:
    """The RTO recorded by the run a lock holder names (``failover:<flow run id>``), if any."""
    from sqlmodel import select

    from hotspare.inventory.models import RunRow

    flow_run_id = holder.partition(":")[2]
    with session() as db:
        row = db.exec(
            select(RunRow).where(RunRow.service == service, RunRow.flow_run_id == flow_run_id).order_by(RunRow.id.desc())
        ).first()
    return (row.details or {}).get("rto_seconds") if row is not None else None


def _record_step(run_id: int, name: str, started, outcome: str, detail: str) -> None:
    from hotspare.inventory.models import StepRow

    with session() as db:
        db.add(
            StepRow(
                run_id=run_id,
                name=name,
                started_at=started,
                ended_at=utcnow(),
                outcome="ok" if outcome in NOT_FAILED else "failed",
                detail=detail[:500],
            )
        )


def mark_lost(plan: FacilityPlan) -> None:
    """The facility is lost: its servers are down for the record, and services whose mirror
    stood there are unprotected (routine replication refuses and says why)."""
    reason = LOST_REASON.format(facility=plan.facility)
    unprotected = {item.service for item in plan.unprotected}
    with session() as db:
        _set_facility(db, plan.facility, "lost")
        for server in _servers_in(db, plan.facility):
            if server.state == "ok":
                server.state, server.state_reason = "failed", reason
        for name in unprotected:
            row = db.get(ServiceRow, name)
            if row.state == ServiceState.protected:
                move(row, Event.mirror_lost, get_run_logger())
                row.updated_at = utcnow()


def _set_facility(db, facility: str, status: str) -> None:
    row = db.get(FacilityRow, facility)
    if row is not None:
        row.status = status


def _servers_in(db, facility: str) -> list[ServerRow]:
    from sqlmodel import select

    return list(db.exec(select(ServerRow).where(ServerRow.facility == facility)))


@flow(name="facility-return", log_prints=True)
def facility_return(
    facility: str,
    dry_run: bool = False,
    yes: bool = False,
    approved_plan_digest: str | None = None,
    approval_timeout_seconds: int = 3600,
    approval_expires_at: datetime | None = None,
) -> dict:
    """Protect again every service that ran in ``facility``: its former productions become
    mirrors, lost mirrors come back (both verified by the reprotect runbook); failback is offered.

    The app is stopped on every new mirror first, so the return is gated like a failover: the
    plan and its digest, then one approval for the whole return.

    Args:
        facility: Facility that is back; its former productions become mirrors.
        dry_run: Make the plan and show it with its digest; change nothing.
        yes: Approve the plan up front, without pausing for approval.
        approved_plan_digest: Run without pausing only if the plan's digest is this one (the digest the operator reviewed).
        approval_timeout_seconds: How long the run waits at the approval pause before it stops (nothing changed).
        approval_expires_at: An up-front approval (yes, approved_plan_digest) counts only if the run starts before this
            time (UTC); later, the run ends cancelled. Default: 5 minutes after the run was due to start.
    """
    require_orchestrator(None, f"facility return {facility}")  # one orchestrator per fleet
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    if facility not in {item.name for item in fleet.facilities}:
        raise NotFound(f"no facility {facility!r} in the fleet (known: {', '.join(f.name for f in fleet.facilities)})")
    plan = plan_facility_return(facility, service_standings(fleet))
    create_markdown_artifact(
        plan.markdown(), key=f"facility-return-plan-{facility}", description=f"Return of facility {facility}"
    )
    if dry_run:
        return {"facility": facility, "outcome": "dry-run", "plan_digest": plan.digest, "plan": plan.markdown()}
    subject = f"return of facility {facility}"
    try:
        approval = await_approval(
            subject, plan.digest, plan.markdown(), yes, approved_plan_digest, approval_timeout_seconds, approval_expires_at
        )
    except PlanRejected as error:
        return cancelled_state(error)
    logger.info(approval.sentence())
    current = plan_facility_return(facility, service_standings(fleet))
    same_plan(subject, plan.digest, current.digest, current.markdown())
    run_id = runs.start_run("facility-return", f"facility:{facility}", flow_run.get_id())
    started = time.monotonic()
    results: dict[str, dict] = {}
    for tier, items in plan.tiers():
        logger.info("tier %d: reprotecting %s", tier, ", ".join(item.service for item in items))
        results.update(_in_parallel(items, fleet.defaults.facility_parallelism, lambda item: _reprotect_one(item, run_id)))
    failed = sorted(name for name, result in results.items() if result["outcome"] != "ok")
    with session() as db:
        _set_facility(db, facility, "up" if not failed else "lost")
        for server in _servers_in(db, facility):
            if server.state == "failed" and server.state_reason == LOST_REASON.format(facility=facility):
                server.state, server.state_reason = "ok", f"facility {facility} returned {utcnow():%Y-%m-%d %H:%M} UTC"
    total = round(time.monotonic() - started, 3)
    summary = _return_summary(plan, results, total)
    runs.record_outcome(
        lambda: runs.finish_run(
            run_id,
            "failed" if failed else "ok",
            f"facility {facility} returned: {len(results) - len(failed)} of {len(results)} service(s) protected again",
            {
                "results": results,
                "total_seconds": total,
                "approved_by": approval.operator,
                "failbacks": [offer.command for offer in plan.failbacks],
            },
        ),
        lambda: create_markdown_artifact(
            summary, key=f"facility-return-{facility}", description=f"Return of facility {facility}"
        ),
    )
    print(summary)
    if failed:
        raise SeveralFailed(
            f"return of facility {facility}: {', '.join(failed)} not protected again; the others are "
            "(the summary says what to do for each)",
            failed,
        )
    return {
        "facility": facility,
        "outcome": "ok",
        "results": results,
        "total_seconds": total,
        "failbacks": [offer.command for offer in plan.failbacks],
    }


def _reprotect_one(item, run_id: int) -> dict:
    """Stop the app on a former production (it ran when the facility went dark), then reprotect."""
    logger = get_run_logger()
    started = utcnow()
    fencing = None
    if item.fence_first:
        # red "Unfenced" when it cannot; never its power: it becomes the mirror next
        fencing = fence_step(item.service, item.new_mirror, power_off=False)
    reprotect_run = runs.start_run("reprotect", item.service, flow_run.get_id())
    state = reprotect(item.service, mirror=item.new_mirror, yes=True, return_state=True)  # approved with the return
    if state.is_completed():
        result = state.result()
        outcome, detail = "ok", f"{result['production']} -> {result['mirror']}, copy {result['copy_id']} verified"
    else:
        outcome, detail = "failed", str(state.message or "failed")
        logger.error("%s: reprotect failed: %s", item.service, detail)
    runs.record_outcome(lambda: runs.finish_run(reprotect_run, outcome, f"{item.service}: {detail}", {"fencing": fencing}))
    _record_step(run_id, f"reprotect {item.service}", started, outcome, detail)
    return {
        "outcome": outcome,
        "detail": detail[:500],
        "mirror": item.new_mirror,
        "why": item.why,
        "fenced": None if fencing is None else fencing.get("fenced"),
    }


def _return_summary(plan, results: dict[str, dict], total: float) -> str:
    from hotspare.planning.facility import failback_lines

    lines = [
        f"# Return of facility {plan.facility}",
        "",
        f"Finished in {total:.1f} s.",
        "",
        "| service | tier | new mirror | why | outcome | detail / what to do |",
        "|---|---|---|---|---|---|",
    ]
    for item in plan.reprotections:
        result = results.get(item.service, {"outcome": "not run", "detail": ""})
        todo = (
            result["detail"]
            if result["outcome"] == "ok"
            else (f"{result['detail']} — then `hotspare reprotect {item.service} --mirror {item.new_mirror}`")
        )
        lines.append(f"| {item.service} | {item.tier} | {item.new_mirror} | {item.why} | {result['outcome']} | {todo} |")
    lines += ["", *failback_lines(plan.failbacks)]
    return "\n".join(lines)
