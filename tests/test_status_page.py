"""The emergency status page on the lab's off-site web host: published over SFTP, served over
HTTP, readable in a real browser at phone width, in customer words only; a page per customer at
a keyed address with only that customer's services; e-mail subscriptions confirmed only by the
mailed token; a web host that is down is retried and noted."""

from __future__ import annotations

import email
import email.utils
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from xml.etree import ElementTree

import pytest

from lab_helpers import wait_for

pytestmark = pytest.mark.lab

CHROMIUM = "/usr/bin/chromium"
ATOM = "{http://www.w3.org/2005/Atom}"


def public_name(number: int) -> str:
    """The name the status page gives incident ``number`` (keyed, not the inventory's sequence)."""
    from hotspare.access import loaded_fleet
    from tasks.subscriptions import public_references

    return public_references(loaded_fleet(), [number])[number]


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def post(url: str, fields: dict) -> tuple[int, str]:
    data = urllib.parse.urlencode(fields).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def internal_names(fleet) -> set[str]:
    """Every name customers must never read: servers, facilities, check names."""
    names = {server.name for server in fleet.servers} | {facility.name for facility in fleet.facilities}
    return names | {"reachability", "ssh failed", " h old", "0.0 h"}


def names_in(text: str, names: set[str]) -> list[str]:
    """The ``names`` that occur in ``text`` as whole words."""
    return [name for name in names if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)]


def resolve_open_incidents() -> None:
    from hotspare.inventory.incidents import list_incidents, resolve

    for item in list_incidents(open_only=True):
        resolve(item["id"], "test")


def pages_of(fleet) -> dict[str, str]:
    """Customer name -> the URL path of their page."""
    from tasks.subscriptions import customer_pages

    return {
        customer.name: f"c/{audience.token}/"
        for customer, audience in zip(fleet.customer_notices.customers, customer_pages(fleet))
    }


def screenshot(url: str, name: str, height: int = 844) -> Path:
    """A phone-width screenshot of ``url`` in the run's artifacts folder."""
    assert os.access(CHROMIUM, os.X_OK), "chromium is missing (scripts/setup.sh installs it)"
    path = Path(os.environ["HOTSPARE_HOME"]) / "artifacts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size=390,{height}",
                f"--screenshot={path}",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert path.exists() and path.stat().st_size > 5000, browser.stderr[-2000:]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\nstatus page screenshot: {path}")
    return path


def test_healthy_lab_public_page_says_all_is_well_and_names_nothing_internal(fleet, lab_env):
    from tasks.notices import publish_status_page

    resolve_open_incidents()
    result = publish_status_page()
    assert result["published"], result
    url = lab_env["status_page"]["url"]
    page = wait_for("the healthy page on the web host", lambda: "All systems operational" in (text := fetch(url)) and text)
    assert not names_in(page, internal_names(fleet))
    for customer in fleet.customer_notices.customers:  # the public page tells nobody who the customers are
        assert customer.name not in page and customer.display_name not in page
        assert not any(re.search(rf"\b{service}\b", page) for service in customer.services)
    help_box = page[page.index('class="help"') :]
    assert 'href="tel:+15550199"' in help_box and "emergency" not in page.split("<main>")[0]  # no alarm banner
    for token in pages_of(fleet).values():
        assert token.split("/")[1] not in page  # no link to a customer's page
    screenshot(url, "status-page-healthy.png")


