"""Losing the whole east facility in the real lab, and taking it back: one full cycle.

east holds the production of app1 and app3 (prod-east, both mirrored on mirror-west: two
failovers to one mirror at once) and app2's mirror (mirror-east; app2 runs on prod-west). The test
ends with the lab as the session found it: east healed, app1 and app3 back on prod-east (real
failbacks) protected by mirror-west, app2 protected by mirror-east, the apps running on every
production and mirror as the lab starts them.
"""

from __future__ import annotations

import json

import pytest

from flows.facility import facility_failover, facility_return
from hotspare.adapters import dns
from hotspare.inventory import copies
from hotspare.probes import http_get_via_dns

from lab_helpers import host_path, poll, ssh, start_apps
from lab_layout import restore_starting_layout

pytestmark = pytest.mark.lab

MOVED = ("app1", "app3")  # the services whose production is in east


def lab_dns(lab_env: dict) -> dns.AuthoritativeServer:
    return dns.AuthoritativeServer(lab_env["zone"], lab_env["dns"]["address"], lab_env["dns"]["port"])


def address_of(lab_env: dict, host: str) -> str:
    return lab_env["hosts"][host]["address"]


def through_dns(lab_env: dict, service: str, path: str = "health.txt") -> tuple[int, bytes, str]:
    spec = lab_env["services"][service]
    url = f"http://{spec['dns_name']}:{spec['app_port']}/{path}"
    return http_get_via_dns(url, lambda name: dns.read_addresses(lab_dns(lab_env), name), timeout=3)


def layout(service: str) -> tuple[str, str, str | None]:
    row = copies.service_row(service)
    return row.state, row.active_server, row.mirror_server


@pytest.fixture
def east_lost_and_back(fleet, lab, lab_env):
    """Both services protected with a verified copy before; the lab's starting point after."""
    from flows.replicate import replicate_service

    for service, mirror in (("app1", "mirror-west"), ("app2", "mirror-east"), ("app3", "mirror-west")):
        assert layout(service)[0] == "protected", f"{service} must start protected: {layout(service)}"
        if copies.newest_verified(service, mirror) is None:
            assert replicate_service(service)["outcome"] == "ok"
    yield
    try:
        _restore_lab(lab, lab_env)
    except BaseException:  # the real way back failed: reported as this test's error, the lab put back
        restore_starting_layout(lab, lab_env)
        raise


def _restore_lab(lab, lab_env) -> None:
    """East healed, app1 and app3 failed back to prod-east if not there (the real way: reprotect,
    a planned failback), apps running everywhere."""
    from flows.failover import failover
    from hotspare import access
    from hotspare.inventory.db import session
    from hotspare.inventory.models import FacilityRow, ServerRow

    lab.heal("east")
    access.close_connections()
    for moved in MOVED:
        if layout(moved)[0] == "failed-over":  # the return did not run or failed: reprotect first
            stopped = ssh(lab_env, "prod-east", f"/srv/{moved}/app/ctl", "stop")
            assert stopped.returncode == 0, f"{moved} on prod-east did not stop: {stopped.stdout}{stopped.stderr}"
            from flows.reprotect import reprotect

            try:
                reprotect(moved, mirror="prod-east", yes=True)
            except Exception as error:  # what still listens there, for the report
                seen = ssh(lab_env, "prod-east", "sh", "-c", "ss -Hltnp; ps -eo pid,sid,lstart,args | grep [h]ttp.server")
                raise AssertionError(f"{error}\n{stopped.stdout}\nprod-east now:\n{seen.stdout}{seen.stderr}") from error
        if layout(moved)[1] != "prod-east":
            assert failover(moved, planned=True, yes=True)["outcome"] == "ok"  # the failback the return offers
    if layout("app2")[0] != "protected":
        stopped = ssh(lab_env, "mirror-east", "/srv/app2/app/ctl", "stop")
        assert stopped.returncode == 0, f"app2 on mirror-east did not stop: {stopped.stdout}{stopped.stderr}"
        from flows.reprotect import reprotect

        reprotect("app2", mirror="mirror-east", yes=True)
    start_apps(lab_env, "prod-east", "mirror-west", "prod-west", "mirror-east")
    for moved in MOVED:
        host_path(lab_env, "mirror-west", f"/srv/hotspare/{moved}/active-copy").unlink(missing_ok=True)
        host_path(lab_env, "prod-east", f"/srv/hotspare/{moved}/active-copy").unlink(missing_ok=True)
    with session() as db:
        db.get(FacilityRow, "east").status = "up"
        for server in ("prod-east", "mirror-west", "prod-west", "mirror-east", "standby-east"):
            row = db.get(ServerRow, server)
            row.state, row.state_reason = "ok", ""
    assert layout("app1") == layout("app3") == ("protected", "prod-east", "mirror-west")
    assert layout("app2") == ("protected", "prod-west", "mirror-east")
    assert dns.read_addresses(lab_dns(lab_env), lab_env["services"]["app1"]["dns_name"]) == [address_of(lab_env, "prod-east")]


