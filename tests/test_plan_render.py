"""The continuity plan document: real HTML, a real PDF printed by headless Chromium, its pages
rendered to images by poppler and checked to carry ink. No lab: the example fleet and plain
readiness facts."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hotspare.continuity_plan import CHROMIUM, render
from hotspare.fleet.load import load_fleet
from hotspare.planning.readiness import RunFact, ServiceTargets, judge_readiness

EXAMPLE = Path(__file__).parent.parent / "docs" / "fleet-example.yaml"


def gray_pages(pdf: Path, folder: Path) -> list[tuple[int, int, bytes]]:
    """(width, height, pixels) of each page, rendered by pdftoppm as 8-bit gray PGM."""
    subprocess.run(["pdftoppm", "-gray", "-r", "30", str(pdf), str(folder / "page")], check=True, timeout=120)
    pages = []
    for path in sorted(folder.glob("page*.pgm")):
        data = path.read_bytes()
        fields, position = [], 0
        while len(fields) < 4:  # magic, width, height, maximum; whitespace-separated, '#' comments
            while data[position : position + 1].isspace():
                position += 1
            if data[position : position + 1] == b"#":
                position = data.index(b"\n", position)
                continue
            end = position
            while not data[end : end + 1].isspace():
                end += 1
            fields.append(data[position:end])
            position = end
        assert fields[0] == b"P5" and fields[3] == b"255"
        width, height = int(fields[1]), int(fields[2])
        pages.append((width, height, data[position + 1 : position + 1 + width * height]))
    return pages


def variance(pixels: bytes) -> float:
    mean = sum(pixels) / len(pixels)
    return sum((value - mean) ** 2 for value in pixels[::7]) / len(pixels[::7])


@pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("pdftoppm") is None, reason="needs chromium and poppler")
def test_plan_renders_to_html_and_a_pdf_whose_pages_carry_ink(tmp_path):
    fleet = load_fleet(EXAMPLE)
    now = datetime.now(timezone.utc)
    targets = [ServiceTargets(service.name, 3600, 12 * 3600) for service in fleet.services]
    # Three people did failovers; nobody ever performed a rebuild.
    runs = [RunFact("failover", "app1", now, "ok", name, mode="emergency", rto_seconds=8.0) for name in ("ana", "bo", "cy")]
    readiness = judge_readiness(targets, [], runs, [], now)

    written = render(tmp_path / "out", fleet=fleet, readiness=readiness)

    html = written["html"].read_text()
    for service in fleet.services:
        assert service.name in html and service.dns_name in html
        for command in (
            f"hotspare failover {service.name}",
            f"hotspare reprotect {service.name}",
            f"hotspare failback {service.name}",
            f"hotspare rebuild {service.name}",
            f"hotspare restore-proof {service.name}",
        ):
            assert command in html, command
    for facility in {fleet.server(service.production).facility for service in fleet.services}:
        assert f"hotspare facility failover {facility}" in html and f"hotspare facility return {facility}" in html
    assert all(contact.name in html for contact in fleet.contacts)
    assert "only 0 people performed it in the last 90 days" in html  # rebuild: nobody
    rebuild = next(item for item in readiness.procedures if item.procedure == "rebuild")
    failover = next(item for item in readiness.procedures if item.procedure == "failover")
    assert rebuild.flag and failover.flag is None and failover.people == ("ana", "bo", "cy")

    pdf = written["pdf"]
    assert pdf.read_bytes()[:5] == b"%PDF-"
    pages = gray_pages(pdf, tmp_path)
    assert len(pages) >= 2
    for width, height, pixels in pages:
        assert width > 100 and height > 100 and len(pixels) == width * height
        assert variance(pixels) > 50, "a blank page"  # white paper with text has a large variance
        assert min(pixels) < 100  # some dark ink


def fleet_with_chains():
    """The example fleet with the written plan's chain for category 1 (office, office extension 0,
    the cell phones, a text, a contact without a number that paging skips) and a second contact;
    category 2 and 3 fall back to the top-level escalation list."""
    from hotspare.fleet.incident_schema import EscalationChain, EscalationStep, Incidents
    from hotspare.fleet.schema import Contact

    fleet = load_fleet(EXAMPLE)
    contacts = [
        *fleet.contacts,
        Contact(name="Lee Lead", role="engineering lead", phone="+15550101", email="lee@example.test"),
        Contact(name="No Phone", role="trainee"),
    ]
    chain = EscalationChain(
        category=1,
        rounds=2,
        steps=[
            EscalationStep(action="call", number="+15550000", wait_seconds=60),
            EscalationStep(action="call", number="+15550000", digits="0", wait_seconds=60),
            EscalationStep(action="call", contact="Lee Lead", wait_seconds=90),
            EscalationStep(action="sms", contact="Dana Ops", wait_seconds=120),
            EscalationStep(action="call", contact="No Phone", wait_seconds=30),
            EscalationStep(action="email", contact="Lee Lead", wait_seconds=300),
        ],
    )
    return fleet.model_copy(update={"contacts": contacts, "incidents": Incidents(chains=[chain])})


def rendered_chains(html: str) -> dict[str, list[tuple[str, ...]]]:
    """Category title -> the rows of its escalation table, as printed."""
    import re

    found = {}
    for title, body in re.findall(r'<table class="escalation" data-title="([^"]+)">(.*?)</table>', html, re.DOTALL):
        found[title] = [
            tuple(re.findall(r"<td>(.*?)</td>", row)) for row in re.findall(r'<tr class="page">(.*?)</tr>', body, re.DOTALL)
        ]
    return found


def test_plan_escalation_is_the_chain_paging_walks(tmp_path):
    """Every page in the plan is a page ``flows/incident.py`` sends, in its order: the same
    ``chain_for`` and ``plan_escalation`` calls, not the top-level escalation list."""
    from hotspare.continuity_plan import plan_data, render_html
    from hotspare.fleet.incident_schema import chain_for
    from hotspare.planning.escalation import plan_escalation

    fleet = fleet_with_chains()
    html = render_html(plan_data(fleet))
    printed = rendered_chains(html)
    assert len(printed) == 3
    for category in (1, 2, 3):
        paged = plan_escalation(chain_for(fleet.incidents, category, list(fleet.escalation)), fleet.contacts)
        [(title, rows)] = [(title, rows) for title, rows in printed.items() if title.startswith(f"Category {category} ")]
        assert [(int(r[0]), int(r[1]), r[3], r[4], None if r[5] == "none" else r[5]) for r in rows] == [
            (p.round, p.step, p.target, p.address, p.digits) for p in paged.pages
        ], title
    first = printed["Category 1 (a server)"]
    assert first[0][3:6] == ("+15550000", "+15550000", "none") and first[1][5] == "0"  # the office first, then extension 0
    assert len(first) == 10 and all("No Phone" not in row for row in first)  # skipped, as paging skips it
    assert "step 5 (call No Phone): No Phone has no phone number in the fleet file; skipped" in html


def test_plan_files_are_0600_and_every_section_is_a_table(tmp_path):
    """Written 0600 whatever the umask (an older 0644 file is replaced, not reused); no raw YAML."""
    fleet = fleet_with_chains()
    out = tmp_path / "out"
    out.mkdir()
    (out / "continuity-plan.html").write_text("old")
    (out / "continuity-plan.html").chmod(0o644)
    previous = os.umask(0o022)
    try:
        written = render(
            out,
            fleet=fleet,
            readiness=judge_readiness([], [], [], [], datetime.now(timezone.utc)),
            pdf=shutil.which("pdftotext") is not None and Path(CHROMIUM).exists(),
        )
    finally:
        os.umask(previous)
    for path in written.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert not [path.name for path in out.iterdir() if path.name.endswith(".tmp")]
    html = written["html"].read_text()
    assert "<pre" not in html and "null" not in html and "None" not in html and "`" not in html
    for section in ("Customer notices", "Health", "Incidents", "Replication"):
        assert f". {section}</h2>" in html, section
    assert "<td>quiet hours: start</td><td>22:00</td>" in html
    if "pdf" in written:
        text = subprocess.run(
            ["pdftotext", str(written["pdf"]), "-"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        assert "null" not in text and "digits:" not in text and "Category 1 (a server)" in text
