"""Status page e-mail subscriptions: request, confirm, unsubscribe, and who gets a customer's notices.

The pure parts (tokens, the confirmation mail) are in ``planning/subscriptions.py``, the rows in
``inventory/subscriptions.py``; the confirmation mail goes through the same relay as the notices
(``adapters.smtp.send_one`` with the fleet's SmtpServer block). The HTTP side, where the
customer pages' form posts, is ``hotspare/subscription_webhook.py``.

The status page key (HMAC key of page addresses, incident references and unsubscribe links) is
one per fleet, in the ``StatusPageKey`` block the fleet names (``tasks/status_page_key.py``):
made on first use, moved there from the old ``$HOTSPARE_HOME/status-page.key`` where that
exists, so every worker and the subscription endpoint compute the same addresses. Losing or
replacing it moves every customer page to a new address (the next publish writes them) and
voids unsubscribe links already mailed: back the block up.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from hotspare.planning import subscriptions as plan
from tasks.status_page_key import status_page_key

log = logging.getLogger("hotspare.subscriptions")


def customer_pages(fleet, key: bytes | None = None):
    """Each customer's ``Audience`` (label, services, page token)."""
    from hotspare.planning.status_page import Audience

    key = key or status_page_key(fleet)
    from hotspare.planning.customer_text import one_line

    return tuple(
        Audience(one_line(customer.display_name or customer.name), tuple(customer.services), plan.page_token(key, customer.name))
        for customer in fleet.customer_notices.customers
    )


class Refused(ValueError):
    """A request the form cannot take: ``public`` is the fixed sentence the visitor reads, the
    text (``str``) the detail for the log. The public never sees an exception's own text."""

    def __init__(self, detail: str, public: str) -> None:
        super().__init__(detail)
        self.public = public


NOT_AN_ADDRESS = "That is not an e-mail address we can send to."
NO_SUBSCRIPTIONS = "This page takes no subscriptions."


@dataclass(frozen=True)
class Confirmation:
    """A confirmation mail to send: subscription ``number`` of ``customer`` at ``address``."""

    number: int
    customer: str
    address: str
    token: str  # the confirmation token itself (only its digest is stored)
    page: str


def page_urls(fleet, key: bytes | None = None) -> dict[str, str]:
    """Each customer's own status page address (customer name -> URL); empty without a status page."""
    section = fleet.customer_notices.status_page
    if section is None or not section.url:
        return {}
    key = key or status_page_key(fleet)
    return {
        customer.name: section.url.rstrip("/") + f"/c/{plan.page_token(key, customer.name)}/"
        for customer in fleet.customer_notices.customers
    }


def public_references(fleet, incident_ids, key: bytes | None = None) -> dict[int, str]:
    """The public name of each incident (``planning/subscriptions.incident_reference``)."""
    key = key or status_page_key(fleet)
    return {number: plan.incident_reference(key, number) for number in incident_ids}


def request_subscription(
    fleet,
    page: str,
    address: str,
    relay=None,
    client: str = "",
    limits=None,
    outbox: Callable[[Confirmation], bool] | None = None,
) -> str:
    """A visitor of page ``page`` asked for updates at ``address``: record it, have the
    confirmation mailed. Returns the sentence to show, the same whatever the address's history
    and whether a limit held the request back (each refusal is logged); a bad address or an
    unknown page is ``Refused``.

    ``limits`` (``planning.subscription_limits.RequestLimits``) bounds requests per ``client``
    (its network address) and confirmation mails overall. ``outbox`` takes the mail to send off
    the request path (False: full, logged and dropped), so a new address and a known one are
    answered alike and as fast; without one the mail is sent here.
    """
    from hotspare.inventory import subscriptions as rows

    if limits is not None:
        refusal = limits.allow_request(client, time.monotonic())
        if refusal:
            log.warning("subscription request refused (answered as accepted): %s", refusal)
            return plan.REQUEST_ANSWER
    address = (address or "").strip()
    problem = plan.address_problem(address)
    if problem:
        raise Refused(problem, NOT_AN_ADDRESS)
    key = status_page_key(fleet)
    customers = {customer.name: customer for customer in fleet.customer_notices.customers}
    name = plan.customer_of_page(key, page, list(customers))
    section = fleet.customer_notices.status_page
    if name is None or section is None or not section.subscribe_url:
        raise Refused("no customer page with that address takes subscriptions", NO_SUBSCRIPTIONS)
    token = secrets.token_urlsafe(24)
    number, due, why = rows.request(name, address, plan.token_digest(token))
    if number is None or not due:
        log.info("subscription %s (%s): no new confirmation mail: %s", number or "request", name, why)
        return plan.REQUEST_ANSWER
    if fleet.mail is None:
        log.error("subscription %s: the fleet file has no mail section; no confirmation mail sent", number)
        return plan.REQUEST_ANSWER
    if limits is not None:
        refusal = limits.allow_mail(time.monotonic())
        if refusal:
            log.warning("subscription %s (%s): no confirmation mail (answered as accepted): %s", number, name, refusal)
            return plan.REQUEST_ANSWER
    job = Confirmation(number, name, address, token, page)
    if outbox is None:
        send_confirmation(fleet, job, relay)
    elif not outbox(job):
        log.warning("subscription %s (%s): the confirmation queue is full; no mail sent", number, name)
    return plan.REQUEST_ANSWER


