"""Status page e-mail subscriptions in the inventory: pending until confirmed by the mailed token.

One row per (customer, address). A request stores only the SHA-256 of a fresh confirmation token
and its expiry; confirming needs the token itself (``planning/subscriptions.py``). A row moves
pending → confirmed → unsubscribed; a new request for an unsubscribed or pending address makes it
pending again with a new token, and never touches a confirmed one's state.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel, select

from hotspare.inventory.models import utcnow

CONFIRM_VALID = timedelta(hours=48)
# One confirmation mail per address and customer in this time: the form cannot flood a mailbox.
RESEND_AFTER = timedelta(minutes=10)


class SubscriptionRow(SQLModel, table=True):
    """One address that asked for (and maybe confirmed) a customer's incident updates."""

    __tablename__ = "status_subscription"
    __table_args__ = (UniqueConstraint("customer", "address"),)
    id: int | None = Field(default=None, primary_key=True)
    customer: str = Field(index=True)
    address: str  # lower case
    state: str = "pending"  # pending | confirmed | unsubscribed
    confirm_digest: str | None = Field(default=None, index=True)
    confirm_expires: datetime | None = None
    requested_at: datetime = Field(default_factory=utcnow)
    confirmed_at: datetime | None = None


def request(customer: str, address: str, confirm_digest: str, now: datetime | None = None) -> tuple[int, bool]:
    """Record a request; (subscription number, whether a confirmation mail is due: not when the
    address is confirmed already, nor when one was mailed in the last ``RESEND_AFTER``)."""
    from hotspare.inventory.db import session

    now = now or utcnow()
    with session() as db:
        row = db.exec(select(SubscriptionRow).where(SubscriptionRow.customer == customer,
                                                    SubscriptionRow.address == address.lower())).first()
        if row is None:
            row = SubscriptionRow(customer=customer, address=address.lower())
        elif row.state == "confirmed" or (row.state == "pending" and row.requested_at is not None
                                            and now - row.requested_at.replace(tzinfo=row.requested_at.tzinfo or timezone.utc) < RESEND_AFTER):
            assert row.id is not None
            return row.id, False
        row.state, row.confirm_digest, row.confirm_expires, row.requested_at = \
            "pending", confirm_digest, now + CONFIRM_VALID, now
        db.add(row)
        db.flush()
        assert row.id is not None  # the flush gave it one
        return row.id, True


def confirm(confirm_digest: str, now: datetime | None = None) -> SubscriptionRow | None:
    """Confirm the pending subscription whose token has this digest (unexpired); the token is
    spent. None when no such pending subscription exists."""
    from hotspare.inventory.db import session

    now = now or utcnow()
    with session() as db:
        row = db.exec(select(SubscriptionRow).where(SubscriptionRow.confirm_digest == confirm_digest,
                                                    SubscriptionRow.state == "pending")).first()
        if row is None or row.confirm_expires is None or row.confirm_expires.replace(tzinfo=row.confirm_expires.tzinfo or timezone.utc) < now:
            return None
        row.state, row.confirmed_at, row.confirm_digest, row.confirm_expires = "confirmed", now, None, None
        db.add(row)
        return row


def unsubscribe(subscription: int) -> SubscriptionRow | None:
    from hotspare.inventory.db import session

    with session() as db:
        row = db.get(SubscriptionRow, subscription)
        if row is None:
            return None
        row.state, row.confirm_digest = "unsubscribed", None
        db.add(row)
        return row


def get(subscription: int) -> SubscriptionRow | None:
    from hotspare.inventory.db import session

    with session() as db:
        return db.get(SubscriptionRow, subscription)


def confirmed() -> list[SubscriptionRow]:
    """Every confirmed subscription, by customer then address."""
    from hotspare.inventory.db import session

    with session() as db:
        return list(db.exec(select(SubscriptionRow).where(SubscriptionRow.state == "confirmed")
                            .order_by(SubscriptionRow.customer, SubscriptionRow.address)))
