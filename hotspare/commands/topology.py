"""A service's topology as a small table, printed before and after a failover, reprotect,
failback or rebuild (as ``patronictl failover`` shows the cluster around a switchover).

``topology_rows`` and ``format_topology`` are pure: inventory rows, the DNS answer and the
time in, rows and text out. ``show_topology`` gathers them: the inventory plus one live read of
the service's DNS record from the zone's authoritative server (a few milliseconds; skipped with
a note when the server does not answer within two seconds).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from hotspare.planning.ages import age_text

if TYPE_CHECKING:  # the inventory (SQLModel) loads only when a topology is shown
    from hotspare.inventory.models import CopyRow, ServerRow, ServiceRow

HEADER = ("ROLE", "SERVER", "FACILITY", "ADDRESS", "STATE", "COPY", "COPY AGE", "DNS")


def topology_rows(
    service: ServiceRow, servers: dict[str, ServerRow], copies: list[CopyRow], dns_addresses: list[str] | None, now: datetime
) -> list[dict]:
    """One row per server the service uses or plans to use: production (serving users now),
    mirror (receiving copies), then planned servers that hold no role right now.

    A row's copy is, for the server serving from a copy after a failover, the copy it made
    live; otherwise the current copy if it lies there, else the newest verified copy there.
    ``dns`` marks the row whose address the DNS record answers ("users" when it matches).
    """
    roles: list[tuple[str, str]] = [("production", service.active_server)]
    if service.mirror_server:
        roles.append(("mirror", service.mirror_server))
    for label, name in (("planned production", service.planned_production), ("planned mirror", service.planned_mirror)):
        if name and name not in {server for _, server in roles}:
            roles.append((f"none ({label})", name))
    live_copy = (service.failover or {}).get("copy_id") if service.state in ("failed-over", "failing-over") else None
    rows = []
    for role, name in roles:
        server = servers.get(name)
        address = server.address if server else None
        copy = _copy_for(name, service, copies, live_copy if role == "production" else None)
        rows.append(
            {
                "service": service.name,
                "role": role,
                "server": name,
                "facility": server.facility if server else None,
                "address": address,
                "state": (server.state + (f" ({server.state_reason})" if server.state_reason else "")) if server else "unknown",
                "copy": copy.id if copy else None,
                "copy_status": copy.status if copy else None,
                "copy_age_hours": round(_hours_between(copy.started_at, now), 2) if copy else None,
                "dns": ("users" if address in dns_addresses else "") if dns_addresses is not None else None,
            }
        )
    return rows


def format_topology(
    service: ServiceRow, rows: list[dict], dns_addresses: list[str] | None, dns_note: str = "", width: int | None = None
) -> str:
    """The table, under a title naming the service, its state and where its DNS name points."""
    dns_name = service.spec.get("dns_name", "?")
    if dns_addresses is None:
        pointing = f"{dns_name} not read ({dns_note or 'DNS not asked'})"
    else:
        pointing = f"{dns_name} -> {', '.join(dns_addresses) or 'no A record'}"
    lock = f", locked by {service.lock_holder}" if service.lock_holder else ""
    title = f"{service.name}: {service.state}{lock}; {pointing}"
    table = []
    for row in rows:
        copy = f"{row['copy']} ({row['copy_status']})" if row["copy"] else "-"
        age = _age(row["copy_age_hours"])
        dns = {None: "?", "": "-"}.get(row["dns"], row["dns"])
        table.append((row["role"], row["server"], row["facility"] or "-", row["address"] or "-", row["state"], copy, age, dns))
    return title + "\n" + table_text(HEADER, table, width)


def table_text(headers, rows, width: int | None = None) -> str:
    """Rows in the command line's one table style (``output.print_table``) as text, ``width``
    columns wide (default: the terminal's)."""
    import io

    from rich import box
    from rich.console import Console
    from rich.table import Table

    from hotspare.commands.output import width as output_width

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    text = io.StringIO()
    Console(file=text, width=width or output_width(), force_terminal=False, highlight=False, markup=False, emoji=False).print(
        table
    )
    return text.getvalue().rstrip("\n")


def _age(hours: float | None) -> str:
    """A copy's age as the plans show it (``planning/ages.py``)."""
    return age_text(hours * 3600 if hours is not None else None, unknown="-")


def _copy_for(server: str, service: ServiceRow, copies: list[CopyRow], live_copy: str | None) -> CopyRow | None:
    by_id = {copy.id: copy for copy in copies}
    if live_copy and live_copy in by_id:
        return by_id[live_copy]
    current = by_id.get(service.current_copy_id or "")
    if current is not None and current.target_server == server:
        return current
    verified = [copy for copy in copies if copy.target_server == server and copy.status == "verified"]
    return max(verified, key=lambda copy: _aware(copy.started_at)) if verified else None


def _aware(moment: datetime) -> datetime:
    from datetime import timezone

    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _hours_between(earlier: datetime, later: datetime) -> float:
    return (_aware(later) - _aware(earlier)).total_seconds() / 3600


def show_topology(service_name: str, heading: str, to_stderr: bool = False) -> None:
    """Print the service's topology now from the inventory and a live DNS read (on stderr with
    ``to_stderr``: a command printing JSON keeps stdout for it).

    Never raises: the table is a courtesy around the command, whose own outcome counts.
    """
    import sys

    try:
        _show_topology(service_name, heading, sys.stderr if to_stderr else sys.stdout)
    except Exception as error:  # noqa: BLE001 - see the docstring
        print(
            f"{heading}: topology not shown ({type(error).__name__}: {error})",
            flush=True,
            file=sys.stderr if to_stderr else sys.stdout,
        )


def _show_topology(service_name: str, heading: str, stream) -> None:
    from sqlmodel import select

    from hotspare.inventory import copies as copy_rows
    from hotspare.inventory import session
    from hotspare.inventory.models import ServerRow, ServiceRow, utcnow

    with session() as db:
        service = db.get(ServiceRow, service_name)
        servers = {server.name: server for server in db.exec(select(ServerRow))}
    if service is None:
        return
    addresses, note = _read_dns(service)
    rows = topology_rows(service, servers, copy_rows.copies_of(service_name), addresses, utcnow())
    print(f"{heading}:\n{format_topology(service, rows, addresses, note)}", flush=True, file=stream)


def _read_dns(service: ServiceRow) -> tuple[list[str] | None, str]:
    """The service's A record from its zone's authoritative server, or None and why not."""
    from hotspare import access
    from hotspare.adapters import dns
    from hotspare.adapters.errors import HotspareError

    try:
        server = access.dns_server(access.loaded_fleet(), service.spec["zone"], timeout=2.0)
        return dns.read_addresses(server, service.spec["dns_name"]), ""
    except (HotspareError, KeyError, StopIteration) as error:
        return None, str(error) or type(error).__name__
