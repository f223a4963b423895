"""Customer notices and the status page, planned and rendered without any server."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from datetime import datetime, timezone

import pytest

from hotspare.fleet.customer_schema import CustomerNotices
from hotspare.planning.notices import message_id, plan_notice, render_message
from hotspare.planning.status_page import Audience, PageFacts, render_page, render_status_pages

SECTION = CustomerNotices.model_validate(
    {
        "customers": [
            {
                "name": "acme",
                "display_name": "Acme Ltd",
                "services": ["app1"],
                "contacts": [{"name": "Ana", "email": "ana@acme.test"}, {"name": "Agency", "email": "ops@agency.test"}],
            },
            {
                "name": "globex",
                "services": ["app2"],
                "contacts": [{"name": "Gil", "email": "gil@globex.test"}, {"name": "Agency", "email": "OPS@agency.test"}],
            },
            {"name": "initech", "services": ["app3"], "contacts": [{"name": "Ida", "email": "ida@initech.test"}]},
        ],
        "emergency_numbers": [{"label": "Hotline (24/7)", "phone": "+1 555 0199"}],
        "policy": [{"category": 1, "action": "send"}, {"category": 2, "action": "approve"}],
        "status_page": {"server": "web-vault", "folder": "/srv/status-page", "url": "http://status.test/"},
    }
)
ACTIVE = {"app1": "prod-east", "app2": "prod-west", "app3": "prod-north"}


def incident(**changes) -> dict:
    base = {
        "id": 7,
        "category": 1,
        "category_name": "server",
        "severity": "high",
        "title": "prod-east is down",
        "status": "triggered",
        "opened_at": "2026-05-01T14:03:00+00:00",
        "resolved_at": None,
        "services": [],
        "servers": ["prod-east"],
        "events": [],
    }
    return base | changes


def test_only_contacts_of_affected_services_get_one_message_each():
    plan = plan_notice(incident(services=["app2"]), "opened", SECTION, ACTIVE)
    assert plan.services == ("app1", "app2")  # app1 through its server, app2 by name
    emails = [recipient.email.lower() for recipient in plan.recipients]
    assert sorted(emails) == ["ana@acme.test", "gil@globex.test", "ops@agency.test"]  # shared contact once
    shared = next(r for r in plan.recipients if r.email.lower() == "ops@agency.test")
    assert shared.services == ("app1", "app2") and shared.customers == ("Acme Ltd", "globex")
    assert plan.decision.go, plan.decision.reason


def test_message_headers_and_body():
    plan = plan_notice(incident(), "opened", SECTION, ACTIVE)
    moment = datetime(2026, 5, 1, 14, 4, tzinfo=timezone.utc)
    messages = [render_message(plan, r, incident(), SECTION, "hotspare@lab.test", moment) for r in plan.recipients]
    assert len({m["Message-ID"] for m in messages}) == len(messages) == 2
    first = messages[0]
    assert first["Auto-Submitted"] == "auto-generated"
    assert first["List-Unsubscribe"] == "<mailto:hotspare@lab.test?subject=unsubscribe>"
    assert first["Message-ID"] == message_id("incident-7-opened", plan.recipients[0].email, "lab.test")
    assert "," not in first["To"].split("<")[1]  # one recipient per message
    body = first.get_content()
    assert "+1 555 0199" in body and "http://status.test/" in body
    assert "prod-east" not in body and "prod-east" not in first["Subject"]  # the internal title stays internal


def test_message_id_is_stable_per_notice_and_recipient():
    assert message_id("incident-7-opened", "Ana@acme.test", "x") == message_id("incident-7-opened", "ana@acme.test", "x")
    assert message_id("incident-7-opened", "ana@acme.test", "x") != message_id("incident-7-resolved", "ana@acme.test", "x")


@pytest.mark.parametrize(
    ("category", "approved", "go"), [(1, False, True), (2, False, False), (2, True, True), (3, False, False), (3, True, True)]
)
def test_policy_per_category(category, approved, go):
    plan = plan_notice(incident(category=category), "opened", SECTION, ACTIVE, approved=approved)
    assert plan.decision.go is go, plan.decision.reason


def test_resolution_notice_waits_for_the_resolution():
    assert not plan_notice(incident(), "resolved", SECTION, ACTIVE).decision.go
    resolved = incident(status="resolved", resolved_at="2026-05-01T15:00:00+00:00")
    plan = plan_notice(resolved, "resolved", SECTION, ACTIVE)
    assert plan.decision.go and plan.subject.startswith("[Resolved]")


def test_a_low_severity_incident_tells_no_customer_unless_an_operator_sends_it():
    low = incident(severity="low", title="psu PS2 degraded on prod-east")
    plan = plan_notice(low, "opened", SECTION, ACTIVE)
    assert plan.recipients and not plan.decision.go and "outages only" in plan.decision.reason
    assert plan_notice(low, "opened", SECTION, ACTIVE, approved=True).decision.go


def test_nobody_to_tell():
    plan = plan_notice(incident(servers=["storage-vault"]), "opened", SECTION, ACTIVE)
    assert not plan.decision.go and "nobody" in plan.decision.reason


def test_status_page_shows_numbers_services_incidents_and_escapes():
    events = [
        {
            "at": "2026-05-01T14:03:00+00:00",
            "kind": "detection",
            "text": "prod-east stopped answering: 10.211.70.11:22 no answer within 1.5 s",
        },
        {"at": "2026-05-01T14:03:05+00:00", "kind": "page", "text": "paged Dana Ops at +15550100"},
        {"at": "2026-05-01T14:03:09+00:00", "kind": "note", "text": "paging ended: acknowledged"},
        {
            "at": "2026-05-01T14:04:00+00:00",
            "kind": "note",
            "text": "Moving app1 to the west data center.",
            "details": {"public": True},
        },
        {"at": "2026-05-01T14:05:00+00:00", "kind": "notice", "text": "sent to 3"},
    ]
    services = (
        {
            "service": "app1",
            "state": "protected",
            "dns_name": "app1.lab.test",
            "production": {"name": "prod-east", "facility": "east", "reachable": False},
            "mirror": {"name": "mirror-west", "facility": "west", "reachable": True},
            "copy_age_hours": 2.5,
            "rpo_state": "ok",
            "last_drill": None,
        },
        {
            "service": "app2",
            "state": "unprotected",
            "production": {"name": "prod-west", "facility": "west"},
            "mirror": None,
            "last_drill": {"finished": "2026-04-30T10:00:00+00:00", "outcome": "ok", "rto_seconds": 42.0},
        },
    )
    customer = Audience("Acme Ltd", ("app1", "app2"), "a" * 26)
    facts = PageFacts(
        "Example status",
        "http://status.test/",
        datetime(2026, 5, 1, 14, 6, tzinfo=timezone.utc),
        tuple(SECTION.emergency_numbers),
        services,
        (incident(title="<b>disk</b> & more", events=events, services=["app1"]),),
        customers=(customer,),
    )
    files = render_status_pages(facts)
    page = files["c/" + "a" * 26 + "/index.html"]
    assert '<meta name="viewport"' in page and "<script" not in page
    assert page.index("+1 555 0199") < page.index("Incidents") and 'href="tel:+15550199"' in page
    assert "disk" not in page  # incident titles are written for operators: never on the page
    assert "We detected a problem" in page and "informed by e-mail" in page
    assert "Moving app1 to the west data center." in page  # an operator's note written for customers
    # internal texts never reach the page: probe evidence, pages to on-call people, paging notes, servers
    for internal in ("10.211.70.11", "stopped answering", "Dana", "paging ended", "prod-east", "mirror-west", " h old"):
        assert internal not in page, internal
    assert "none recorded yet" in page and "back in 42 s" in page and "second copy is being rebuilt" in page
    assert "Service disruption: app1" in page and "Some of your services are disrupted" in page
    assert "app1" not in files["index.html"] and "Service disruption" in files["index.html"]
    assert files["c/index.html"].count("a" * 26) == 0  # the customer folder lists nobody
    feed = ElementTree.fromstring(files["c/" + "a" * 26 + "/feed.atom"])
    entries = feed.findall("{http://www.w3.org/2005/Atom}entry")
    assert len(entries) == 1 and "Service disruption" in entries[0].find("{http://www.w3.org/2005/Atom}title").text


def test_control_characters_never_reach_the_feed_or_the_page_and_cr_lf_never_a_subject():
    """A title and a public note with control characters (a pasted log line): the Atom feed still
    parses as XML, the page holds none of them, the notice's subject is one line."""
    hostile = "prod-east\x00 is\x1b[31m down\r\nBcc: everyone@example.test\x0c\x7f\x85"
    note = {
        "id": 2,
        "at": "2026-05-01T14:05:00+00:00",
        "kind": "note",
        "actor": "dana",
        "text": "Moving\x08 app1\x01 to the mirror.\r\nBack soon\x1f.",
        "details": {"public": True},
    }
    facts = PageFacts(
        title="Status\x07",
        page_url="http://status.test/",
        generated_at=datetime(2026, 5, 1, 15, 0, tzinfo=timezone.utc),
        emergency_numbers=tuple(SECTION.emergency_numbers),
        services=(),
        incidents=(incident(title=hostile, events=[note], services=["app1"]),),
    )
    files = render_page(facts, Audience("Acme", ("app1",), "a" * 26))  # a customer's page carries public notes
    feed = ElementTree.fromstring(files["feed.atom"])  # raised "not well-formed" before
    atom = "{http://www.w3.org/2005/Atom}"
    [entry] = feed.iter(f"{atom}entry")
    assert "prod-east" not in entry.findtext(f"{atom}title")  # the title is the operators', never published
    assert "Moving  app1  to the mirror." in entry.findtext(f"{atom}content")
    for text in files.values():
        assert not [
            character for character in text if ord(character) < 32 and character not in "\n\t" or 0x7F <= ord(character) <= 0x9F
        ]
    assert "Moving  app1  to the mirror.\nBack soon ." in files["index.html"]

    plan = plan_notice(incident(title=hostile), "opened", SECTION, ACTIVE)
    assert plan.subject == "[Incident] app1: prod-east is [31m down Bcc: everyone@example.test"
    message = render_message(
        plan,
        plan.recipients[0],
        incident(title=hostile),
        SECTION,
        "hotspare@lab.test",
        datetime(2026, 5, 1, 14, 4, tzinfo=timezone.utc),
    )
    assert message["Subject"] == "[Incident] app1: service disruption" and message["Bcc"] is None
    assert "\x00" not in message.get_content() and "\x1b" not in message.get_content()
    assert "everyone@example.test" not in message.get_content()  # the internal title is never sent