def test_customer_pages_show_only_their_services_at_unguessable_addresses(fleet, lab_env):
    from hotspare.inventory.incidents import (
        add_event,
        get_incident,
        open_or_fold,
        resolve,
    )
    from tasks.notices import publish_status_page

    resolve_open_incidents()
    title = f"reachability:ssh failed on prod-west ({time.monotonic_ns()})"
    incident = open_or_fold(1, "high", title, servers=["prod-west"])
    add_event(incident, "note", "We are moving your service to its standby copy.", details={"public": True})
    add_event(incident, "note", "paging ended: acknowledged by Lee")  # internal: never on the page
    assert publish_status_page(incident)["published"]

    url = lab_env["status_page"]["url"]
    public = wait_for("the outage on the public page", lambda: "Some services are disrupted" in (text := fetch(url)) and text)
    assert "We are moving your service" not in public and "paging ended" not in public  # notes: the customer's page
    assert not names_in(public, internal_names(fleet) | {"app1", "app2", "acme", "globex", "Acme", "Globex", title})
    feed = ElementTree.fromstring(fetch(url + "feed.atom"))
    assert next(entry.findtext(f"{ATOM}title") for entry in feed.iter(f"{ATOM}entry")).startswith("Service disruption")
    screenshot(url, "status-page-outage.png")

    pages = pages_of(fleet)
    assert all(re.fullmatch(r"c/[a-z2-7]{26}/", path) for path in pages.values()) and len(set(pages.values())) == 2
    acme, globex = fetch(url + pages["acme"]), fetch(url + pages["globex"])
    assert "app1" in acme and "app2" not in acme
    assert "disrupted" not in acme and "Service disruption" not in acme  # not touched by it
    assert "Globex" not in acme and f"incident-{public_name(incident)}" not in acme
    assert "app2" in globex and "app1" not in globex and "Acme" not in globex
    assert "Some of your services are disrupted" in globex and "Service disruption: app2" in globex
    assert "Disrupted" in globex and "We are moving your service" in globex
    assert "paging ended" not in globex
    assert not names_in(acme + globex, internal_names(fleet) | {title})
    listing = fetch(url + "c/")  # the folder is never listed
    assert all(path.split("/")[1] not in listing for path in pages.values())
    assert f'action="{fleet.customer_notices.status_page.subscribe_url}subscribe"' in globex  # the e-mail form
    assert 'name="page" value="' + pages["globex"].split("/")[1] + '"' in globex
    screenshot(url + pages["globex"], "status-page-customer-outage.png", height=1200)

    stale = Path(lab_env["status_page"]["folder_on_machine"]) / "c" / ("a" * 26)  # a page no longer published
    stale.mkdir(exist_ok=True)
    (stale / "index.html").write_text("old news")
    resolve(incident, "test")
    assert publish_status_page(incident)["published"]
    assert not stale.exists()  # removed, so an old address shows nothing stale
    resolved = wait_for(
        "the resolution on the customer's page", lambda: "Resolved" in (text := fetch(url + pages["globex"])) and text
    )
    assert "Resolved: everything works normally again." in resolved and "are disrupted" not in resolved
    customer_feed = ElementTree.fromstring(fetch(url + pages["globex"] + "feed.atom"))
    entry = next(
        e for e in customer_feed.iter(f"{ATOM}entry") if e.findtext(f"{ATOM}id").endswith(f"incident-{public_name(incident)}")
    )
    assert "Resolved" in entry.findtext(f"{ATOM}title") and "everything works normally" in entry.findtext(f"{ATOM}content")
    assert any(event["kind"] == "status_publish" for event in get_incident(incident)["events"])
    leftovers = [str(path) for path in Path(lab_env["status_page"]["folder_on_machine"]).rglob("*.tmp")]
    assert not leftovers  # uploaded under temporary names, then renamed


def mails_to(lab_env: dict, address: str) -> list[email.message.Message]:
    found = []
    for path in (Path(lab_env["smtp"]["maildir"]) / "new").iterdir():
        message = email.message_from_bytes(path.read_bytes())
        if email.utils.parseaddr(str(message["To"]))[1] == address:
            found.append(message)
    return found


