"""Blast e-mail to customers against the lab's SMTP sink: exactly the affected contacts, one
message each with its headers, bounces recorded, deferrals retried, and a blast killed midway
resumes without sending anybody the notice twice."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from lab_helpers import wait_for

pytestmark = pytest.mark.lab

APP1_CONTACTS = {"ana@acme.lab.test", "ops@agency.lab.test"}  # bounce-former@acme.lab.test bounces
APP2_CONTACTS = {"gil@globex.lab.test", "defer-noc@globex.lab.test", "ops@agency.lab.test"}


def sink_messages(lab_env: dict, notice: str) -> list:
    """Messages of one notice in the lab sink's maildir."""
    found = []
    for path in (Path(lab_env["smtp"]["maildir"]) / "new").iterdir():
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["X-Hotspare-Notice"] == notice:
            found.append(message)
    return found


def envelope_recipients(messages) -> Counter:
    return Counter(message["X-RcptTo"].lower() for message in messages)


def new_incident(title: str, **affected) -> int:
    from hotspare.inventory.incidents import open_or_fold

    return open_or_fold(1, "high", f"{title} ({time.monotonic_ns()})", **affected)


def test_blast_reaches_exactly_the_affected_customers_and_records_bounces(fleet, lab_env):
    from hotspare.inventory import notices
    from hotspare.inventory.incidents import get_incident, resolve
    from hotspare.planning.notices import message_id
    from tasks.notices import send_notice

    incident = new_incident("prod-east does not answer", servers=["prod-east"])
    summary = send_notice(incident, "opened")
    messages = wait_for(
        "the opening notice in the sink",
        lambda: (found := sink_messages(lab_env, f"incident-{incident}-opened")) and len(found) >= 2 and found,
    )
    opened_at = datetime.fromisoformat(get_incident(incident)["opened_at"]).timestamp()
    stored = max(p.stat().st_mtime for p in (Path(lab_env["smtp"]["maildir"]) / "new").iterdir())
    print(
        f"\nincident opened -> last opening notice stored in the sink: {stored - opened_at:.3f} s "
        f"(send_notice: {summary['seconds']} s)"
    )

    assert envelope_recipients(messages) == Counter(APP1_CONTACTS)  # app2's own contacts got nothing
    for message in messages:
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["List-Unsubscribe"].startswith("<mailto:")
        assert message["Message-ID"] == message_id(f"incident-{incident}-opened", message["X-RcptTo"], "lab.test")
        assert "+1 555 0199" in message.get_content() and lab_env["status_page"]["url"] in message.get_content()
    rows = {row.recipient: row for row in notices.deliveries(f"incident-{incident}-opened")}
    assert rows["bounce-former@acme.lab.test"].state == "bounced" and rows["bounce-former@acme.lab.test"].code == 550
    timeline = [event["text"] for event in get_incident(incident)["events"] if event["kind"] == "notice"]
    assert any("bounce-former@acme.lab.test" in text and "2 sent" in text for text in timeline), timeline

    assert send_notice(incident, "opened")["states"]["sent"]  # again: nothing new is sent
    assert len(sink_messages(lab_env, f"incident-{incident}-opened")) == 2

    resolve(incident, "Dana Ops", "prod-east is back")
    send_notice(incident, "resolved")
    resolved = wait_for(
        "the resolution notice", lambda: len(found := sink_messages(lab_env, f"incident-{incident}-resolved")) >= 2 and found
    )
    assert envelope_recipients(resolved) == Counter(APP1_CONTACTS)
    assert all(message["Subject"].startswith("[Resolved]") for message in resolved)


def test_deferred_recipient_is_retried(fleet, lab_env):
    from hotspare.inventory import notices
    from tasks.notices import send_notice

    incident = new_incident("app2 errors", services=["app2"])
    summary = send_notice(incident, "opened")
    assert sorted(summary["states"]["sent"]) == sorted(APP2_CONTACTS), summary
    rows = {row.recipient: row for row in notices.deliveries(f"incident-{incident}-opened")}
    assert rows["defer-noc@globex.lab.test"].attempts == 2 and rows["gil@globex.lab.test"].attempts == 1
    assert envelope_recipients(sink_messages(lab_env, f"incident-{incident}-opened")) == Counter(APP2_CONTACTS)


def test_killed_blast_resumes_without_duplicates(fleet, lab_env):
    from hotspare.access import smtp_relay
    from hotspare.inventory import notices

    incident = new_incident("both facilities flapping", services=["app1", "app2"])
    notice = f"incident-{incident}-opened"
    # The slow blast in a process of its own: the relay comes in through the environment (no block
    # load for it); the status page key (the notice's page links) comes from the session's API.
    from prefect.settings import PREFECT_API_URL

    relay = smtp_relay(fleet.mail.smtp_block)
    script = (
        "import os; from hotspare.adapters.smtp import Relay; from tasks.notices import send_notice; "
        "send_notice(int(os.environ['INCIDENT']), 'opened', approved_by='test operator', messages_per_second=0.5, "
        "relay=Relay(os.environ['RELAY_HOST'], int(os.environ['RELAY_PORT']), os.environ.get('RELAY_USER') or None, "
        "os.environ.get('RELAY_PASSWORD') or None, os.environ['RELAY_STARTTLS'] == '1'))"
    )
    environment = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),  # never a temporary server of its own
        "INCIDENT": str(incident),
        "RELAY_HOST": relay.host,
        "RELAY_PORT": str(relay.port),
        "RELAY_USER": relay.username or "",
        "RELAY_PASSWORD": relay.password or "",
        "RELAY_STARTTLS": "1" if relay.starttls else "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(
            "the first delivery of the slow blast",
            lambda: any(row.state in ("sent", "bounced") for row in notices.deliveries(notice)),
            120,
        )
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # its whole session: nothing it started outlives it
        process.wait(timeout=30)
    at_kill = Counter(row.state for row in notices.deliveries(notice))
    assert at_kill["pending"] + at_kill["deferred"] + at_kill["sending"] > 0, at_kill  # killed midway

    from tasks.notices import send_notice

    resumed = send_notice(incident, "opened", approved_by="test operator")  # another process resumes it
    assert not resumed["states"].get("pending") and not resumed["states"].get("deferred"), resumed
    rows = {row.recipient: row for row in notices.deliveries(notice)}
    uncertain = {address for address, row in rows.items() if row.state == "uncertain"}
    received = envelope_recipients(sink_messages(lab_env, notice))
    print(f"\nat the kill: {dict(at_kill)}; after resuming: {dict(Counter(r.state for r in rows.values()))}")
    assert all(count == 1 for count in received.values()), received  # nobody twice
    assert set(received) | uncertain == APP1_CONTACTS | APP2_CONTACTS
    assert rows["bounce-former@acme.lab.test"].state == "bounced"


