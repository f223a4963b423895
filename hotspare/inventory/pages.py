"""Pages sent and acknowledgement requests received, so that only the chain acknowledges, once.

``record_page`` keeps every page a provider accepted (call or SMS): its provider and id there
(the call's or message's SID), the incident, the contact and the number in E.164, and when it
went out. A keypress arrives with its call's SID: that SID, not anything else in the request,
says which incident and which contact it answers. A bare SMS reply answers the newest page
sent to its number.

``claim_request`` stores the provider's SID of every signed request the acknowledgement webhook
handles, unique per provider: a second request with the same SID (a replay) is refused by the
database itself and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select

from hotspare.inventory import db as inventory_db
from hotspare.inventory.models import as_utc, utcnow


class PageRow(SQLModel, table=True):
    """One call or SMS a provider accepted for an incident."""

    __tablename__ = "incident_page"
    __table_args__ = (UniqueConstraint("provider", "sid"),)
    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(index=True, foreign_key="incident.id")
    provider: str  # PhoneProvider block that carried it
    sid: str = Field(index=True)  # the call's or message's id at the provider
    action: str  # call | sms
    contact: str  # the contact's name, or the bare number a step names
    number: str = Field(index=True)  # E.164
    sent_at: datetime = Field(default_factory=utcnow)


class AcknowledgementRequestRow(SQLModel, table=True):
    """One signed webhook request, by the provider's SID of its message or call: handled once."""

    __tablename__ = "acknowledgement_request"
    __table_args__ = (UniqueConstraint("provider", "sid", "kind"),)
    id: int | None = Field(default=None, primary_key=True)
    provider: str
    sid: str
    kind: str  # call | sms
    sender: str = ""
    received_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True)
class Page:
    incident_id: int
    provider: str
    sid: str
    action: str
    contact: str
    number: str
    sent_at: datetime


def _page(row: PageRow) -> Page:
    return Page(row.incident_id, row.provider, row.sid, row.action, row.contact, row.number, as_utc(row.sent_at))


def record_page(incident_id: int, provider: str, sid: str, action: str, contact: str, number: str) -> None:
    """Keep a page the provider accepted (``number`` in E.164)."""
    with inventory_db.session() as db:
        db.add(PageRow(incident_id=incident_id, provider=provider, sid=sid, action=action, contact=contact, number=number))


def page_by_sid(provider: str, sid: str) -> Page | None:
    """The page ``provider`` knows as ``sid``, or None (not a page hotspare sent through it)."""
    with inventory_db.session() as db:
        row = db.exec(select(PageRow).where(PageRow.provider == provider, PageRow.sid == sid)).first()
        return _page(row) if row else None


def pages_to(number: str, since: datetime) -> list[Page]:
    """Pages sent to ``number`` (E.164) since ``since``, newest first."""
    with inventory_db.session() as db:
        rows = db.exec(
            select(PageRow)
            .where(PageRow.number == number, PageRow.sent_at >= since)
            .order_by(PageRow.sent_at.desc(), PageRow.id.desc())
        ).all()
        return [_page(row) for row in rows]


def latest_page_of(incident_id: int) -> Page | None:
    """The newest page of an incident, or None (never paged)."""
    with inventory_db.session() as db:
        row = db.exec(
            select(PageRow).where(PageRow.incident_id == incident_id).order_by(PageRow.sent_at.desc(), PageRow.id.desc())
        ).first()
        return _page(row) if row else None


def claim_request(provider: str, sid: str, kind: str, sender: str = "") -> bool:
    """Store a request's SID; False when it was stored before (a replay)."""
    try:
        with inventory_db.session() as db:
            db.add(AcknowledgementRequestRow(provider=provider, sid=sid, kind=kind, sender=sender))
        return True
    except IntegrityError:
        return False
