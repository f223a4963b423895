"""The approval gate every gated runbook pauses at: one form in the Prefect UI, one rule.

The rule (up front, at the gate, again under the lock) is ``hotspare/planning/approval.py``.

The form (``PlanApproval``) has three required fields, each with a description: the decision
(approve or reject), the plan digest (its title shows the digest to type) and the operator's
name. A wrong or empty digest pauses the run again with the reason above the plan, instead of
failing it; reject, or an up-front approval that outlived its window, ends the run
**Cancelled** (``cancelled_state``): nothing was changed, and nothing failed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Literal

import pydantic
from prefect import get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Cancelled, State
from pydantic import Field

from hotspare.inventory import approvals
from hotspare.inventory.clock import database_now
from hotspare.inventory.models import utcnow
from hotspare.inventory.runs import current_operator
from hotspare.planning.approval import (
    GATE_ANSWERS,
    UP_FRONT_WINDOW_SECONDS,
    Approval,
    PlanRejected,
    answer_at_the_gate,
    approved_up_front,
    not_approved_after,
    up_front_deadline,
)


class PlanApproval(RunInput):
    """What the operator fills in in the Prefect UI to let a paused run continue or stop it.

    Every field is required (the server refuses an answer without them, and the run stays
    paused); ``plan_digest`` is replaced per plan by ``approval_form`` so its title shows the
    digest to type.
    """

    decision: Literal["approve", "reject"] = Field(
        title="Decision",
        description="approve: carry out exactly the plan shown above (also in this run's artifacts). "
                    "reject: stop the run now; nothing is changed.")
    plan_digest: str = Field(title="Plan digest",
                             description="To approve, type the plan's digest. To reject, type anything.")
    operator: str = Field(title="Operator", min_length=1, max_length=80,
                          description="Your name: the person who approves or rejects, for the record.")


def approval_form(digest: str, markdown: str, reason: str | None = None) -> type[PlanApproval]:
    """The form for this plan: the digest beside its field, the plan (and why it asks again) above."""
    form = pydantic.create_model(
        "PlanApproval", __base__=PlanApproval,
        plan_digest=(str, Field(title=f"Plan digest: type {digest} to approve",
                                description=f"To approve, type {digest}, the digest of the plan shown above. To reject, "
                                            "type anything.")))
    heading = f"**Not approved yet: {reason}.** Answer again below.\n\n" if reason else ""
    form._description = heading + markdown
    return form


def await_approval(subject: str, digest: str, markdown: str, yes: bool, approved_plan_digest: str | None,
                   timeout_seconds: int, expires_at: datetime | None = None,
                   phone: tuple[str, str] | None = None) -> Approval:
    """Who approved ``digest``, and how; pauses for the operator unless approved up front.

    ``expires_at``: the deadline of an up-front approval (default: this run's scheduled start
    plus ``UP_FRONT_WINDOW_SECONDS``), judged by the inventory's clock, the one ``hotspare run`` set it by.
    ``phone``: (service, the plan in one spoken sentence):
    while the run waits, paging offers this plan to the service's approvers on the phone
    (``inventory/approvals``; a keypress resumes the run with this digest, as the form would).
    Raises ``PlanRejected`` (the flow then ends cancelled,
    ``cancelled_state``) on reject, an expired approval or too many wrong answers,
    ``PlanNotApproved`` for an up-front digest of another plan, and Prefect's
    ``FlowPauseTimeout`` when nobody answers within ``timeout_seconds`` in all.
    """
    approval = approved_up_front(subject, digest, yes, approved_plan_digest, current_operator(),
                                 expires_at or _default_deadline(), database_now())
    if approval is not None:
        return approval
    deadline = time.monotonic() + timeout_seconds
    with _offered_on_the_phone(phone, digest, timeout_seconds):
        return _answers_at_the_gate(subject, digest, markdown, deadline)


def _answers_at_the_gate(subject: str, digest: str, markdown: str, deadline: float) -> Approval:
    logger = get_run_logger()
    reason = "no answer yet"
    answers = 0
    for answers in range(1, GATE_ANSWERS + 1):
        remaining = max(1, int(deadline - time.monotonic()))
        logger.info("%s: waiting for approval in the Prefect UI (plan digest %s), at most %d s more", subject, digest,
                    remaining)
        try:
            answer = pause_flow_run(wait_for_input=approval_form(digest, markdown, None if answers == 1 else reason),
                                    timeout=remaining, poll_interval=2)
        except pydantic.ValidationError as error:  # resumed without a complete answer
            outcome: Approval | str = f"the answer was incomplete ({error.error_count()} field(s) missing or invalid)"
        else:
            outcome = answer_at_the_gate(subject, digest, answer.decision, answer.plan_digest, answer.operator)
        if isinstance(outcome, Approval):
            return outcome
        reason = outcome
        logger.warning("%s: not approved: %s; asking again (%d of %d answers used)", subject, reason, answers, GATE_ANSWERS)
        if time.monotonic() >= deadline:
            break
    raise not_approved_after(subject, digest, answers, reason)


@contextmanager
def _offered_on_the_phone(phone: tuple[str, str] | None, digest: str, timeout_seconds: int) -> Iterator[None]:
    """While the run waits: its plan recorded as waiting, for paging to offer to approvers."""
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if phone is None or run_id is None:
        yield
        return
    service, sentence = phone
    approvals.open_approval(service, str(run_id), digest, sentence, utcnow() + timedelta(seconds=timeout_seconds))
    try:
        yield
    finally:
        approvals.end_approval(str(run_id))


def cancelled_state(error: PlanRejected) -> State:
    """The final state of a run whose plan was rejected or whose approval expired: Cancelled,
    with the reason as its message (the UI shows it grey, not as a failure)."""
    get_run_logger().warning(str(error))
    return Cancelled(message=str(error))


def _default_deadline() -> datetime | None:
    """This run's scheduled start plus the window, from Prefect's runtime (None outside a run)."""
    from prefect.runtime import flow_run

    due = flow_run.scheduled_start_time
    if due is None:
        return None
    return up_front_deadline(datetime.fromisoformat(due.isoformat()), UP_FRONT_WINDOW_SECONDS)
