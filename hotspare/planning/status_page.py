"""The off-site emergency status page: static HTML and an Atom feed, rendered from facts.

Pure: the service records ``hotspare status`` shows (``hotspare/status.py``), incidents with
their timelines, each service's last drill and the emergency numbers go in; file names and
their text come out. The publisher (``tasks/status_page.py``) uploads them to a web server in
another facility, so customers can read it while the fleet itself is down.

Readable on a phone without JavaScript: a viewport meta tag, one column, CSS only. Only public
timeline entries appear: pages to on-call people and internal errors stay in the inventory.
No control character reaches either file (the templates' environment drops them, titles are one
line: ``customer_text``), so the feed stays well-formed XML whatever a title or note holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from hotspare.fleet.customer_schema import EmergencyNumber
from hotspare.planning.customer_text import one_line
from hotspare.planning.notices import environment

INDEX = "index.html"
FEED = "feed.atom"
# Timeline kinds customers see, each as a fixed sentence: the internal texts (probe evidence with
# addresses and ports, paging notes, failover details) never reach the public page. An
# operator's note is public only when written for customers (``hotspare incident note --public``).
PUBLIC_KINDS = {
    "detection": "We detected a problem and are looking into it.",
    "acknowledgement": "An engineer is working on it.",
    "failover": "The service was moved to its standby server in another data center.",
    "notice": "Customers of the affected services were informed by e-mail.",
}
PUBLIC_NOTE = "note"


@dataclass(frozen=True)
class PageFacts:
    """Everything the page shows; ``generated_at`` is the publisher's clock (UTC)."""

    title: str
    page_url: str
    generated_at: datetime
    emergency_numbers: tuple[EmergencyNumber, ...]
    services: tuple[dict, ...]  # hotspare status records, each with "last_drill" (dict or None)
    incidents: tuple[dict, ...]  # get_incident dicts with "events"; open ones and recent resolutions


def render_status_page(facts: PageFacts) -> dict[str, str]:
    """{file name: text} for the page and its feed."""
    context = {
        "title": facts.title,
        "page_url": facts.page_url if facts.page_url.endswith("/") else facts.page_url + "/",
        "feed_id": facts.page_url,
        "generated_iso": _iso(facts.generated_at),
        "generated_text": _text_time(facts.generated_at),
        "emergency_numbers": [{"label": n.label, "phone": n.phone, "dial": _dial(n.phone)}
                              for n in facts.emergency_numbers],
        "services": [service_card(record) for record in facts.services],
        "incidents": [incident_card(incident, facts.generated_at) for incident in _ordered(facts.incidents)],
    }
    templates = environment()
    return {
        INDEX: templates.get_template("status_page/index.html.j2").render(context) + "\n",
        FEED: templates.get_template("status_page/feed.atom.j2").render(context) + "\n",
    }


def service_card(record: dict) -> dict:
    """Where the service runs, whether a verified copy protects it, and its last drill."""
    production, mirror = record.get("production") or {}, record.get("mirror") or {}
    runs_on = _server_text(production)
    state = record.get("state") or "unknown"
    if production.get("reachable") is False:
        runs_on += " — not answering"
    protected = state == "protected" and bool(mirror)
    if protected:
        age = record.get("copy_age_hours")
        protection = f"Protected: copy on {_server_text(mirror)}" + (f", {age:.1f} h old." if age is not None else ".")
        if record.get("rpo_state") in ("at risk", "violated"):
            protection += f" Copy age {record['rpo_state']}."
    else:
        protection = f"NOT protected right now ({state.replace('-', ' ')})."
    bad = production.get("reachable") is False or state in ("failing-over", "unprotected")
    css = "bad" if bad else ("ok" if protected and record.get("rpo_state") in (None, "ok") else "warn")
    return {"name": record.get("service"), "dns_name": record.get("dns_name"), "runs_on": runs_on,
            "protection": protection, "drill": _drill_text(record.get("last_drill")), "css": css}


def incident_card(incident: dict, now: datetime) -> dict:
    """An incident's status line and its public updates, oldest first."""
    updates = public_updates(incident.get("events") or [])
    if incident.get("status") == "resolved":
        status_text = f"resolved {_text_time(_parse(incident['resolved_at']))}"
    else:
        status_text = f"{incident.get('status')} since {_text_time(_parse(incident['opened_at']))}"
    times = [incident.get("resolved_at"), incident.get("opened_at")] + [update["iso"] for update in updates]
    latest = max((_parse(moment) for moment in times if moment), default=now)
    return {"id": incident["id"], "title": one_line(incident["title"]), "status": incident.get("status"),
            "status_text": status_text, "services": incident.get("services") or [],
            "affects": affects_text(incident),
            "updates": updates, "updated_iso": _iso(latest)}


def affects_text(incident: dict) -> str:
    """Which services the incident made unavailable (``services``: recorded when it opened)."""
    if incident.get("services"):
        return ", ".join(incident["services"])
    return "no service is down" if incident.get("impact") else "no named service"


def public_updates(events: list[dict]) -> list[dict]:
    """The timeline entries customers may read, each with its time and sentence."""
    updates = []
    for event in events:
        kind = event.get("kind")
        if kind == PUBLIC_NOTE and (event.get("details") or {}).get("public"):
            text = event.get("text") or ""
        elif kind in PUBLIC_KINDS:
            text = PUBLIC_KINDS[kind]
        else:
            continue
        if updates and updates[-1]["text"] == text:
            continue  # folded detections repeat themselves
        moment = _parse(event["at"])
        updates.append({"iso": _iso(moment), "text_time": _text_time(moment), "text": text})
    return updates


def _ordered(incidents: tuple[dict, ...]) -> list[dict]:
    """Open incidents first (newest first), then resolved ones (newest first)."""
    return sorted(incidents, key=lambda i: (i.get("status") == "resolved", -int(i["id"])))


def _drill_text(drill: dict | None) -> str:
    if not drill:
        return "no drill recorded"
    when = drill.get("finished") or drill.get("started")
    text = f"{_text_time(_parse(when)) if when else 'unknown time'}, {drill.get('outcome', '?')}"
    if drill.get("rto_seconds") is not None:
        text += f", service back in {drill['rto_seconds']:.0f} s"
    return text


def _server_text(server: dict) -> str:
    if not server:
        return "no server"
    return f"{server.get('name')} ({server.get('facility')})" if server.get("facility") else str(server.get("name"))


def _dial(phone: str) -> str:
    """The number for a tel: link (digits and a leading +)."""
    return ("+" if phone.strip().startswith("+") else "") + re.sub(r"\D", "", phone)


def _parse(moment) -> datetime:
    if isinstance(moment, datetime):
        value = moment
    else:
        value = datetime.fromisoformat(str(moment))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return _parse(moment).astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text_time(moment: datetime) -> str:
    return _parse(moment).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
