"""The outage chain as one, against the lab: a production server stops answering, the health
rounds declare it failed (two sites agree), a category 1 incident opens, the call chain rings in
the written order with its waits until a keypress acknowledges, exactly app1's customers get the
blast e-mail, the status page on the web host shows the incident and the emergency numbers (and
is rendered in headless Chromium), app1 fails over, the incident is resolved, the resolution
notice goes out and the page says so. Then the lab is restored as it was (heal, reprotect,
failback).

The chain is driven the way the automations drive it — each flow called with what the previous
step emitted: the health events read back from the Prefect API start ``page``, the opening
starts ``customer-notice`` and ``status-page-publish``. That the automations exist and point at
those deployments is checked separately (a served deployment picking up an automation-created run
would add a runner process and its poll latency: ``tests/test_blast.py`` checks the run is
created). Waits are this test's own (a fleet with 2 s steps and 1.5 s probes), never sleeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_blast import APP1_CONTACTS, envelope_recipients, sink_messages

from lab_helpers import host_path, poll, ssh, start_apps, wait_for

pytestmark = pytest.mark.lab

SERVICE = "app1"
STEP_WAIT = 2.0  # seconds between two steps of the chain in this test's fleet (room to answer a call)
PROBE_TIMEOUT = 1.5
ROUND_INTERVAL = 0.05
CHROMIUM = "/usr/bin/chromium"
OFFICE, DANA, LEE = "+15550150", "+15550100", "+15550101"


def public_name(number: int) -> str:
    """The name the status page gives incident ``number`` (keyed, not the inventory's sequence)."""
    from hotspare.access import loaded_fleet
    from tasks.subscriptions import public_references

    return public_references(loaded_fleet(), [number])[number]


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def layout() -> tuple[str, str, str | None]:
    from hotspare.inventory import copies

    row = copies.service_row(SERVICE)
    return row.state, row.active_server, row.mirror_server


def dns_answer(lab_env: dict) -> list[str]:
    from hotspare.adapters import dns

    server = dns.AuthoritativeServer(lab_env["zone"], lab_env["dns"]["address"], lab_env["dns"]["port"])
    return dns.read_addresses(server, lab_env["services"][SERVICE]["dns_name"])


def address_of(lab_env: dict, host: str) -> str:
    return lab_env["hosts"][host]["address"]


def clear_health() -> None:
    from sqlmodel import delete

    from hotspare import access
    from hotspare.inventory import session
    from hotspare.inventory.health import HealthComponentRow, HealthHistoryRow

    with session() as db:
        db.exec(delete(HealthComponentRow))
        db.exec(delete(HealthHistoryRow))
    access.close_connections()


@pytest.fixture
def quick_fleet(fleet, lab_env, tmp_path):
    """The lab fleet with this test's short waits loaded; the lab's own fleet again afterwards."""
    from lab_helpers import lab_fleet_changed

    def shorter(data: dict) -> None:
        for step in data["incidents"]["chains"][0]["steps"]:
            step["wait_seconds"] = STEP_WAIT
        data["health"]["probe_timeout_seconds"] = PROBE_TIMEOUT

    with lab_fleet_changed(lab_env, tmp_path, shorter) as data:
        yield data


@pytest.fixture
def phone_lab(fleet, lab, lab_env):
    """The lab's phone endpoint, and hotspare's acknowledgement webhook on the lab's port."""
    from hotspare.acknowledgements import serve
    from hotspare.lab.phone import PhoneControl, acknowledgement_port

    server = serve(fleet, "127.0.0.1", acknowledgement_port(lab.slot))
    yield PhoneControl(lab_env)
    server.shutdown()
    server.server_close()


@pytest.fixture
def restored_afterwards(fleet, lab, lab_env):
    """app1 protected on prod-east with a verified copy before; exactly that again after:
    prod-east healed, the app stopped there, reprotected onto it, failed back (planned)."""
    from flows.replicate import replicate_service
    from hotspare.inventory import copies

    assert layout() == ("protected", "prod-east", "mirror-west"), layout()
    if copies.newest_verified(SERVICE, "mirror-west") is None:
        assert replicate_service(SERVICE)["outcome"] == "ok"
    clear_health()
    yield
    restore_lab(lab, lab_env)
    clear_health()


def restore_lab(lab, lab_env) -> None:
    from flows.failover import failover
    from flows.reprotect import reprotect
    from hotspare import access
    from hotspare.cli import main
    from hotspare.inventory.db import session
    from hotspare.inventory.incidents import list_incidents, resolve
    from hotspare.inventory.models import ServerRow

    assert main(["lab", "heal", "prod-east", "--dir", str(lab.directory)]) == 0
    access.close_connections()
    poll(lambda: ssh(lab_env, "prod-east", "true", connect_timeout=2).returncode == 0, 30, "prod-east to answer again")
    if layout()[0] == "failed-over":
        assert ssh(lab_env, "prod-east", f"/srv/{SERVICE}/app/ctl", "stop").returncode == 0  # no split brain
        reprotect(SERVICE, mirror="prod-east", yes=True)
        assert layout() == ("protected", "mirror-west", "prod-east"), layout()
    if layout()[1] != "prod-east":
        assert failover(SERVICE, planned=True, yes=True)["outcome"] == "ok"  # the failback
    start_apps(lab_env, "prod-east", "mirror-west")  # the lab runs the apps on both (DNS picks one)
    for host in ("prod-east", "mirror-west"):
        host_path(lab_env, host, f"/srv/hotspare/{SERVICE}/active-copy").unlink(missing_ok=True)
    with session() as db:
        for server in ("prod-east", "mirror-west"):
            row = db.get(ServerRow, server)
            row.state, row.state_reason = "ok", ""
    for incident in list_incidents(open_only=True, limit=50):
        if "prod-east" in incident["servers"] or SERVICE in incident["services"]:
            resolve(incident["id"], "test", "lab restored")
    assert layout() == ("protected", "prod-east", "mirror-west")
    assert dns_answer(lab_env) == [address_of(lab_env, "prod-east")]


def health_events(since: datetime) -> list:
    """The ``hotspare.health.failed`` events about prod-east or app1 the health flow emitted."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    wanted = EventFilter(
        occurred=EventOccurredFilter(since=since),
        event=EventNameFilter(name=["hotspare.health.failed"]),
        resource=EventResourceFilter(id=["hotspare.server.prod-east", f"hotspare.service.{SERVICE}"]),
    )
    with get_client(sync_client=True) as client:
        return list(client.read_events(filter=wanted, limit=50).events)


def declared_failed() -> datetime | None:
    """When the health judge declared prod-east's SSH reachability failed (None: not yet)."""
    from hotspare.inventory.health import history
    from hotspare.inventory.models import as_utc

    changes = [row for row in history("prod-east") if row.component == "reachability:ssh" and row.state == "failed"]
    return as_utc(changes[0].at) if changes else None


def screenshot_of(url: str, name: str) -> tuple[Path, subprocess.Popen, tempfile.TemporaryDirectory]:
    """Start headless Chromium on ``url``; returns the PNG path and the running browser."""
    screenshot = Path(os.environ["HOTSPARE_HOME"]) / "artifacts" / name
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    profile = tempfile.TemporaryDirectory()
    browser = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile.name}",
            "--window-size=420,900",
            f"--screenshot={screenshot}",
            url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return screenshot, browser, profile


