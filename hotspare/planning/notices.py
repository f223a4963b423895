"""Customer notices for an incident: who gets one, what it says, and whether it may go out now.

Pure: an incident (the dict ``inventory.incidents.get_incident`` returns), the fleet's
``customer_notices`` section and which server each service runs on go in; a ``NoticePlan`` and
ready-to-send messages come out. No network, no clock, no Prefect.

Whom to tell was decided when the incident opened: its ``customer_services`` (the services whose
customers it affects, recorded with the incident and kept), not where the services run when the
notice is composed, so a failover right after the opening changes what the notice says ("it runs
again from its standby copy since …"), never whether it goes. An internal incident (record-only,
a redundant part) tells nobody until an operator publishes it. ``NoticePlan.attention`` marks a
notice that customers should get but that does not go out now (held for approval, nobody
configured to receive it): the flow ends in a state operators see.

Every recipient gets one message of their own, with a Message-ID derived from the notice and the
address (``message_id``): a sender that resumes after a crash, an operator reading the relay's
log, or a mail client can all recognise the same notice to the same person.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from functools import lru_cache
from pathlib import Path

import jinja2
import markupsafe

from hotspare.fleet.customer_schema import CustomerNotices, NoticeAction
from hotspare.planning.customer_text import one_line, published
from hotspare.planning.replication import Decision

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
KINDS = ("opened", "resolved")


@dataclass(frozen=True)
class Recipient:
    """One address and everything it is told about: its customers and their affected services."""

    email: str
    name: str
    customers: tuple[str, ...]
    services: tuple[str, ...]
    pages: tuple[str, ...] = ()  # the addresses of their customers' own status pages


@dataclass(frozen=True)
class NoticePlan:
    """One notice (an incident's opening or resolution) to every contact of an affected service."""

    notice_id: str
    incident_id: int
    kind: str
    category: int
    action: NoticeAction
    subject: str
    services: tuple[str, ...]
    recipients: tuple[Recipient, ...]
    decision: Decision  # may it be sent now (without a further approval)?
    attention: bool = False  # customers are affected but this notice does not go out now
    recovered: tuple[tuple[str, str], ...] = ()  # (service, "runs again from its standby copy since …")

    def preview(self) -> str:
        """A short text for operators: what would be sent to whom, and whether it goes now."""
        lines = [
            f"notice {self.notice_id}: {self.subject}",
            f"  affected services: {', '.join(self.services) or 'none'}",
            f"  policy for category {self.category}: {self.action.value}",
            f"  decision: {'send' if self.decision.go else 'hold'}: {self.decision.reason}"
            + ("  (needs an operator)" if self.attention else ""),
            f"  recipients ({len(self.recipients)}):",
        ]
        lines += [f"    {r.name} <{r.email}>  ({', '.join(r.customers)}: {', '.join(r.services)})" for r in self.recipients]
        lines += [f"  {sentence}" for _service, sentence in self.recovered]
        return "\n".join(lines)


def notice_id(incident_id: int, kind: str) -> str:
    """The notice's stable name: one opening notice and one resolution notice per incident."""
    if kind not in KINDS:
        raise ValueError(f"notice kind {kind!r} is not one of: {', '.join(KINDS)}")
    return f"incident-{incident_id}-{kind}"


def message_id(notice: str, email: str, domain: str) -> str:
    """Message-ID of ``notice`` to ``email``: the same on every attempt, different per recipient."""
    digest = hashlib.sha256(f"{notice}\n{email.strip().lower()}".encode()).hexdigest()[:24]
    return f"<{notice}.{digest}@{domain or 'hotspare.invalid'}>"


def customer_services(incident: dict, active_servers: dict[str, str], approved: bool = False) -> tuple[str, ...]:
    """Services whose customers the incident's notices go to.

    Recorded at opening (``impact``): the services it made unavailable. An operator who sends
    a notice anyway (``approved``) of an incident that affected no customer (a part, a late
    copy) reaches the customers of the services it put at risk in production. An incident from
    before impacts were recorded falls back to ``affected_services``."""
    if not incident.get("impact_recorded", "impact" in incident):
        return affected_services(incident, active_servers)
    told = set(incident.get("customer_services") or ())
    if approved and not told:
        told = {item["service"] for item in incident["impact"] if item["role"] in ("production", "service")}
    return tuple(sorted(told))


def recovered_since(
    incident: dict, services: tuple[str, ...], active_servers: dict[str, str], moved_at: dict[str, str]
) -> tuple[tuple[str, str], ...]:
    """For each told service that runs elsewhere than where the outage hit it, a sentence saying
    since when it runs again (an opening notice sent after the failover says so)."""
    where = {
        item["service"]: item["server"] for item in incident.get("impact") or () if item["role"] == "production" and item["tell"]
    }
    sentences = []
    for service in services:
        now = active_servers.get(service)
        if service not in where or not now or now == where[service]:
            continue
        since = f" since {_readable(moved_at[service])}" if moved_at.get(service) else ""
        # Customer words: the standby's server name is the operators' (``preview`` shows it apart).
        sentence = (
            f"{service} was unavailable from {_readable(incident.get('opened_at'))}; "
            f"it runs again from its standby copy in a second data center{since}."
        )
        sentences.append((service, sentence))
    return tuple(sentences)


def affected_services(incident: dict, active_servers: dict[str, str]) -> tuple[str, ...]:
    """Services the incident names, plus those whose active server it names (a lost server
    takes every service running on it down). For incidents without a recorded impact."""
    servers = set(incident.get("servers") or ())
    named = set(incident.get("services") or ())
    named |= {service for service, server in active_servers.items() if server in servers}
    return tuple(sorted(named))


def recipients_for(
    section: CustomerNotices, services: tuple[str, ...], page_urls: dict[str, str] | None = None
) -> tuple[Recipient, ...]:
    """Every contact of a customer owning an affected service, once per address (case-insensitive);
    ``page_urls`` (customer name -> its own status page) gives each the pages of its customers."""
    gathered: dict[str, dict] = {}
    for customer in section.customers:
        owned = [service for service in customer.services if service in services]
        if not owned:
            continue
        label = one_line(customer.display_name or customer.name)  # printed in every message
        for contact in customer.contacts:
            entry = gathered.setdefault(
                contact.email.strip().lower(),
                {"email": contact.email.strip(), "name": one_line(contact.name), "customers": [], "services": [], "pages": []},
            )
            if label not in entry["customers"]:
                entry["customers"].append(label)
            page = (page_urls or {}).get(customer.name)
            if page and page not in entry["pages"]:
                entry["pages"].append(page)
            entry["services"] += [service for service in owned if service not in entry["services"]]
    return tuple(
        Recipient(e["email"], e["name"], tuple(e["customers"]), tuple(sorted(e["services"])), tuple(e["pages"]))
        for _, e in sorted(gathered.items())
    )


def plan_notice(
    incident: dict,
    kind: str,
    section: CustomerNotices,
    active_servers: dict[str, str],
    approved: bool = False,
    moved_at: dict[str, str] | None = None,
    page_urls: dict[str, str] | None = None,
) -> NoticePlan:
    """The notice of ``incident``'s opening or resolution and whether it may be sent now.

    ``approved``: an operator approved this notice (``hotspare notice send --yes``), which
    overrides a policy of preview-and-approve or none. ``active_servers`` and ``moved_at``
    (service -> when it moved to that server, ISO 8601) say where the told services run now.
    ``page_urls`` (customer name -> its own status page): each message links its reader's page.
    """
    notice = notice_id(incident["id"], kind)
    category = int(incident["category"])
    action = section.action_for(category)
    services = customer_services(incident, active_servers, approved)
    recipients = recipients_for(section, services, page_urls)
    subject = _subject(incident, kind, services)
    recovered = recovered_since(incident, services, active_servers, moved_at or {}) if kind == "opened" else ()
    plan = dict(
        notice_id=notice,
        incident_id=incident["id"],
        kind=kind,
        category=category,
        action=action,
        subject=subject,
        services=services,
        recipients=recipients,
        recovered=recovered,
    )
    decision, attention = _decide(incident, kind, action, services, recipients, approved)
    return NoticePlan(**plan, decision=decision, attention=attention)


def _decide(incident, kind, action, services, recipients, approved) -> tuple[Decision, bool]:
    """Whether the notice goes now, and whether an operator must look (customers affected, not told)."""
    number = f"incident {incident['id']}"
    if kind == "resolved" and incident.get("status") != "resolved":
        return Decision(False, f"{number} is {incident.get('status')}, not resolved: no resolution notice yet"), False
    if incident.get("internal"):
        return Decision(
            False,
            f"{number} is internal (recorded only, or a redundant part): customers are not told "
            f"unless an operator publishes it (`hotspare incident publish {incident['id']} --by NAME`)",
        ), False
    if not services:
        if incident.get("impact"):
            held = "; ".join(f"{item['service']} ({item['role']}: {item['effect']})" for item in incident["impact"])
            return Decision(False, f"{number} made no service unavailable ({held}): no customer to tell"), False
        return Decision(False, f"{number} names no service and no server running one: nobody to tell"), False
    if not recipients:
        return Decision(
            False,
            f"no customer in the fleet file owns {', '.join(services)}: nobody to tell "
            "(add them under customer_notices.customers)",
        ), True
    if approved:
        return Decision(True, f"approved by an operator: {len(recipients)} recipients"), False
    if incident.get("severity") == "low":
        # A degraded part or a late copy is the operators' business, not an outage customers see.
        return Decision(
            False,
            f"{number} is low severity: customers are told of outages only "
            f"(`hotspare notice send {incident['id']} --kind {kind} --yes` sends one anyway)",
        ), False
    if action is NoticeAction.send:
        return Decision(True, f"category {incident['category']} notices go out at once: {len(recipients)} recipients"), False
    if action is NoticeAction.approve:
        return Decision(
            False,
            f"category {incident['category']} notices wait for approval: check the preview, "
            f"then `hotspare notice send {incident['id']} --kind {kind} --yes`",
        ), True
    # The fleet's policy for this category is deliberate: not sending is what the operators chose.
    return Decision(
        False,
        f"category {incident['category']} incidents send no customer notice by policy "
        f"(`hotspare notice send {incident['id']} --kind {kind} --yes` sends one anyway)",
    ), False


def _subject(incident: dict, kind: str, services: tuple[str, ...]) -> str:
    """The operators' subject (preview, notice records): every told service and the internal title."""
    names = ", ".join(services) or "our services"
    title = one_line(incident["title"])  # a CR/LF in a title would make the header unsendable
    if kind == "resolved":
        return f"[Resolved] {names}: {title}"
    return f"[Incident] {names}: {title}"


def customer_subject(plan: NoticePlan, recipient: Recipient) -> str:
    """The subject one recipient reads: only their own services, in customer words. The internal
    title names servers and checks, and the other customers' services are not theirs to know."""
    names = ", ".join(recipient.services) or "your services"
    if plan.kind == "resolved":
        return one_line(f"[Resolved] {names}: service disruption resolved")
    return one_line(f"[Incident] {names}: service disruption")


def public_text(incident: dict) -> str | None:
    """The newest text an operator wrote for customers (``hotspare incident note --public``), one line."""
    for event in reversed(incident.get("events") or []):
        details = event.get("details") or {}
        if event.get("kind") == "note" and details.get("public") and not details.get("resolved") and event.get("text"):
            return one_line(event["text"])
    return None


def render_message(
    plan: NoticePlan, recipient: Recipient, incident: dict, section: CustomerNotices, sender: str, date: datetime
) -> EmailMessage:
    """The message of ``plan`` to ``recipient`` with its headers; ``date`` is when it is composed."""
    domain = sender.rpartition("@")[2]
    message = EmailMessage()
    message["From"] = sender
    # Folded again here: a name or subject with a CR/LF would make the header unsendable.
    message["To"] = formataddr((one_line(recipient.name), recipient.email))
    message["Subject"] = customer_subject(plan, recipient)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id(plan.notice_id, recipient.email, domain)
    # RFC 3834: an automatic message; auto-responders (vacation replies) must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["List-Unsubscribe"] = f"<{section.unsubscribe or f'mailto:{sender}?subject=unsubscribe'}>"
    message["X-Hotspare-Notice"] = plan.notice_id
    message.set_content(render_body(plan, recipient, incident, section))
    return message


def render_body(plan: NoticePlan, recipient: Recipient, incident: dict, section: CustomerNotices) -> str:
    """The plain-text body from ``templates/notices/<kind>.txt.j2``."""
    # Only what the customer may read: never the internal title, servers or checks.
    facts = {
        "id": incident["id"],
        "opened_at_text": _readable(incident.get("opened_at")),
        "resolved_at_text": _readable(incident.get("resolved_at")),
        "what": public_text(incident) or "Service disruption",
        # the public name (``planning/subscriptions.incident_reference``), never the inventory's number
        "reference": incident.get("reference"),
    }
    recovered = [sentence for service, sentence in plan.recovered if service in recipient.services]
    return (
        _environment()
        .get_template(f"notices/{plan.kind}.txt.j2")
        .render(
            recipient=recipient,
            incident=facts,
            emergency_numbers=section.emergency_numbers,
            recovered=recovered,
            status_page_url=", ".join(recipient.pages)
            if recipient.pages
            else (section.status_page.url if section.status_page else None),
        )
        + "\n"
    )


def _readable(iso: str | None) -> str:
    """'2026-05-01 14:03 UTC' from an ISO 8601 UTC time (the incident dicts' format)."""
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # Plain-text mail is not escaped; HTML and the Atom feed are (customer-visible titles). Every
    # printed value loses its control characters first (``customer_text.published``): one of
    # them would make the feed invalid XML.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        autoescape=lambda name: bool(name) and not name.endswith(".txt.j2"),
        finalize=_published,
    )


def _published(value):
    if isinstance(value, markupsafe.Markup):
        return markupsafe.Markup(published(str(value)))
    return published(value) if isinstance(value, str) else value


def environment() -> jinja2.Environment:
    """The templates' environment (shared with the status page)."""
    return _environment()
