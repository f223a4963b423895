"""The emergency status page on the lab's off-site web host: published over SFTP, served over
HTTP, readable in a real browser at phone width; a web host that is down is retried and noted."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from lab_helpers import wait_for

pytestmark = pytest.mark.lab

CHROMIUM = "/usr/bin/chromium"


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def test_status_page_published_served_and_rendered(fleet, lab_env):
    from hotspare.inventory.incidents import add_event, get_incident, open_or_fold
    from tasks.notices import publish_status_page

    title = f"prod-west does not answer ({time.monotonic_ns()})"
    incident = open_or_fold(1, "high", title, servers=["prod-west"])
    add_event(incident, "note", "We are moving app2 to its mirror in the east facility.", details={"public": True})
    add_event(incident, "note", "paging ended: acknowledged by Lee")  # internal: never on the page
    result = publish_status_page(incident)
    assert result["published"], result

    url = lab_env["status_page"]["url"]
    page = wait_for("the new page on the web host", lambda: title in (text := fetch(url)) and text)
    assert page.index("+1 555 0199") < page.index(title)  # emergency numbers first
    assert "affects app2" in page  # the service running on the lost server
    assert "We are moving app2" in page and '<meta name="viewport"' in page and "<script" not in page
    assert "paging ended" not in page
    for service in ("app1", "app2"):
        assert f"<strong>{service}</strong>" in page
    feed = ElementTree.fromstring(fetch(url + "feed.atom"))
    titles = [entry.findtext("{http://www.w3.org/2005/Atom}title") for entry in feed.iter("{http://www.w3.org/2005/Atom}entry")]
    assert any(title in text for text in titles), titles
    assert any(event["kind"] == "status_publish" for event in get_incident(incident)["events"])
    leftovers = [name for name in os.listdir(lab_env["status_page"]["folder_on_machine"]) if name.endswith(".tmp")]
    assert not leftovers  # uploaded under a temporary name, then renamed

    assert os.access(CHROMIUM, os.X_OK), "chromium is missing (scripts/setup.sh installs it)"
    screenshot = Path(os.environ["HOTSPARE_HOME"]) / "artifacts" / "status-page.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", "--window-size=420,900",
             f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=120)
    assert screenshot.exists() and screenshot.stat().st_size > 5000, browser.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\nstatus page screenshot: {screenshot}")


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
