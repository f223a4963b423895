"""Incidents against the lab: the category 1 chain rings the lab's phone provider in the written
order with short waits (set here), a keypress on a call acknowledges through the signed
webhook and stops the chain, a provider that is down falls back to the second one (noted in the
incident), duplicate detections fold. (A step whose contact has no number is refused by the fleet
check and, should one slip through, skipped by the planner: tests/test_escalation.py.)"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from lab_helpers import wait_for

pytestmark = pytest.mark.lab

HEALTH_PAYLOAD = (
    '{"component": "reachability:ssh", "kind": "reachability", "state": "failed", '
    '"previous": "ok", "evidence": "connection refused", "sites": ["control", "east"]}'
)


STEP_WAIT = 2.0  # seconds between the chain's steps here (the lab fleet says 3); room to answer a call


@pytest.fixture(scope="module", autouse=True)
def quick_chain(fleet, lab_env, tmp_path_factory):
    """The lab fleet with the chain's steps STEP_WAIT apart."""
    from lab_helpers import lab_fleet_changed

    def shorter(data: dict) -> None:
        for step in data["incidents"]["chains"][0]["steps"]:
            step["wait_seconds"] = STEP_WAIT

    with lab_fleet_changed(lab_env, tmp_path_factory.mktemp("fleet"), shorter):
        yield


@pytest.fixture(scope="module")
def phone_lab(fleet, lab, lab_env):
    """The lab's phone endpoint, and hotspare's acknowledgement webhook on the lab's port."""
    from hotspare.acknowledgements import serve
    from hotspare.lab.phone import PhoneControl, acknowledgement_port

    server = serve(fleet, "127.0.0.1", acknowledgement_port(lab.slot))
    yield PhoneControl(lab_env)
    server.shutdown()
    server.server_close()


def _calls_after(phone_lab, count: int, kind: str = "call") -> list[dict]:
    return phone_lab.requests(kind)[count:]


def test_keypress_acknowledges_and_stops_the_chain(phone_lab):
    from flows.incident import page
    from hotspare.inventory import incidents

    before = len(phone_lab.requests("call"))
    opening = incidents.open_incident(
        1,
        "high",
        "server prod-east down",
        servers=["prod-east"],
        dedup_key=f"test:keypress:{time.time()}",
        detection_text="ssh refused",
    )
    with ThreadPoolExecutor(1) as pool:
        walk = pool.submit(page, incident_id=opening.incident_id, poll_seconds=0.2)
        try:
            calls = wait_for(
                "three calls", lambda: len(_calls_after(phone_lab, before)) >= 3 and _calls_after(phone_lab, before), 30
            )
        except AssertionError:
            print(
                walk.result(timeout=60) if walk.done() else "still paging",
                phone_lab.requests(),
                incidents.get_incident(opening.incident_id),
            )
            raise
        answer = phone_lab.answer(calls[2]["sid"], digits="1")
        result = walk.result(timeout=60)
    assert answer["webhook_status"] == 200 and "acknowledged by Dana Ops" in answer["webhook_body"]
    assert result["outcome"] == "stop" and result["paged"] == 3
    calls = _calls_after(phone_lab, before)
    assert [(call["form"]["To"], call["form"].get("SendDigits")) for call in calls] == [
        ("+15550150", None),
        ("+15550150", "0"),
        ("+15550100", None),
    ]  # office, extension 0, Dana
    assert all(call["status"] == 201 and call["provider"] == "primary" for call in calls)
    incident = incidents.get_incident(opening.incident_id)
    assert (incident["status"], incident["acknowledged_by"]) == ("acknowledged", "Dana Ops")
    kinds = [event["kind"] for event in incident["events"]]
    assert kinds.count("page") == 3 and "acknowledgement" in kinds
    replayed = phone_lab.replay("keypress")  # the same signed request again: handled once only
    assert replayed.status_code == 200 and "Already handled" in replayed.text
    assert incidents.get_incident(opening.incident_id)["events"][-1]["text"] == (
        f"refused a replayed keypress on call {calls[2]['sid']} to Dana Ops: that call was already answered"
    )
    first_call = datetime.fromtimestamp(calls[0]["at"]).astimezone()
    opened = datetime.fromisoformat(incident["opened_at"])
    print(f"\nMEASURED opened -> first call: {(first_call - opened).total_seconds():.3f} s")


