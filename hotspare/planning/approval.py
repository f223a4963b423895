"""One approval mechanism for every gated runbook (failover, facility failover, rebuild, …).

A plan has one digest form (``plan_digest``: the first 16 hex digits of the sha256 of its
content); an operator approves exactly that plan: up front (``yes``, or the digest they
reviewed), at the pause in the Prefect UI (the same three fields everywhere, see
``flows/approval.py``), or by typing it at the terminal. The plan is then made again under
the service lock, and any difference stops the run before its first step. Pure: no Prefect.
"""

from __future__ import annotations

import hashlib
import json

from hotspare.adapters.errors import NotApproved

DIGEST_LENGTH = 16


class PlanNotApproved(NotApproved):
    """The approval is missing, rejected, or for another plan than the one that would run."""


def plan_digest(material) -> str:
    """The digest of a plan's content (anything JSON can write; other values by ``str``)."""
    text = json.dumps(material, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_LENGTH]


def approved_up_front(subject: str, digest: str, yes: bool, approved_plan_digest: str | None) -> str | None:
    """Why the gate may be passed without asking, or None when the operator must be asked.

    ``subject`` names the run in sentences ("failover of app1").
    """
    if yes:
        return f"{subject}: approved up front (yes)"
    if approved_plan_digest:
        if approved_plan_digest.strip() != digest:
            raise PlanNotApproved(
                f"{subject}: the approval was for plan {approved_plan_digest}, but the plan is now {digest}: the facts "
                "changed since the plan was reviewed. Review the new plan and approve its digest; nothing was changed.")
        return f"{subject}: approved up front (plan digest {digest})"
    return None


def approved_at_the_gate(subject: str, digest: str, approve: bool, typed_digest: str, operator: str) -> str:
    """Who approved at the pause; PlanNotApproved unless the answer approves exactly ``digest``."""
    if not approve or typed_digest.strip() != digest:
        raise PlanNotApproved(
            f"{subject} not approved (approve={approve}, digest {typed_digest.strip()!r}, plan {digest}); nothing was changed")
    return f"{subject}: approved by {operator.strip() or 'an operator in the Prefect UI'} (plan digest {digest})"


def same_plan(subject: str, approved_digest: str, current_digest: str, current_markdown: str, refusal: str = "") -> None:
    """The plan made again under the lock must be the approved one; else stop before any step."""
    if current_digest == approved_digest:
        return
    raise PlanNotApproved(
        f"{subject} stopped before any step: the facts changed since plan {approved_digest} was approved; the plan is "
        f"now {current_digest}" + (f" (refused: {refusal})" if refusal else "")
        + ". Review the new plan and approve it; nothing was changed.\n" + current_markdown)
