"""Hardware faults found by the health runbook, against the lab: each `hotspare lab break HOST
disk|psu|fan|temp` is declared by the next health run with its server, component and evidence;
disks, power supplies and fans get a replacement request e-mailed to the facility's remote
hands (read from the SMTP sink's maildir); events carry the server, component and evidence
(read back from the Prefect API); `hotspare hardware --json` lists the open requests and
`hotspare status` names the worst part; the degraded RAID keeps serving and replicating;
`lab repair` clears each after M good rounds and closes its request with the time it took.

One break per kind, all at once on four hosts, so one run finds them all and one run clears
them all. The module loads the lab fleet with short timeouts and small N and M.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
from contextlib import redirect_stdout
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlmodel import delete

from lab_helpers import lab_fleet_changed, wait_for

pytestmark = pytest.mark.lab

FAILURES_TO_DOWN = 2  # N: rounds before a part is declared failed
SUCCESSES_TO_RECOVER = 2  # M: good rounds before it is ok again and its request closes
INTERVAL = 0.1
# (host, part to break) -> (component, words of the evidence, replacement request expected)
BREAKS = {
    ("prod-east", "psu"): ("power_supply:PS2 Status", "Failure detected", True),  # IPMI BMC
    ("prod-west", "disk"): ("disk:devid 2", "devid 2", True),  # btrfs RAID10 member, over SSH
    ("prod-west", "fan"): ("fan:Fan1", "400 RPM", True),  # Redfish BMC: serial and bay known
    ("mirror-east", "temp"): ("temperature:Inlet Temp", "55 degrees C", False),  # nothing to swap
}
FACILITY = {"prod-east": "east", "prod-west": "west", "mirror-east": "east"}


def health_settings(lab_env: dict, folder: Path, **settings):
    """The lab fleet with ``settings`` in its health section, loaded; the lab's own afterwards."""
    return lab_fleet_changed(lab_env, folder, lambda data: data["health"].update(settings))


def clear_health_state() -> None:
    from hotspare import access
    from hotspare.inventory import session
    from hotspare.inventory.health import HealthComponentRow, HealthHistoryRow, ReplacementRow

    with session() as db:
        for table in (HealthComponentRow, HealthHistoryRow, ReplacementRow):
            db.exec(delete(table))
    access.close_connections()


@pytest.fixture(scope="module")
def quick_health(fleet, lab_env, tmp_path_factory):
    """The lab fleet with short probe timeouts and small N and M, and no health state yet."""
    from hotspare import access

    with health_settings(
        lab_env,
        tmp_path_factory.mktemp("fleet"),
        probe_timeout_seconds=1.5,
        failures_to_down=FAILURES_TO_DOWN,
        successes_to_recover=SUCCESSES_TO_RECOVER,
    ):
        clear_health_state()
        yield access.loaded_fleet()
        clear_health_state()


def lab_command(lab_env: dict, *arguments: str) -> None:
    from hotspare.cli import main

    assert main(["lab", *arguments, "--dir", lab_env["directory"], "--slot", str(lab_env["slot"])]) == 0


def run_health(rounds: int) -> dict:
    from flows.health import health

    return health(rounds=rounds, interval_seconds=INTERVAL)


def command_json(*arguments: str) -> dict:
    """A command's --json output. (Not pytest's capsys: Prefect's log handler, set up during a
    test, would keep writing to the captured stream after it is closed.)"""
    from hotspare.cli import main

    output = io.StringIO()
    with redirect_stdout(output):
        assert main(list(arguments)) == 0
    return json.loads(output.getvalue())


def health_events(name: str, resource_id: str, since: datetime) -> list:
    """``name`` events about ``resource_id`` since ``since``, read back from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    with get_client(sync_client=True) as client:
        page = client.read_events(
            filter=EventFilter(
                occurred=EventOccurredFilter(since=since),
                event=EventNameFilter(name=[name]),
                resource=EventResourceFilter(id=[resource_id]),
            ),
            limit=50,
        )
    return page.events


def event_for(name: str, since: datetime, server: str, component: str):
    """The event about ``server``'s ``component``, within a bounded wait (events are persisted
    asynchronously)."""

    def found():
        return [
            event
            for event in health_events(name, f"hotspare.server.{server}", since)
            if event.payload.get("component") == component
        ]

    return wait_for(f"{name} event for {server} {component}", found, 60)[0]


def replacement_mails(lab_env: dict, skip: frozenset = frozenset()) -> dict:
    """{file name: message} of the replacement requests in the SMTP sink's maildir."""
    found = {}
    for path in (Path(lab_env["smtp"]["maildir"]) / "new").iterdir():
        if path.name not in skip:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if str(message["Subject"]).startswith("Replacement request"):
                found[path.name] = message
    return found


@pytest.fixture
def broken(lab_env):
    """Parts broken by the test, repaired at the end even when it fails halfway."""
    made: list[tuple[str, str]] = []
    yield made
    for host, part in reversed(made):
        lab_command(lab_env, "repair", host, part)


