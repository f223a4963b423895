"""Runbook: replicate production to its mirror into a verified point-in-time copy.

    preflight -> pre-sync hooks -> copy -> verify (repair once) -> promote -> accounts -> prune

A copy becomes current only after it verifies; any failure leaves the previous verified copy
current and untouched, and the next run resumes from what was already copied.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from hotspare import access
from hotspare.inventory import copies, locks, runs
from hotspare.inventory.runs import record_outcome
from hotspare.planning.coordination import judge_routine_run
from flows.verify import check_copy
from tasks.retry import transfer_retries
from tasks.replication import Refused, apply_accounts, copy_to_mirror, preflight, promote_copy, prune_copies, run_pre_sync


@flow(name="replicate-service", log_prints=True)
def replicate_service(service: str, force: bool = False) -> dict:
    """One service: copy production to its mirror and verify before the copy becomes current."""
    return replicate_one(service, force)


def replicate_one(service: str, force: bool = False, lock_holder: str | None = None) -> dict:
    """The replication runbook inside the calling flow run.

    ``lock_holder`` lets a failover or reprotect run it under the lock it already holds (and
    without a nested flow run, whose exit alone costs up to a second); the caller has then
    already decided that the service's state allows it. Every side effect first checks that
    this run still holds the lock: a failover may have taken it over.
    """
    logger = get_run_logger()
    holder = lock_holder or f"replicate:{flow_run.get_id() or 'local'}"
    run_id = runs.start_run("replicate", service, flow_run.get_id())
    outcome, summary, details = "failed", "", {}
    try:
        if lock_holder is None:
            _refuse_unless_routine(service)
        with locks.service_lock(service, holder) as lease:
            with runs.step(run_id, "preflight"):
                copy_plan = preflight(service, force)
            with runs.step(run_id, "pre-sync hooks"):
                run_pre_sync(service, copy_plan.source)
            lease.check("copy production to the mirror")
            with runs.step(run_id, "copy"):
                stats = copy_to_mirror.with_options(retries=transfer_retries())(copy_plan, f"replicate-{service}-{holder.rsplit(':', 1)[-1][:8]}")
            with runs.step(run_id, "verify"):
                verification = check_copy(service, copy_plan.copy_id, repair=True, unreadable=stats.get("failed_files", []))
            details = {"copy_id": copy_plan.copy_id, "transfer": stats, "verification": verification["summary"]}
            if not verification["passed"]:
                summary = f"copy {copy_plan.copy_id} failed verification; the previous verified copy stays current"
                raise Refused(summary + ": " + "; ".join(verification["summary"]["failures"]))
            with runs.step(run_id, "promote"):
                lease.check(f"promote copy {copy_plan.copy_id}")
                promote_copy(service, copy_plan.copy_id, copy_plan.target)
            with runs.step(run_id, "accounts"):
                lease.check("merge accounts on the mirror")
                details["accounts"] = apply_accounts(service, copy_plan.copy_id, copy_plan.target)
            with runs.step(run_id, "prune"):
                lease.check("prune old copies")
                details["pruned"] = prune_copies(service, copy_plan.target)
        outcome = "ok"
        summary = (f"{service}: copy {copy_plan.copy_id} verified and current on {copy_plan.target} "
                   f"({stats['files_transferred']} files / {stats['bytes_transferred']} bytes transferred)")
        logger.info(summary)
        return {"service": service, "outcome": outcome, **details}
    except (Refused, locks.ServiceBusy, locks.LeaseLost) as error:
        outcome, summary = "refused", str(error)
        raise
    except Exception as error:
        summary = summary or f"{service}: replication failed: {error}"
        raise
    finally:
        record_outcome(lambda: runs.finish_run(run_id, outcome, summary, details),
                       lambda: _publish_summary(service, run_id, outcome, summary))


def _refuse_unless_routine(service: str) -> None:
    decision = judge_routine_run("replicate", service, copies.service_row(service).state)
    if not decision.go:
        raise Refused(decision.reason)


def _publish_summary(service: str, run_id: int, outcome: str, summary: str) -> None:
    lines = [f"# Replication of {service}: {outcome}", "", summary, "", "| step | seconds | outcome |", "|---|---|---|"]
    for step in runs.step_timings(run_id):
        lines.append(f"| {step['step']} | {step['seconds']} | {step['outcome']} |")
    create_markdown_artifact("\n".join(lines), key=f"replicate-{service}", description=f"Replication of {service}")


@flow(name="replicate", log_prints=True)
def replicate(services: list[str] | None = None, force: bool = False) -> dict:
    """Replicate the named services, or every service in the inventory, one after another.

    A failure of one service does not stop the others; the run fails if any failed.
    """
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    names = services or [service.name for service in sorted(fleet.services, key=lambda s: (s.tier, s.name))]
    results, failures = {}, []
    for name in names:
        state = replicate_service(name, force, return_state=True)
        if state.is_completed():
            results[name] = state.result()
        else:
            failures.append(name)
            results[name] = {"service": name, "outcome": "failed", "error": str(state.message)}
            logger.error("%s: %s", name, state.message)
    if failures:
        raise RuntimeError(f"replication failed for {', '.join(failures)}; the others completed")
    return results
