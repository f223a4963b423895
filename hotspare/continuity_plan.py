"""The continuity plan as a document, generated from live data: ``hotspare plan render``.

Facilities, servers and their redundancy, services with their targets and last measured values,
contacts and the escalation chains as the paging flow walks them (``planning/plan_tables.py``),
every other fleet section as tables, step-by-step runbooks with the exact commands for this fleet,
and who is trained on what (the readiness report). Written as HTML (jinja2, printable CSS) and
printed to PDF by headless Chromium, so the plan on paper is the plan hotspare runs. Both files
hold staff phone numbers: they are created 0600 before their first byte.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from hotspare.adapters.errors import MissingConfiguration, PermanentError

CHROMIUM = "/usr/bin/chromium"


def plan_data(fleet, readiness=None) -> dict:
    """Everything the document shows, read from the fleet and the inventory now."""
    from sqlmodel import select

    from hotspare.inventory import copies
    from hotspare.inventory.db import session
    from hotspare.inventory.models import FacilityRow, RunRow, ServerRow, ServiceRow, as_utc, utcnow

    now = utcnow()
    with session() as db:
        facility_rows = {row.name: row for row in db.exec(select(FacilityRow))}
        server_rows = {row.name: row for row in db.exec(select(ServerRow))}
        service_rows = {row.name: row for row in db.exec(select(ServiceRow))}
        failovers = list(
            db.exec(select(RunRow).where(RunRow.kind == "failover", RunRow.outcome == "ok").order_by(RunRow.started_at.desc()))
        )
    drills = _last_drills(readiness)
    services = []
    for spec in sorted(fleet.services, key=lambda s: (s.tier, s.name)):
        row = service_rows.get(spec.name)
        newest = copies.newest_verified(spec.name) if row else None
        last_failover = next((run for run in failovers if run.service == spec.name), None)
        services.append(
            {
                "spec": spec,
                "row": row,
                "rpo_hours": fleet.rpo_hours_of(spec),
                "rto_minutes": spec.rto_minutes or fleet.defaults.rto_minutes,
                "copy_age_hours": round((now - as_utc(newest.started_at)).total_seconds() / 3600, 2) if newest else None,
                "last_failover_rto": (last_failover.details or {}).get("rto_seconds") if last_failover else None,
                "drill": drills.get(spec.name),
                "standby": _standby_for(fleet, spec),
            }
        )
    facilities = []
    for facility in fleet.facilities:
        servers = [server for server in fleet.servers if server.facility == facility.name]
        roles = sorted({server.role.value for server in servers})
        facilities.append(
            {
                "facility": facility,
                "status": getattr(facility_rows.get(facility.name), "status", "up"),
                "servers": servers,
                "roles": roles,
                "productions": [s.name for s in fleet.services if s.production in {x.name for x in servers}],
                "mirrors": [s.name for s in fleet.services if s.mirror in {x.name for x in servers}],
            }
        )
    from hotspare.planning.plan_tables import escalation_tables, settings_tables

    return {
        "generated_at": now,
        "fleet": fleet,
        "facilities": facilities,
        "services": services,
        "server_rows": server_rows,
        "readiness": readiness,
        "escalation": escalation_tables(fleet),
        "settings": [
            (name, settings_tables(name.replace("_", " ").capitalize(), value)) for name, value in _extra_sections(fleet)
        ],
    }


def _last_drills(readiness) -> dict:
    if readiness is None:
        return {}
    return {item.service: item for item in readiness.services}


def _standby_for(fleet, spec) -> str | None:
    """A standby outside both the production's and the mirror's facility, else any other standby."""
    avoid = {fleet.server(spec.production).facility, fleet.server(spec.mirror).facility}
    standbys = sorted((s for s in fleet.servers if s.role.value == "standby"), key=lambda s: (s.facility in avoid, s.name))
    return standbys[0].name if standbys else None


def _extra_sections(fleet) -> list[tuple[str, object]]:
    """Fleet sections added by other subsystems (notices, health checks, …), as plain data for
    ``plan_tables.settings_tables``; the escalation chains have their own tables."""
    known = {"version", "facilities", "defaults", "servers", "zones", "services", "contacts", "escalation", "mail"}
    extra = []
    for name in type(fleet).model_fields:
        value = getattr(fleet, name)
        if name not in known and value not in (None, [], {}):
            data = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
            if name == "incidents" and isinstance(data, dict):
                data = {key: item for key, item in data.items() if key != "chains"}
            extra.append((name, data))
    return extra


def render_html(data: dict) -> str:
    """The plan as one self-contained HTML page (inline printable CSS, no external resources)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    environment = Environment(
        loader=PackageLoader("hotspare", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    from hotspare.planning.ages import age_text

    environment.filters["age"] = age_text
    environment.filters["code_spans"] = code_spans
    return environment.get_template("plan/continuity_plan.html.j2").render(**data)


def code_spans(text: str):
    """``text`` escaped, with its markdown `code spans` as <code> (readiness advice names commands)."""
    import re

    from markupsafe import Markup, escape

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def write_private_bytes(path: Path, data: bytes) -> None:
    """``path`` holds staff phone numbers: written to a temporary name created 0600 (before its
    first byte; the umask cannot widen it), then renamed over the old file, so no reader ever
    sees a wider mode or half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def print_pdf(html_file: Path, pdf_file: Path, timeout: float = 120.0) -> Path:
    """Print ``html_file`` to ``pdf_file`` with headless Chromium (its own throw-away profile).

    Chromium writes with the process umask, so it prints into a 0700 scratch folder and the
    result is copied into ``pdf_file`` created 0600 (``write_private_bytes``)."""
    if not Path(CHROMIUM).exists():
        raise MissingConfiguration(
            f"{CHROMIUM} is not installed: install the chromium package (scripts/setup.sh does), or use the HTML file"
        )
    scratch = Path(tempfile.mkdtemp(prefix="hotspare-chromium."))  # 0700
    printed = scratch / "plan.pdf"
    try:
        argv = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={scratch / 'profile'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={printed}",
            html_file.resolve().as_uri(),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0 or not printed.exists() or printed.stat().st_size == 0:
            last = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise PermanentError(f"chromium could not print {html_file} to PDF (exit {done.returncode}): {last[0]}")
        write_private_bytes(pdf_file, printed.read_bytes())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return pdf_file


def render(out: Path, fleet=None, readiness=None, pdf: bool = True) -> dict[str, Path]:
    """Write ``continuity-plan.html`` (and ``.pdf``) into ``out``; returns their paths."""
    from hotspare import access

    fleet = fleet or access.loaded_fleet()
    if readiness is None:
        from tasks.readiness import gather_readiness

        readiness = gather_readiness(fleet=fleet)
    out.mkdir(parents=True, exist_ok=True)
    html_file = out / "continuity-plan.html"
    write_private_bytes(html_file, render_html(plan_data(fleet, readiness)).encode("utf-8"))
    written = {"html": html_file}
    if pdf:
        written["pdf"] = print_pdf(html_file, out / "continuity-plan.pdf")
    return written
