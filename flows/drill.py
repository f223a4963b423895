"""Runbook: rehearse a failover without risk, and prove the cleanup.

    facts -> plan -> [service lock] clean up drills killed earlier -> manifest -> bubble
          -> mount the newest verified copy -> start the app -> health check -> canary login
          -> isolation check -> tear down -> prove nothing is left -> record, artifacts

Production, the mirror's live state (its running app, its copies, the current link), DNS and
replication are never touched: everything happens in a bubble of namespaces on the mirror
(``hotspare/planning/drill.py``). The drill holds the service's inventory lock, so it never
runs during a failover, replication or backup of the service; a failover takes the lock over
(``locks.PREEMPTIBLE``) and the drill tears its bubble down at its next step.

The RTO is the time from making the bubble to the first healthy answer: what activating the
copy and starting the app took (a real failover also copies the tree into the live paths and
moves DNS). The RPO is the copy's age when the drill began.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import time
from contextlib import contextmanager

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from hotspare.access import loaded_fleet
from hotspare.adapters.errors import HotspareError
from hotspare.errors import SeveralFailed
from hotspare.fleet import Fleet
from hotspare.fleet.context import ServiceContext
from hotspare.inventory import drills as records
from hotspare.inventory import locks
from hotspare.inventory.clock import database_now
from hotspare.inventory.copies import service_row
from hotspare.inventory.models import as_utc, utcnow
from hotspare.planning import drill as planning
from hotspare.planning.coordination import judge_drill_gone
from tasks.drill import (
    canary_login,
    gather_drill_facts,
    isolation,
    make_bubble,
    mount_copy,
    stale_drills,
    start_app,
    tear_down,
    wait_healthy,
    write_manifest,
)
from tasks.orchestrator import require_orchestrator
from tasks.replication import Refused

INCIDENT_CATEGORY = 2


class DrillRefused(Refused):
    """The drill cannot run for this service now (not protected, no verified copy, unsafe paths)."""


class DrillFailed(HotspareError):
    """The service did not come up from its copy, or the bubble could not be removed."""


def operators_of(operator: str | None, watched_by: list[str] | None) -> str:
    """Who ran the drill (``HOTSPARE_OPERATOR`` or the login name) and who watched it."""
    names = [operator or os.environ.get("HOTSPARE_OPERATOR") or getpass.getuser(), *(watched_by or [])]
    unique = []
    for name in (name.strip().replace(",", " ") for name in names):
        if name and name not in unique:
            unique.append(name)
    return ",".join(unique)


@flow(name="drill", log_prints=True)
def drill(
    service: str | None = None,
    facility: str | None = None,
    cleanup: bool = False,
    watched_by: list[str] | None = None,
    operator: str | None = None,
) -> dict:
    """Drill one service, or every service whose production stands in ``facility``; with
    ``cleanup``, only remove what killed drills left (of ``service``, or of every service).

    Args:
        service: Service to drill (or leave empty and give a facility).
        facility: Drill every service whose production stands in this facility.
        cleanup: Only clean up what killed drills left behind; drill nothing.
        watched_by: Names of the people who watched the drill, for the readiness record.
        operator: Who runs this (default: HOTSPARE_OPERATOR or the login name), for the record.
    """
    require_orchestrator(None, f"drill {service or facility or 'cleanup'}")  # one orchestrator per fleet
    operators = operators_of(operator, watched_by)
    if cleanup:
        return clean_up_drills(service)
    if facility:
        return drill_facility(facility, operators)
    if not service:
        raise DrillRefused("name a service or a facility to drill")
    return drill_one(service, operators)


def drill_facility(facility: str, operators: str) -> dict:
    """Each service whose production (where it runs now) stands in ``facility``, one after another."""
    fleet = loaded_fleet()
    names = [spec.name for spec in fleet.services if fleet.server(service_row(spec.name).active_server).facility == facility]
    if not names:
        raise DrillRefused(f"no service runs in facility {facility!r}")
    results, failed = [], []
    for name in names:
        try:
            results.append(drill_one(name, operators, fleet))
        except Exception as error:
            get_run_logger().error("drill of %s: %s", name, error)
            results.append({"service": name, "outcome": "failed", "detail": str(error)})
            failed.append(name)
    if failed:
        raise SeveralFailed(f"drills failed for: {', '.join(failed)} (each reason is logged above)", failed)
    return {"facility": facility, "drills": results}


def drill_one(service: str, operators: str, fleet: Fleet | None = None) -> dict:
    """One drill of ``service``: see the module docstring. ``fleet``: the one the run loaded at its
    start, resolved here once and handed to every step."""
    logger = get_run_logger()
    fleet = fleet or loaded_fleet()
    started = database_now()  # the inventory's clock: health judges a drill gone by it (clean_up_gone_drills)
    facts, passwd = gather_drill_facts(ServiceContext.of(fleet, service))
    drill_id = planning.drill_id_for(started, secrets.token_hex(2))
    plan = planning.plan_drill(facts, drill_id, started, passwd)
    if isinstance(plan, planning.Decision):
        records.add_drill(
            records.DrillRow(
                id=drill_id,
                service=service,
                flow_run_id=flow_run.get_id(),
                started=started,
                finished=utcnow(),
                outcome="refused",
                operators=operators,
                summary=plan.reason,
            )
        )
        raise DrillRefused(plan.reason)
    for warning in plan.warnings:
        logger.warning("drill of %s: %s", service, warning)
    records.add_drill(
        records.DrillRow(
            id=drill_id,
            service=service,
            flow_run_id=flow_run.get_id(),
            started=started,
            host=plan.host,
            copy_id=plan.copy_id,
            copy_name=plan.copy_root,
            rpo_seconds=plan.rpo_seconds,
            operators=operators,
        )
    )
    steps: list[dict] = []
    evidence: dict = {
        "drill_id": drill_id,
        "service": service,
        "host": plan.host,
        "copy_id": plan.copy_id,
        "rpo_seconds": plan.rpo_seconds,
        "operators": operators,
        "method": plan.method,
    }
    outcome, reason, leftovers, error = "failed", "", None, None
    try:
        with locks.service_lock(service, f"drill:{drill_id}") as lease:
            with _timed(steps, "clean up earlier drills"):
                evidence["earlier_drills_cleaned"] = _clean_stale(fleet, plan.host, service)
            try:
                outcome, reason = _bring_up(fleet, plan, lease, steps, evidence)
            finally:
                with _timed(steps, "tear down and prove"):
                    leftovers = tear_down(fleet, plan.host, plan.netns, plan.scratch, plan.tag, plan.manifest)
    except locks.LeaseLost as lost:
        outcome, reason, error = "preempted", str(lost), lost
    except Exception as failure:
        outcome, reason, error = ("refused" if isinstance(failure, locks.ServiceBusy) else "failed"), str(failure), failure
    proven = leftovers == []
    evidence.update(outcome=outcome, reason=reason, cleanup_proven=proven, leftovers=leftovers or [], steps=steps)
    summary = _summary(plan, outcome, reason, evidence.get("rto_seconds"), proven, leftovers)
    records.update_drill(
        drill_id,
        finished=utcnow(),
        outcome=outcome,
        rto_seconds=evidence.get("rto_seconds"),
        cleanup_proven=proven,
        steps=steps,
        summary=summary,
    )
    _publish(plan, evidence, summary)
    if leftovers:
        _cleanup_not_proven(plan, leftovers)
    (logger.info if outcome == "ok" and proven else logger.error)(summary)
    if error is not None and outcome in ("preempted", "refused"):
        raise error
    if outcome != "ok" or not proven:
        raise DrillFailed(summary) from error
    return {
        "service": service,
        "drill_id": drill_id,
        "outcome": outcome,
        "host": plan.host,
        "copy_id": plan.copy_id,
        "rto_seconds": evidence.get("rto_seconds"),
        "rpo_seconds": plan.rpo_seconds,
        "cleanup_proven": proven,
        "duration_seconds": round(sum(step["seconds"] for step in steps), 3),
        "steps": steps,
        "isolation": evidence.get("isolation"),
        "canary": evidence.get("canary"),
        "operators": operators,
        "containment": evidence.get("containment"),
    }


def _bring_up(fleet: Fleet, plan: planning.DrillPlan, lease: locks.Lease, steps: list[dict], evidence: dict) -> tuple[str, str]:
    """Manifest first, then the bubble, the copy, the app; returns (outcome, reason)."""
    lease.check("write the drill's manifest")
    with _timed(steps, "write manifest"):
        write_manifest(fleet, plan)
    bring_up_started = time.monotonic()
    lease.check("make the drill's bubble")
    with _timed(steps, "make bubble"):
        holder = make_bubble(fleet, plan)
    lease.check("mount the copy in the bubble")
    with _timed(steps, "mount copy"):
        evidence["containment"] = mount_copy(fleet, plan, holder)
    lease.check("start the app in the bubble")
    with _timed(steps, "start app"):
        start_app(fleet, plan, holder)
    with _timed(steps, "health check"):
        health = wait_healthy(fleet, plan, holder)
    if health.go:
        evidence["rto_seconds"] = round(time.monotonic() - bring_up_started, 3)
    lease.check("log in as the service's account")
    with _timed(steps, "canary login"):
        evidence["canary"] = canary_login(fleet, plan, holder)
    with _timed(steps, "check isolation"):
        evidence["isolation"] = isolation(fleet, plan)
    if evidence["isolation"]["default_route"]:
        return "failed", "the bubble has a default route: it was not isolated"
    return ("ok", health.reason) if health.go else ("unhealthy", health.reason)


def _clean_stale(fleet: Fleet, host: str, service: str | None) -> list[dict]:
    """Remove the bubbles of drills that were killed midway (their manifests say what they made)."""
    cleaned = []
    for manifest in stale_drills(fleet, host, service):
        leftovers = tear_down(
            fleet, host, manifest["netns"], manifest["scratch"], manifest["tag"], planning.manifest_path_of(manifest)
        )
        cleaned.append({"drill_id": manifest["drill_id"], "leftovers": leftovers})
        row = records.drill(manifest["drill_id"])
        if row is not None and row.outcome == "running":
            records.update_drill(
                row.id,
                finished=row.finished or utcnow(),
                outcome="failed",
                cleanup_proven=not leftovers,
                summary="stopped midway; its bubble was removed by a later drill run"
                + (f"; left: {'; '.join(leftovers)}" if leftovers else ""),
            )
        if leftovers:
            get_run_logger().error(
                "the bubble of drill %s on %s could not be removed: %s", manifest["drill_id"], host, "; ".join(leftovers)
            )
    return cleaned


def clean_up_drills(service: str | None) -> dict:
    """``hotspare drill --cleanup``: under each service's lock, remove what its killed drills left."""
    logger = get_run_logger()
    fleet = loaded_fleet()
    names = [service] if service else [spec.name for spec in fleet.services]
    cleaned, busy, not_clean = {}, [], []
    for name in names:
        row = service_row(name)
        host = row.mirror_server or row.planned_mirror
        try:
            with locks.service_lock(name, f"drill:cleanup-{secrets.token_hex(3)}"):
                cleaned[name] = _clean_stale(fleet, host, name)
        except locks.ServiceBusy as error:
            logger.warning("skipping %s: %s", name, error)
            busy.append(name)
            continue
        not_clean += [entry["drill_id"] for entry in cleaned[name] if entry["leftovers"]]
    if not_clean:
        raise DrillFailed(f"the bubbles of drill(s) {', '.join(not_clean)} could not be removed (see the log)")
    return {"cleaned": cleaned, "busy": busy}


