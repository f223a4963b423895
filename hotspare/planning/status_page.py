"""The off-site emergency status page: static HTML and Atom feeds, rendered from facts.

Pure: the service records ``hotspare status`` shows (``hotspare/status.py``), incidents with
their timelines, each service's last drill, the customers and the emergency numbers go in; file
names and their text come out. The publisher (``tasks/notices.py``) uploads them to a web server
in another facility, so customers can read it while the fleet itself is down.

Two kinds of page, both in customer words only (no server, facility, address or check name, no
incident title, which probes and operators write for operators):

- the public page (``index.html``, ``feed.atom``): one overall sentence ("All systems
  operational"), the incidents customers were told of with their timeline in fixed sentences,
  and the emergency numbers; no service or customer name and no operator's note, so it tells
  nobody who the customers are;
- one page per customer (``c/<token>/``): only that customer's services and the incidents that
  touch them with the operators' public notes, a subscription form. ``token`` is an HMAC of the customer's name under a secret
  key (``planning/subscriptions.page_token``): knowing one customer's address tells nothing of
  another's, ``c/index.html`` is an empty page so the web server never lists the folder, and the
  pages ask for no referrer and no indexing.

Readable on a phone without JavaScript: a viewport meta tag, one column, CSS only. Only public
timeline entries appear: pages to on-call people and internal errors stay in the inventory. No
control character reaches any file (the templates' environment drops them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from hotspare.fleet.customer_schema import EmergencyNumber
from hotspare.planning.ages import age_text
from hotspare.planning.customer_text import one_line

INDEX = "index.html"
FEED = "feed.atom"
CUSTOMER_FOLDER = "c"
# Timeline kinds customers see, each as a fixed sentence: the internal texts (probe evidence with
# addresses and ports, paging notes, failover details) never reach the public page. An
# operator's note is public only when written for customers (``hotspare incident note --public``).
PUBLIC_KINDS = {
    "detection": "We detected a problem and are looking into it.",
    "acknowledgement": "An engineer is working on it.",
    "failover": "The service was moved to its standby copy in another data center.",
    "notice": "Customers of the affected services were informed by e-mail.",
}
PUBLIC_NOTE = "note"
RESOLVED_TEXT = "Resolved: everything works normally again."
ALL_WELL = "All systems operational"
# An incident that interrupts no service (a lost mirror, a full disk, a late copy): customer words
# that fit them all, and one card for all of them (``fold_quiet``).
QUIET_TITLE = "We are working on a problem; no service is interrupted"


@dataclass(frozen=True)
class Audience:
    """Whose page: a customer (their label, services and page token), or everybody (``None``)."""

    label: str
    services: tuple[str, ...]
    token: str


@dataclass(frozen=True)
class PageFacts:
    """Everything the pages show; ``generated_at`` is the publisher's clock (UTC)."""

    title: str
    page_url: str
    generated_at: datetime
    emergency_numbers: tuple[EmergencyNumber, ...]
    services: tuple[dict, ...]  # hotspare status records, each with "last_drill" (dict or None)
    incidents: tuple[dict, ...]  # get_incident dicts with "events" and "services"; open and recent resolutions
    customers: tuple[Audience, ...] = ()
    subscribe_url: str | None = None  # where the customer pages' subscription form posts


def render_status_pages(facts: PageFacts) -> dict[str, str]:
    """{path under the page folder: text}: the public page and feed, every customer's, and the
    empty ``c/index.html`` that keeps the customer folder from being listed."""
    files = render_page(facts, None)
    for customer in facts.customers:
        for name, text in render_page(facts, customer).items():
            files[f"{CUSTOMER_FOLDER}/{customer.token}/{name}"] = text
    files[f"{CUSTOMER_FOLDER}/{INDEX}"] = _environment().get_template("status_page/empty.html.j2").render() + "\n"
    return files


