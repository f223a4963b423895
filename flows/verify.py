"""Runbook: verify that a mirror copy is an exact (or better) copy of production.

Checks content (full checksums), system accounts, hardware/OS/packages, free space and
freshness against the RPO; publishes a table artifact naming every difference. A failed
verification never makes a copy current.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from hotspare import access
from hotspare.adapters.errors import PermanentError
from hotspare.errors import SeveralFailed
from hotspare.inventory import copies, locks
from hotspare.inventory.models import as_utc, utcnow
from hotspare.planning import replication as plan
from hotspare.planning import snapshot_shipping as shipping_plan
from hotspare.planning.coordination import judge_routine_run
from tasks.orchestrator import require_orchestrator
from tasks.retry import retrying, steps
from tasks.snapshot_shipping import verify_shipped
from tasks.verification import (
    recheck_files,
    record_pass,
    record_verification,
    repair_copy,
    verify_accounts,
    verify_content,
    verify_host,
)


def check_copy(
    service: str,
    copy_id: str,
    repair: bool = False,
    accounts_applied: bool = False,
    unreadable: list[str] = (),
    changed: list[str] | None = None,
    full: bool = False,
    task_runs: bool = True,
) -> dict:
    """Verify one copy inside the calling flow run (replicate, verify). With ``repair``,
    corrupt files, and the files the copy could not read (``unreadable``), are fetched once
    more and checked again; a file that still cannot be read fails the check by name.

    The content check compares what changed (``changed``: the copy step's itemized files) plus
    a rolling slice of the rest, or everything with ``full`` (``planning/verification_scope.py``);
    a passed check advances the rolling pass. Without ``task_runs`` (a fleet run) its steps are
    plain calls in the flow run."""
    logger = get_run_logger()
    row = next((row for row in copies.copies_of(service) if row.id == copy_id), None)
    if row is None:
        raise PermanentError(f"no copy {copy_id} of {service} in the inventory")
    source, target = copies.service_row(service).active_server, row.target_server
    checking_hosts = ThreadPoolExecutor(1)  # alongside the content check
    host_check = checking_hosts.submit(
        contextvars.copy_context().run, retrying(verify_host, "verify host"), service, source, target, row.total_bytes
    )
    checking_hosts.shutdown(wait=False)
    # with repair, unread files are fetched again before they are judged; without, judged now
    step = steps(task_runs)
    # a shipped copy's data paths: the UUID chain, the scrub and a slice (verify_shipped), and,
    # like every other path, the listing compared on the mirror every run, production's side
    # listed from this copy's own snapshot: the stream is production's to write, and an entry it
    # added that the snapshot never held is found in this run, not when the rolling slice reaches
    # it (nor kept by every later shipment from it). A parent production changed after it was
    # taken is never shipped from (its btrfs generation, in the preflight:
    # planning/snapshot_shipping.py). verify --full: everything by rsync, as before.
    shipped = {} if full else (row.verification or {}).get("shipped") or {}
    sources = {root: shipping_plan.production_snapshot(root, copy_id) for root in shipped} if shipped else None
    shipped_check = None
    if shipped:  # beside the content check, like the hosts' (its commands and the listing's overlap)
        checking_shipped = ThreadPoolExecutor(1)
        shipped_check = checking_shipped.submit(
            contextvars.copy_context().run,
            retrying(verify_shipped, "verify shipped data"),
            *(service, copy_id, source, target, shipped, _slice_cursor(service, target)),
        )
        checking_shipped.shutdown(wait=False)
    content = step(verify_content)(service, copy_id, source, target, [] if repair else list(unreadable), changed, full, sources)
    data = shipped_check.result() if shipped_check is not None else None
    damaged = [d["path"] for d in data["corrupt"] if d["kind"] != "extra"] if data else []
    again = list(
        dict.fromkeys(
            [*unreadable, *damaged, *(d["path"] for d in content["corrupt"] if d["kind"] not in ("extra", "unreadable"))]
        )
    )
    if repair and again:
        still_unreadable = step(repair_copy)(service, copy_id, source, target, again)["failed"]
        content = step(verify_content)(service, copy_id, source, target, still_unreadable, changed, full, sources)
        if damaged:  # fetched from production's live tree: compared with it now
            data = data | {"corrupt": recheck_files(service, copy_id, source, target, damaged)}
    host = host_check.result()
    account_check = step(verify_accounts)(service, copy_id, target) if accounts_applied else None
    checks = _checks(service, copy_id, content, host, account_check)
    if data is not None:
        checks.append(_shipped_check(data))
    checks.append(_freshness(service, row))
    failures = [f"{check['check']}: {check['detail']}" for check in checks if check["result"] == "FAIL"]
    passed = not failures
    record_verification(
        copy_id,
        passed,
        {"checks": checks, "scope": content["scope"]}
        | ({"shipped": shipped, "slice_cursor": data["cursor"]} if data is not None else {}),
    )
    if passed:
        record_pass(service, target, content["scope"])
    create_table_artifact(
        checks, key=f"verify-{service}", description=f"Verification of {copy_id}: {'passed' if passed else 'FAILED'}"
    )
    (logger.info if passed else logger.error)(
        "verification of %s %s%s", copy_id, "passed" if passed else "FAILED: ", "; ".join(failures)
    )
    scope = content["scope"]
    return {
        "passed": passed,
        "summary": {
            "copy_id": copy_id,
            "failures": failures,
            "changed_during_copy": len(content["changed_during_copy"]),
            "compared_files": scope["compared_files"],
            "total_files": scope["total_files"],
            "whole_tree": scope["whole_tree"],
        },
    }


def _slice_cursor(service: str, target: str) -> str:
    """Where the rolling pass over shipped data stands: the newest verified copy's cursor."""
    for row in copies.copies_of(service, target):  # newest first
        if row.status == "verified" and "slice_cursor" in (row.verification or {}):
            return row.verification["slice_cursor"]
    return ""


def _shipped_check(data: dict) -> dict:
    problems = [*data["problems"], *(f"{d['path']} ({d['kind']})" for d in data["corrupt"][:20])]
    return _check(
        "shipped data",
        not problems,
        "; ".join(problems)
        or f"received UUIDs match production's snapshots; {data['compared_files']} file(s) of the rolling slice match by checksum"
        + ("; the pass reached the end" if data["complete"] else "")
        + (f"; {data['scrub']}" if data.get("scrub") else ""),
    )


def _checks(service: str, copy_id: str, content: dict, host: dict, accounts: dict | None) -> list[dict]:
    corrupt = content["corrupt"]
    changed = content["changed_during_copy"]
    fuzzy = content.get("fuzzy", [])
    checks = [
        _check(
            "content",
            not corrupt,
            f"{len(corrupt)} file(s) differ from production: " + ", ".join(f"{d['path']} ({d['kind']})" for d in corrupt[:20])
            if corrupt
            else "every compared file matches production by checksum",
        ),
        {"check": "compared", "result": "info", "detail": content["scope"]["reason"]},
        {
            "check": "changed during copy",
            "result": "info",
            "detail": f"{len(changed)} file(s) changed on production after the copy began"
            + (": " + ", ".join(d["path"] for d in changed[:20]) if changed else ""),
        },
        {
            "check": "fuzzy paths",
            "result": "info",
            "detail": f"{len(fuzzy)} file(s) in paths the fleet file allows to differ"
            + (": " + ", ".join(f"{d['path']} ({d['kind']})" for d in fuzzy[:20]) if fuzzy else ""),
        },
        _check(
            "hardware and OS",
            not host["problems"],
            "; ".join(host["problems"])
            or f"mirror {_machine(host['mirror'])} vs production {_machine(host['production'])}; "
            f"{host['packages_compared']} packages match",
        ),
    ]
    if accounts is not None:
        checks.append(
            _check(
                "accounts",
                not accounts["problems"],
                "; ".join(accounts["problems"]) or f"{len(accounts['users'])} account(s) match",
            )
        )
    return checks


def _machine(facts: dict) -> str:
    text = f"{facts['cpus']} CPUs, {facts['memory_mb']} MiB, {facts['disk_bytes'] / 1e9:.1f} GB disk"
    if "available_bytes" in facts:
        text += f" ({facts['available_bytes'] / 1e9:.1f} GB free)"
    return text


def _freshness(service: str, row) -> dict:
    """The copy's age (from when it began) against the service's RPO. Informational for the
    copy itself: an old copy is still intact and promotable; the ``verify`` run fails on it."""
    fleet = access.loaded_fleet()
    rpo_hours = fleet.rpo_hours_of(fleet.service(service))
    state = plan.rpo_state(as_utc(row.started_at), utcnow(), rpo_hours)
    age_hours = (utcnow() - as_utc(row.started_at)).total_seconds() / 3600
    detail = f"copy taken {age_hours:.1f} h ago; RPO {rpo_hours:g} h: {state}"
    return {"check": "freshness", "result": "ok" if state == "ok" else state.upper(), "detail": detail}


def _check(name: str, ok: bool, detail: str) -> dict:
    return {"check": name, "result": "ok" if ok else "FAIL", "detail": detail}


@flow(name="verify", log_prints=True)
def verify(services: list[str] | None = None, full: bool = False) -> dict:
    """Re-verify the current copy of each service against production now, plus RPO freshness:
    the next rolling slice of its content, or all of it with ``full``.

    Args:
        services: Service names; empty means every service in the inventory.
        full: Compare every file, not only what changed and the rolling slice.
    """
    require_orchestrator(None, "verify")  # one orchestrator per fleet
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    names = services or [service.name for service in fleet.services]
    results, failed = {}, []
    for name in names:
        decision = judge_routine_run("verify", name, copies.service_row(name).state)
        if not decision.go:
            logger.warning(decision.reason)
            results[name] = {"passed": False, "summary": {"failures": [decision.reason]}}
            failed.append(name)
            continue
        try:
            with locks.service_lock(name, f"verify:{flow_run.get_id() or 'local'}") as lease:
                results[name] = _verify_current(fleet, name, lease, full)
        except locks.ServiceBusy as busy:
            logger.warning("%s", busy)
            results[name] = {"passed": False, "summary": {"failures": [str(busy)]}}
        if not results[name]["passed"] or results[name].get("rpo_state") == "violated":
            failed.append(name)
    if failed:
        raise SeveralFailed(f"verification failed for {', '.join(failed)}", failed)
    return results


def _verify_current(fleet, name: str, lease: locks.Lease, full: bool = False) -> dict:
    """Verify the current copy of one service under its lock (a failover may take it over)."""
    current = copies.current_copy(name)
    newest = copies.newest_verified(name)
    rpo = plan.rpo_state(as_utc(newest.started_at) if newest else None, utcnow(), fleet.rpo_hours_of(fleet.service(name)))
    if current is None:
        return {"passed": False, "rpo_state": rpo, "summary": {"failures": ["no current copy"]}}
    outcome = check_copy(name, current.id, accounts_applied=True, full=full)
    if not outcome["passed"]:
        lease.check(f"mark copy {current.id} as failed")
        copies.update_copy(current.id, status="failed")
    get_run_logger().info("%s: copy %s %s, RPO %s", name, current.id, "verified" if outcome["passed"] else "FAILED", rpo)
    return outcome | {"rpo_state": rpo}
