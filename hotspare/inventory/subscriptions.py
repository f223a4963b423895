"""Status page e-mail subscriptions in the inventory: pending until confirmed by the mailed token.

One row per (customer, address). A request stores only the SHA-256 of a fresh confirmation token
and its expiry; confirming needs the token itself (``planning/subscriptions.py``). A row moves
pending → confirmed → unsubscribed; a new request for an unsubscribed or pending address makes it
pending again with a new token, and never touches a confirmed one's state.

Bounds against a form used to mail strangers: at most ``MAX_PENDING`` unconfirmed requests per
customer (pending ones whose confirmation expired are deleted first), and an address that
unsubscribed gets no confirmation mail for ``QUIET_AFTER_UNSUBSCRIBE`` (its row's
``confirm_expires`` then holds until when).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel, select

from hotspare.inventory.models import utcnow

CONFIRM_VALID = timedelta(hours=48)
# One confirmation mail per address and customer in this time: the form cannot flood a mailbox.
RESEND_AFTER = timedelta(minutes=10)
# Unconfirmed requests kept per customer: a burst of requests cannot grow the table without end.
MAX_PENDING = 100
# An address that unsubscribed is not mailed a confirmation again for this long.
QUIET_AFTER_UNSUBSCRIBE = timedelta(days=7)


class SubscriptionRow(SQLModel, table=True):
    """One address that asked for (and maybe confirmed) a customer's incident updates."""

    __tablename__ = "status_subscription"
    __table_args__ = (UniqueConstraint("customer", "address"),)
    id: int | None = Field(default=None, primary_key=True)
    customer: str = Field(index=True)
    address: str  # lower case
    state: str = "pending"  # pending | confirmed | unsubscribed
    confirm_digest: str | None = Field(default=None, index=True)
    confirm_expires: datetime | None = None  # pending: the confirmation's expiry; unsubscribed: quiet until
    requested_at: datetime = Field(default_factory=utcnow)
    confirmed_at: datetime | None = None


def request(
    customer: str, address: str, confirm_digest: str, now: datetime | None = None, max_pending: int = MAX_PENDING
) -> tuple[int | None, bool, str]:
    """Record a request; (subscription number, whether a confirmation mail is due, why not).

    No mail is due when the address is confirmed already, when one was mailed in the last
    ``RESEND_AFTER``, when it unsubscribed within ``QUIET_AFTER_UNSUBSCRIBE``, or when the
    customer has ``max_pending`` unconfirmed requests already (then nothing is stored: number None).
    """
    from hotspare.inventory.db import session

    now = now or utcnow()
    with session() as db:
        waiting = list(
            db.exec(select(SubscriptionRow).where(SubscriptionRow.customer == customer, SubscriptionRow.state == "pending"))
        )
        for stale in waiting:  # compared here: SQLite and PostgreSQL store these times differently
            if stale.confirm_expires is None or _utc(stale.confirm_expires) < now:
                db.delete(stale)
        db.flush()
        row = db.exec(
            select(SubscriptionRow).where(SubscriptionRow.customer == customer, SubscriptionRow.address == address.lower())
        ).first()
        if row is None:
            pending = sum(1 for stale in waiting if stale.confirm_expires is not None and _utc(stale.confirm_expires) >= now)
            if pending >= max_pending:
                return None, False, f"{customer} has {pending} unconfirmed requests (at most {max_pending})"
            row = SubscriptionRow(customer=customer, address=address.lower())
        elif row.state == "confirmed":
            assert row.id is not None
            return row.id, False, "confirmed already"
        elif row.state == "pending" and now - _utc(row.requested_at) < RESEND_AFTER:
            assert row.id is not None
            return row.id, False, f"a confirmation was mailed less than {RESEND_AFTER} ago"
        elif row.state == "unsubscribed" and row.confirm_expires is not None and now < _utc(row.confirm_expires):
            assert row.id is not None
            return row.id, False, f"unsubscribed lately; quiet until {_utc(row.confirm_expires):%Y-%m-%d %H:%M} UTC"
        row.state, row.confirm_digest, row.confirm_expires, row.requested_at = "pending", confirm_digest, now + CONFIRM_VALID, now
        db.add(row)
        db.flush()
        assert row.id is not None  # the flush gave it one
        return row.id, True, ""


def _utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC time (SQLite returns naive ones)."""
    return moment.replace(tzinfo=moment.tzinfo or timezone.utc)


def confirm(confirm_digest: str, now: datetime | None = None) -> SubscriptionRow | None:
    """Confirm the pending subscription whose token has this digest (unexpired); the token is
    spent. None when no such pending subscription exists."""
    from hotspare.inventory.db import session

    now = now or utcnow()
    with session() as db:
        row = db.exec(
            select(SubscriptionRow).where(SubscriptionRow.confirm_digest == confirm_digest, SubscriptionRow.state == "pending")
        ).first()
        if (
            row is None
            or row.confirm_expires is None
            or row.confirm_expires.replace(tzinfo=row.confirm_expires.tzinfo or timezone.utc) < now
        ):
            return None
        row.state, row.confirmed_at, row.confirm_digest, row.confirm_expires = "confirmed", now, None, None
        db.add(row)
        return row


def unsubscribe(subscription: int, now: datetime | None = None) -> SubscriptionRow | None:
    """End a subscription; its address gets no confirmation mail for ``QUIET_AFTER_UNSUBSCRIBE``."""
    from hotspare.inventory.db import session

    now = now or utcnow()
    with session() as db:
        row = db.get(SubscriptionRow, subscription)
        if row is None:
            return None
        row.state, row.confirm_digest, row.confirm_expires = "unsubscribed", None, now + QUIET_AFTER_UNSUBSCRIBE
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
        return list(
            db.exec(
                select(SubscriptionRow)
                .where(SubscriptionRow.state == "confirmed")
                .order_by(SubscriptionRow.customer, SubscriptionRow.address)
            )
        )