def render_page(facts: PageFacts, audience: Audience | None) -> dict[str, str]:
    """{file name: text} of one page and its feed, for everybody (``None``) or one customer."""
    base = facts.page_url if facts.page_url.endswith("/") else facts.page_url + "/"
    page_url = base + (f"{CUSTOMER_FOLDER}/{audience.token}/" if audience else "")
    incidents = fold_quiet(
        [
            incident_card(incident, facts.generated_at, audience)
            for incident in _ordered(facts.incidents)
            if audience is None or set(incident.get("services") or ()) & set(audience.services)
        ]
    )
    disrupted = {
        service
        for incident in facts.incidents
        if incident.get("status") != "resolved"
        for service in incident.get("services") or ()
    }
    services = [
        service_card(record, facts.generated_at, record.get("service") in disrupted)
        for record in facts.services
        if audience is not None and record.get("service") in audience.services
    ]
    context = {
        # One line: a display name or title with a line break would split the heading and the feed's title.
        "title": one_line(facts.title + (f" — {audience.label}" if audience else "")),
        "audience": audience,
        "page_url": page_url,
        "feed_id": page_url,
        "generated_iso": _iso(facts.generated_at),
        "generated_text": _text_time(facts.generated_at),
        "overall": overall(incidents, services, audience is not None),
        "emergency_numbers": [{"label": n.label, "phone": n.phone, "dial": _dial(n.phone)} for n in facts.emergency_numbers],
        "services": services,
        "incidents": incidents,
        "subscribe_url": facts.subscribe_url.rstrip("/") + "/subscribe" if audience and facts.subscribe_url else None,
    }
    templates = _environment()
    return {
        INDEX: templates.get_template("status_page/index.html.j2").render(context) + "\n",
        FEED: templates.get_template("status_page/feed.atom.j2").render(context) + "\n",
    }


def overall(incidents: list[dict], services: list[dict], own: bool = False) -> dict:
    """The one sentence at the top and its colour: all well, a minor problem, or a disruption.
    ``own``: a customer's page, which speaks of "your services"."""
    open_incidents = [incident for incident in incidents if incident["status"] != "resolved"]
    whose = "your services" if own else "services"
    if any(service["css"] == "bad" for service in services) or any(i["disruption"] for i in open_incidents):
        return {
            "text": f"Some of {whose} are disrupted" if own else "Some services are disrupted",
            "detail": "We are working on it; updates below.",
            "css": "bad",
        }
    if open_incidents or any(service["css"] == "warn" for service in services):
        return {
            "text": f"All {whose} are running",
            "detail": "We are working on a problem that does not interrupt them; updates below.",
            "css": "warn",
        }
    return {"text": ALL_WELL, "detail": "No known problem.", "css": "ok"}


def service_card(record: dict, now: datetime, in_open_incident: bool = False) -> dict:
    """A service in customer words: whether it answers, whether a verified copy protects it, and
    its last recovery drill. No server, facility or check name. ``in_open_incident``: an open
    incident made it unavailable (it reads disrupted until it runs from its standby copy)."""
    production = record.get("production") or {}
    state = record.get("state") or "unknown"
    if production.get("reachable") is False or state == "failing-over":
        status, css = "Disrupted: we are working on it.", "bad"
    elif state == "failed-over":
        status, css = "Operational, running from its standby copy in a second data center.", "ok"
    elif in_open_incident:
        status, css = "Disrupted: we are working on it.", "bad"
    else:
        status, css = "Operational.", "ok"
    age_hours = record.get("copy_age_hours")
    if state == "protected" and record.get("mirror"):
        protection = "Protected by a verified copy in a second data center"
        protection += f", taken {age_text(age_hours * 3600)} ago." if age_hours is not None else "."
        if record.get("rpo_state") in ("at risk", "violated"):
            protection += " The copy is older than we aim for; we are on it."
            css = "warn" if css == "ok" else css
    else:
        protection = "Its second copy is being rebuilt; backups continue."
        css = "warn" if css == "ok" else css
    return {
        "name": record.get("service"),
        "dns_name": record.get("dns_name"),
        "status": status,
        "protection": protection,
        "drill": drill_text(record.get("last_drill")),
        "css": css,
    }