def test_outage_chain_from_detection_to_resolution(quick_fleet, restored_afterwards, phone_lab, fleet, lab, lab_env):
    from flows.health import health
    from flows.incident import page, resolve_incident
    from flows.notices import customer_notice, status_page_publish
    from hotspare.cli import main
    from hotspare.inventory.incidents import get_incident, list_incidents, resolve
    from hotspare.inventory.models import as_utc

    # An incident about prod-east left open by an earlier test would take this detection in
    # (detections fold into the open incident): start from none.
    for earlier in list_incidents(open_only=True, limit=50):
        if "prod-east" in earlier["servers"] or SERVICE in earlier["services"]:
            resolve(earlier["id"], "test", "closed before the outage chain test")
    started = datetime.now(timezone.utc)
    assert health(rounds=1, interval_seconds=ROUND_INTERVAL)["failed"] == []  # all well before
    calls_before = len(phone_lab.requests("call"))

    # 1. prod-east stops answering; the health rounds agree it is down.
    assert main(["lab", "fail", "prod-east", "--dir", str(lab.directory)]) == 0
    health(rounds=3, interval_seconds=ROUND_INTERVAL)  # failures_to_down rounds, in one run
    detected = declared_failed()
    for _round in range(5):  # a round that saw nothing conclusive (a loaded machine) counts not
        if detected:
            break
        health(rounds=1, interval_seconds=ROUND_INTERVAL)
        detected = declared_failed()
    assert detected, "prod-east was never declared failed"
    from hotspare.inventory.health import history

    down = next(row for row in history("prod-east") if row.state == "failed")
    assert len(down.sites) >= 2 and {"control", "west"} & set(down.sites), down.sites  # agreement, one outside east

    # 2. The events it emitted start paging (as the paging automation does): one incident.
    events = wait_for(
        "the health events in the Prefect API",
        lambda: (found := health_events(started)) and any(e.resource.id == "hotspare.server.prod-east" for e in found) and found,
        30,
    )
    server_event = next(e for e in events if e.resource.id == "hotspare.server.prod-east")
    with ThreadPoolExecutor(3) as pool:
        walk = pool.submit(
            page,
            event=server_event.event,
            resource_id=server_event.resource.id,
            payload_json=json.dumps(server_event.payload),
            poll_seconds=0.1,
        )
        incident_id = wait_for(
            "the incident to open",
            lambda: next(
                (item["id"] for item in list_incidents(open_only=True, limit=20) if "prod-east" in item["servers"]), None
            ),
            30,
        )

        # 3. The chain rings in order until its third call is answered with a keypress (1) ...
        def answer_third_call() -> dict:
            calls = wait_for("three calls", lambda: len(found := phone_lab.requests("call")[calls_before:]) >= 3 and found, 60)
            return phone_lab.answer(calls[2]["sid"], digits="1")

        # ... while the opening tells customers and the status page (the notice automations' flows).
        def tell_customers() -> tuple[dict, dict]:
            return customer_notice(incident_id=incident_id, kind="opened"), status_page_publish(incident_id=incident_id)

        answering = pool.submit(answer_third_call)
        telling = pool.submit(tell_customers)
        for event in events:  # app1's own failures fold into the machine's incident
            if event.id != server_event.id:
                folded = page(event=event.event, resource_id=event.resource.id, payload_json=json.dumps(event.payload))
                assert folded == {"incident": incident_id, "paged": 0, "outcome": "folded"}, folded
        answer = answering.result(timeout=90)
        paging = walk.result(timeout=60)
        notice, published = telling.result(timeout=120)

    assert answer["webhook_status"] == 200 and "acknowledged by Dana Ops" in answer["webhook_body"]
    assert paging["outcome"] == "stop" and paging["paged"] == 3, paging
    calls = phone_lab.requests("call")[calls_before:]
    assert [(call["form"]["To"], call["form"].get("SendDigits")) for call in calls] == [
        (OFFICE, None),
        (OFFICE, "0"),
        (DANA, None),
    ]  # Lee Lead was never called: acknowledged first
    gaps = [later["at"] - earlier["at"] for earlier, later in zip(calls, calls[1:])]
    assert all(STEP_WAIT - 0.05 <= gap <= STEP_WAIT + 2.0 for gap in gaps), gaps
    incident = get_incident(incident_id)
    assert (incident["category"], incident["severity"], incident["status"]) == (1, "high", "acknowledged")
    assert incident["acknowledged_by"] == "Dana Ops" and incident["detections"] == len(events)
    assert set(incident["servers"]) == {"prod-east"} and SERVICE in incident["services"]

    # 4. The blast reached exactly app1's customers (no app2-only contact), once each.
    assert notice.get("sent"), notice
    blast = wait_for(
        "the opening notice in the sink",
        lambda: len(found := sink_messages(lab_env, f"incident-{incident_id}-opened")) >= len(APP1_CONTACTS) and found,
        30,
    )
    assert envelope_recipients(blast) == Counter(APP1_CONTACTS)
    maildir = Path(lab_env["smtp"]["maildir"]) / "new"
    stored = sorted(
        path.stat().st_mtime for path in maildir.iterdir() if f"incident-{incident_id}-opened".encode() in path.read_bytes()
    )

    # 5. The status page on the web host shows the incident and the emergency numbers.
    assert published["published"], published
    url = lab_env["status_page"]["url"]
    shown = wait_for(
        "the incident on the status page", lambda: f'id="incident-{public_name(incident_id)}"' in (text := fetch(url)) and text
    )
    assert shown.index("+1 555 0199") < shown.index(f'id="incident-{public_name(incident_id)}"')  # numbers first
    assert "+1 555 0100" in shown and f'class="card bad" id="incident-{public_name(incident_id)}"' in shown
    browser_run = screenshot_of(url, "outage-chain-status-page.png") if os.access(CHROMIUM, os.X_OK) else None

    # 6. Failover of app1 (the operator's command), while Chromium renders the page.
    assert main(["failover", SERVICE, "--yes"]) == 0
    assert layout() == ("failed-over", "mirror-west", None)
    assert dns_answer(lab_env) == [address_of(lab_env, "mirror-west")]

    # 7. Resolved: the resolution notice goes out and the page says so.
    resolve_incident(incident_id, by="Dana Ops", text="app1 runs on its mirror in west")
    resolved_notice = customer_notice(incident_id=incident_id, kind="resolved")
    assert resolved_notice.get("sent"), resolved_notice
    resolved = wait_for(
        "the resolution notice",
        lambda: len(found := sink_messages(lab_env, f"incident-{incident_id}-resolved")) >= len(APP1_CONTACTS) and found,
        30,
    )
    assert envelope_recipients(resolved) == Counter(APP1_CONTACTS)
    assert all(message["Subject"].startswith("[Resolved]") for message in resolved)
    assert status_page_publish(incident_id=incident_id)["published"]
    updated = wait_for(
        "the page to say resolved",
        lambda: f'class="card ok" id="incident-{public_name(incident_id)}"' in (text := fetch(url)) and text,
        30,
    )
    assert "resolved" in updated.split(f'id="incident-{public_name(incident_id)}"', 1)[1].split("</section>", 1)[0].lower()

    if browser_run is not None:
        screenshot, browser, profile = browser_run
        _out, errors = browser.communicate(timeout=120)
        profile.cleanup()
        assert screenshot.exists() and screenshot.stat().st_size > 5000, errors[-2000:]
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"\nstatus page screenshot: {screenshot}")
    detected_at = detected.timestamp()
    print(
        f"\nMEASURED detection -> first call: {calls[0]['at'] - detected_at:.3f} s; "
        f"detection -> blast e-mail in the sink: first {stored[0] - detected_at:.3f} s, "
        f"last {stored[-1] - detected_at:.3f} s; call spacing {', '.join(f'{gap:.2f}' for gap in gaps)} s "
        f"(steps {STEP_WAIT:g} s apart); opened at {as_utc(datetime.fromisoformat(incident['opened_at'])).timestamp() - detected_at:.3f} s"
    )