def clean_up_gone_drills(logger) -> list[dict]:
    """Remove the bubbles of drills recorded as running whose run is gone (killed: its bubble
    keeps production's address on the mirror until removed). Called by every health run, so a
    killed drill's bubble lasts minutes, not until someone runs ``hotspare drill --cleanup``.
    Cheap when there is nothing to do: one inventory query, no connection."""
    now, grace = database_now(), 2 * locks.lease_length()
    cleaned, fleet = [], None
    for row in [row for row in records.drills_of(limit=200) if row.outcome == "running"]:
        decision = judge_drill_gone(row.id, row.service, as_utc(row.started), locks.holder_of(row.service), now, grace)
        if not decision.go:
            continue
        logger.warning(decision.reason)
        host = row.host or service_row(row.service).mirror_server
        try:
            with locks.service_lock(row.service, f"drill:cleanup-{secrets.token_hex(3)}"):
                fleet = fleet or loaded_fleet()  # loaded once, and only when a drill is gone
                removed = _clean_stale(fleet, host, row.service) if host else []
                if records.drill(row.id).outcome == "running":  # killed before it wrote its manifest
                    records.update_drill(
                        row.id,
                        finished=utcnow(),
                        outcome="failed",
                        cleanup_proven=True,
                        summary="stopped midway before making its bubble; nothing of it was found",
                    )
        except locks.ServiceBusy as busy:
            logger.info("drill %s: its bubble is removed by a later check (%s)", row.id, busy)
            continue
        except Exception as error:  # a health run goes on; the next one tries again
            logger.error("could not remove the bubble of drill %s on %s: %s", row.id, host, error)
            continue
        cleaned.append(
            {
                "drill_id": row.id,
                "service": row.service,
                "host": host,
                "leftovers": [left for entry in removed for left in entry["leftovers"]],
            }
        )
    return cleaned


