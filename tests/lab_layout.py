"""The lab's starting layout, put back the quick way: every host healed and its apps running,
each service's DNS record on its production, its inventory row protected by its planned mirror,
no lock held, no copy marked active, facilities up.

The real way back (reprotect, then a planned failback) is under test in test_failover.py and
test_facility.py; a test that only needs the starting point again uses this, and a test whose
real way back failed uses it too, so one failure never cascades into every module after it.
"""

from __future__ import annotations

from lab_helpers import host_path, start_apps


def restore_starting_layout(lab, lab_env: dict, services: tuple[str, ...] | None = None) -> None:
    """Put ``services`` (default: every lab service) back where the lab starts them."""
    from hotspare import access
    from hotspare.adapters import dns
    from hotspare.inventory.db import session
    from hotspare.inventory.models import FacilityRow, ServerRow, ServiceRow

    names = services or tuple(lab_env["services"])
    planned = {name: lab_env["services"][name] for name in names}
    hosts = sorted({service[role] for service in planned.values() for role in ("production", "mirror")})
    for facility in sorted({lab_env["hosts"][host]["facility"] for host in hosts}):
        lab.heal(facility)
    access.close_connections()
    start_apps(lab_env, *hosts)
    for name, service in planned.items():
        for host in (service["production"], service["mirror"]):
            host_path(lab_env, host, f"/srv/hotspare/{name}/active-copy").unlink(missing_ok=True)
    fleet = access.loaded_fleet()
    zone = fleet.zone(lab_env["zone"])
    server = dns.AuthoritativeServer(lab_env["zone"], lab_env["dns"]["address"], lab_env["dns"]["port"])
    for name, service in planned.items():
        production = lab_env["hosts"][service["production"]]["address"]
        [current] = dns.read_addresses(server, service["dns_name"])
        if current != production:
            dns.compare_and_swap_address(
                server, access.tsig_key(zone.tsig_key_block), service["dns_name"], current, production, zone.ttl
            )
        assert dns.read_addresses(server, service["dns_name"]) == [production], name
    with session() as db:
        for name, service in planned.items():
            row = db.get(ServiceRow, name)
            row.active_server, row.mirror_server = service["production"], service["mirror"]
            row.state, row.failover = "protected", None
            row.lock_holder = row.lock_expires = None
        for host in hosts:
            row = db.get(ServerRow, host)
            row.state, row.state_reason = "ok", ""
        for facility in sorted({lab_env["hosts"][host]["facility"] for host in hosts}):
            db.get(FacilityRow, facility).status = "up"


def starting_layout_differs(lab_env: dict) -> list[str]:
    """The services not in their starting layout, each as one sentence (empty when all are)."""
    from hotspare.inventory import copies

    differing = []
    for name, service in lab_env["services"].items():
        row = copies.service_row(name)
        now = (row.state, row.active_server, row.mirror_server)
        if now != ("protected", service["production"], service["mirror"]):
            differing.append(f"{name} is {now}")
    return differing