def test_incident_events_start_the_notice_deployments(prefect_api):
    """The automations exist once however often they are ensured, and an incident event creates
    a run of the notice deployment for that incident."""
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    from flows.notices import NOTICE_DEPLOYMENT, customer_notice, ensure_automations, status_page_publish

    customer_notice.to_deployment(name="customer-notice").apply()
    status_page_publish.to_deployment(name="status-page-publish").apply()
    names = ensure_automations()
    assert ensure_automations() == names
    for name in names:
        assert Automation.read(name=name).enabled

    resource = f"hotspare.incident.{900000 + time.monotonic_ns() % 100000}"
    emit_event(event="hotspare.incident.opened", resource={"prefect.resource.id": resource})
    EventsWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(NOTICE_DEPLOYMENT)

        def created_run():
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
            return [run for run in runs if run.parameters.get("resource_id") == resource]

        runs = wait_for("a notice run created by the automation", created_run, 60)
    assert runs[0].parameters["kind"] == "opened"


def test_a_title_with_cr_lf_and_control_characters_still_reaches_the_customers(fleet, lab_env):
    """A CR/LF in an incident title made the notice impossible to send (a header may not hold a
    line break); now the subject is folded to one line, no header is injected, and the messages
    reach the lab's sink."""
    from tasks.notices import send_notice

    # (no NUL: PostgreSQL refuses it in text, so such a title never becomes an incident at all)
    incident = new_incident("prod-east down\r\nBcc: everyone@evil.test\x07\x1b[2J", servers=["prod-east"])
    summary = send_notice(incident, "opened")
    messages = wait_for(
        "the notice with a folded subject in the sink",
        lambda: (found := sink_messages(lab_env, f"incident-{incident}-opened")) and len(found) >= 2 and found,
    )
    assert summary["states"].get("sent"), summary
    assert envelope_recipients(messages) == Counter(APP1_CONTACTS)
    for message in messages:
        # the customer reads their own service in customer words, never the internal title
        assert message["Subject"] == "[Incident] app1: service disruption"
        assert message["Bcc"] is None and "everyone@evil.test" not in message["X-RcptTo"]
        assert "\x07" not in message.get_content() and "\x1b" not in message.get_content()


def test_a_contact_name_with_cr_lf_or_an_unsendable_address_stops_nobody_elses_notice(fleet, lab_env):
    """A contact name with a CR/LF (a CRM import) stopped the whole blast with "Header values may
    not contain linefeed"; now the name is folded to one line, and a recipient whose message
    cannot be sent at all (an address the relay's dialogue cannot carry) is recorded as bounced
    with its reason while every other recipient gets the notice."""
    from hotspare.fleet.customer_schema import CustomerContact
    from hotspare.inventory import notices
    from tasks.notices import send_notice

    section = fleet.customer_notices
    customers = []
    for customer in section.customers:
        if "app1" in customer.services:
            contacts = [
                contact.model_copy(update={"name": "Ana Acme\r\nBcc: injected@evil.test"})
                if contact.email == "ana@acme.lab.test"
                else contact
                for contact in customer.contacts
            ]
            # an address from before validation was strict: smtplib cannot write it in RCPT TO
            contacts.append(CustomerContact.model_construct(name="J\u00fcrgen", email="j\u00fcrgen@acme.lab.test"))
            customer = customer.model_copy(update={"contacts": contacts})
        customers.append(customer)
    hostile = fleet.model_copy(update={"customer_notices": section.model_copy(update={"customers": customers})})

    incident = new_incident("prod-east down", servers=["prod-east"])
    summary = send_notice(incident, "opened", fleet=hostile)
    messages = wait_for(
        "the notice to every sendable contact",
        lambda: (found := sink_messages(lab_env, f"incident-{incident}-opened")) and len(found) >= 2 and found,
    )
    assert envelope_recipients(messages) == Counter(APP1_CONTACTS), summary
    ana = next(message for message in messages if message["X-RcptTo"].lower() == "ana@acme.lab.test")
    assert "Ana Acme Bcc: injected@evil.test" in str(ana["To"]) and ana["Bcc"] is None
    assert all("injected@evil.test" not in message["X-RcptTo"] for message in messages)
    rows = {row.recipient: row for row in notices.deliveries(f"incident-{incident}-opened")}
    unsendable = rows["j\u00fcrgen@acme.lab.test"]
    assert unsendable.state == "bounced" and "Unicode" in unsendable.reply, (unsendable.state, unsendable.reply)
    assert "j\u00fcrgen@acme.lab.test" in summary["bounces"], summary