def test_a_customers_notice_names_only_its_own_services_and_no_server_or_check():
    """An incident on a server two customers share: each customer's message names its own
    service only, in customer words; the internal title (server, check) stays with operators."""
    shared = incident(title="server prod-east: reachability:ssh failed", servers=[], services=["app1", "app3"])
    plan = plan_notice(shared, "opened", SECTION, ACTIVE)
    assert "prod-east" in plan.subject and "prod-east" in plan.preview()  # operators see the title
    moment = datetime(2026, 5, 1, 14, 4, tzinfo=timezone.utc)
    by_address = {r.email: render_message(plan, r, shared, SECTION, "hotspare@lab.test", moment) for r in plan.recipients}
    acme, initech = by_address["ana@acme.test"], by_address["ida@initech.test"]
    assert acme["Subject"] == "[Incident] app1: service disruption"
    assert initech["Subject"] == "[Incident] app3: service disruption"
    for message, other in ((acme, "app3"), (initech, "app1")):
        text = message["Subject"] + message.get_content()
        for secret in (other, "prod-east", "reachability", "ssh", "server"):
            assert secret not in text, (message["To"], secret)
        assert "What:     Service disruption" in message.get_content()
    public = shared | {
        "events": [
            {"at": "2026-05-01T14:05:00+00:00", "kind": "note", "text": "Back\r\nin ten minutes.", "details": {"public": True}}
        ]
    }
    assert (
        "What:     Back in ten minutes."
        in render_message(plan, plan.recipients[0], public, SECTION, "hotspare@lab.test", moment).get_content()
    )


