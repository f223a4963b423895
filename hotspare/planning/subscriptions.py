"""Status page addresses and e-mail subscriptions: tokens and messages. Pure (no network, no clock).

A customer's page lives at ``c/<page_token>/``: an HMAC-SHA256 of the customer's name under the
status page key (a secret only the orchestrator holds), 128 bits in base 32. Without the key,
one customer's address says nothing of another's; the key never leaves the orchestrator.

A subscription is double opt-in: the form on a customer's page asks for a confirmation mail,
whose random token (stored only as its SHA-256) confirms it; nobody else's address is ever
shown, and every answer to a request is the same sentence, so the form tells nobody whether an
address was subscribed. Each confirmed subscription can be ended by its unsubscribe link, an
HMAC of the subscription's number and address under the same key (domain-separated), so every
notice can carry it without the inventory storing it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from hotspare.planning.customer_text import one_line

ADDRESS = re.compile(r"^[^@\s<>\"(),;:\\\[\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}$")
TOKEN = re.compile(r"^[a-z2-7]{26}$")
CONFIRM_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
KEY_TEXT = re.compile(r"^[0-9a-fA-F]{64}$")  # the status page key as stored: 32 bytes in hex
REQUEST_ANSWER = (
    "Thank you. If the address can receive mail, a confirmation message is on its way: "
    "follow its link to start receiving updates."
)


def key_text(text: str) -> str | None:
    """The status page key ``text`` holds (64 hex digits, surrounding whitespace ignored) in lower
    case, as the block stores it; None when it holds none. The same digits in either case are
    the same 32 bytes, so the same page addresses."""
    text = text.strip()
    return text.lower() if KEY_TEXT.match(text) else None


def _mac(key: bytes, purpose: str, text: str) -> bytes:
    return hmac.new(key, f"{purpose}\0{text}".encode(), hashlib.sha256).digest()


def page_token(key: bytes, customer: str) -> str:
    """The unguessable folder name of ``customer``'s page (26 lower-case base-32 characters)."""
    return base64.b32encode(_mac(key, "status-page", customer)[:16]).decode().rstrip("=").lower()


def incident_reference(key: bytes, incident_id: int) -> str:
    """The public name of an incident (8 upper-case base-32 characters): stable, but not the
    inventory's sequence, whose gaps would tell outsiders how many incidents stayed internal."""
    return base64.b32encode(_mac(key, "incident", str(incident_id))[:5]).decode()


def customer_of_page(key: bytes, token: str, customers: list[str]) -> str | None:
    """The customer whose page ``token`` names, compared in constant time; None for any other."""
    if not TOKEN.match(token or ""):
        return None
    for customer in customers:
        if hmac.compare_digest(page_token(key, customer), token):
            return customer
    return None


def unsubscribe_token(key: bytes, subscription: int, address: str) -> str:
    return base64.urlsafe_b64encode(_mac(key, "unsubscribe", f"{subscription}:{address.lower()}")[:18]).decode()


def unsubscribe_matches(key: bytes, subscription: int, address: str, token: str) -> bool:
    return hmac.compare_digest(unsubscribe_token(key, subscription, address), token or "")


def token_digest(token: str) -> str:
    """What the inventory keeps of a confirmation token."""
    return hashlib.sha256(token.encode()).hexdigest()


def address_problem(address: str) -> str | None:
    """Why ``address`` is not one we mail, or None."""
    if not address or len(address) > 254:
        return "an e-mail address of at most 254 characters is needed"
    if not ADDRESS.match(address):
        return "that is not an e-mail address (name@example.com)"
    return None


def links(base_url: str, subscription: int, confirm_token: str | None, unsubscribe: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    found = {"unsubscribe": f"{base}/unsubscribe?s={subscription}&t={unsubscribe}"}
    if confirm_token:
        found["confirm"] = f"{base}/confirm?t={confirm_token}"
    return found


def confirmation_message(
    address: str, customer_label: str, sender: str, confirm_url: str, page_url: str, date: datetime, valid_hours: int
) -> EmailMessage:
    """The double opt-in mail: the link that confirms, and what happens if nobody follows it."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = address
    customer_label = one_line(customer_label)  # printed in the subject: one line, no control character
    message["Subject"] = f"Confirm status updates for {customer_label}"
    message["Date"] = format_datetime(date)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(
        f"Hello,\n\nsomebody asked to send incident updates for {customer_label} to this address.\n"
        f"To confirm, open this link within {valid_hours} hours and press Confirm:\n\n  {confirm_url}\n\n"
        "If it was not you, ignore this message: nothing is sent to you without the confirmation.\n"
        f"The status page: {page_url}\n"
    )
    return message