def send_confirmation(fleet, job: Confirmation, relay=None) -> None:
    """Compose and send one confirmation mail; failures are logged (the visitor was answered already)."""
    from hotspare.access import smtp_relay
    from hotspare.adapters.errors import HotspareError
    from hotspare.adapters.smtp import send_one
    from hotspare.inventory import subscriptions as rows
    from hotspare.inventory.models import utcnow
    from hotspare.planning.customer_text import one_line

    section = fleet.customer_notices.status_page
    customer = next((c for c in fleet.customer_notices.customers if c.name == job.customer), None)
    if section is None or not section.subscribe_url or fleet.mail is None or customer is None:
        log.error("subscription %s: the fleet no longer takes subscriptions for %s; no mail sent", job.number, job.customer)
        return
    label = one_line(customer.display_name or customer.name)  # a CR/LF would make the subject unsendable
    page_url = section.url.rstrip("/") + f"/c/{job.page}/"
    confirm_url = plan.links(section.subscribe_url, job.number, job.token, "")["confirm"]
    message = plan.confirmation_message(
        job.address, label, fleet.mail.sender, confirm_url, page_url, utcnow(), int(rows.CONFIRM_VALID.total_seconds() // 3600)
    )
    try:
        reply = send_one(relay or smtp_relay(fleet.mail.smtp_block), message, job.address, lambda: None)
    except HotspareError as error:
        log.error("subscription %s: confirmation mail not sent: %s", job.number, error)
        return
    log.info(
        "subscription %s (%s): confirmation mail %s (%d)",
        job.number,
        job.customer,
        "accepted" if reply.accepted else "refused",
        reply.code,
    )


def confirm_subscription(token: str):
    """The subscription the mailed ``token`` confirms (None: unknown, spent or expired)."""
    from hotspare.inventory import subscriptions as rows

    if not plan.CONFIRM_TOKEN.match(token or ""):
        return None
    row = rows.confirm(plan.token_digest(token))
    if row is not None:
        log.info("subscription %s (%s) confirmed", row.id, row.customer)
    return row


def end_subscription(fleet, subscription: int, token: str) -> bool:
    """Unsubscribe when ``token`` is that subscription's unsubscribe token."""
    from hotspare.inventory import subscriptions as rows

    row = rows.get(subscription)
    if row is None or not plan.unsubscribe_matches(status_page_key(fleet), subscription, row.address, token):
        return False
    rows.unsubscribe(subscription)
    log.info("subscription %s (%s) ended by its unsubscribe link", subscription, row.customer)
    return True


def with_subscribers(section):
    """The ``customer_notices`` section with each customer's confirmed subscribers as contacts
    (named "Subscriber"), so a notice reaches them exactly as it reaches the customer's contacts."""
    from hotspare.fleet.customer_schema import CustomerContact
    from hotspare.inventory import subscriptions as rows

    by_customer: dict[str, list[str]] = {}
    for row in rows.confirmed():
        by_customer.setdefault(row.customer, []).append(row.address)
    if not by_customer:
        return section
    customers = []
    for customer in section.customers:
        known = {contact.email.lower() for contact in customer.contacts}
        extra = [
            CustomerContact(name="Subscriber", email=address)
            for address in by_customer.get(customer.name, [])
            if address not in known
        ]
        customers.append(customer.model_copy(update={"contacts": [*customer.contacts, *extra]}) if extra else customer)
    return section.model_copy(update={"customers": customers})


def unsubscribe_link(fleet, address: str) -> str | None:
    """The unsubscribe link of a confirmed subscriber ``address`` (any customer's), else None."""
    from hotspare.inventory import subscriptions as rows

    section = fleet.customer_notices.status_page
    if section is None or not section.subscribe_url:
        return None
    for row in rows.confirmed():
        if row.address == address.lower():
            assert row.id is not None  # a stored row
            return plan.links(
                section.subscribe_url, row.id, None, plan.unsubscribe_token(status_page_key(fleet), row.id, row.address)
            )["unsubscribe"]
    return None
