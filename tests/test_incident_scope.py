"""Incidents know whom they hurt, against the lab.

- Production lost and failed over within seconds: the incident names the service it held (by
  role, recorded when it opened), its customers get the opening notice although the notice is
  composed after the failover, and the notice says since when the service runs again. A health
  round that was in flight across the failover sets the service's readings aside, and a round
  right after it reports no DNS or application failure for the service.
- A dead RAID member: a replacement request, a low-severity internal incident, no customer
  e-mail, nothing on the public status page.
- A record-only incident (``--no-page``): no customer notice, not on the page, until an operator
  publishes it. A notice held for approval ends its run Held (failed: an operator must act) and
  is named on the incident's timeline.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections import Counter
from contextlib import redirect_stdout
from datetime import datetime, timedelta, timezone

import pytest
from test_blast import APP1_CONTACTS, APP2_CONTACTS, envelope_recipients, sink_messages
from test_hardware_health import (
    clear_health_state,
    event_for,
    lab_command,
)
from test_outage_chain import (
    SERVICE,
    address_of,
    declared_failed,
    dns_answer,
    fetch,
    health_events,
    layout,
    quick_fleet,
    restored_afterwards,
)

from lab_helpers import lab_fleet_changed, wait_for

pytestmark = pytest.mark.lab

ROUND_INTERVAL = 0.05


def public_name(number: int) -> str:
    """The name the status page gives incident ``number`` (keyed, not the inventory's sequence)."""
    from hotspare.access import loaded_fleet
    from tasks.subscriptions import public_references

    return public_references(loaded_fleet(), [number])[number]


def latest_incident() -> dict:
    from hotspare.inventory.incidents import list_incidents

    return list_incidents(limit=1)[0]


def resolve_open_about(server: str, service: str) -> None:
    from hotspare.inventory.incidents import list_incidents, resolve

    for earlier in list_incidents(open_only=True, limit=50):
        if server in earlier["servers"] or service in earlier["services"]:
            resolve(earlier["id"], "test", "closed before this test")


def test_production_lost_and_failed_over_at_once_still_tells_its_customers(quick_fleet, restored_afterwards, fleet, lab, lab_env):
    from flows.health import health, health_round, service_layout
    from flows.notices import customer_notice
    from hotspare import access
    from hotspare.cli import main
    from hotspare.inventory import health as health_inventory
    from hotspare.inventory import incidents
    from hotspare.planning.incident_rules import from_health_event
    from tasks.health_probes import round_targets

    resolve_open_about("prod-east", SERVICE)
    started = datetime.now(timezone.utc)
    assert main(["lab", "fail", "prod-east", "--dir", str(lab.directory)]) == 0
    health(rounds=3, interval_seconds=ROUND_INTERVAL)
    for _round in range(5):  # a round that saw nothing conclusive (a loaded machine) counts not
        if declared_failed():
            break
        health(rounds=1, interval_seconds=ROUND_INTERVAL)
    assert declared_failed(), "prod-east was never declared failed"
    events = wait_for(
        "the server's health event",
        lambda: [e for e in health_events(started) if e.resource.id == "hotspare.server.prod-east"],
        30,
    )
    # What the paging flow does with the event: open the incident (its impact is recorded now).
    request = from_health_event(events[0].event, events[0].resource.id, dict(events[0].payload))
    opening = incidents.open_incident(
        request.category,
        request.severity,
        request.title,
        request.services,
        request.servers,
        request.dedup_key,
        request.detection_text,
        details=request.details,
        outage=request.outage,
        internal=request.internal,
        holders=request.holders,
    )

    down_before = {
        key[1]
        for key, status in health_inventory.load_statuses().items()
        if key[0] == f"service:{SERVICE}" and status.state.value == "failed"
    }
    assert "application:dns" in down_before, down_before  # declared at its old address, as it was

    # A health round whose targets were made before the failover, judged after it (in flight).
    fleet_now = access.loaded_fleet()
    before = service_layout()
    targets = round_targets(fleet_now, {name: server for name, (server, _state) in before.items()})

    moving = time.monotonic()
    assert main(["failover", SERVICE, "--yes"]) == 0  # the operator, seconds after the opening
    failover_seconds = time.monotonic() - moving
    assert layout() == ("failed-over", "mirror-west", None)
    assert dns_answer(lab_env) == [address_of(lab_env, "mirror-west")]

    in_flight = health_round(fleet_now, targets, health_inventory.load_statuses(), hardware=False, layout_before=before)
    assert any(
        sentence.startswith(f"service:{SERVICE}:") and "moved from prod-east to mirror-west" in sentence
        for sentence in in_flight.set_aside
    ), in_flight.set_aside
    assert not [c for c in in_flight.judgement.changes if c.subject == f"service:{SERVICE}"]

    # The automatic opening notice, run after the failover, still tells app1's customers.
    telling = time.monotonic()
    state = customer_notice(incident_id=opening.incident_id, kind="opened", return_state=True)
    notice_seconds = time.monotonic() - telling
    assert state.is_completed(), state
    notice = state.result()
    assert notice["sent"], notice
    blast = wait_for(
        "the opening notice in the sink",
        lambda: len(found := sink_messages(lab_env, f"incident-{opening.incident_id}-opened")) >= len(APP1_CONTACTS) and found,
        30,
    )
    assert envelope_recipients(blast) == Counter(APP1_CONTACTS)
    body = blast[0].get_content()
    assert f"{SERVICE} was unavailable from" in body and "runs again from its standby copy in a second data center since" in body
    assert "mirror-west" not in body and "prod-east" not in body  # customer words only

    incident = incidents.get_incident(opening.incident_id)
    # app3 runs on prod-east too: its users lost it as well (it has no customer contacts to tell)
    assert SERVICE in incident["services"] and incident["customer_services"] == [SERVICE, "app3"]
    production = [item for item in incident["impact"] if item["service"] == SERVICE]
    assert production == [
        {"service": SERVICE, "server": "prod-east", "role": "production", "effect": "customers affected", "tell": True}
    ], incident["impact"]

    # Health follows the layout at once: no DNS or application failure for the moved service.
    after = health(rounds=1, interval_seconds=ROUND_INTERVAL)
    assert not [c for c in after["changes"] if c["subject"] == f"service:{SERVICE}" and c["state"] != "ok"], after
    assert not [r for r in after["components"] if r["subject"] == f"service:{SERVICE}"], after["components"]
    print(
        f"\nMEASURED failover {failover_seconds:.2f} s; opening notice after it {notice_seconds:.2f} s "
        f"(flow run, {len(blast)} messages); health round after it {after['round_seconds'][0]:.2f} s"
    )


def test_dead_raid_member_requests_a_replacement_and_tells_no_customer(fleet, lab_env, tmp_path):
    from flows.health import health
    from flows.incident import page
    from flows.notices import customer_notice, status_page_publish
    from hotspare.inventory.incidents import get_incident, resolve

    started = datetime.now(timezone.utc) - timedelta(seconds=5)

    def quick_and_paged_at_night(data: dict) -> None:
        """Short health rounds, and a low-severity incident paged in quiet hours too: without it,
        from 22:00 to 07:00 UTC the run would end "Not paged" instead of walking the chain."""
        data["health"].update(probe_timeout_seconds=1.5, failures_to_down=2, successes_to_recover=2)
        for chain in data["incidents"]["chains"]:
            chain["page_low_severity_in_quiet_hours"] = True

    with lab_fleet_changed(lab_env, tmp_path, quick_and_paged_at_night):
        clear_health_state()
        lab_command(lab_env, "break", "prod-west", "disk")
        try:
            found = health(rounds=2, interval_seconds=0.1)
            event = event_for("hotspare.health.failed", started, "prod-west", "disk:devid 2")
            paging = page(
                event=event.event,
                resource_id=event.resource.id,
                payload_json=json.dumps(event.payload),
                poll_seconds=0.05,
                max_minutes=0.02,
                return_state=True,
            )
        finally:
            lab_command(lab_env, "repair", "prod-west", "disk")
            clear_health_state()
    assert any(
        entry.get("opened") and (entry["server"], entry["component"]) == ("prod-west", "disk:devid 2")
        for entry in found["replacements"]
    ), found["replacements"]
    # nobody answers in the test: the paging run ends Failed "Unacknowledged", naming its incident
    assert paging.is_failed() and paging.name == "Unacknowledged", (paging.name, paging.message)
    number = int(re.search(r"incident (\d+)", paging.message).group(1))
    incident = get_incident(number)
    try:
        assert (incident["severity"], incident["internal"], incident["customer_services"]) == ("low", True, [])
        assert {(item["service"], item["role"], item["effect"]) for item in incident["impact"]} >= {
            ("app2", "production", "at risk")
        }
        state = customer_notice(incident_id=number, kind="opened", return_state=True)
        assert state.is_completed() and not state.result()["sent"], state
        assert "internal" in state.result()["reason"]
        published = status_page_publish(incident_id=number)
        assert published["published"], published
        assert f'id="incident-{public_name(number)}"' not in fetch(lab_env["status_page"]["url"])
        assert sink_messages(lab_env, f"incident-{number}-opened") == []
    finally:
        resolve(number, "test", "disk replaced")


def test_record_only_incident_stays_internal_until_published_and_a_held_notice_shows(fleet, lab_env):
    from flows.notices import customer_notice, status_page_publish
    from hotspare.cli import main
    from hotspare.inventory.incidents import get_incident

    assert main(["incident", "open", "app2 slow for one customer", "--service", "app2", "--no-page", "--by", "Dana Ops"]) == 0
    number = latest_incident()["id"]
    assert get_incident(number)["internal"] is True
    shown = io.StringIO()
    with redirect_stdout(shown):
        assert main(["incident", "show", str(number)]) == 0
    assert "affects app2 (service): customers affected" in shown.getvalue()
    assert f"internal: customers are not told (hotspare incident publish {number}" in shown.getvalue()
    opened = customer_notice(incident_id=number, kind="opened", return_state=True)
    assert opened.is_completed() and not opened.result()["sent"], opened
    assert status_page_publish(incident_id=number)["published"]
    assert f'id="incident-{public_name(number)}"' not in fetch(lab_env["status_page"]["url"])
    assert main(["incident", "resolve", str(number), "--by", "Dana Ops"]) == 0
    resolved = customer_notice(incident_id=number, kind="resolved", return_state=True)
    assert resolved.is_completed() and not resolved.result()["sent"], resolved
    assert sink_messages(lab_env, f"incident-{number}-resolved") == []

    # An operator decides customers should know after all.
    assert main(["incident", "publish", str(number), "--by", "Dana Ops"]) == 0
    told = customer_notice(incident_id=number, kind="resolved")
    assert told["sent"], told
    assert set(envelope_recipients(sink_messages(lab_env, f"incident-{number}-resolved"))) == APP2_CONTACTS
    assert status_page_publish(incident_id=number)["published"]
    assert f'id="incident-{public_name(number)}"' in fetch(lab_env["status_page"]["url"])

    # Category 2 waits for an operator's approval: the run ends Held, and the timeline says so.
    assert main(["incident", "open", "shop checkout broken", "--category", "2", "--service", "app2", "--by", "Dana Ops"]) == 0
    held_number = latest_incident()["id"]
    held = customer_notice(incident_id=held_number, kind="opened", return_state=True)
    assert held.is_failed() and held.name == "Held", held
    assert "wait for approval" in held.message and "app2" in held.message
    timeline = get_incident(held_number)["events"]
    assert any(event["kind"] == "notice_held" and "approval" in event["text"] for event in timeline), timeline
    assert sink_messages(lab_env, f"incident-{held_number}-opened") == []
    assert main(["incident", "resolve", str(held_number), "--by", "Dana Ops"]) == 0
