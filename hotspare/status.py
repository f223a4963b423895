"""What ``hotspare status`` reports: one record per service, built from the inventory.

``service_status`` is pure (rows and probe results in, records out) so it is tested without
servers; the command only gathers the rows and probes.
"""

from __future__ import annotations

from hotspare.inventory.models import ServerRow, ServiceRow


def service_status(services: list[ServiceRow], servers: dict[str, ServerRow], reachable: dict[str, bool]) -> list[dict]:
    """Records with the service's active and mirror servers, their facilities and reachability."""
    records = []
    for service in services:
        record = {
            "service": service.name,
            "state": service.state,
            "dns_name": service.spec.get("dns_name"),
            "production": _server_record(servers.get(service.active_server), reachable),
            "mirror": _server_record(servers.get(service.mirror_server) if service.mirror_server else None, reachable),
        }
        records.append(record)
    return records


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
    header = ("SERVICE", "STATE", "PRODUCTION", "FACILITY", "UP", "MIRROR", "FACILITY", "UP")
    rows = [header]
    for record in records:
        production, mirror = record["production"] or {}, record["mirror"] or {}
        rows.append(
            (
                record["service"],
                record["state"],
                production.get("name", "-"),
                production.get("facility", "-"),
                _yes_no(production.get("reachable")),
                mirror.get("name", "-"),
                mirror.get("facility", "-"),
                _yes_no(mirror.get("reachable")),
            )
        )
    widths = [max(len(str(row[column])) for row in rows) for column in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "NO")
