"""Sending pages and announcing incidents: the executing side of escalation.

``send_page`` carries one planned page (``planning/escalation.Page``) through the phone
providers in the fleet's order (or the mail relay) and records it in the incident's timeline:
the provider that carried it, its id there, and each provider that failed first (a fallback is
visible in the incident). A page that no provider carried is an ``error`` entry; paging never
raises into its caller (a failover must not fail because a phone did not ring).

The incident events (``hotspare.incident.opened|acknowledged|resolved``) are emitted by
``inventory/incidents.announce`` beside the records they announce.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from hotspare.adapters import phone
from hotspare.fleet.values import e164
from hotspare.inventory import incidents, pages
from tasks import phone_offers

log = logging.getLogger(__name__)


def load_providers(fleet) -> tuple[list[phone.Provider], list[str]]:
    """The fleet's phone providers in order, and a sentence per block that could not be loaded."""
    from blocks.credentials import PhoneProvider

    providers, problems = [], []
    for name in fleet.incidents.phone_providers:
        try:
            block = PhoneProvider.load(name)
        except Exception as error:  # a missing block must not stop the other providers
            problems.append(
                f"PhoneProvider block {name!r} could not be loaded ({type(error).__name__}: {error}); create it in the Prefect UI"
            )
            continue
        providers.append(
            phone.Provider(name, block.base_url, block.account_sid, block.auth_token.get_secret_value(), block.from_number)
        )
    return providers, problems


def call_acknowledgement_url(fleet, incident_id: int, contact: str, provider: str) -> str | None:
    base = fleet.incidents.acknowledgement_url
    if not base:
        return None
    query = urlencode({"incident": incident_id, "contact": contact, "provider": provider})
    return f"{base.rstrip('/')}/hotspare/acknowledge/call?{query}"


def sms_acknowledgement_url(fleet, provider: str) -> str | None:
    base = fleet.incidents.acknowledgement_url
    return f"{base.rstrip('/')}/hotspare/acknowledge/sms?{urlencode({'provider': provider})}" if base else None


def page_text(incident: dict) -> str:
    where = ", ".join(incident["servers"] + incident["services"]) or "the fleet"
    return (
        f"hotspare emergency, incident {incident['id']}, category {incident['category']} "
        f"({incident['category_name']}), {incident['severity']} severity: {incident['title']} ({where})."
    )


def send_page(fleet, incident: dict, page, providers: list[phone.Provider]) -> dict:
    """Send one page and record it; returns the timeline entry's details. Never raises."""
    details = {
        "action": page.action,
        "target": page.target,
        "address": page.address,
        "digits": page.digits,
        "round": page.round,
        "step": page.step,
    }
    offered: list = []  # the failover plans this page offers to an approver
    try:
        if page.action == "email":
            _send_email(fleet, incident, page)
            details["provider"] = "mail"
        else:
            offered = phone_offers.to_offer(fleet, incident, page)
            delivery = phone.deliver(providers, lambda provider: _send_phone(fleet, incident, page, provider, offered))
            details |= {
                "provider": delivery.provider,
                "sid": delivery.sid,
                "status": delivery.status,
                "failed_providers": list(delivery.failed_providers),
            }
            for failure in delivery.failed_providers:
                incidents.add_event(
                    incident["id"],
                    "error",
                    f"fallback: {failure}; used {delivery.provider}",
                    details={"provider_failure": failure, "used": delivery.provider},
                )
    except Exception as error:  # paging is a side channel: record, move on to the next step
        details["error"] = str(error)
        incidents.add_event(incident["id"], "error", f"could not {page.describe()}: {error}", details=details)
        log.error("could not %s: %s", page.describe(), error)
        return details
    via = f" via {details['provider']}" + (" (fallback)" if details.get("failed_providers") else "")
    incidents.add_event(incident["id"], "page", f"{page.describe()}{via}", details=details)
    if page.action != "email":  # its SID tells the acknowledgement webhook what a reply answers
        number = _e164_or_as_written(page.address)
        pages.record_page(incident["id"], details["provider"], details["sid"], page.action, page.target, number)
        phone_offers.record(offered, incident["id"], details["provider"], details["sid"], page.action, page.target, number)
        if offered:
            details["offered_approvals"] = [{"service": item.service, "digest": item.digest} for item in offered]
    return details


def _e164_or_as_written(number: str) -> str:
    try:
        return e164(number)
    except ValueError:  # the fleet check refuses such numbers; a page still went out
        return number


def _send_phone(fleet, incident: dict, page, provider: phone.Provider, offered: list) -> dict:
    text = page_text(incident)
    if page.action == "sms":
        return phone.send_sms(
            provider, page.address, f"{text} Reply ACK {incident['id']} to acknowledge." + phone_offers.sms_words(offered)
        )
    twiml = phone.call_twiml(
        text, call_acknowledgement_url(fleet, incident["id"], page.target, provider.name), phone_offers.spoken(offered)
    )
    return phone.place_call(provider, page.address, twiml, send_digits=page.digits)


def _send_email(fleet, incident: dict, page) -> None:
    from hotspare.access import smtp_relay
    from hotspare.adapters import smtp
    from hotspare.adapters.errors import MissingConfiguration

    if fleet.mail is None:
        raise MissingConfiguration("the fleet file has no mail section: e-mail steps need its relay")
    message = smtp.compose(
        fleet.mail.sender,
        [page.address],
        f"[hotspare incident {incident['id']}] {incident['title']}",
        page_text(incident) + f"\nAcknowledge with: hotspare incident ack {incident['id']} --by '{page.target}'\n",
    )
    smtp.send(smtp_relay(fleet.mail.smtp_block), message)