def test_a_subscription_is_confirmed_only_by_the_mailed_token(fleet, lab_env):
    from hotspare.inventory import subscriptions as rows
    from hotspare.inventory.incidents import open_or_fold, resolve
    from hotspare.subscription_webhook import serve
    from tasks.notices import preview_notice, send_notice
    from tasks.subscriptions import with_subscribers

    base = fleet.customer_notices.status_page.subscribe_url.rstrip("/")  # the lab's: 127.0.0.1, a port per slot
    port = urllib.parse.urlsplit(base).port
    pages = pages_of(fleet)
    globex_token = pages["globex"].split("/")[1]
    address = f"reader-{time.monotonic_ns()}@example.lab.test"
    server, thread = serve(fleet, "127.0.0.1", port)
    try:
        status, body = post(base + "/subscribe", {"page": "acme", "email": address})  # a name is not a page
        assert status == 400 and address not in body
        status, body = post(base + "/subscribe", {"page": globex_token, "email": "not an address"})
        assert status == 400 and "not an e-mail address" in body
        status, body = post(base + "/subscribe", {"page": globex_token, "email": address})
        assert status == 200 and "confirmation message" in body and address not in body
        [mail] = wait_for("the confirmation mail in the sink", lambda: mails_to(lab_env, address) or None)
        assert "Globex Portal" in mail["Subject"]
        token = re.search(r"/confirm\?t=([A-Za-z0-9_-]+)", mail.get_payload(decode=True).decode())[1]
        assert [row.state for row in rows.confirmed() if row.address == address] == []

        status, _ = post(base + "/confirm", {"t": token[:-2] + ("AA" if token[-2:] != "AA" else "BB")})
        assert status == 400  # a guessed token confirms nothing
        assert "Confirm" in fetch(f"{base}/confirm?t={token}")  # opening the link (a mail scanner) confirms nothing
        assert not [row for row in rows.confirmed() if row.address == address]
        status, body = post(base + "/confirm", {"t": token})
        assert status == 200 and "Subscribed" in body
        [row] = [row for row in rows.confirmed() if row.address == address]
        assert row.customer == "globex"
        assert post(base + "/confirm", {"t": token})[0] == 400  # spent

        status, _ = post(base + "/subscribe", {"page": globex_token, "email": address})  # again: no new mail
        assert status == 200 and len(mails_to(lab_env, address)) == 1

        acme_only = open_or_fold(1, "high", f"prod-east down ({time.monotonic_ns()})", servers=["prod-east"])
        plan, _ = preview_notice(acme_only, "opened", fleet=fleet)
        assert address not in [recipient.email for recipient in plan.recipients]  # another customer's incident
        resolve(acme_only, "test")
        incident = open_or_fold(1, "high", f"prod-west down ({time.monotonic_ns()})", servers=["prod-west"])
        try:
            summary = send_notice(incident, "opened", fleet=fleet)  # told like the customer's contacts
        finally:
            resolve(incident, "test")
        assert address in summary["states"]["sent"], summary
        [notice] = wait_for(
            "the notice in the sink", lambda: [mail for mail in mails_to(lab_env, address) if mail["X-Hotspare-Notice"]] or None
        )
        link = re.search(r"<([^>]+)>", str(notice["List-Unsubscribe"]))[1]
        assert link.startswith(base + "/unsubscribe?s=") and link in notice.get_payload(decode=True).decode()
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))
        assert post(base + "/unsubscribe", {"s": query["s"], "t": "x" * 24})[0] == 400  # a guessed link ends nothing
        assert "Unsubscribe" in fetch(link)  # opening it shows a button, nothing more
        assert [r.address for r in rows.confirmed() if r.address == address] == [address]
        assert post(base + "/unsubscribe", query)[0] == 200
        assert not [r for r in rows.confirmed() if r.address == address]
        assert address not in [c.email for c in with_subscribers(fleet.customer_notices).customers[1].contacts]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_web_host_down_is_retried_and_noted(fleet, lab, lab_env):
    from hotspare.access import close_connections
    from hotspare.inventory.incidents import get_incident, open_or_fold
    from tasks.notices import publish_status_page

    incident = open_or_fold(1, "high", f"vault facility unreachable ({time.monotonic_ns()})", servers=["web-vault"])
    close_connections()
    lab.fail("web-vault")
    waits = []
    try:
        result = publish_status_page(
            incident,
            attempts=3,
            backoff_seconds=0.1,
            connect_timeout=1.0,
            sleep=lambda seconds: (waits.append(seconds), time.sleep(seconds)),
        )
    finally:
        lab.heal("web-vault")
        close_connections()
    assert not result["published"] and result["attempts"] == 3, result
    assert waits == [0.1, 0.2]  # backoff doubles between attempts
    errors = [event for event in get_incident(incident)["events"] if event["kind"] == "error"]
    assert errors and "web-vault" in errors[-1]["text"] and "3 attempts" in errors[-1]["text"]
    assert publish_status_page(incident)["published"]  # healed: publishes again


def _serving(fleet, **options):
    """The subscription endpoint on the lab's port, and its base address."""
    from hotspare.subscription_webhook import serve

    base = fleet.customer_notices.status_page.subscribe_url.rstrip("/")
    server, thread = serve(fleet, "127.0.0.1", urllib.parse.urlsplit(base).port, **options)
    return base, server, thread


def _stop(server, thread) -> None:
    server.shutdown()  # also sends what the outbox holds, then ends its worker
    server.server_close()
    thread.join(timeout=10)
    assert not thread.is_alive() and not server.outbox.worker.is_alive()


def test_a_burst_of_requests_mails_only_within_the_limits_and_answers_alike(fleet, lab_env):
    """One client asking for many addresses made one confirmation mail each (80 in 22 s); now a
    client gets a few requests per window and the endpoint a few mails per hour, and every
    answer, refused or not, is the same page."""
    from hotspare.planning.subscription_limits import RequestLimits

    globex_token = pages_of(fleet)["globex"].split("/")[1]
    run = time.monotonic_ns()
    for name, limits, expected in (
        ("client", RequestLimits(client_requests=3), 3),
        ("overall", RequestLimits(client_requests=100, mails=2), 2),
    ):
        addresses = [f"burst-{name}-{run}-{i}@example.lab.test" for i in range(8)]
        base, server, thread = _serving(fleet, limits=limits)
        try:
            answers = {post(base + "/subscribe", {"page": globex_token, "email": address}) for address in addresses}
        finally:
            _stop(server, thread)
        assert len(answers) == 1 and next(iter(answers))[0] == 200, answers  # refusals look like acceptances
        mailed = wait_for(
            f"{expected} confirmation mails ({name} limit)",
            lambda: (found := [a for a in addresses if mails_to(lab_env, a)]) and len(found) >= expected and found,
            15,
        )
        assert mailed == addresses[:expected], (name, mailed)


