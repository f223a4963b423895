"""Runbook: prove that the newest backup of a service restores, byte for byte.

    newest snapshot -> restic restore into scratch on the storage host -> sha256 of every file
    -> compare with the manifest taken at backup time -> record result and duration -> clean up

A failed proof is loud: an ERROR log line, a ``hotspare.restore-proof.failed`` event (which an
automation can turn into a page) and a failed run.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from prefect.runtime import flow_run

from flows.backup import artifact_key, backed_up_services, run_name
from hotspare import access
from hotspare.errors import SeveralFailed
from tasks.backup import prove_restore
from tasks.orchestrator import require_orchestrator


@flow(name="restore-proof", log_prints=True)
def restore_proof(service: str | None = None) -> dict:
    """Restore-prove one service (``service``) or every service with backups.

    Args:
        service: Service name, as in the fleet file.
    """
    require_orchestrator(None, f"restore proof {service or 'all'}")  # one orchestrator per fleet
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    results, failures = {}, []
    for name in backed_up_services(fleet, service):
        state = prove_restore(fleet, name, run_name(), flow_run.get_id(), return_state=True)
        if state.is_completed():
            result = state.result()
        else:
            result = {"service": name, "outcome": "failed", "problems": [str(state.message)], "duration_s": None}
        results[name] = result
        if result["outcome"] != "passed":
            failures.append(name)
            logger.error("restore proof of %s FAILED: %s", name, "; ".join(result["problems"][:5]))
            emit_event(
                event="hotspare.restore-proof.failed",
                resource={"prefect.resource.id": f"hotspare.service.{name}"},
                payload={"snapshot": result.get("snapshot"), "problems": result["problems"][:20]},
            )
    lines = ["# Restore proof", "", "| service | snapshot | outcome | files | seconds | problems |", "|---|---|---|---|---|---|"]
    for name, result in results.items():
        problems = "; ".join(result.get("problems") or []).replace("|", "/")[:400]
        lines.append(
            f"| {name} | {result.get('snapshot', '-')} | {result['outcome']} | {result.get('files_checked', '-')} | "
            f"{result.get('duration_s', '-')} | {problems or '-'} |"
        )
    create_markdown_artifact(
        "\n".join(lines),
        key="restore-proof" if not service else artifact_key("restore-proof", service),
        description="Restore proof",
    )
    if failures:
        raise SeveralFailed(
            f"restore proof failed for {', '.join(failures)}: the backups may not restore; investigate now", failures
        )
    return results