@contextmanager
def _timed(steps: list[dict], name: str):
    started = time.monotonic()
    entry = {"step": name, "seconds": 0.0, "outcome": "ok"}
    steps.append(entry)
    try:
        yield entry
    except BaseException as error:
        entry["outcome"], entry["detail"] = "failed", (str(error).splitlines() or [type(error).__name__])[0][:300]
        raise
    finally:
        entry["seconds"] = round(time.monotonic() - started, 3)


def _summary(plan, outcome, reason, rto, proven, leftovers) -> str:
    rpo = f"{plan.rpo_seconds:.0f} s" if plan.rpo_seconds is not None else "unknown"
    rto_text = f"{rto:.2f} s" if rto is not None else "not reached"
    cleanup = (
        "cleanup proven" if proven else ("cleanup NOT proven: " + "; ".join(leftovers) if leftovers else "cleanup not reached")
    )
    return (
        f"drill {plan.drill_id} of {plan.service} on {plan.host} from copy {plan.copy_id}: {outcome} ({reason}); "
        f"RTO {rto_text}, RPO {rpo}; {cleanup}"
    )


def _publish(plan: planning.DrillPlan, evidence: dict, summary: str) -> None:
    """Markdown summary and the JSON evidence as artifacts (failures never hide the outcome)."""
    key = re.sub(r"[^a-z0-9-]", "-", plan.service.lower())
    lines = [
        f"# Drill of {plan.service}: {evidence['outcome']}",
        "",
        summary,
        "",
        f"- host **{plan.host}**, bubble `{plan.netns}` with {plan.production_address}/32",
        f"- copy **{plan.copy_id}** ({plan.method}), RPO {plan.rpo_seconds} s",
        f"- operators: {evidence['operators']}",
        (
            f"- the app ran as {plan.identity.describe() if plan.identity else 'nobody (not started)'}, in its own "
            f"user and mount namespaces over a memory-only view of the whole filesystem"
        ),
        "",
        "| step | seconds | outcome | detail |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s['step']} | {s['seconds']} | {s['outcome']} | {s.get('detail', '')} |" for s in evidence["steps"]]
    try:
        create_markdown_artifact("\n".join(lines), key=f"drill-{key}", description=f"Drill of {plan.service}")
        create_markdown_artifact(
            "```json\n" + json.dumps(evidence, indent=2, default=str) + "\n```",
            key=f"drill-evidence-{key}",
            description=f"Drill evidence (JSON) of {plan.service}",
        )
    except Exception as error:
        get_run_logger().error("could not publish the drill's artifacts: %s", error)


def _cleanup_not_proven(plan: planning.DrillPlan, leftovers: list[str]) -> None:
    """A category 2 incident when the incident subsystem exists; else an error in the log (and
    the drill fails, so the command exits non-zero)."""
    text = f"drill {plan.drill_id} of {plan.service} on {plan.host} left: " + "; ".join(leftovers)
    try:
        from hotspare.inventory.incidents import open_or_fold
    except ImportError:
        get_run_logger().error("%s. Remove it with `hotspare drill --cleanup %s`.", text, plan.service)
        return
    try:
        number = open_or_fold(
            INCIDENT_CATEGORY,
            "high",
            f"Drill of {plan.service} left its bubble on {plan.host}",
            [plan.service],
            [plan.host],
            f"drill-cleanup:{plan.service}:{plan.host}",
            text,
        )
        get_run_logger().error("%s: incident %s", text, number)
    except Exception as error:
        get_run_logger().error("%s (and the incident could not be opened: %s)", text, error)
