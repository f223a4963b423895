"""The fleet file's ``customer_notices`` section: who is told what when an incident hits them.

Customers own services; their contacts receive the blast e-mail when an incident affects one of
those services. The section also says which emergency numbers to publish, whether a notice of
each incident category goes out at once or waits for an operator's approval, how fast the relay
may be fed, and where the off-site emergency status page is published.
"""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from hotspare.fleet.base import AbsolutePath, Name, Strict
from hotspare.fleet.values import EmailAddress, PhoneNumber, Url

EMAIL_PATTERN = r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$"


class CustomerContact(Strict):
    name: str = Field(min_length=1, description="Person or team the notice greets.")
    email: EmailAddress = Field(pattern=EMAIL_PATTERN, description="Address the notice goes to.")


class Customer(Strict):
    name: Name = Field(description="Customer name, unique in the fleet.")
    display_name: str = Field(default="", description="Name shown in notices (default: name).")
    contacts: list[CustomerContact] = Field(min_length=1, description="Who receives the customer's notices.")
    services: list[Name] = Field(min_length=1, description="Services (fleet names) the customer owns.")


class EmergencyNumber(Strict):
    label: str = Field(min_length=1, description="What the number is for, e.g. 'Emergency hotline (24/7)'.")
    phone: PhoneNumber = Field(description="Number as customers dial it.")


class NoticeAction(str, Enum):
    """What happens with a notice of an incident category."""

    send = "send"  # at once, no operator in the loop
    approve = "approve"  # previewed; sent when an operator approves (``hotspare notice send --yes``)
    none = "none"  # never sent automatically


class NoticeRule(Strict):
    category: int = Field(ge=1, le=9, description="Incident category (1 is the most serious).")
    action: NoticeAction = Field(description="send: at once; approve: preview first, send on approval; none.")


class StatusPage(Strict):
    server: Name = Field(description="Web server (fleet server name) that serves the page, off site.")
    folder: AbsolutePath = Field(description="Folder on that server the page is written to (over SFTP).")
    url: Url = Field(description="Public URL of the page (linked from notices).")
    subscribe_url: Url | None = Field(
        default=None,
        description="Public URL of hotspare's subscription endpoint (`hotspare status-page subscriptions`), "
        "where the customer pages' e-mail form posts; none: no form.",
    )


class CustomerNotices(Strict):
    customers: list[Customer] = Field(default_factory=list, description="Customers and the services they own.")
    emergency_numbers: list[EmergencyNumber] = Field(
        default_factory=list, description="Numbers printed in every notice and at the top of the status page."
    )
    policy: list[NoticeRule] = Field(
        default_factory=lambda: [NoticeRule(category=1, action=NoticeAction.send)],
        description="Per incident category: send at once, preview-and-approve, or none (unlisted: none).",
    )
    messages_per_second: float = Field(default=5.0, gt=0, le=1000, description="Rate limit towards the relay.")
    unsubscribe: str = Field(default="", description="List-Unsubscribe target (mailto: or https:); default: mailto the sender.")
    status_page: StatusPage | None = Field(default=None, description="Off-site emergency status page (none when absent).")
    status_page_key_block: Name = Field(
        default="status-page-key",
        description="StatusPageKey block: the HMAC key of customer page addresses, incident references and "
        "unsubscribe links, made on first use; every process of the fleet reads the same one.",
    )

    def action_for(self, category: int) -> NoticeAction:
        """The policy's action for an incident category (unlisted categories: none)."""
        for rule in self.policy:
            if rule.category == category:
                return rule.action
        return NoticeAction.none
