"""Approving a waiting failover from the phone (keypress 2, or ``APPROVE n`` by SMS).

Against the lab: a failover of app1 waits at its gate; the incident's page call to an approver
(Dana Ops, ``may_approve``) reads the plan in one sentence and offers 2; a call to a contact who
may not approve offers nothing, and their keypress 2 moves nothing; Dana's keypress resumes the
run with the plan's digest, recorded as hers, and app1 serves from its mirror. The SMS rules
(only an approver, only the plan offered to that number, within the window, once) are checked
against the webhook's decision directly.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import SimpleNamespace

import pytest
from test_escalation import _webhook, category_one_chain
from test_outage_chain import address_of, dns_answer, layout, phone_lab, restored_afterwards

from lab_helpers import wait_for

SERVICE = "app1"
DANA, LEE = "+15550100", "+15550101"


def _call_to(target: str, number: str):
    from hotspare.planning.escalation import Page

    return Page(index=0, round=1, step=1, action="call", target=target, address=number, digits=None, wait_seconds=1)


def test_an_approver_presses_2_and_the_waiting_failover_runs(restored_afterwards, phone_lab, fleet, lab_env):
    from flows.failover import failover
    from hotspare.inventory import approvals, incidents
    from tasks.paging import load_providers, send_page

    assert not approvals.waiting_for([SERVICE])
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(failover, SERVICE, approval_timeout_seconds=120)
        [waiting] = wait_for("the failover to wait at its gate", lambda: approvals.waiting_for([SERVICE]), 60)
        assert waiting.sentence.startswith(f"fail {SERVICE} over from prod-east to mirror-west, losing the writes of the last ")
        opened = incidents.open_incident(
            1, "high", "server prod-east down (phone approval test)", services=[SERVICE], servers=["prod-east"]
        )
        incident = incidents.get_incident(opened.incident_id)
        providers, problems = load_providers(fleet)
        assert providers and not problems, problems
        calls_before = len(phone_lab.requests("call"))
        lee = send_page(fleet, incident, _call_to("Lee Lead", LEE), providers)
        dana = send_page(fleet, incident, _call_to("Dana Ops", DANA), providers)
        assert "offered_approvals" not in lee and dana["offered_approvals"] == [{"service": SERVICE, "digest": waiting.digest}]
        lee_call, dana_call = phone_lab.requests("call")[calls_before:]
        assert "Press 2" not in lee_call["form"]["Twiml"]
        assert f"Press 2 to approve: {waiting.sentence}." in dana_call["form"]["Twiml"]

        refused = phone_lab.answer(lee["sid"], digits="2")  # not an approver, and offered nothing
        assert refused["webhook_status"] == 200 and "Not approved" in refused["webhook_body"]
        assert approvals.waiting_for([SERVICE]) == [waiting] and not running.done()

        answered = phone_lab.answer(dana["sid"], digits="2")
        assert "Approved: fail app1 over from prod-east to mirror-west" in answered["webhook_body"], answered
        result = running.result(timeout=180)
    assert result["outcome"] == "ok", result
    assert layout() == ("failed-over", "mirror-west", None)
    assert dns_answer(lab_env) == [address_of(lab_env, "mirror-west")]
    after = incidents.get_incident(opened.incident_id)
    assert after["status"] == "acknowledged" and after["acknowledged_by"] == "Dana Ops"
    [approved] = [event for event in after["events"] if event["kind"] == "approval"]
    assert approved["actor"] == "Dana Ops" and approved["details"]["digest"] == waiting.digest
    assert any(
        "Lee Lead may not approve failovers" in event["text"] or "offered no failover plan" in event["text"]
        for event in after["events"]
        if event["kind"] == "note"
    )
    decided = approvals.get_approval(waiting.id)
    assert (decided.status, decided.decided_by) == ("approved", "Dana Ops")
    replayed = phone_lab.replay("keypress")
    assert "Already handled" in replayed.text
    incidents.resolve(opened.incident_id, "test", "phone approval test done")


def _approver_fleet():
    from hotspare.fleet.incident_schema import Incidents
    from hotspare.fleet.schema import Contact

    contacts = [Contact(name="Alice", phone="+15557880101", may_approve=True), Contact(name="Bob", phone="+15557880102")]
    return SimpleNamespace(
        incidents=Incidents(chains=[category_one_chain()], acknowledgement_window_minutes=10), contacts=contacts, escalation=[]
    )


@pytest.fixture
def offered_plan():
    """A plan waiting (for a run that does not exist in Prefect), offered by SMS to Alice and Bob."""
    from hotspare.inventory import approvals, incidents
    from hotspare.inventory.models import utcnow

    service = f"svc-{uuid.uuid4().hex[:8]}"
    incident_id = incidents.open_incident(1, "high", f"{service} down", services=[service]).incident_id
    approval_id = approvals.open_approval(
        service, str(uuid.uuid4()), "0123456789abcdef", f"fail {service} over", utcnow() + timedelta(minutes=30)
    )
    plan = approvals.get_approval(approval_id)
    for contact, number in (("Alice", "+15557880101"), ("Bob", "+15557880102")):
        approvals.record_offer(plan, incident_id, "p", f"SM{uuid.uuid4().hex}", "sms", contact, number)
    return SimpleNamespace(service=service, incident_id=incident_id, approval=plan)


def test_an_sms_approval_needs_an_approver_an_offer_and_the_window(offered_plan):
    from hotspare.inventory import approvals, incidents
    from hotspare.inventory.models import utcnow

    post = _webhook(_approver_fleet())
    number = offered_plan.approval.id

    def sms(sender: str, body: str, **options):
        return post("sms", {"MessageSid": f"SM{uuid.uuid4().hex}", "From": sender, "Body": body}, **options)

    assert "Not approved" in sms("+15557880102", f"APPROVE {number}").twiml  # Bob may not approve
    assert "Not approved" in sms("+15559990000", f"APPROVE {number}").twiml  # never offered to a stranger
    assert "Not approved" in sms("+15557880101", f"APPROVE {number + 1000}").twiml  # another plan
    late = sms("+15557880101", f"approve {number}", now=utcnow() + timedelta(minutes=11))
    assert "Not approved" in late.twiml
    assert approvals.get_approval(number).status == approvals.WAITING
    notes = [event["text"] for event in incidents.get_incident(offered_plan.incident_id)["events"] if event["kind"] == "note"]
    assert any("Bob may not approve failovers" in note for note in notes)
    assert any("its offer went out 11 min ago, past the 10 min window" in note for note in notes)

    # Alice in time: decided, but the run it names is gone: the plan waits again, nothing moved.
    gone = sms("+1 (555) 788-0101", f"APPROVE {number}")
    assert "could not be started" in gone.twiml
    assert approvals.get_approval(number).status == approvals.WAITING
    # The run paused again with another plan: the offered digest is no longer the one waiting.
    approvals.open_approval(
        offered_plan.service,
        offered_plan.approval.flow_run_id,
        "fedcba9876543210",
        "fail it over elsewhere",
        utcnow() + timedelta(minutes=30),
    )
    changed = sms("+15557880101", f"APPROVE {number}")
    assert "not approved: it was already ended" in changed.twiml
