"""Drills on the lab: app1 comes up from its newest verified copy in a bubble on its mirror, and
afterwards production, DNS, the mirror's copies and live state and replication are as they were,
and nothing is left (checked from this machine, which sees every lab host's /run, /var/lib and
processes). A drill killed midway is cleaned up by the next one; its bubble, while it is left,
shows the isolation (read with ``ip route``, never by sending a packet).

Two drills in all (plus one killed early) to keep the suite quick.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flows.replicate import replicate_service
from hotspare.adapters import dns
from hotspare.cli import main
from hotspare.inventory import copies, drills, locks

from lab_helpers import host_path, poll, ssh, tree_digest

pytestmark = pytest.mark.lab

SERVICE = "app1"
PRODUCTION, MIRROR = "prod-east", "mirror-west"


def dns_answer(lab_env: dict) -> list[str]:
    server = dns.AuthoritativeServer(lab_env["zone"], lab_env["dns"]["address"], lab_env["dns"]["port"])
    return dns.read_addresses(server, lab_env["services"][SERVICE]["dns_name"])


def drill_namespaces(lab_env: dict) -> list[str]:
    """Drill namespaces as the mirror sees them (in its own /run)."""
    folder = host_path(lab_env, MIRROR, "/run/netns")
    return (
        sorted(path.name for path in folder.iterdir() if path.name.startswith(f"hsdrill-{SERVICE}-")) if folder.is_dir() else []
    )


def mount_tables_naming(text: str) -> list[str]:
    """Every process on the machine whose mount table names ``text`` (lab hosts share the PID space)."""
    found = []
    for table in Path("/proc").glob("[0-9]*/mountinfo"):
        try:
            if text in table.read_text():
                found.append(str(table))
        except OSError:
            continue  # the process ended meanwhile
    return found


def snapshot(lab_env: dict) -> dict:
    """What a drill must leave as it is: production's files, the mirror's copies and live paths
    (listing + checksums), its account files and its app, and the DNS answer."""
    mirror_etc = host_path(lab_env, MIRROR, "/etc")
    return {
        "production": tree_digest(host_path(lab_env, PRODUCTION, "/srv/app1")),
        "production_config": tree_digest(host_path(lab_env, PRODUCTION, "/etc/app1")),
        "mirror_copies": tree_digest(host_path(lab_env, MIRROR, "/srv/hotspare/app1")),
        "mirror_links": sorted(
            str(path.relative_to(host_path(lab_env, MIRROR, "/srv/hotspare")))
            for path in host_path(lab_env, MIRROR, "/srv/hotspare").rglob("*")
        ),
        # the mirror app's access log grows with every request anyone makes; its pid file must not change
        "mirror_live": {
            path: digest
            for path, digest in tree_digest(host_path(lab_env, MIRROR, "/srv/app1")).items()
            if path != "run/http.log"
        },
        "mirror_accounts": {name: (mirror_etc / name).read_text() for name in ("passwd", "group", "shadow")},
        "mirror_app": ssh(lab_env, MIRROR, "/srv/app1/app/ctl", "status").stdout,
        "dns": dns_answer(lab_env),
    }


def nothing_left(lab_env: dict, drill_id: str) -> None:
    assert not [name for name in drill_namespaces(lab_env) if name.endswith(drill_id)]
    assert mount_tables_naming(drill_id) == []
    assert not list(Path("/var/lib/hotspare/drills").glob(f"{drill_id}*"))


@pytest.fixture
def protected(fleet, lab, lab_env):
    """app1 protected by mirror-west with a verified copy, and no lock held on it."""
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server, row.mirror_server) == ("protected", PRODUCTION, MIRROR)
    if copies.newest_verified(SERVICE, MIRROR) is None:
        assert replicate_service(SERVICE)["outcome"] == "ok"
    poll(lambda: locks.holder_of(SERVICE) is None, 60, "app1's lock to be free")


def test_drill_changes_nothing_and_leaves_nothing(protected, lab_env, capsys, monkeypatch):
    monkeypatch.setenv("HOTSPARE_OPERATOR", "Dana Ops")
    newest = copies.newest_verified(SERVICE, MIRROR)
    before = snapshot(lab_env)

    assert main(["drill", SERVICE, "--json", "--watched-by", "Lee Lead", "--watched-by", "Sam Audit"]) == 0
    result = json.loads(capsys.readouterr().out)

    assert (result["outcome"], result["copy_id"], result["host"]) == ("ok", newest.id, MIRROR)
    assert result["cleanup_proven"] is True and result["rto_seconds"] > 0 and result["rpo_seconds"] >= 0
    assert result["canary"] == "logged in as app1-web"
    # Inside the bubble the production address is local (lo), and there is no way out.
    assert result["isolation"]["route"].startswith(f"local {lab_env['hosts'][PRODUCTION]['address']} dev lo")
    assert result["isolation"]["default_route"] is False
    row = drills.drill(result["drill_id"])
    assert (row.outcome, row.cleanup_proven, row.copy_id, row.host) == ("ok", True, newest.id, MIRROR)
    assert row.operators == "Dana Ops,Lee Lead,Sam Audit"
    assert [step["step"] for step in row.steps][-1] == "tear down and prove"

    assert snapshot(lab_env) == before
    nothing_left(lab_env, result["drill_id"])
    # Replication still works after the drill, and makes a new verified copy.
    assert replicate_service(SERVICE)["outcome"] == "ok"
    assert copies.newest_verified(SERVICE, MIRROR).id != newest.id


def test_drill_killed_midway_is_cleaned_up_by_the_next(protected, lab_env, prefect_api, capsys):
    from prefect.settings import PREFECT_API_URL

    production_address = lab_env["hosts"][PRODUCTION]["address"]
    present = set(drill_namespaces(lab_env))
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "HOTSPARE_LEASE_SECONDS": "3"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hotspare.cli", "drill", SERVICE],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        netns = poll(lambda: next(iter(set(drill_namespaces(lab_env)) - present), None), 90, "the drill's bubble")
        poll(lambda: ssh(lab_env, MIRROR, "ip", "netns", "pids", netns).stdout.strip(), 60, "a process in the bubble")
        os.kill(process.pid, signal.SIGKILL)  # the drill process this test started
    finally:
        process.wait(timeout=30)
    killed_id = re.sub(rf"^hsdrill-{SERVICE}-", "", netns)

    # The bubble left behind: only lo and its own veth pair, the production address is local,
    # no default route; the mirror's own route to production is untouched.
    links = ssh(lab_env, MIRROR, "ip", "-n", netns, "-o", "link", "show").stdout
    assert sorted(re.findall(r"^\d+: ([^:@]+)", links, re.M)) == ["drill0", "drill1", "lo"]
    inside = ssh(lab_env, MIRROR, "ip", "-n", netns, "route", "get", production_address).stdout
    assert re.match(rf"local {re.escape(production_address)} dev (lo|drill0|drill1) ", inside)
    assert "default" not in ssh(lab_env, MIRROR, "ip", "-n", netns, "route", "show", "table", "all").stdout
    assert " dev eth0 " in ssh(lab_env, MIRROR, "ip", "route", "get", production_address).stdout

    before = snapshot(lab_env)
    poll(lambda: locks.holder_of(SERVICE) is None, 30, "the killed drill's lease to run out")
    assert main(["drill", SERVICE, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["outcome"] == "ok" and result["cleanup_proven"] is True
    nothing_left(lab_env, killed_id)
    nothing_left(lab_env, result["drill_id"])
    assert drill_namespaces(lab_env) == sorted(present)
    killed = drills.drill(killed_id)
    assert (killed.outcome, killed.cleanup_proven) == ("failed", True)
    assert snapshot(lab_env) == before


def test_a_killed_drills_bubble_is_removed_by_the_next_health_check(protected, lab_env, prefect_api, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    from flows.health import health

    monkeypatch.setenv("HOTSPARE_LEASE_SECONDS", "3")  # the fleet's lease, for the drill and the health run alike
    present = set(drill_namespaces(lab_env))
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    process = subprocess.Popen(
        [sys.executable, "-m", "hotspare.cli", "drill", SERVICE],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        netns = poll(lambda: next(iter(set(drill_namespaces(lab_env)) - present), None), 90, "the drill's bubble")
        poll(lambda: ssh(lab_env, MIRROR, "ip", "netns", "pids", netns).stdout.strip(), 60, "a process in the bubble")
        os.kill(process.pid, signal.SIGKILL)  # the drill process this test started
    finally:
        process.wait(timeout=30)
    killed_id = re.sub(rf"^hsdrill-{SERVICE}-", "", netns)
    production_address = lab_env["hosts"][PRODUCTION]["address"]
    assert ssh(lab_env, MIRROR, "ip", "-n", netns, "route", "get", production_address).stdout.startswith("local ")
    assert drills.drill(killed_id).outcome == "running"

    # no operator runs a cleanup: the scheduled health check finds the drill gone and removes its bubble
    def health_cleaned() -> list[dict] | None:
        cleaned = health(rounds=1, interval_seconds=1)["drills_cleaned"]
        return [entry for entry in cleaned if entry["drill_id"] == killed_id] or None

    [entry] = poll(health_cleaned, 120, "a health run to remove the killed drill's bubble")
    assert (entry["host"], entry["leftovers"]) == (MIRROR, [])
    nothing_left(lab_env, killed_id)
    assert drill_namespaces(lab_env) == sorted(present)
    killed = drills.drill(killed_id)
    assert (killed.outcome, killed.cleanup_proven) == ("failed", True) and "removed by a later" in killed.summary
    assert locks.holder_of(SERVICE) is None  # the cleanup's own lock is released