def test_facility_east_fails_over_and_returns(east_lost_and_back, lab, lab_env, capsys):
    from hotspare.cli import main

    # The plan, before anything happens: app1 and app3 move, app2 keeps running unprotected.
    preview = facility_failover("east", dry_run=True)
    assert "app1" in preview["plan"] and "app3" in preview["plan"] and "prod-east → mirror-west" in preview["plan"]
    assert "app2** keeps running on prod-west, unprotected: mirror facility east lost" in preview["plan"]

    lab.fail("east")
    result = facility_failover("east", approved_plan_digest=preview["plan_digest"])

    app1 = result["results"]["app1"]
    assert app1["outcome"] == "ok" and app1["rto_seconds"] > 0 and app1["since_approval_seconds"] >= app1["rto_seconds"]
    assert result["unprotected"] == ["app2"] and result["rebuild"] == []
    assert result["results"]["app3"]["outcome"] == "ok", result["results"]["app3"]
    for moved in MOVED:
        status, body, used = through_dns(lab_env, moved)
        assert (status, body, used) == (200, f"ok {moved}\n".encode(), address_of(lab_env, "mirror-west"))
        assert layout(moved) == ("failed-over", "mirror-west", None)
    # Both services' accounts are on the shared mirror after the two merges.
    for user in ("app1-web", "app1-batch", "app3-web", "app3-batch"):
        assert ssh(lab_env, "mirror-west", "getent", "passwd", user).returncode == 0, user
    assert through_dns(lab_env, "app2")[:3:2] == (200, address_of(lab_env, "prod-west"))  # never moved
    assert layout("app2")[0] == "unprotected"

    capsys.readouterr()
    assert main(["facility", "status", "east", "--json"]) == 0
    seen = {item["service"]: item for item in json.loads(capsys.readouterr().out)["services"]}
    assert "unprotected: mirror facility east lost" in seen["app2"]["protection"]
    assert seen["app1"]["production"] == "mirror-west"
    assert main(["status", "--json", "--timeout", "1"]) == 0
    status_of = {record["service"]: record for record in json.loads(capsys.readouterr().out)["services"]}
    assert status_of["app2"]["protection"] == "unprotected: mirror facility east lost"
    # The facility run is on record with who ran it; the summary names each outcome and RTO.
    from sqlmodel import select

    from hotspare.inventory.db import session
    from hotspare.inventory.models import RunRow

    with session() as db:
        run = db.exec(select(RunRow).where(RunRow.kind == "facility-failover").order_by(RunRow.id.desc())).first()
    assert run.outcome == "ok" and run.operator and run.details["results"]["app1"]["rto_seconds"] == app1["rto_seconds"]

    # East comes back: prod-east still runs app1 and mirror-east still runs app2 as before.
    lab.heal("east")
    poll(lambda: ssh(lab_env, "prod-east", "true", connect_timeout=2).returncode == 0, 30, "prod-east to answer again")
    capsys.readouterr()
    assert main(["facility", "return", "east"]) == 7  # the plan is shown; no terminal to type its digest on
    shown = capsys.readouterr()
    preview = facility_return("east", dry_run=True)
    assert f"Plan digest: `{preview['plan_digest']}`" in shown.out
    assert f"`hotspare facility return east --approve {preview['plan_digest']}`" in shown.err
    assert layout("app1") == ("failed-over", "mirror-west", None)  # nothing changed yet
    back = facility_return("east", approved_plan_digest=preview["plan_digest"])

    assert {name: outcome["outcome"] for name, outcome in back["results"].items()} == {"app1": "ok", "app2": "ok", "app3": "ok"}
    assert layout("app1") == layout("app3") == ("protected", "mirror-west", "prod-east")
    assert layout("app2") == ("protected", "prod-west", "mirror-east")
    assert copies.current_copy("app1").target_server == "prod-east" and copies.current_copy("app1").status == "verified"
    assert copies.current_copy("app2").target_server == "mirror-east" and copies.current_copy("app2").status == "verified"
    assert sorted(back["failbacks"]) == ["hotspare failback app1", "hotspare failback app3"]
    assert through_dns(lab_env, "app1")[:3:2] == (200, address_of(lab_env, "mirror-west"))  # users stay put