def test_each_broken_part_is_declared_requested_and_closed_after_repair(quick_health, lab_env, broken):
    from flows.replicate import replicate_service
    from hotspare.inventory.health import load_statuses, replacement_requests
    from hotspare.lab.probes import http_get
    from hotspare.planning.replacements import SWAP_NOTE

    started = datetime.now(timezone.utc) - timedelta(seconds=5)
    mails_before = frozenset(replacement_mails(lab_env))
    for host, part in BREAKS:
        lab_command(lab_env, "break", host, part)
        broken.append((host, part))

    found = run_health(FAILURES_TO_DOWN)
    wanted = {(host, component) for (host, _part), (component, _words, _) in BREAKS.items()}
    for _round in range(5):  # a round whose reading timed out on a loaded machine counts not: check on
        if wanted <= {(change["subject"], change["component"]) for change in found["changes"]}:
            break
        more = run_health(1)
        found = {
            **found,
            "changes": found["changes"] + more["changes"],
            "replacements": found["replacements"] + more["replacements"],
        }
    statuses = load_statuses()
    declared = {(change["subject"], change["component"]): change for change in found["changes"]}
    for (host, _part), (component, words, _) in BREAKS.items():
        change = declared[(host, component)]
        assert (change["event"], change["state"]) == ("hotspare.health.failed", "failed"), change
        assert words in change["evidence"], change
    assert statuses[("prod-west", "raid:/srv")].state.value == "degraded"
    # Every server's hardware was read: its /srv over SSH, its power supplies from its BMC.
    for server in quick_health.servers:
        if server.role in ("production", "mirror", "standby"):  # the lab's btrfs hosts (disks.py)
            assert statuses[(server.name, "raid:/srv")].sites == ("control",), server.name
        assert any(key[0] == server.name and key[1].startswith("space:") for key in statuses), server.name
        if server.bmc is not None:
            assert any(key[0] == server.name and key[1].startswith("power_supply:") for key in statuses), server.name

    # Events, read back from the Prefect API, carry server, component and evidence.
    event = event_for("hotspare.health.failed", started, "prod-east", "power_supply:PS2 Status")
    assert event.payload["server"] == "prod-east" and "Failure detected" in event.payload["evidence"]

    # A request per swappable part, e-mailed to the facility's remote hands; none for the temperature.
    opened = {(entry["server"], entry["component"]): entry for entry in found["replacements"] if "opened" in entry}
    assert set(opened) == {(host, component) for (host, _), (component, _, swap) in BREAKS.items() if swap}
    assert all(entry["mail"] == "sent" for entry in opened.values()), opened
    listed = {(row["server"], row["component"]): row for row in command_json("hardware", "--json")["replacement_requests"]}
    assert set(listed) == set(opened)
    fan = listed[("prod-west", "fan:Fan1")]
    assert (fan["facility"], fan["serial"], fan["slot"]) == ("west", "F4PRODWEST01", "Fan slot 1")
    assert fan["location"] and listed[("prod-east", "power_supply:PS2 Status")]["slot"] == "power supply 2"
    mails = list(replacement_mails(lab_env, skip=mails_before).values())
    assert sorted(message["X-RcptTo"] for message in mails) == sorted(
        f"hands@{FACILITY[server]}.lab.test" for server, _ in opened
    )
    for message in mails:
        body = message.get_content()
        row = next(row for row in listed.values() if row["slot"] in body and row["server"] in body)
        for text in (row["facility"], row["location"], row["part_kind"], row["serial"] or "unknown", SWAP_NOTE):
            assert text in body, (text, body)

    # `hotspare status` names the worst part of each service's production.
    health = {record["service"]: record["health_text"] for record in command_json("status", "--json")["services"]}
    assert health["app1"] == "psu PS2 failed", health

    # Degraded is not down: app2 answers from prod-west and replicates from its degraded RAID.
    address = lab_env["hosts"]["prod-west"]["address"]
    assert http_get(f"http://{address}:{lab_env['services']['app2']['app_port']}/health.txt", 2.0) is not None
    assert replicate_service("app2")["outcome"] == "ok"

    for host, part in BREAKS:
        lab_command(lab_env, "repair", host, part)
    broken.clear()
    almost = run_health(SUCCESSES_TO_RECOVER - 1)  # good, but not yet M rounds: still open
    assert not any("closed" in entry for entry in almost["replacements"])
    assert len(replacement_requests(open_only=True)) == len(opened)
    cleared = run_health(1)
    recovered = {
        (change["subject"], change["component"])
        for change in cleared["changes"]
        if change["event"] == "hotspare.health.recovered"
    }
    assert {(host, component) for (host, _), (component, _, _) in BREAKS.items()} <= recovered
    closed = {(entry["server"], entry["component"]): entry for entry in cleared["replacements"] if "closed" in entry}
    assert set(closed) == set(opened)
    assert all(entry["duration_s"] > 0 for entry in closed.values())
    assert replacement_requests(open_only=True) == []
    assert command_json("hardware", "--json")["replacement_requests"] == []
    event = event_for("hotspare.health.recovered", started, "prod-west", "fan:Fan1")
    assert event.payload["server"] == "prod-west" and event.payload["previous"] == "failed"
