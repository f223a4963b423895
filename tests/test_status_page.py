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

    return {customer.name: f"c/{audience.token}/"
            for customer, audience in zip(fleet.customer_notices.customers, customer_pages(fleet))}


def screenshot(url: str, name: str, height: int = 844) -> Path:
    """A phone-width screenshot of ``url`` in the run's artifacts folder."""
    assert os.access(CHROMIUM, os.X_OK), "chromium is missing (scripts/setup.sh installs it)"
    path = Path(os.environ["HOTSPARE_HOME"]) / "artifacts" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
             f"--window-size=390,{height}", f"--screenshot={path}", url], capture_output=True, text=True, timeout=120, check=False)
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
    help_box = page[page.index('class="help"'):]
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
    assert "Globex" not in acme and f"incident-{incident}" not in acme
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
    resolved = wait_for("the resolution on the customer's page",
                        lambda: "Resolved" in (text := fetch(url + pages["globex"])) and text)
    assert "Resolved: everything works normally again." in resolved and "are disrupted" not in resolved
    customer_feed = ElementTree.fromstring(fetch(url + pages["globex"] + "feed.atom"))
    entry = next(e for e in customer_feed.iter(f"{ATOM}entry") if e.findtext(f"{ATOM}id").endswith(f"incident-{incident}"))
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
        [notice] = wait_for("the notice in the sink",
                            lambda: [mail for mail in mails_to(lab_env, address) if mail["X-Hotspare-Notice"]] or None)
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
        result = publish_status_page(incident, attempts=3, backoff_seconds=0.1, connect_timeout=1.0,
                                     sleep=lambda seconds: (waits.append(seconds), time.sleep(seconds)))
    finally:
        lab.heal("web-vault")
        close_connections()
    assert not result["published"] and result["attempts"] == 3, result
    assert waits == [0.1, 0.2]  # backoff doubles between attempts
    errors = [event for event in get_incident(incident)["events"] if event["kind"] == "error"]
    assert errors and "web-vault" in errors[-1]["text"] and "3 attempts" in errors[-1]["text"]
    assert publish_status_page(incident)["published"]  # healed: publishes again
