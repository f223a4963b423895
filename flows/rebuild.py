"""Runbook: rebuild a service on a standby from its backup, when production and mirror are gone.

    survey + plan (artifact) -> approval bound to the plan digest
    -> restore the snapshot on the standby (verified against its manifest)
    -> recreate the service's accounts -> place data, app and config at their live paths
    -> temporary logins -> start the app -> health check on the standby -> DNS cutover (CAS)
    -> inventory: standby active, no mirror, unprotected

and ``expire-temporary-accounts``, scheduled, which disables temporary logins whose time is up.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.approval import await_approval, cancelled_state
from flows.backup import artifact_key, run_name
from hotspare import access
from hotspare.errors import SeveralFailed
from hotspare.fleet.context import ServiceContext
from hotspare.inventory import locks, runs
from hotspare.planning.approval import PlanRejected, same_plan
from hotspare.probes import reachability
from tasks.dns_cutover import cutover_dns
from tasks.failover import serves_app
from tasks.fencing import fence
from tasks.orchestrator import require_orchestrator
from tasks.rebuild import (
    RebuildRefused,
    activate,
    clean_scratch,
    disable_due_accounts,
    health_check,
    issue_temporary_accounts,
    place_files,
    record_rebuild,
    recreate_accounts,
    restore_on_standby,
    survey,
)


def same_plan_under_lock(approved_digest: str, current) -> None:
    """The facts surveyed again under the lock must give the plan that was approved."""
    same_plan(f"rebuild of {current.service}", approved_digest, current.digest, current.markdown())


def fence_answering(service: str, servers) -> dict:
    """Stop the app on every old server that still answers, so users never meet two productions
    (a forced rebuild with the mirror still serving). A server that answers but still serves
    after its deactivation stops the rebuild before the DNS change."""
    fleet = access.loaded_fleet()
    answering = reachability({name: (fleet.server(name).address, fleet.server(name).ssh_port) for name in servers}, 3.0)
    results = {name: {"fenced": False, "detail": "does not answer"} for name in servers if not answering.get(name)}
    for server in [name for name in servers if answering.get(name)]:
        results[server] = fence(service, server)
        if serves_app(ServiceContext.of(fleet, service), fleet.server(server).address):
            raise RebuildRefused(
                f"{server} still serves {service} after its deactivate commands ({results[server]['detail']}): "
                "not moving DNS, or users would meet two productions. Stop the app there, then rebuild again."
            )
    return results


@flow(name="rebuild", log_prints=True)
def rebuild(
    service: str,
    standby: str | None = None,
    snapshot: str | None = None,
    approved_plan_digest: str | None = None,
    yes: bool = False,
    temporary_account_hours: float = 72.0,
    force: bool = False,
    dry_run: bool = False,
    verify: bool = True,
    approval_timeout_seconds: int = 3600,
) -> dict:
    """Rebuild ``service`` on a standby from the storage host's backup (see module docstring).

    Args:
        service: Service name, as in the fleet file.
        standby: Standby server to rebuild on (default: chosen by health and facility).
        snapshot: Backup snapshot id or prefix (default: the newest of the service).
        approved_plan_digest: Run without pausing only if the plan's digest is this one (the digest the operator reviewed).
        yes: Approve the plan up front, without pausing for approval.
        temporary_account_hours: Lifetime of the temporary logins the rebuild issues.
        force: Rebuild even if production or mirror still answer (they are fenced first).
        dry_run: Make the plan and show it with its digest; change nothing.
        verify: Compare the restored files with the backup's manifest before placing them.
        approval_timeout_seconds: How long the run waits at the approval pause before it stops (nothing changed).
    """
    require_orchestrator(None, f"rebuild {service}")  # one orchestrator per fleet
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    rebuild_plan = survey(fleet, service, standby, snapshot, temporary_account_hours, force)
    digest = rebuild_plan.digest
    create_markdown_artifact(
        rebuild_plan.markdown(), key=artifact_key("rebuild-plan", service), description=f"Rebuild plan for {service}"
    )
    logger.info("rebuild plan %s: %s on %s from snapshot %s", digest, service, rebuild_plan.standby, rebuild_plan.snapshot_id[:8])
    if dry_run:
        logger.info("dry run: nothing changed")
        return {"plan_digest": digest, "plan": asdict(rebuild_plan)}
    try:
        approval = await_approval(
            f"rebuild of {service}", digest, rebuild_plan.markdown(), yes, approved_plan_digest, approval_timeout_seconds
        )
    except PlanRejected as error:
        return cancelled_state(error)
    logger.info(approval.sentence())

    name = run_name()
    run_id = runs.start_run("rebuild", service, flow_run.get_id())
    outcome, summary, details = "failed", "", {"plan_digest": digest, "standby": rebuild_plan.standby}
    restored = False
    artifact_lines: list[str] = []  # what placing neutralised and kept aside
    try:
        with locks.service_lock(service, f"rebuild:{flow_run.get_id() or 'local'}", preempt=locks.PREEMPTIBLE) as lease:
            with runs.step(run_id, "plan again under the lock"):
                same_plan_under_lock(digest, survey(fleet, service, standby, snapshot, temporary_account_hours, force))
            with runs.step(run_id, "restore snapshot on standby") as step:
                restored = True
                details["restore"] = restore_on_standby(fleet, rebuild_plan, name, verify)
                step.detail = f"{details['restore']['restore_s']} s restore"
            scratch = details["restore"]["scratch"]
            with runs.step(run_id, "recreate accounts"):
                details["accounts"] = recreate_accounts(fleet, rebuild_plan, scratch)
            with runs.step(run_id, "place files"):
                placing = place_files(fleet, rebuild_plan, scratch)
                artifact_lines += placing.pop("markdown", [])
                details["placed"] = placing
            with runs.step(run_id, "temporary logins") as step:
                issued = issue_temporary_accounts(fleet, rebuild_plan, scratch, name, flow_run.get_id())
                details["temporary_logins"] = {key: issued.get(key) for key in ("logins", "expires_at")}
                step.detail = ", ".join(issued["logins"])
            with runs.step(run_id, "start application"):
                details["activated"] = activate(fleet, rebuild_plan)
            with runs.step(run_id, "health check"):
                details["health"] = health_check(fleet, rebuild_plan)
            with runs.step(run_id, "fence old servers"):
                lease.check("fence the servers that still answer")
                details["fencing"] = fence_answering(service, rebuild_plan.lost_servers)
            with runs.step(run_id, "dns cutover"):
                lease.check(f"move {rebuild_plan.dns_name} to {rebuild_plan.standby}")
                details["dns"] = cutover_dns(fleet, service, rebuild_plan.dns_from, rebuild_plan.dns_to)
            with runs.step(run_id, "inventory"):
                lease.check("record the rebuilt service in the inventory")
                details["inventory"] = record_rebuild(rebuild_plan)
        outcome = "ok"
        summary = (
            f"{service} rebuilt on {rebuild_plan.standby} from snapshot {rebuild_plan.snapshot_id[:8]} "
            f"({rebuild_plan.snapshot_time}); {rebuild_plan.dns_name} -> {rebuild_plan.dns_to}; "
            "the service is UNPROTECTED until a new mirror is set up"
        )
        logger.info(summary)
        return {"outcome": outcome, "summary": summary, **details, "delivery_file": issued.get("delivery_file")}
    except Exception as error:
        summary = f"rebuild of {service} on {rebuild_plan.standby} failed: {error}"
        raise
    finally:
        if restored:
            state = clean_scratch(fleet, rebuild_plan, name, return_state=True)
            if not state.is_completed():
                logger.warning("scratch space on %s was not removed: %s", rebuild_plan.standby, state.message)
        runs.record_outcome(
            lambda: runs.finish_run(run_id, outcome, summary, details),
            lambda: _publish_summary(service, run_id, outcome, summary, rebuild_plan, artifact_lines),
        )


def _publish_summary(service: str, run_id: int, outcome: str, summary: str, rebuild_plan, placing_lines: list[str] = ()) -> None:
    lines = [
        f"# Rebuild of {service}: {outcome}",
        "",
        summary.replace("|", "/"),
        "",
        f"Plan `{rebuild_plan.digest}`; temporary logins: {', '.join(rebuild_plan.temporary_logins) or 'none'} "
        "(passwords only in the root-only file under $HOTSPARE_HOME/temporary-accounts)",
        "",
        "| step | seconds | outcome |",
        "|---|---|---|",
    ]
    for step in runs.step_timings(run_id):
        lines.append(f"| {step['step']} | {step['seconds']} | {step['outcome']} |")
    lines += placing_lines  # hostile data neutralised, replaced files kept aside
    create_markdown_artifact("\n".join(lines), key=artifact_key("rebuild", service), description=f"Rebuild of {service}")


@flow(name="expire-temporary-accounts", log_prints=True)
def expire_temporary_accounts(now: datetime | None = None) -> dict:
    """Disable every temporary login whose expiry has passed (``now`` defaults to the clock).

    Args:
        now: Judge expiry by this time (default: now).
    """
    require_orchestrator(None, "expire temporary accounts")  # one orchestrator per fleet
    fleet = access.loaded_fleet()
    moment = now or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    result = disable_due_accounts(fleet, moment)
    lines = ["# Temporary login expiry", "", f"At {moment.isoformat(timespec='minutes')}:", ""]
    lines += [f"- disabled {name}" for name in result["disabled"]] or ["- nothing due"]
    lines += [f"- FAILED to disable {name}" for name in result["failed"]]
    create_markdown_artifact("\n".join(lines), key="expire-temporary-accounts", description="Temporary login expiry")
    if result["failed"]:
        raise SeveralFailed(f"could not disable {', '.join(result['failed'])}; they stay usable until fixed", result["failed"])
    return result
