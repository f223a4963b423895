"""Runbooks: back services up to their storage host, and check the repositories rolling.

    backup:        for each service -> stage accounts + manifest on the active server
                   -> restic backup over SFTP to the storage host, as the service's append-only
                      account with a key for this run only -> retention (forget --prune) run on
                      the storage host itself
    backup-check:  for each service -> restic check --read-data-subset=N/M on the storage host

A failure of one service does not stop the others; the run fails if any failed. Every run
ends with a summary artifact.
"""

from __future__ import annotations

import re

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.states import Completed

from hotspare import access
from hotspare.errors import SeveralFailed
from hotspare.inventory import copies, locks
from hotspare.planning.coordination import judge_routine_run
from hotspare.planning.storage_accounts import shared_password_blocks
from tasks.backup import apply_retention, backup_service, check_repository
from tasks.orchestrator import require_orchestrator


def _back_up_one(fleet, name: str, prune: bool, lease: locks.Lease) -> dict:
    """One service's backup and retention, under its lock (a failover may take it over)."""
    logger = get_run_logger()
    state = backup_service(fleet, name, run_name(), flow_run.get_id(), return_state=True)
    if not state.is_completed():
        logger.error("backup of %s failed: %s", name, state.message)
        return {"service": name, "outcome": "failed", "error": str(state.message)}
    result = {"outcome": "ok", **state.result()}
    if not prune:
        logger.info("retention for %s skipped: prune=False", name)
        return result
    lease.check(f"apply retention to the backups of {name}")
    retention = apply_retention(fleet, name, run_name(), return_state=True)
    if retention.is_completed():
        result["retention"] = retention.result()
    else:  # retention is housekeeping: the backup itself still counts
        result["retention"] = f"failed: {retention.message}"
        logger.warning("retention for %s failed (the backup is kept): %s", name, retention.message)
    return result


def backed_up_services(fleet, service: str | None) -> list[str]:
    """The named service, or every service with a backup section (tier order)."""
    if service:
        if fleet.service(service).backup is None:
            raise ValueError(f"service {service} has no backup section in the fleet file")
        return [service]
    return [s.name for s in sorted(fleet.services, key=lambda s: (s.tier, s.name)) if s.backup is not None]


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def run_name() -> str:
    return (flow_run.get_id() or "local")[:8]


@flow(name="backup", log_prints=True)
def backup(service: str | None = None, prune: bool = True) -> dict:
    """Back up one service (``service``) or all services with a backup section.

    Args:
        service: Service name, as in the fleet file.
        prune: Also apply the retention policy (forget and prune old snapshots) after the backup.
    """
    require_orchestrator(None, f"backup {service or 'all'}")  # one orchestrator per fleet
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    names = backed_up_services(fleet, service)
    if not names:
        logger.info("no service has a backup section in the fleet file; nothing to do")
    for sentence in shared_password_blocks(fleet):
        logger.warning(sentence)
    results, failures = {}, []
    for name in names:
        decision = judge_routine_run("backup", name, copies.service_row(name).state)
        if not decision.go:
            failures.append(name)
            results[name] = {"service": name, "outcome": "refused", "error": decision.reason}
            logger.error(decision.reason)
            continue
        try:
            with locks.service_lock(name, f"backup:{flow_run.get_id() or 'local'}") as lease:
                results[name] = _back_up_one(fleet, name, prune, lease)
        except locks.ServiceBusy as busy:
            results[name] = {"service": name, "outcome": "busy", "error": str(busy)}
            logger.error("%s", busy)
        if results[name]["outcome"] != "ok":
            failures.append(name)
    _summary(
        "Backup",
        results,
        lambda r: (
            f"snapshot `{r['snapshot_id'][:8]}` from {r['source']}: {r['files']} files, {r['bytes'] / 1e6:.1f} MB "
            f"({r['bytes_added'] / 1e6:.1f} MB new) in {r['duration_s']} s; {r.get('retention', '')}"
        ),
        "backup" if not service else artifact_key("backup", service),
    )
    if failures:
        raise SeveralFailed(f"backup failed for {', '.join(failures)}; the others completed", failures)
    unpruned = [name for name, result in results.items() if str(result.get("retention", "")).startswith("failed")]
    if unpruned:  # the backups count, the housekeeping did not happen: not a plain Completed
        return Completed(
            name="Retention failed",
            data=results,
            message=f"backed up; retention failed for {', '.join(unpruned)} (old snapshots kept; "
            "the next backup applies it again)",
        )
    return results


@flow(name="backup-check", log_prints=True)
def backup_check(service: str | None = None, subset: str | None = None) -> dict:
    """Read and verify the next 1/N of each repository's data (``subset`` "n/m" overrides).

    A failed check is loud: an ERROR log line, a ``hotspare.backup-check.failed`` event and a
    failed run.

    Args:
        service: Service name, as in the fleet file.
        subset: Read this subset instead of the next rolling one, e.g. '1/1' to read all data.
    """
    require_orchestrator(None, "backup check")  # one orchestrator per fleet
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    results, failures = {}, []
    for name in backed_up_services(fleet, service):
        state = check_repository(fleet, name, subset, return_state=True)
        result = (
            state.result(raise_on_failure=False)
            if state.is_completed()
            else {"service": name, "outcome": "failed", "detail": str(state.message)}
        )
        results[name] = result
        if result["outcome"] != "ok":
            failures.append(name)
            logger.error("repository check of %s FAILED (subset %s): %s", name, result.get("subset", "?"), result["detail"])
            emit_event(
                event="hotspare.backup-check.failed",
                resource={"prefect.resource.id": f"hotspare.service.{name}"},
                payload={"subset": result.get("subset"), "detail": result["detail"][:1000]},
            )
    _summary(
        "Repository check",
        results,
        lambda r: f"subset {r.get('subset')}: {r['outcome']} {r.get('detail', '')[:300]}",
        "backup-check" if not service else artifact_key("backup-check", service),
    )
    if failures:
        raise SeveralFailed(
            f"repository check failed for {', '.join(failures)}: restore from it may fail; investigate now", failures
        )
    return results


def _summary(title: str, results: dict, describe, key: str) -> None:
    lines = [f"# {title}", "", "| service | outcome | details |", "|---|---|---|"]
    for name, result in results.items():
        ok = result.get("outcome") == "ok"
        detail = describe(result) if ok else str(result.get("error") or result.get("detail", ""))[:500]
        lines.append(f"| {name} | {result.get('outcome')} | {detail.replace('|', '/')} |")
    if not results:
        lines.append("| - | - | nothing to do |")
    create_markdown_artifact("\n".join(lines), key=key, description=title)