def test_a_contact_name_or_label_with_cr_lf_is_folded_into_one_header_line():
    section = CustomerNotices.model_validate(
        {
            "customers": [
                {
                    "name": "acme",
                    "display_name": "Acme\r\nBcc: x@evil.test",
                    "services": ["app1"],
                    "contacts": [{"name": "Ana Acme\r\nBcc: injected@evil.test", "email": "ana@acme.test"}],
                }
            ],
            "policy": [{"category": 1, "action": "send"}],
        }
    )
    plan = plan_notice(incident(), "opened", section, ACTIVE)
    message = render_message(
        plan, plan.recipients[0], incident(), section, "hotspare@lab.test", datetime(2026, 5, 1, 14, 4, tzinfo=timezone.utc)
    )
    assert message["Bcc"] is None and "\n" not in str(message["To"]) and "ana@acme.test" in str(message["To"])
    assert "contact of Acme Bcc: x@evil.test." in message.get_content()


def test_a_display_name_with_cr_lf_is_one_line_in_the_page_heading_and_the_feed_title():
    facts = PageFacts("Example status", "http://status.test/", datetime(2026, 5, 1, 14, 6, tzinfo=timezone.utc), (), (), ())
    files = render_page(facts, Audience("Acme Shop\r\nBcc: victim@evil.test\x07", ("app1",), "a" * 26))
    assert "<h1>Example status — Acme Shop Bcc: victim@evil.test</h1>" in files["index.html"]
    feed = ElementTree.fromstring(files["feed.atom"])
    assert feed.findtext("{http://www.w3.org/2005/Atom}title") == "Example status — Acme Shop Bcc: victim@evil.test"


