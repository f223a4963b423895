"""What ``hotspare status`` reports: one record per service, built from the inventory.

``service_status`` is pure (rows and probe results in, records out) so it is tested without
servers; the command only gathers the rows and probes.
"""

from __future__ import annotations

from datetime import datetime, timezone

from hotspare.backup_status import backup_fields
from hotspare.inventory.health import health_fields
from hotspare.inventory.models import ServerRow, ServiceRow
from hotspare.planning.ages import age_text, hours_text, moment_text


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


STATUS_HEADERS = ("SERVICE", "STATE", "PRODUCTION", "MIRROR", "COPY", "BACKUP", "LAST FAILOVER", "HEALTH")


def status_rows(records: list[dict], now: datetime | None = None) -> list[tuple[str, ...]]:
    """One row per service under ``STATUS_HEADERS``: a server with its facility and whether it
    answered, the copy's age with its kind and RPO state, the backup's age with the last
    restore proof, the last failover and the worst health finding. Ages follow the one rule
    of ``planning/ages.py``; times carry their zone."""
    now = now or datetime.now(timezone.utc)
    rows = []
    for record in records:
        copies = {"btrfs-snapshot": "snapshots", "btrfs-send": "shipped snapshots", "hard-links": "hard links"}.get(
            record.get("copy_backend")
        )
        copy = "no verified copy" if record.get("copy_age_hours") is None else f"{hours_text(record['copy_age_hours'])} old"
        copy += f", {copies}" if copies else ""
        copy += f"; RPO {record['rpo_state']}" if record.get("rpo_state") else ""
        rows.append(
            (
                record["service"],
                record.get("protection") or record["state"],
                _server_cell(record["production"]),
                _server_cell(record["mirror"]),
                copy,
                _backup_cell(record, now),
                _failover_cell(record.get("last_failover")),
                record.get("health_text") or "-",
            )
        )
    return rows


def format_table(records: list[dict], width: int = 100, now: datetime | None = None) -> str:
    """The status table as text ``width`` columns wide (the command prints it at the terminal's width)."""
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for header in STATUS_HEADERS:
        table.add_column(header, overflow="fold")
    for row in status_rows(records, now):
        table.add_row(*row)
    output = io.StringIO()
    Console(file=output, width=width, force_terminal=False, highlight=False, markup=False, emoji=False).print(table)
    return output.getvalue().rstrip("\n")


def _server_cell(server: dict | None) -> str:
    """ "prod-east (east) up": the server, its facility and whether it answered the probe."""
    if not server:
        return "-"
    answered = {True: "up", False: "NO ANSWER", None: "?"}[server.get("reachable")]
    return f"{server.get('name', '-')} ({server.get('facility', '-')}) {answered}"


def _backup_cell(record: dict, now: datetime) -> str:
    """ "2 h old; proof ok 3 d ago": the newest backup and the last restore proof."""
    from hotspare.planning.ages import ago_text

    age = record.get("backup_age_hours")
    text = "-" if age is None else f"{hours_text(age)} old"
    proof = record.get("restore_proof")
    if proof:
        text += f"; proof {proof.get('outcome')} {ago_text(_moment(proof.get('at')), now, 'at an unknown time')}"
    return text


def _moment(value) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return value


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
    """ "RTO 42 s, loss 60 min" for a failover that worked; its outcome and time otherwise."""
    if not last:
        return "-"
    if last["outcome"] != "ok":
        return f"{last['outcome']} {moment_text(_moment(last['at']))}"
    rto = f"RTO {age_text(last['rto_seconds'])}" if last.get("rto_seconds") is not None else "RTO ?"
    loss = last.get("data_loss_seconds")
    return f"{rto}, loss {age_text(loss)}" if loss is not None else rto
