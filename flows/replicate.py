"""Runbook: replicate production to its mirror into a verified point-in-time copy.

    preflight -> pre-sync hooks -> copy -> verify (repair once) -> promote -> accounts -> prune

(the hooks run in the copy step's first round trip to production; promote, accounts and prune
are one task run, ``make_current``, and one program on the mirror.)

A copy becomes current only after it verifies; any failure leaves the previous verified copy
current and untouched, and the next run resumes from what was already copied.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.replication_progress import Progress, final_state, publish_outcomes, replicate_in_task_run
from flows.verify import check_copy
from hotspare import access
from hotspare.adapters.ssh import counting
from hotspare.errors import SeveralFailed
from hotspare.inventory import copies, locks, runs
from hotspare.inventory.runs import record_outcome
from hotspare.planning.coordination import judge_routine_run
from hotspare.planning.fleet_replication import Bounds, Job, startable
from tasks.dns_cutover import keep_standing_ttl
from tasks.orchestrator import require_orchestrator
from tasks.replication import Refused, copy_to_mirror, make_current, preflight
from tasks.retry import steps, transfer_retries
from tasks.snapshot_shipping import restart_chain


@flow(name="replicate-service", log_prints=True)
def replicate_service(service: str, force: bool = False) -> dict:
    """One service: copy production to its mirror and verify before the copy becomes current.

    Args:
        service: Service name, as in the fleet file.
        force: Replicate even from an empty or shrunken source (after checking why).
    """
    require_orchestrator(None, f"replicate {service}")  # one orchestrator per fleet
    return replicate_one(service, force)


def replicate_one(service: str, force: bool = False, lock_holder: str | None = None, task_runs: bool = True) -> dict:
    """The replication runbook inside the calling flow run.

    ``lock_holder`` lets a failover or reprotect run it under the lock it already holds (and
    without a nested flow run, whose exit alone costs up to a second); the caller has then
    already decided that the service's state allows it. Every side effect first checks that
    this run still holds the lock: a failover may have taken it over. Without ``task_runs`` (a
    fleet run) the steps are plain calls with the same retries (``tasks/retry.in_flow_run``).
    """
    logger = get_run_logger()
    step = steps(task_runs)
    # one holder per service: replicate --all runs several services in one flow run, and a lock is
    # re-entrant for its holder (each service must hold its own)
    holder = lock_holder or f"replicate:{service}:{flow_run.get_id() or 'local'}"
    run_id = runs.start_run("replicate", service, flow_run.get_id())
    outcome, summary, details = "failed", "", {}
    counted = counting()  # the remote commands this run sends, per host: in its record
    sent = counted.__enter__()
    try:
        if lock_holder is None:
            _refuse_unless_routine(service)
        with locks.service_lock(service, holder) as lease:
            with runs.step(run_id, "preflight"):
                copy_plan = step(preflight)(service, force)
            # the pre-sync hooks run on production in the copy step's first round trip, right
            # before the transfer key (and the snapshots) they prepare
            lease.check("copy production to the mirror")
            with runs.step(run_id, "copy"):
                stats = step(copy_to_mirror.with_options(retries=transfer_retries()))(
                    copy_plan, f"replicate-{service}-{holder.rsplit(':', 1)[-1][:8]}", holder
                )
            with runs.step(run_id, "verify"):
                verification = check_copy(
                    service,
                    copy_plan.copy_id,
                    repair=True,
                    unreadable=stats.get("failed_files", []),
                    changed=stats.get("changed_files", []),
                    task_runs=task_runs,
                )
            details = {"copy_id": copy_plan.copy_id, "transfer": stats, "verification": verification["summary"]}
            if not verification["passed"]:
                summary = f"copy {copy_plan.copy_id} failed verification; the previous verified copy stays current"
                if stats.get("shipped"):  # its parent cannot be trusted: the next copy starts a new chain
                    restart_chain(access.loaded_fleet(), service, copy_plan.target, summary)
                raise Refused(summary + ": " + "; ".join(verification["summary"]["failures"]))
            details |= step(make_current)(
                service, copy_plan.copy_id, copy_plan.target, holder, run_id
            )  # promote, accounts, prune
        details["dns_ttl"] = _standing_ttl(service)
        outcome = "ok"
        summary = (
            f"{service}: copy {copy_plan.copy_id} verified and current on {copy_plan.target} "
            f"({stats['files_transferred']} files / {stats['bytes_transferred']} bytes transferred)"
        )
        logger.info(summary)
        return {"service": service, "outcome": outcome, **details}
    except locks.ServiceBusy as error:  # another run is at it: leave its record and its artifact alone
        outcome, summary = "skipped", str(error)
        raise
    except (Refused, locks.LeaseLost) as error:
        outcome, summary = "refused", str(error)
        raise
    except Exception as error:
        summary = summary or f"{service}: replication failed: {error}"
        raise
    finally:
        counted.__exit__(None, None, None)
        details["remote_commands"] = sent.sentence(service)
        logger.info(details["remote_commands"]["sentence"])
        record_outcome(
            lambda: runs.finish_run(run_id, outcome, summary, details),
            lambda: _publish_summary(service, run_id, outcome, summary) if outcome != "skipped" else None,
        )


def _standing_ttl(service: str) -> dict:
    """The record's TTL as the fleet's policy says; a side channel that never fails the copy."""
    try:
        return keep_standing_ttl(service)
    except Exception as error:  # DNS unreachable: the next replication tries again
        get_run_logger().warning("could not check the TTL of %s's record: %s", service, error)
        return {"error": str(error)}


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
    """Replicate the named services, or every service in the inventory, several at a time.

    Bounded overall, per production server and per mirror (the fleet file's ``replication``
    section; ``planning/fleet_replication.py``); each service runs inside this flow run (a
    nested flow run per service costs up to a second at its exit). A failure of one service
    does not stop the others; the run fails if any failed, and ends ``Skipped`` when another run
    held some (``flows/replication_progress.py``: a task run per service, progress, outcomes).

    Args:
        services: Service names; empty means every service in the inventory.
        force: Replicate even from an empty or shrunken source (after checking why).
    """
    require_orchestrator(None, "replicate")  # one orchestrator per fleet
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    names = services or [service.name for service in sorted(fleet.services, key=lambda s: (s.tier, s.name))]
    settings = fleet.replication
    bounds = Bounds(settings.parallel_services, settings.parallel_per_source, settings.parallel_per_target)
    pending = _jobs(names)
    # more than one service: no task runs per service (they would cost more CPU than the copies)
    task_runs = len(names) == 1
    results, failures, running = {}, [], {}
    progress = Progress(len(names))
    with ThreadPoolExecutor(bounds.overall) as pool:
        while pending or running:
            for job in startable(pending, list(running.values()), bounds):
                pending.remove(job)
                # each thread runs in a copy of this context: the flow run (logger, tasks) is there
                running[pool.submit(contextvars.copy_context().run, replicate_in_task_run, job.service, force, task_runs)] = job
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                progress.one_done()
                try:
                    results[job.service] = future.result()
                    if results[job.service].get("outcome") == "skipped":
                        logger.info(
                            "%s: skipped, %s still holds its lock; the next scheduled run replicates it",
                            job.service,
                            results[job.service].get("holder"),
                        )
                except locks.ServiceBusy as busy:  # the previous run (or a backup, a verify) still holds it
                    results[job.service] = {"service": job.service, "outcome": "skipped", "reason": str(busy)}
                    logger.info(
                        "%s: skipped, %s still holds its lock; the next scheduled run replicates it", job.service, busy.holder
                    )
                except Exception as error:
                    failures.append(job.service)
                    results[job.service] = {"service": job.service, "outcome": "failed", "error": str(error)}
                    logger.error("%s: %s", job.service, error)
    publish_outcomes({name: results[name] for name in names if name in results})
    if failures:
        raise SeveralFailed(f"replication failed for {', '.join(sorted(failures))}; the others completed", sorted(failures))
    return final_state(results)


def _jobs(services: list[str]) -> list[Job]:
    """Where each service's replication reads and writes now (no mirror: it refuses by itself),
    from one inventory query for all of them."""
    return [
        Job(row.name, row.active_server, row.mirror_server or f"(no mirror of {row.name})")
        for row in copies.service_rows(services)
    ]