def test_public_names_are_not_the_inventory_sequence_and_quiet_incidents_fold_into_one_card():
    """The page numbered incidents with the inventory's sequence (a gap told of an internal one)
    and showed one card per machine for one fleet-wide condition (every disk nearly full)."""
    from hotspare.planning.subscriptions import incident_reference

    key = b"k" * 32
    disks = tuple(
        incident(
            id=20 + n,
            title=f"space:/ degraded on server-{n}",
            servers=[f"server-{n}"],
            severity="low",
            opened_at=f"2026-05-01T14:0{n}:00+00:00",
            reference=incident_reference(key, 20 + n),
            events=[{"at": f"2026-05-01T14:0{n}:00+00:00", "kind": "detection", "text": "x"}],
        )
        for n in range(5)
    )
    outage = incident(id=31, services=["app1"], reference=incident_reference(key, 31))
    facts = PageFacts(
        "Example status", "http://status.test/", datetime(2026, 5, 1, 15, 0, tzinfo=timezone.utc), (), (), (*disks, outage)
    )
    page = render_page(facts, None)["index.html"]
    assert page.count("no service is interrupted") == 1 and page.count("Service disruption") == 1
    assert f'id="incident-{incident_reference(key, 20)}"' in page  # the oldest names the folded card
    assert "Since 2026-05-01 14:00 UTC" in page
    for number in (20, 21, 22, 23, 24, 31):
        assert f'incident-{number}"' not in page and f"Incident {number} " not in page
    assert incident_reference(key, 31) != incident_reference(b"j" * 32, 31)  # keyed: not derivable outside


def test_a_notice_links_its_readers_own_page_and_names_the_public_reference():
    plan = plan_notice(incident(), "opened", SECTION, ACTIVE, page_urls={"acme": "http://status.test/c/" + "a" * 26 + "/"})
    message = render_message(
        plan,
        plan.recipients[0],
        incident(reference="ABCDEFGH"),
        SECTION,
        "hotspare@lab.test",
        datetime(2026, 5, 1, 14, 4, tzinfo=timezone.utc),
    )
    body = message.get_content()
    assert "http://status.test/c/" + "a" * 26 + "/" in body and "Incident: ABCDEFGH" in body and "#7" not in body
