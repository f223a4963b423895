"""Escalation planning without the lab: chains, waits, acknowledgement, quiet hours, triggers."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from hotspare.adapters.phone import signature_valid, twilio_signature
from hotspare.fleet.incident_schema import EscalationChain, EscalationStep, Incidents, QuietHours, chain_for
from hotspare.fleet.schema import Contact
from hotspare.planning.escalation import next_action, paging_decision, plan_escalation
from hotspare.planning.incident_rules import from_failed_run, from_health_event

CONTACTS = [
    Contact(name="Office", phone="+15550100"),
    Contact(name="Alice", phone="+15550101", email="alice@example.com"),
    Contact(name="Bob", phone="+15550102"),
    Contact(name="Carol"),  # no number
]


def category_one_chain(rounds: int = 1) -> EscalationChain:
    """The written plan: office, office extension 0, then the cell phones in order."""
    return EscalationChain(
        category=1,
        rounds=rounds,
        steps=[
            EscalationStep(action="call", contact="Office", wait_seconds=30),
            EscalationStep(action="call", contact="Office", digits="0", wait_seconds=30),
            EscalationStep(action="call", contact="Carol", wait_seconds=30),
            EscalationStep(action="call", contact="Alice", wait_seconds=60),
            EscalationStep(action="sms", contact="Bob", wait_seconds=60),
        ],
    )


def test_plan_keeps_the_order_and_skips_a_contact_without_a_number():
    plan = plan_escalation(category_one_chain(rounds=2), CONTACTS)
    first_round = [(page.target, page.action, page.digits) for page in plan.pages if page.round == 1]
    assert first_round == [("Office", "call", None), ("Office", "call", "0"), ("Alice", "call", None), ("Bob", "sms", None)]
    assert len(plan.pages) == 8 and plan.pages[-1].round == 2
    assert plan.skipped == ("step 3 (call Carol): Carol has no phone number in the fleet file; skipped",)


def test_waits_count_from_when_each_page_went_out_and_acknowledgement_stops():
    plan = plan_escalation(category_one_chain(), CONTACTS)
    action = next_action(plan, 0, {}, acknowledged=False)
    assert action.kind == "page" and action.page.index == 0
    # the first call went out 5 s late (a slow provider): the next waits 30 s from then
    action = next_action(plan, 20, {0: 5}, acknowledged=False)
    assert action.kind == "wait" and action.wait_seconds == pytest.approx(15)
    action = next_action(plan, 35, {0: 5}, acknowledged=False)
    assert action.kind == "page" and action.page.digits == "0"
    assert next_action(plan, 36, {0: 5, 1: 35}, acknowledged=True).kind == "stop"


def test_exhausted_after_the_last_wait():
    plan = plan_escalation(category_one_chain(), CONTACTS)
    sent = {page.index: page.index * 100.0 for page in plan.pages}
    assert next_action(plan, 310, sent, acknowledged=False).kind == "wait"
    final = next_action(plan, 361, sent, acknowledged=False)
    assert final.kind == "exhausted" and "4 page(s)" in final.reason


def test_unknown_contact_and_email_without_address_are_reported():
    chain = EscalationChain(
        category=2, steps=[EscalationStep(action="call", contact="Zed"), EscalationStep(action="email", contact="Bob")]
    )
    plan = plan_escalation(chain, CONTACTS)
    assert plan.pages == ()
    assert "no contact called 'Zed'" in plan.skipped[0] and "Bob has no e-mail address" in plan.skipped[1]
    assert next_action(plan, 0, {}, False).kind == "exhausted"


def test_steps_name_exactly_one_target():
    with pytest.raises(ValidationError, match="exactly one"):
        EscalationStep(action="call", contact="Alice", number="+15550100")
    with pytest.raises(ValidationError, match="only apply to a call"):
        EscalationStep(action="sms", contact="Alice", digits="0")
    with pytest.raises(ValidationError, match="more than one chain"):
        Incidents(chains=[category_one_chain(), category_one_chain()])


def test_old_escalation_list_becomes_a_call_chain():
    chain = chain_for(Incidents(), 1, ["Alice", "Bob"])
    assert [(step.action.value, step.contact) for step in chain.steps] == [("call", "Alice"), ("call", "Bob")]
    assert chain_for(Incidents(), 1, []) is None


@pytest.mark.parametrize(
    "hour, severity, at_night, go",
    [
        (3, "high", False, True),
        (3, "low", False, False),
        (3, "low", True, True),
        (12, "low", False, True),
        (22, "low", False, False),
        (6, "low", False, False),
        (7, "low", False, True),
    ],
)
def test_quiet_hours_hold_low_severity_only(hour, severity, at_night, go):
    chain = category_one_chain().model_copy(update={"page_low_severity_in_quiet_hours": at_night})
    quiet = QuietHours(start="22:00", end="07:00", timezone="Europe/Berlin")
    # Berlin in January is UTC+1
    moment = datetime(2025, 1, 15, (hour - 1) % 24, 30, tzinfo=timezone.utc)
    assert paging_decision(severity, chain, quiet, moment).go is go


def test_health_events_map_to_category_one_failures_fold_per_machine():
    failed = from_health_event(
        "hotspare.health.failed",
        "hotspare.server.prod1",
        {
            "component": "reachability:ssh",
            "kind": "reachability",
            "state": "failed",
            "evidence": "connection refused",
            "sites": ["control", "east"],
        },
    )
    assert (failed.category, failed.severity, failed.servers) == (1, "high", ("prod1",))
    assert failed.dedup_key == "health:hotspare.server.prod1:failed"
    assert "seen from control, east" in failed.detection_text
    # The service on that server failing in the same round folds into the server's incident.
    service = from_health_event(
        "hotspare.health.failed",
        "hotspare.service.shop",
        {"component": "application:direct", "state": "failed", "server": "prod1"},
    )
    assert (service.dedup_key, service.services, service.servers) == (failed.dedup_key, ("shop",), ("prod1",))
    degraded = from_health_event("hotspare.health.degraded", "hotspare.service.shop", {"component": "fan:Fan1"})
    assert (degraded.severity, degraded.services) == ("low", ("shop",))
    assert degraded.dedup_key == "health:hotspare.service.shop:fan:Fan1"
    assert from_health_event("hotspare.health.degraded", "hotspare.service.shop", {}, open_on_degraded=False) is None
    assert from_health_event("hotspare.health.recovered", "hotspare.server.prod1", {}) is None
    assert from_failed_run(7, "failover", "shop", "DNS refused").severity == "high"
    assert from_failed_run(7, "verify", "shop", "x") is None


def test_twilio_signature_matches_the_providers_published_examples():
    # The example Twilio's own request-validator tests use: this URL, these parameters, token 12345.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert signature_valid("12345", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not signature_valid("12345", url, {**params, "Digits": "1"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not signature_valid("12345", url, params, None)
    repeated = {"Sid": "CA123", "SidAccount": "AC123", "Digits": ["5678", "1234"]}
    assert twilio_signature("12345", url, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


# ----- who may acknowledge: the webhook's decision over the real inventory, signed requests -----


# numbers no other test pages (the inventory is shared by the session's tests)
ACK_CONTACTS = [
    Contact(name="Office", phone="+15557770100"),
    Contact(name="Alice", phone="+15557770101"),
    Contact(name="Bob", phone="+15557770102"),
    Contact(name="Carol"),
]


def _webhook(fleet, token: str = "token-of-p"):
    """Post a signed request to ``handle`` as provider block ``p`` would; returns the reply."""
    from hotspare.acknowledgements import handle

    base = "https://hotspare.example.test"

    def post(kind: str, form: dict, now=None, signature: str | None = None):
        path = f"/hotspare/acknowledge/{kind}?provider=p"
        signed = signature or twilio_signature(token, base + path, form)
        return handle(path, form, signed, base, {"p": token}, fleet, now=now)

    return post


def test_only_a_chain_contact_acknowledges_once_within_the_window():
    """A stranger's signed SMS, "ACK n" from a stranger, a replay, another category's incident, a
    page older than the window and an incident never paged change nothing and are logged in the
    incident's timeline; the chain contact's own reply acknowledges."""
    import uuid
    from datetime import timedelta
    from types import SimpleNamespace

    from hotspare.inventory import incidents, pages
    from hotspare.inventory.models import utcnow

    fleet = SimpleNamespace(
        incidents=Incidents(chains=[category_one_chain()], acknowledgement_window_minutes=60),
        contacts=ACK_CONTACTS,
        escalation=[],
    )
    post = _webhook(fleet)
    paged = incidents.open_incident(1, "high", "server prod1 down", servers=["prod1"]).incident_id
    unpaged = incidents.open_incident(1, "high", "server prod2 down", servers=["prod2"]).incident_id
    other = incidents.open_incident(2, "high", "shop deploy broke", services=["shop"]).incident_id
    pages.record_page(paged, "p", f"CA{uuid.uuid4().hex}", "call", "Alice", "+15557770101")

    def sms(sender: str, body: str, **options):
        return post("sms", {"MessageSid": f"SM{uuid.uuid4().hex}", "From": sender, "Body": body}, **options)

    assert post("sms", {"MessageSid": "SMx", "From": "+15559999", "Body": "ACK"}, signature="forged").status == 403
    for reply in (
        sms("+15559999", "Yes? who is this"),
        sms("+1 555 9999", f"ACK {paged}"),
        sms("+15557770101", f"ACK {paged}", now=utcnow() + timedelta(minutes=61)),
        sms("+15557770102", f"ACK {unpaged}"),
        sms("+15557770101", f"ACK {other}"),
    ):
        assert reply.acknowledged is None
    assert {incidents.get_incident(number)["status"] for number in (paged, unpaged, other)} == {"triggered"}
    notes = [event["text"] for event in incidents.get_incident(paged)["events"] if event["kind"] == "note"]
    assert notes == [
        f"refused an SMS acknowledgement of incident {paged} from +1 555 9999: +15559999 belongs to no contact "
        "on the category 1 chain",
        f"refused an SMS acknowledgement of incident {paged} from +15557770101: its newest page went out 61 min ago, "
        "past the 60 min window",
    ]
    assert "the incident was never paged" in incidents.get_incident(unpaged)["events"][-1]["text"]
    assert "belongs to no contact on the category 2 chain" in incidents.get_incident(other)["events"][-1]["text"]

    reply_form = {"MessageSid": f"SM{uuid.uuid4().hex}", "From": "+1 (555) 777-0101", "Body": "ack"}
    accepted = post("sms", reply_form)  # answers the newest page sent to that number
    assert accepted.acknowledged == paged and "acknowledged by Alice" in accepted.twiml
    assert post("sms", reply_form).acknowledged is None  # the same request again: a replay
    replayed = incidents.get_incident(paged)["events"][-1]["text"]
    assert (
        replayed == f"refused a replayed SMS {reply_form['MessageSid']} from +1 (555) 777-0101: that message was already handled"
    )
    assert [event["kind"] for event in incidents.get_incident(paged)["events"]].count("acknowledgement") == 1


def test_a_keypress_counts_for_its_own_call_once():
    import uuid
    from types import SimpleNamespace

    from hotspare.inventory import incidents, pages

    fleet = SimpleNamespace(incidents=Incidents(chains=[category_one_chain()]), contacts=ACK_CONTACTS, escalation=[])
    post = _webhook(fleet)
    first = incidents.open_incident(1, "high", "server prod3 down").incident_id
    second = incidents.open_incident(1, "high", "server prod4 down").incident_id
    call = f"CA{uuid.uuid4().hex}"
    pages.record_page(first, "p", call, "call", "Alice", "+15557770101")
    unknown = post("call", {"CallSid": f"CA{uuid.uuid4().hex}", "Digits": "1"})
    assert unknown.acknowledged is None
    # the query names the second incident, but the call was placed for the first: the call decides
    keypress = {"CallSid": call, "Digits": "1", "To": "+15557770101"}
    from hotspare.acknowledgements import handle

    path = f"/hotspare/acknowledge/call?incident={second}&contact=Bob&provider=p"
    base = "https://hotspare.example.test"
    reply = handle(path, keypress, twilio_signature("token-of-p", base + path, keypress), base, {"p": "token-of-p"}, fleet)
    assert reply.acknowledged == first and "acknowledged by Alice" in reply.twiml
    assert incidents.get_incident(second)["status"] == "triggered"
    again = handle(path, keypress, twilio_signature("token-of-p", base + path, keypress), base, {"p": "token-of-p"}, fleet)
    assert again.acknowledged is None and "Already handled" in again.twiml
    assert incidents.get_incident(first)["events"][-1]["text"] == (
        f"refused a replayed keypress on call {call} to Alice: that call was already answered"
    )


def test_the_webhook_refuses_a_body_it_would_have_to_read_without_bound():
    """A negative or huge Content-Length is refused before anything is read (413); a normal
    unsigned request still gets its 403."""
    import socket
    from types import SimpleNamespace

    from hotspare.acknowledgements import serve

    fleet = SimpleNamespace(incidents=Incidents(chains=[category_one_chain()]), contacts=ACK_CONTACTS, escalation=[])
    server = serve(fleet, "127.0.0.1", 0, public_base="http://127.0.0.1")
    port = server.server_address[1]

    def status_of(headers: str, body: bytes = b"") -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(f"POST /hotspare/acknowledge/sms?provider=p HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body)
            return client.recv(200).split(b"\r\n")[0].decode()

    try:
        assert status_of("Content-Length: -1\r\n").endswith("413 Request Entity Too Large")
        assert status_of("Content-Length: 99999999\r\n").endswith("413 Request Entity Too Large")
        assert status_of("Content-Length: 8\r\n", b"Body=ACK").endswith("403 Forbidden")
    finally:
        server.shutdown()
        server.server_close()


def test_an_sms_naming_a_number_too_long_for_an_incident_is_answered_and_acknowledges_nothing():
    """``ACK`` followed by 26 digits from a stranger: a refusal like any other, never an error."""
    import uuid
    from types import SimpleNamespace

    from hotspare.inventory import incidents

    fleet = SimpleNamespace(incidents=Incidents(chains=[category_one_chain()]), contacts=ACK_CONTACTS, escalation=[])
    opened = incidents.open_incident(1, "high", "server prod9 down", servers=["prod9"]).incident_id
    reply = _webhook(fleet)(
        "sms", {"MessageSid": f"SM{uuid.uuid4().hex}", "From": "+15559999", "Body": "ACK 99999999999999999999999999"}
    )
    assert reply.status == 200 and reply.acknowledged is None
    assert incidents.get_incident(opened)["status"] == "triggered"
