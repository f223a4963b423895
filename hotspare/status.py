"""What ``hotspare status`` reports: one record per service, built from the inventory.

``service_status`` is pure (rows and probe results in, records out) so it is tested without
servers; the command only gathers the rows and probes.
"""

from __future__ import annotations

from hotspare.backup_status import backup_fields
from hotspare.inventory.health import health_fields
from hotspare.inventory.models import ServerRow, ServiceRow


def service_status(
    services: list[ServiceRow], servers: dict[str, ServerRow], reachable: dict[str, bool], copy_facts: dict | None = None
) -> list[dict]:
    """Records with the service's active and mirror servers, their facilities and reachability,
    merged with per-service facts from other subsystems (copies, backups)."""
    records = []
    for service in services:
        record = {
            "service": service.name,
            "state": service.state,
            "protection": _protection(service, servers),
            "dns_name": service.spec.get("dns_name"),
            "production": _server_record(servers.get(service.active_server), reachable),
            "mirror": _server_record(servers.get(service.mirror_server) if service.mirror_server else None, reachable),
            **(copy_facts or {}).get(service.name, {}),
            **backup_fields(service.name),
            **health_fields(service.name, service.active_server),
        }
        records.append(record)
    return records


def _protection(service: ServiceRow, servers: dict[str, ServerRow]) -> str:
    """The state, said plainly when a lost facility is the reason (facility failover marks it):
    what was lost is named, the production before the mirror."""
    production = servers.get(service.active_server)
    if production is not None and production.state == "failed" and production.state_reason.endswith(" lost"):
        return f"{service.state}: production {production.name} lost ({production.state_reason})"
    mirror = servers.get(service.mirror_server) if service.mirror_server else None
    if service.state == "unprotected" and mirror is not None and mirror.state_reason.endswith(" lost"):
        return f"unprotected: mirror {mirror.state_reason}"
    return service.state


def _server_record(server: ServerRow | None, reachable: dict[str, bool]) -> dict | None:
    if server is None:
        return None
    return {
        "name": server.name,
        "facility": server.facility,
        "address": server.address,
        "reachable": reachable.get(server.name),
        "state": server.state,
    }


def format_table(records: list[dict]) -> str:
    """A plain-text table for terminals."""
    header = ("SERVICE", "STATE", "PRODUCTION", "FACILITY", "UP", "MIRROR", "FACILITY", "UP", "COPY AGE", "COPIES", "RPO", "LAST FAILOVER", "BACKUP AGE", "RESTORE PROOF", "HEALTH")
    rows = [header]
    for record in records:
        production, mirror = record["production"] or {}, record["mirror"] or {}
        rows.append(
            (
                record["service"],
                record.get("protection") or record["state"],
                production.get("name", "-"),
                production.get("facility", "-"),
                _yes_no(production.get("reachable")),
                mirror.get("name", "-"),
                mirror.get("facility", "-"),
                _yes_no(mirror.get("reachable")),
                _hours(record.get("copy_age_hours")),
                {"btrfs-snapshot": "snapshots", "hard-links": "hard links"}.get(record.get("copy_backend"), "-"),
                record.get("rpo_state", "-"),
                _failover_cell(record.get("last_failover")),
                record.get("backup_age", "-"), record.get("restore_proof_text", "-"),
                record.get("health_text", "-"),
            )
        )
    widths = [max(len(str(row[column])) for row in rows) for column in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def copy_facts(service: ServiceRow, current, newest_verified, rpo_hours: float, now) -> dict:
    """current_copy (id, path of its data folder on the mirror, verified_at), copy age, RPO state."""
    from hotspare.inventory.models import as_utc
    from hotspare.planning.replication import copy_data_path, rpo_state

    started = as_utc(newest_verified.started_at) if newest_verified else None
    facts = {
        "current_copy": None,
        "copy_age_hours": round((now - started).total_seconds() / 3600, 3) if started else None,
        "rpo_hours": rpo_hours,
        "rpo_state": rpo_state(started, now, rpo_hours),
    }
    if current is not None:
        facts["current_copy"] = {
            "id": current.id,
            "server": current.target_server,
            "path": copy_data_path(service.name, current.id, service.spec["data_paths"][0]),
            "status": current.status,
            "started_at": as_utc(current.started_at),
            "verified_at": as_utc(current.verified_at),
        }
    return facts


def failover_facts(run) -> dict:
    """The service's last failover run: when, how, its RTO and its data-loss window."""
    if run is None:
        return {"last_failover": None}
    details = run.details or {}
    return {
        "last_failover": {
            "at": run.started_at,
            "outcome": run.outcome,
            "mode": details.get("mode"),
            "rto_seconds": details.get("rto_seconds"),
            "data_loss_seconds": details.get("data_loss_seconds"),
            "fenced": (details.get("fencing") or {}).get("fenced", True),
            "summary": run.summary,
        }
    }


def _failover_cell(last: dict | None) -> str:
    if not last:
        return "-"
    if last["outcome"] != "ok":
        return f"{last['outcome']} {last['at']:%m-%d %H:%M}"
    loss = last.get("data_loss_seconds")
    return f"RTO {last['rto_seconds']:.1f}s, loss {loss:.0f}s" if loss is not None else f"RTO {last['rto_seconds']:.1f}s"


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}h"


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "NO")