def test_sms_reply_ack_acknowledges_through_the_signed_webhook(phone_lab, fleet):
    """ "ACK <n>" from a contact's phone, posted signed by the provider, acknowledges incident n on
    their behalf and stops the chain; the same request unsigned is refused and changes nothing."""
    import httpx

    from flows.incident import page
    from hotspare.inventory import incidents
    from tasks.paging import sms_acknowledgement_url

    before = len(phone_lab.requests("call"))
    opening = incidents.open_incident(
        1,
        "high",
        "server prod-west down",
        servers=["prod-west"],
        dedup_key=f"test:sms:{time.time()}",
        detection_text="ssh timed out",
    )
    url = sms_acknowledgement_url(fleet, "lab-phone-primary")
    forged = httpx.post(url, data={"From": "+15550101", "Body": f"ACK {opening.incident_id}"}, timeout=10)
    assert forged.status_code == 403 and incidents.get_incident(opening.incident_id)["status"] == "triggered"
    with ThreadPoolExecutor(1) as pool:
        walk = pool.submit(page, incident_id=opening.incident_id, poll_seconds=0.1)
        wait_for("the first call", lambda: len(_calls_after(phone_lab, before)) >= 1, 30)
        reply = phone_lab.sms_reply("+1 555 0101", f"ACK {opening.incident_id}", url)
        result = walk.result(timeout=60)
    assert reply["webhook_status"] == 200 and f"Incident {opening.incident_id} acknowledged by Lee Lead" in reply["webhook_body"]
    assert result["outcome"] == "stop", result
    incident = incidents.get_incident(opening.incident_id)
    assert (incident["status"], incident["acknowledged_by"]) == ("acknowledged", "Lee Lead")
    acknowledgement = next(event for event in incident["events"] if event["kind"] == "acknowledgement")
    assert acknowledgement["details"]["via"] == "SMS reply from +1 555 0101"


def test_a_stranger_and_a_replay_do_not_stop_paging_and_the_on_call_engineer_does(phone_lab, fleet):
    """Correctly signed by the provider: an SMS from a number on no chain, "ACK n" from it, and the
    on-call engineer's earlier "ack" (for another incident) replayed exactly as captured. Paging
    goes on past each of them, each is one sentence in the timeline; the engineer's own "ACK n"
    stops it."""
    from flows.incident import page
    from hotspare.inventory import incidents
    from tasks.paging import sms_acknowledgement_url

    url = sms_acknowledgement_url(fleet, "lab-phone-primary")
    stranger, dana = "+15550999", "+15550100"

    def walk_until_dana_is_called(title: str):
        before = len(phone_lab.requests("call"))
        opening = incidents.open_incident(
            1, "high", title, servers=["prod-east"], dedup_key=f"test:stranger:{title}:{time.time()}", detection_text=title
        )
        pool = ThreadPoolExecutor(1)
        walk = pool.submit(page, incident_id=opening.incident_id, poll_seconds=0.1)
        wait_for("Dana's call", lambda: any(call["form"]["To"] == dana for call in _calls_after(phone_lab, before)), 30)
        return opening.incident_id, walk, pool, before

    earlier, walk, pool, _ = walk_until_dana_is_called("server prod-east down (earlier)")
    with pool:
        captured = phone_lab.sms_reply(dana, "ack", url)  # answers the call she just got
        assert walk.result(timeout=60)["outcome"] == "stop" and "acknowledged by Dana Ops" in captured["webhook_body"]

    incident_id, walk, pool, before = walk_until_dana_is_called("server prod-east down (later)")
    with pool:
        phone_lab.sms_reply(stranger, "Yes? who is this", url)
        phone_lab.sms_reply(stranger, f"ACK {incident_id}", url)
        replayed = phone_lab.replay("sms_reply")  # the stranger's own request again
        phone_lab_requests = phone_lab.requests("sms_reply")
        earlier_ack = next(entry for entry in phone_lab_requests if entry["form"]["From"] == dana)
        import httpx

        old = httpx.post(
            earlier_ack["url"], data=earlier_ack["form"], headers={"X-Twilio-Signature": earlier_ack["signature"]}, timeout=15
        )
        assert replayed.status_code == 200 and old.status_code == 200
        paged_on = wait_for(
            "a page after the refused requests (Lee Lead's call)",
            lambda: len(_calls_after(phone_lab, before)) >= 4 and incidents.get_incident(incident_id)["status"] == "triggered",
            30,
        )
        assert paged_on
        assert incidents.get_incident(incident_id)["status"] == "triggered"
        reply = phone_lab.sms_reply(dana, f"ACK {incident_id}", url)
        result = walk.result(timeout=60)
    assert f"Incident {incident_id} acknowledged by Dana Ops" in reply["webhook_body"] and result["outcome"] == "stop"
    incident = incidents.get_incident(incident_id)
    assert (incident["status"], incident["acknowledged_by"]) == ("acknowledged", "Dana Ops")
    refusals = [event["text"] for event in incident["events"] if (event["details"] or {}).get("acknowledgement_refused")]
    assert (
        refusals[0] == f"refused an SMS acknowledgement of incident {incident_id} from {stranger}: {stranger} "
        "belongs to no contact on the category 1 chain"
    )
    assert refusals[1].startswith("refused a replayed SMS SM") and refusals[1].endswith(
        f"from {stranger}: that message was already handled"
    )
    # Dana's captured "ack" would answer her newest page (this incident's call): refused as a replay
    assert refusals[2:] == [
        f"refused a replayed SMS {earlier_ack['form']['MessageSid']} from {dana}: that message was already handled"
    ]
    # "Yes? who is this" reads like "yes" but answers no page to that number: logged, names no incident
    assert incidents.get_incident(earlier)["acknowledged_by"] == "Dana Ops"