def incident_card(incident: dict, now: datetime, audience: Audience | None = None) -> dict:
    """An incident in customer words: what it is, since when, which of the reader's services it
    touches (named only on a customer's own page), and its public updates, oldest first."""
    services = sorted(set(incident.get("services") or ()) & set(audience.services)) if audience else []
    disruption = bool(incident.get("services"))
    title = "Service disruption" if disruption else QUIET_TITLE
    if services:
        title += f": {', '.join(services)}"
    updates = public_updates(incident.get("events") or [], notes=audience is not None)
    if incident.get("status") == "resolved":
        if not updates or updates[-1]["text"] != RESOLVED_TEXT:
            moment = _parse(incident["resolved_at"])
            updates.append({"iso": _iso(moment), "text_time": _text_time(moment), "text": RESOLVED_TEXT})
        status_text = f"Resolved {_text_time(_parse(incident['resolved_at']))}"
    else:
        status_text = f"Since {_text_time(_parse(incident['opened_at']))}"
    times = [incident.get("resolved_at"), incident.get("opened_at")] + [update["iso"] for update in updates]
    latest = max((_parse(moment) for moment in times if moment), default=now)
    # ``reference``: the public name the publisher gives it (not the inventory's sequence).
    return {
        "id": incident.get("reference") or incident["id"],
        "title": title,
        "status": incident.get("status"),
        "disruption": disruption,
        "status_text": status_text,
        "updates": updates,
        "updated_iso": _iso(latest),
    }


def fold_quiet(cards: list[dict]) -> list[dict]:
    """One card for every open incident that interrupts no service, and one for the resolved ones:
    one condition across the fleet (every disk nearly full) would otherwise show one card per
    machine and count the hoster's servers for any reader. Disruptions keep a card each. ``cards``
    come open first, newest first; a folded open card keeps the oldest one's name and start."""
    folded: list[dict] = []
    groups: dict[bool, dict] = {}
    for card in cards:
        if card["disruption"]:
            folded.append(card)
            continue
        resolved = card["status"] == "resolved"
        group = groups.get(resolved)
        if group is None:
            groups[resolved] = dict(card, updates=list(card["updates"]))
            folded.append(groups[resolved])
            continue
        updates = sorted(group["updates"] + card["updates"], key=lambda update: update["iso"])
        group["updates"] = [
            update for index, update in enumerate(updates) if not index or update["text"] != updates[index - 1]["text"]
        ]
        group["updated_iso"] = max(group["updated_iso"], card["updated_iso"])
        if not resolved:  # older than the cards before it: its name and start stay while it is open
            group["id"], group["status_text"] = card["id"], card["status_text"]
    return folded


def affects_text(incident: dict) -> str:
    """Which services the incident made unavailable (``services``: recorded when it opened), for operators."""
    if incident.get("services"):
        return ", ".join(incident["services"])
    return "no service is down" if incident.get("impact") else "no named service"


def public_updates(events: list[dict], notes: bool = True) -> list[dict]:
    """The timeline entries customers may read, each with its time and sentence. ``notes``:
    operators' public notes too; they may name a service, so only the affected customers' own
    pages carry them, the page for everybody only the fixed sentences."""
    updates: list[dict] = []
    for event in events:
        kind, details = event.get("kind"), event.get("details") or {}
        if kind == PUBLIC_NOTE and details.get("resolved"):
            text = RESOLVED_TEXT
        elif kind == PUBLIC_NOTE and details.get("public") and notes:
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


def drill_text(drill: dict | None) -> str:
    """'2026-12-01: passed, service back in 42 s', or that none was recorded."""
    if not drill:
        return "none recorded yet"
    when = drill.get("finished") or drill.get("started")
    outcome = {"ok": "passed"}.get(drill.get("outcome") or "", drill.get("outcome") or "outcome unknown")
    text = f"{_parse(when).strftime('%Y-%m-%d') if when else 'date unknown'}: {outcome}"
    if drill.get("rto_seconds") is not None:
        text += f", service back in {age_text(drill['rto_seconds'])}"
    return text


def _ordered(incidents: tuple[dict, ...]) -> list[dict]:
    """Open incidents first (newest first), then resolved ones (newest first)."""
    return sorted(incidents, key=lambda i: (i.get("status") == "resolved", -int(i["id"])))


def _dial(phone: str) -> str:
    """The number for a tel: link (digits and a leading +)."""
    return ("+" if phone.strip().startswith("+") else "") + re.sub(r"\D", "", phone)


def _environment():
    from hotspare.planning.notices import environment

    return environment()


def _parse(moment) -> datetime:
    value = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return _parse(moment).astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text_time(moment: datetime) -> str:
    return _parse(moment).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
