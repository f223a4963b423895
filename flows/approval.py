"""The approval gate every gated runbook pauses at: one form in the Prefect UI, one rule.

The rule (up front, at the gate, again under the lock) is ``hotspare/planning/approval.py``.
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from hotspare.planning.approval import approved_at_the_gate, approved_up_front


class PlanApproval(RunInput):
    """What the operator fills in in the Prefect UI to let a paused run continue.

    Defaults mean "no": resuming without input rejects the plan.
    """

    approve: bool = Field(default=False, description="Tick to approve the plan shown in this run's artifacts.")
    plan_digest: str = Field(default="", description="Type the plan digest from the plan artifact, to approve exactly that plan.")
    operator: str = Field(default="", description="Your name, for the record.")


def await_approval(subject: str, digest: str, markdown: str, yes: bool, approved_plan_digest: str | None,
                   timeout_seconds: int) -> str:
    """A sentence saying who approved ``digest``; pauses for the operator unless approved up front.

    Raises ``PlanNotApproved`` when the answer is no or names another plan, and Prefect's
    ``FlowPauseTimeout`` when nobody answers within ``timeout_seconds``.
    """
    sentence = approved_up_front(subject, digest, yes, approved_plan_digest)
    if sentence is not None:
        return sentence
    get_run_logger().info("%s: waiting for approval in the Prefect UI (plan digest %s), at most %d s",
                          subject, digest, timeout_seconds)
    answer = pause_flow_run(
        wait_for_input=PlanApproval.with_initial_data(description=markdown, approve=False, plan_digest="", operator=""),
        timeout=timeout_seconds,
        poll_interval=2,
    )
    return approved_at_the_gate(subject, digest, answer.approve, answer.plan_digest, answer.operator)
