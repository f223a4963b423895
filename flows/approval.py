"""The approval gate every gated runbook pauses at: one form in the Prefect UI, one rule.

The rule (up front, at the gate, again under the lock) is ``hotspare/planning/approval.py``.

The form (``PlanApproval``) has three required fields, each with a description: the decision
(approve or reject), the plan digest (its title shows the digest to type) and the operator's
name. A wrong or empty digest pauses the run again with the reason above the plan, instead of
failing it; reject, or an up-front approval that outlived its window, ends the run
**Cancelled** (``cancelled_state``): nothing was changed, and nothing failed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

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
from hotspare.planning.api_access import (
    APPROVER,
    APPROVER_RECORD_PREFIX,
    UP_FRONT_APPROVER_ROLES,
    approver_from_records,
    parse_provenance,
)
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
        "reject: stop the run now; nothing is changed.",
    )
    plan_digest: str = Field(title="Plan digest", description="To approve, type the plan's digest. To reject, type anything.")
    operator: str = Field(
        title="Operator",
        min_length=1,
        max_length=80,
        description="Your name: the person who approves or rejects, for the record.",
    )


def approval_form(digest: str, markdown: str, reason: str | None = None) -> type[PlanApproval]:
    """The form for this plan: the digest beside its field, the plan (and why it asks again) above."""
    form = pydantic.create_model(
        "PlanApproval",
        __base__=PlanApproval,
        plan_digest=(
            str,
            Field(
                title=f"Plan digest: type {digest} to approve",
                description=f"To approve, type {digest}, the digest of the plan shown above. To reject, type anything.",
            ),
        ),
    )
    heading = f"**Not approved yet: {reason}.** Answer again below.\n\n" if reason else ""
    form._description = heading + markdown
    return form


def await_approval(
    subject: str,
    digest: str,
    markdown: str,
    yes: bool,
    approved_plan_digest: str | None,
    timeout_seconds: int,
    expires_at: datetime | None = None,
    phone: tuple[str, str] | None = None,
) -> Approval:
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
    logger = get_run_logger()
    provenance = _run_provenance()
    approval = approved_up_front(
        subject, digest, yes, approved_plan_digest, current_operator(), expires_at or _default_deadline(), database_now()
    )
    if approval is not None:
        approval, refusal = up_front_by_identity(approval, provenance)
        if approval is not None:
            return approval
        logger.warning("%s: %s; asking at the pause instead", subject, refusal)
    deadline = time.monotonic() + timeout_seconds
    with _offered_on_the_phone(phone, digest, timeout_seconds):
        return _answers_at_the_gate(subject, digest, markdown, deadline, provenance)


def _answers_at_the_gate(subject: str, digest: str, markdown: str, deadline: float, provenance: RunProvenance) -> Approval:
    logger = get_run_logger()
    reason = "no answer yet"
    answers = 0
    for answers in range(1, GATE_ANSWERS + 1):
        remaining = max(1, int(deadline - time.monotonic()))
        logger.info("%s: waiting for approval in the Prefect UI (plan digest %s), at most %d s more", subject, digest, remaining)
        try:
            answer = pause_flow_run(
                wait_for_input=approval_form(digest, markdown, None if answers == 1 else reason),
                timeout=remaining,
                poll_interval=2,
            )
        except pydantic.ValidationError as error:  # resumed without a complete answer
            outcome: Approval | str = f"the answer was incomplete ({error.error_count()} field(s) missing or invalid)"
        else:
            outcome = _judge_answer(subject, digest, answer, provenance)
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


@dataclass(frozen=True)
class RunProvenance:
    """Who started this run as the API proxy saw it (``planning/api_access.py``)."""

    behind_proxy: bool  # HOTSPARE_API_PROXY=1, or the run carries the proxy's stamp
    creator: tuple[str, str] | None  # (role, name) the proxy stamped on the run, if any
    subflow: bool  # started by another run (its approval binds this one)
    flow_run_id: str | None


def _run_provenance() -> RunProvenance:
    """Read from the server: the ``created_by`` nginx stamped when this run was created."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    run_id = flow_run.id
    behind = os.environ.get("HOTSPARE_API_PROXY") == "1"
    if run_id is None:
        return RunProvenance(behind, None, False, None)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    creator = parse_provenance(run.created_by.display_value if run.created_by else None)
    return RunProvenance(behind or creator is not None, creator, run.parent_task_run_id is not None, str(run_id))


def up_front_by_identity(approval: Approval, provenance: RunProvenance) -> tuple[Approval | None, str]:
    """Behind the proxy an up-front approval counts from whoever the proxy says started the run:
    an approver (recorded by name), the control site (``HOTSPARE_OPERATOR`` as before), or a
    parent run (a subflow carries its parent's approval). From anyone else it does not count."""
    if not provenance.behind_proxy or provenance.subflow or provenance.creator is None:
        return approval, ""
    role, name = provenance.creator
    if role == APPROVER:
        return replace(approval, operator=name), ""
    if role in UP_FRONT_APPROVER_ROLES:
        return approval, ""
    return None, f"the run was started by {name} ({role}), and only an approver may approve a plan up front"


def _judge_answer(subject: str, digest: str, answer, provenance: RunProvenance) -> Approval | str:
    """The answer at the pause; behind the proxy its approver is the identity the proxy recorded
    with the resume, whatever name was typed in the form."""
    if not provenance.behind_proxy:
        return answer_at_the_gate(subject, digest, answer.decision, answer.plan_digest, answer.operator)
    approver = _recorded_approver(provenance.flow_run_id) or _phone_approver(provenance.flow_run_id, answer.plan_digest)
    if approver is None:
        return "no approver was recorded by the API proxy with this answer: resume the run through the proxy as an approver"
    if answer.operator.strip() and answer.operator.strip() != approver:
        get_run_logger().info(
            "%s: the form names %r; the proxy authenticated %s, who is recorded", subject, answer.operator.strip(), approver
        )
    return answer_at_the_gate(subject, digest, answer.decision, answer.plan_digest, approver)


def _phone_approver(flow_run_id: str | None, digest: str) -> str | None:
    """An approver who approved exactly this plan from the phone (recorded by the control site's
    webhook after its own checks: ``hotspare/phone_approvals.py``)."""
    return approvals.phone_approver(flow_run_id, digest) if flow_run_id else None


def _recorded_approver(flow_run_id: str | None) -> str | None:
    """The approver nginx recorded on this run just before the newest answer it received."""
    import orjson
    from prefect.client.orchestration import get_client

    if flow_run_id is None:
        return None
    with get_client(sync_client=True) as client:
        records = client.filter_flow_run_input(UUID(flow_run_id), APPROVER_RECORD_PREFIX, 200, set())
        answered = [
            item.created
            for item in client.filter_flow_run_input(UUID(flow_run_id), "paused-", 200, set())
            if item.key.endswith("-response") and item.created is not None
        ]
    if not answered:
        return None
    answered_at = max(answered)

    def value(item):
        try:
            return orjson.loads(item.value)
        except orjson.JSONDecodeError:
            return None

    return approver_from_records(
        [(item.key, item.created, value(item)) for item in records if item.created is not None], answered_at
    )


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