def test_every_automation_is_made_once_and_runs_its_deployment(fleet):
    """One call makes the paging and notice automations; again, it changes nothing."""
    from prefect.client.orchestration import get_client

    from deployments.automations import TARGET_DEPLOYMENTS, automation_targets, register_automation_targets
    from deployments.serve import all_deployments
    from hotspare.cli import main

    assert sorted(register_automation_targets(all_deployments(fleet))) == sorted(TARGET_DEPLOYMENTS)
    assert main(["automations", "apply"]) == 0
    first = automation_targets()
    assert main(["automations", "apply"]) == 0
    assert automation_targets() == first
    with get_client(sync_client=True) as client:
        names = [automation.name for automation in client.read_automations()]
    assert all(count == 1 for count in Counter(names).values()), names
    assert first == {
        "hotspare customer notice on incident opened": ["customer-notice/customer-notice"],
        "hotspare customer notice on incident resolved": ["customer-notice/customer-notice"],
        "hotspare status page on incident events": ["status-page-publish/status-page-publish"],
        "hotspare-incident-page-on-health": ["incident-page/page"],
        "hotspare-incident-page-on-opened": ["incident-page/page"],
    }


def test_serving_goes_on_when_the_automations_cannot_be_made():
    """No Prefect API to make them on: one sentence says so, and nothing raises into serve."""
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    from deployments.serve import make_automations

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_CLIENT_MAX_RETRIES: 0}):
        sentences = make_automations([])
    assert len(sentences) == 1 and sentences[0].startswith("automations not made"), sentences
