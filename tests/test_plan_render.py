"""The continuity plan document: real HTML, a real PDF printed by headless Chromium, its pages
rendered to images by poppler and checked to carry ink. No lab: the example fleet and plain
readiness facts."""

from __future__ import annotations

import shutil
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
            while data[position:position + 1].isspace():
                position += 1
            if data[position:position + 1] == b"#":
                position = data.index(b"\n", position)
                continue
            end = position
            while not data[end:end + 1].isspace():
                end += 1
            fields.append(data[position:end])
            position = end
        assert fields[0] == b"P5" and fields[3] == b"255"
        width, height = int(fields[1]), int(fields[2])
        pages.append((width, height, data[position + 1: position + 1 + width * height]))
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
        for command in (f"hotspare failover {service.name}", f"hotspare reprotect {service.name}",
                        f"hotspare failback {service.name}", f"hotspare rebuild {service.name}",
                        f"hotspare restore-proof {service.name}"):
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