def test_provider_down_falls_back_and_duplicates_fold(phone_lab):
    from flows.incident import page
    from hotspare.inventory import incidents

    resource = f"hotspare.server.prod-west-{int(time.time())}"
    before = len(phone_lab.requests("call"))
    phone_lab.set_down("primary")
    try:
        with ThreadPoolExecutor(1) as pool:
            walk = pool.submit(
                page, event="hotspare.health.failed", resource_id=resource, payload_json=HEALTH_PAYLOAD, poll_seconds=0.2
            )
            carried = wait_for(
                "a call through the fallback provider",
                lambda: [call for call in _calls_after(phone_lab, before) if call["status"] == 201],
                30,
            )
            opened = incidents.list_incidents(open_only=True, limit=5)
            incident_id = next(row["id"] for row in opened if row["servers"] == [resource.rsplit(".", 1)[1]])
            again = page(event="hotspare.health.failed", resource_id=resource, payload_json=HEALTH_PAYLOAD)
            incidents.acknowledge(incident_id, "Lee Lead", via="test")
            result = walk.result(timeout=60)
    finally:
        phone_lab.set_down("primary", down=False)
    assert carried[0]["provider"] == "fallback"
    assert any(call["status"] == 503 and call["provider"] == "primary" for call in _calls_after(phone_lab, before))
    assert again == {"incident": incident_id, "paged": 0, "outcome": "folded"}
    assert result["outcome"] == "stop"
    incident = incidents.get_incident(incident_id)
    assert incident["detections"] == 2 and incident["category"] == 1 and incident["severity"] == "high"
    pages = [event for event in incident["events"] if event["kind"] == "page"]
    assert pages and pages[0]["details"]["provider"] == "lab-phone-fallback" and "(fallback)" in pages[0]["text"]
    assert any(
        event["kind"] == "error" and "lab-phone-primary" in event["text"] and "503" in event["text"]
        for event in incident["events"]
    )


def test_commands_report_bad_input_in_one_message(fleet, capsys):
    from hotspare.cli import main
    from hotspare.inventory import incidents

    incident_id = incidents.open_or_fold(2, "low", "deploy broke the shop", services=["shop"])
    assert main(["incident", "resolve", str(incident_id), "--by", "Dana Ops"]) == 0
    assert main(["incident", "resolve", str(incident_id), "--by", "Dana Ops"]) == 2
    assert main(["incident", "show", "999999"]) == 2
    error = capsys.readouterr().err
    assert f"incident {incident_id} was already resolved" in error and "there is no incident 999999" in error
