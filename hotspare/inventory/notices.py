"""Customer notices in the inventory: each notice, and each (notice, recipient) delivery.

Nobody may get the same notice twice, also when the sending process is killed midway. A
delivery moves, with a conditional UPDATE at each step, through:

    pending ──claim──> sending ──dot──> committing ──reply──> sent | bounced | deferred
                          │                  │
                 (holder died)         (holder died)
                          ▼                  ▼
                       pending           uncertain

``sending`` is recorded before the connection to the relay; ``committing`` right before the
end-of-data dot (``adapters.smtp.send_one``). A relay accepts a message only when it answers
that dot, so a delivery left in ``sending`` by a dead process was never accepted and is sent
again; one left in ``committing`` may have been, and is never sent again automatically: it
becomes ``uncertain`` and is named, with its Message-ID (derived from notice and recipient,
so the relay's log can be searched for it), for an operator to check.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import UniqueConstraint, update
from sqlmodel import JSON, Column, Field, SQLModel, select

from hotspare.inventory.models import as_utc, utcnow

FINAL_STATES = ("sent", "bounced", "uncertain")
# A claim older than this whose holder cannot be checked (another machine) counts as dead.
STALE_CLAIM = timedelta(minutes=5)


class NoticeRow(SQLModel, table=True):
    """One notice: an incident's opening or resolution, told to the contacts of affected services."""

    __tablename__ = "customer_notice"
    id: str = Field(primary_key=True)  # incident-<id>-<kind>
    incident_id: int = Field(index=True)
    kind: str  # opened | resolved
    subject: str
    state: str = "held"  # held (waits for approval) | sending | done
    decision: str = ""
    approved_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    summary: dict | None = Field(default=None, sa_column=Column(JSON))


class NoticeDeliveryRow(SQLModel, table=True):
    """One recipient's copy of a notice and what the relay said about it."""

    __tablename__ = "customer_notice_delivery"
    __table_args__ = (UniqueConstraint("notice_id", "recipient"),)
    id: int | None = Field(default=None, primary_key=True)
    notice_id: str = Field(index=True)
    recipient: str  # the address, lower case (the unique key)
    address: str  # as the fleet file writes it
    name: str = ""
    message_id: str
    state: str = "pending"  # pending | sending | committing | sent | bounced | deferred | uncertain
    attempts: int = 0
    holder: str | None = None
    claimed_at: datetime | None = None
    code: int | None = None
    reply: str = ""
    sent_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)


def _session():
    from hotspare.inventory.db import session  # late: db imports this module through table_modules

    return session()


def this_process() -> str:
    """A holder name that tells whether its process still lives: host, pid and pid start time."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def holder_alive(holder: str | None, claimed_at: datetime | None, now: datetime) -> bool:
    """True unless the claim's process is provably gone (this host) or the claim is stale."""
    if not holder:
        return False
    host, _, rest = holder.partition(":")
    pid, _, started = rest.partition(":")
    if host == socket.gethostname() and pid.isdigit():
        return _start_time(int(pid)) == started
    return claimed_at is not None and now - as_utc(claimed_at) < STALE_CLAIM


def record_notice(
    notice_id: str, incident_id: int, kind: str, subject: str, state: str, decision: str, approved_by: str | None = None
) -> NoticeRow:
    """Create or update the notice row (a held notice may later be approved and sent)."""
    with _session() as db:
        row = db.get(NoticeRow, notice_id)
        if row is None:
            row = NoticeRow(id=notice_id, incident_id=incident_id, kind=kind, subject=subject)
            db.add(row)
        if row.state != "done" or state == "done":
            row.state = state
        row.decision, row.updated_at = decision, utcnow()
        row.approved_by = approved_by or row.approved_by
        return row


def finish_notice(notice_id: str, summary: dict) -> None:
    with _session() as db:
        row = db.get(NoticeRow, notice_id)
        row.state, row.summary, row.updated_at = "done", summary, utcnow()


def notice(notice_id: str) -> NoticeRow | None:
    with _session() as db:
        return db.get(NoticeRow, notice_id)


def ensure_deliveries(notice_id: str, recipients: list[tuple[str, str, str]]) -> None:
    """A pending delivery for each (address, name, message_id) that has none yet."""
    with _session() as db:
        present = {row.recipient for row in db.exec(select(NoticeDeliveryRow).where(NoticeDeliveryRow.notice_id == notice_id))}
        for address, name, message_id in recipients:
            if address.lower() not in present:
                db.add(
                    NoticeDeliveryRow(
                        notice_id=notice_id, recipient=address.lower(), address=address, name=name, message_id=message_id
                    )
                )


def recover(notice_id: str) -> list[NoticeDeliveryRow]:
    """Settle deliveries a dead process left midway: ``sending`` → pending (never accepted),
    ``committing`` → uncertain (maybe accepted: never resent). Returns the new uncertain ones."""
    now = utcnow()
    uncertain = []
    with _session() as db:
        rows = db.exec(
            select(NoticeDeliveryRow).where(
                NoticeDeliveryRow.notice_id == notice_id, NoticeDeliveryRow.state.in_(("sending", "committing"))
            )
        ).all()
        for row in rows:
            if holder_alive(row.holder, row.claimed_at, now):
                continue
            was = row.state
            result = db.exec(
                update(NoticeDeliveryRow)
                .where(NoticeDeliveryRow.id == row.id, NoticeDeliveryRow.state == was, NoticeDeliveryRow.holder == row.holder)
                .values(
                    state="pending" if was == "sending" else "uncertain",
                    holder=None,
                    updated_at=now,
                    reply=row.reply
                    if was == "sending"
                    else "the sending process died right after handing the message over; check the "
                    f"relay's log for Message-ID {row.message_id} before sending it by hand",
                )
            )
            if result.rowcount == 1 and was == "committing":
                uncertain.append(row)
    return uncertain


def claim(delivery_id: int, holder: str) -> bool:
    """Take a pending or deferred delivery for sending; False if another process has it or it is done."""
    now = utcnow()
    with _session() as db:
        result = db.exec(
            update(NoticeDeliveryRow)
            .where(NoticeDeliveryRow.id == delivery_id, NoticeDeliveryRow.state.in_(("pending", "deferred")))
            .values(state="sending", holder=holder, claimed_at=now, updated_at=now, attempts=NoticeDeliveryRow.attempts + 1)
        )
        return result.rowcount == 1


def advance(delivery_id: int, holder: str, state: str, code: int | None = None, reply: str = "") -> bool:
    """Move a delivery this holder claimed to ``state`` (with the relay's reply); False if not ours."""
    now = utcnow()
    values = {"state": state, "updated_at": now}
    if state != "committing":
        values |= {"code": code, "reply": reply[:500], "holder": None if state != "sending" else holder}
    if state == "sent":
        values["sent_at"] = now
    with _session() as db:
        result = db.exec(
            update(NoticeDeliveryRow)
            .where(
                NoticeDeliveryRow.id == delivery_id,
                NoticeDeliveryRow.holder == holder,
                NoticeDeliveryRow.state.in_(("sending", "committing")),
            )
            .values(**values)
        )
        return result.rowcount == 1


def deliveries(notice_id: str) -> list[NoticeDeliveryRow]:
    with _session() as db:
        return list(
            db.exec(select(NoticeDeliveryRow).where(NoticeDeliveryRow.notice_id == notice_id).order_by(NoticeDeliveryRow.id))
        )


def notices_of(incident_id: int) -> list[NoticeRow]:
    with _session() as db:
        return list(db.exec(select(NoticeRow).where(NoticeRow.incident_id == incident_id).order_by(NoticeRow.created_at)))
