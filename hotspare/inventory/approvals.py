"""Approvals waiting at a runbook's gate, and the offers of them made on the phone.

A gated run that pauses for approval records one ``pending_approval`` row: the service, the
Prefect flow run that waits, the digest of the plan it waits with, one spoken sentence of that
plan and until when it waits. Paging reads the rows of an incident's services and offers them
to approvers in the page call ("press 2") or SMS ("APPROVE n"); each offer is an
``approval_offer`` row keyed by the call's or message's SID, so the webhook knows exactly which
plan (digest) a keypress or reply approves, offered to whom, on which number, when.

``decide`` is a conditional UPDATE (waiting → approved, same digest): of two approvers pressing
2 at once, one decides; the other is told it was already decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import UniqueConstraint, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select

from hotspare.inventory import db as inventory_db
from hotspare.inventory.models import as_utc, utcnow

WAITING = "waiting"


class PendingApprovalRow(SQLModel, table=True):
    """One pause of a gated run for approval, and what became of it."""

    __tablename__ = "pending_approval"
    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(index=True)
    flow_run_id: str = Field(index=True)
    digest: str
    sentence: str  # the plan in one spoken sentence
    opened_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    status: str = WAITING  # waiting | approved | ended
    decided_by: str = ""
    decided_via: str = ""


class ApprovalDecisionRow(SQLModel, table=True):
    """A plan approved from the phone, written by the webhook at the control site only (a facility
    worker's database user may read it, never write it: ``planning/database_roles.py``). One per
    plan: of two approvers pressing 2 at once, the first insert wins."""

    __tablename__ = "approval_decision"
    __table_args__ = (UniqueConstraint("approval_id"),)
    id: int | None = Field(default=None, primary_key=True)
    approval_id: int = Field(foreign_key="pending_approval.id")
    flow_run_id: str = Field(index=True)
    digest: str
    decided_by: str
    decided_via: str
    decided_at: datetime = Field(default_factory=utcnow)


class ApprovalOfferRow(SQLModel, table=True):
    """One approval offered in one page (call or SMS) to one contact."""

    __tablename__ = "approval_offer"
    __table_args__ = (UniqueConstraint("provider", "sid", "approval_id"),)
    id: int | None = Field(default=None, primary_key=True)
    approval_id: int = Field(index=True, foreign_key="pending_approval.id")
    incident_id: int = Field(index=True)
    provider: str
    sid: str = Field(index=True)
    action: str  # call | sms
    contact: str
    number: str = Field(index=True)  # E.164
    digest: str  # the plan offered: a keypress approves this digest only
    offered_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True)
class PendingApproval:
    id: int
    service: str
    flow_run_id: str
    digest: str
    sentence: str
    opened_at: datetime
    expires_at: datetime
    status: str
    decided_by: str = ""
    decided_via: str = ""


@dataclass(frozen=True)
class Offer:
    approval: PendingApproval
    incident_id: int
    provider: str
    sid: str
    action: str
    contact: str
    number: str
    digest: str
    offered_at: datetime


def _pending(row: PendingApprovalRow) -> PendingApproval:
    return PendingApproval(
        row.id,
        row.service,
        row.flow_run_id,
        row.digest,
        row.sentence,
        as_utc(row.opened_at),
        as_utc(row.expires_at),
        row.status,
        row.decided_by,
        row.decided_via,
    )


def open_approval(service: str, flow_run_id: str, digest: str, sentence: str, expires_at: datetime) -> int:
    """Record that ``flow_run_id`` waits for approval of ``digest``; an earlier pause of the same
    run (asked again after a wrong answer) is ended first. Returns the new row's id."""
    with inventory_db.session() as db:
        db.exec(
            update(PendingApprovalRow)
            .where(PendingApprovalRow.flow_run_id == flow_run_id, PendingApprovalRow.status == WAITING)
            .values(status="ended")
        )
        row = PendingApprovalRow(
            service=service, flow_run_id=flow_run_id, digest=digest, sentence=sentence, expires_at=expires_at
        )
        db.add(row)
        db.flush()
        return row.id


def end_approval(flow_run_id: str) -> None:
    """The run left its gate (approved, rejected, timed out): nothing of it waits any more."""
    with inventory_db.session() as db:
        db.exec(
            update(PendingApprovalRow)
            .where(PendingApprovalRow.flow_run_id == flow_run_id, PendingApprovalRow.status == WAITING)
            .values(status="ended")
        )


def waiting_for(services: list[str], now: datetime | None = None) -> list[PendingApproval]:
    """Approvals still waiting (and not expired) for any of ``services``, oldest first."""
    moment = now or utcnow()
    if not services:
        return []
    with inventory_db.session() as db:
        rows = db.exec(
            select(PendingApprovalRow)
            .where(PendingApprovalRow.service.in_(services), PendingApprovalRow.status == WAITING)
            .order_by(PendingApprovalRow.id)
        ).all()
        return [_pending(row) for row in rows if as_utc(row.expires_at) > moment]


def get_approval(approval_id: int) -> PendingApproval | None:
    with inventory_db.session() as db:
        row = db.get(PendingApprovalRow, approval_id)
        return _pending(row) if row else None


def record_offer(
    approval: PendingApproval, incident_id: int, provider: str, sid: str, action: str, contact: str, number: str
) -> None:
    """Keep that ``approval`` (its digest as it was) was offered in the page ``provider``/``sid``."""
    with inventory_db.session() as db:
        db.add(
            ApprovalOfferRow(
                approval_id=approval.id,
                incident_id=incident_id,
                provider=provider,
                sid=sid,
                action=action,
                contact=contact,
                number=number,
                digest=approval.digest,
            )
        )


def _offers(rows) -> list[Offer]:
    found = []
    for row in rows:
        approval = get_approval(row.approval_id)
        if approval is not None:
            found.append(
                Offer(
                    approval,
                    row.incident_id,
                    row.provider,
                    row.sid,
                    row.action,
                    row.contact,
                    row.number,
                    row.digest,
                    as_utc(row.offered_at),
                )
            )
    return found


def offers_in(provider: str, sid: str) -> list[Offer]:
    """The approvals offered in the page ``provider`` knows as ``sid`` (a call's keypress approves these)."""
    with inventory_db.session() as db:
        rows = db.exec(
            select(ApprovalOfferRow)
            .where(ApprovalOfferRow.provider == provider, ApprovalOfferRow.sid == sid)
            .order_by(ApprovalOfferRow.id)
        ).all()
    return _offers(rows)


def offers_of(approval_id: int, number: str) -> list[Offer]:
    """Offers of ``approval_id`` sent to ``number`` (E.164), newest first (an SMS reply names the approval)."""
    with inventory_db.session() as db:
        rows = db.exec(
            select(ApprovalOfferRow)
            .where(ApprovalOfferRow.approval_id == approval_id, ApprovalOfferRow.number == number)
            .order_by(ApprovalOfferRow.offered_at.desc(), ApprovalOfferRow.id.desc())
        ).all()
    return _offers(rows)


def decide(approval_id: int, digest: str, by: str, via: str, now: datetime | None = None) -> bool:
    """Record the plan approved by ``by`` if it still waits, unexpired, for ``digest``; False when
    another answer (or the run's end) came first. The decision row's unique plan decides a race."""
    moment = now or utcnow()
    plan = get_approval(approval_id)
    if plan is None or plan.status != WAITING or plan.digest != digest or plan.expires_at <= moment:
        return False
    try:
        with inventory_db.session() as db:
            db.add(
                ApprovalDecisionRow(
                    approval_id=approval_id, flow_run_id=plan.flow_run_id, digest=digest, decided_by=by, decided_via=via
                )
            )
    except IntegrityError:
        return False
    with inventory_db.session() as db:
        db.exec(
            update(PendingApprovalRow)
            .where(PendingApprovalRow.id == approval_id)
            .values(status="approved", decided_by=by, decided_via=via)
        )
    return True


def undecide(approval_id: int) -> None:
    """The approved run could not be resumed: the plan waits again (another answer may come)."""
    with inventory_db.session() as db:
        db.exec(delete(ApprovalDecisionRow).where(ApprovalDecisionRow.approval_id == approval_id))
        db.exec(
            update(PendingApprovalRow)
            .where(PendingApprovalRow.id == approval_id, PendingApprovalRow.status == "approved")
            .values(status=WAITING, decided_by="", decided_via="")
        )


def phone_approver(flow_run_id: str, digest: str) -> str | None:
    """Who approved ``digest`` of ``flow_run_id`` from the phone (the webhook's record), or None."""
    with inventory_db.session() as db:
        row = db.exec(
            select(ApprovalDecisionRow)
            .where(ApprovalDecisionRow.flow_run_id == flow_run_id, ApprovalDecisionRow.digest == digest)
            .order_by(ApprovalDecisionRow.id.desc())
        ).first()
        return row.decided_by if row else None
