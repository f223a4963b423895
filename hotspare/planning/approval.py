"""One approval mechanism for every gated runbook (failover, facility failover, failback,
facility return, reprotect, rebuild).

A plan has one digest form (``plan_digest``: the first 16 hex digits of the sha256 of its
content); an operator approves exactly that plan: up front (``yes``, or the digest they
reviewed), at the pause in the Prefect UI (the same form everywhere, see
``flows/approval.py``), or by typing it at the terminal. The plan is then made again under
the service lock, and any difference stops the run before its first step.

An approval belongs to its moment. An up-front approval carries a deadline (``hotspare run``
passes one; otherwise the run's scheduled start plus ``UP_FRONT_WINDOW_SECONDS``): a run that
starts later ends cancelled instead of acting on facts nobody looked at. At the pause, a wrong
or missing digest asks again with the reason (at most ``GATE_ANSWERS`` answers), and an
explicit reject ends the run cancelled. The approver is a person's name, never a sentence.
Pure: no Prefect, no clock (``now`` is passed in).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from hotspare.adapters.errors import NotApproved

DIGEST_LENGTH = 16
UP_FRONT_WINDOW_SECONDS = 300  # a pre-approved run must start within this of when it was due
GATE_ANSWERS = 5  # answers the pause takes (each wrong one asks again) before the run ends not approved


class PlanNotApproved(NotApproved):
    """The approval is missing, rejected, or for another plan than the one that would run."""


class PlanRejected(PlanNotApproved):
    """An operator rejected the plan, or its approval outlived its moment: the run ends
    cancelled (not failed) before any step."""


@dataclass(frozen=True)
class Approval:
    """Who approved which plan, and how. ``operator`` is a person's name (the form's operator,
    or ``HOTSPARE_OPERATOR`` / the login name of whoever approved up front)."""

    subject: str
    digest: str
    operator: str
    how: str

    def sentence(self) -> str:
        return f"{self.subject}: approved by {self.operator or 'an unnamed operator'} {self.how} (plan digest {self.digest})"


def plan_digest(material: object) -> str:
    """The digest of a plan's content (anything JSON can write; other values by ``str``)."""
    text = json.dumps(material, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_LENGTH]


def up_front_deadline(due: datetime, window_seconds: float = UP_FRONT_WINDOW_SECONDS) -> datetime:
    """When an up-front approval of a run due at ``due`` stops counting."""
    return due + timedelta(seconds=window_seconds)


def approved_up_front(
    subject: str,
    digest: str,
    yes: bool,
    approved_plan_digest: str | None,
    operator: str = "",
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> Approval | None:
    """The approval given up front, or None when the operator must be asked at the pause.

    ``subject`` names the run in sentences ("failover of app1"). PlanRejected when the run
    starts after ``expires_at`` (it waited in a queue: whatever happened since was never
    reviewed); PlanNotApproved when the approved digest is another plan's.
    """
    if not yes and not approved_plan_digest:
        return None
    if expires_at is not None and now is not None and now > expires_at:
        late = (now - expires_at).total_seconds()
        raise PlanRejected(
            f"{subject}: the up-front approval was good until {expires_at:%Y-%m-%d %H:%M:%S} UTC, but the run only "
            f"started at {now:%H:%M:%S} UTC ({late:.0f} s later; it waited for a worker). Cancelled before any step; "
            "nothing was changed. Look at the service again and start a new run if it is still needed."
        )
    if yes:
        return Approval(subject, digest, operator, "up front (yes)")
    if (approved_plan_digest or "").strip() != digest:  # set: neither yes nor empty reaches here
        raise PlanNotApproved(
            f"{subject}: the approval was for plan {approved_plan_digest}, but the plan is now {digest}: the facts "
            "changed since the plan was reviewed. Review the new plan and approve its digest; nothing was changed."
        )
    return Approval(subject, digest, operator, "up front (its plan digest)")


def answer_at_the_gate(subject: str, digest: str, decision: str, typed_digest: str, operator: str) -> Approval | str:
    """The approval an answer at the pause gives, or the reason to ask again (a sentence).

    PlanRejected when the operator chose ``reject``: that needs no digest.
    """
    name = operator.strip()
    if decision == "reject":
        raise PlanRejected(
            f"{subject}: rejected by {name or 'an unnamed operator'} at the pause (plan {digest}); "
            "cancelled before any step, nothing was changed"
        )
    if decision != "approve":
        return f"the decision {decision!r} is neither approve nor reject"
    typed = typed_digest.strip()
    if not typed:
        return f"the plan digest was left empty: type {digest} to approve this plan"
    if typed != digest:
        return f"the digest typed ({typed}) is not this plan's ({digest}): type {digest} to approve this plan"
    if not name:
        return "the operator field was empty: type your name (who approves is recorded)"
    return Approval(subject, digest, name, "at the pause in the Prefect UI")


def not_approved_after(subject: str, digest: str, answers: int, last_reason: str) -> PlanRejected:
    """The run gives up asking: too many answers that did not approve this plan."""
    return PlanRejected(
        f"{subject}: not approved after {answers} answer(s) at the pause (the last: {last_reason}); "
        f"cancelled before any step, nothing was changed. Plan {digest}."
    )


def same_plan(subject: str, approved_digest: str, current_digest: str, current_markdown: str, refusal: str = "") -> None:
    """The plan made again under the lock must be the approved one; else stop before any step."""
    if current_digest == approved_digest:
        return
    raise PlanNotApproved(
        f"{subject} stopped before any step: the facts changed since plan {approved_digest} was approved; the plan is "
        f"now {current_digest}"
        + (f" (refused: {refusal})" if refusal else "")
        + ". Review the new plan and approve it; nothing was changed.\n"
        + current_markdown
    )