def test_unconfirmed_requests_per_customer_are_capped_and_an_unsubscribed_address_rests(fleet):
    """The table holds at most ``max_pending`` unconfirmed requests per customer (expired ones
    are pruned first); an address that unsubscribed gets no confirmation mail for a while."""
    from datetime import timedelta

    from hotspare.inventory import subscriptions as rows
    from hotspare.inventory.models import utcnow

    customer, now = f"capped-{time.monotonic_ns()}", utcnow()
    taken = [rows.request(customer, f"p{i}@example.lab.test", f"d{customer}{i}", now, max_pending=2) for i in range(3)]
    assert [due for _number, due, _why in taken] == [True, True, False]
    assert taken[2][0] is None and "at most 2" in taken[2][2]
    later = now + rows.CONFIRM_VALID + timedelta(minutes=1)  # the first two expired: pruned, room again
    number, due, _ = rows.request(customer, "p9@example.lab.test", f"d{customer}9", later, max_pending=2)
    assert due and number is not None
    assert rows.request(customer, "p0@example.lab.test", f"e{customer}0", later, max_pending=2)[1]  # pruned, new again

    rows.unsubscribe(number, later)
    _, due, why = rows.request(customer, "p9@example.lab.test", f"f{customer}9", later + timedelta(hours=1))
    assert not due and "unsubscribed" in why
    assert rows.request(
        customer, "p9@example.lab.test", f"g{customer}9", later + rows.QUIET_AFTER_UNSUBSCRIBE + timedelta(minutes=1)
    )[1]


def test_the_confirmation_mail_leaves_off_the_request_path(fleet, lab_env):
    """A new address was answered only after the SMTP round trip, a known one at once: the time
    told them apart. Now the mail goes through a queue: with a relay that accepts the connection
    and never speaks, the endpoint still answers at once, and the mail worker is the one waiting."""
    import socket

    from hotspare.adapters.smtp import Relay

    globex_token = pages_of(fleet)["globex"].split("/")[1]
    silent = socket.create_server(("127.0.0.1", 0))
    silent.settimeout(15)
    relay = Relay("127.0.0.1", silent.getsockname()[1], timeout=60.0)  # longer than post()'s 10 s
    base, server, thread = _serving(fleet, relay=relay)
    try:
        status, body = post(
            base + "/subscribe", {"page": globex_token, "email": f"queued-{time.monotonic_ns()}@example.lab.test"}
        )
        assert status == 200 and "confirmation message" in body  # answered while the relay is silent
        connection, _ = silent.accept()  # the worker is the one talking to the relay
        connection.close()  # the relay "drops the line": the worker logs it and goes on
    finally:
        silent.close()
        _stop(server, thread)


def test_a_display_name_with_cr_lf_neither_blocks_subscriptions_nor_shows_exception_text(fleet, lab_env):
    """A display name with a CR/LF made every subscription to that customer's page fail with the
    Python exception's text on the public page; now it is folded to one line where printed, and
    errors show a fixed sentence."""
    customers = [
        customer.model_copy(update={"display_name": "Globex Portal\r\nBcc: victim@evil.test"})
        if customer.name == "globex"
        else customer
        for customer in fleet.customer_notices.customers
    ]
    hostile = fleet.model_copy(update={"customer_notices": fleet.customer_notices.model_copy(update={"customers": customers})})
    globex_token = pages_of(fleet)["globex"].split("/")[1]
    address = f"crlf-{time.monotonic_ns()}@example.lab.test"
    base, server, thread = _serving(hostile)
    try:
        status, body = post(base + "/subscribe", {"page": globex_token, "email": address})
        assert status == 200 and "Header values" not in body
        bad = post(base + "/subscribe", {"page": globex_token, "email": "x@y\r\nz"})
        assert bad[0] == 400 and "That is not an e-mail address we can send to." in bad[1]
    finally:
        _stop(server, thread)
    [mail] = wait_for("the confirmation mail", lambda: mails_to(lab_env, address) or None, 15)
    assert str(mail["Subject"]) == "Confirm status updates for Globex Portal Bcc: victim@evil.test"
    assert mail["Bcc"] is None and "victim@evil.test" not in mail.get("X-RcptTo", "")
