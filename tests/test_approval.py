"""One approval rule for every gated runbook: up front, at the gate, again under the lock."""

from __future__ import annotations

import pytest

from hotspare.commands.errors import exit_code_of
from hotspare.planning.approval import (
    DIGEST_LENGTH,
    PlanNotApproved,
    approved_at_the_gate,
    approved_up_front,
    plan_digest,
    same_plan,
)


def test_the_digest_is_one_form_and_follows_the_content():
    first = plan_digest({"service": "app1", "target": "mirror-west"})
    assert len(first) == DIGEST_LENGTH and int(first, 16) >= 0
    assert first == plan_digest({"target": "mirror-west", "service": "app1"})  # key order does not matter
    assert first != plan_digest({"service": "app1", "target": "mirror-east"})


def test_up_front_approval_binds_to_the_digest():
    assert approved_up_front("failover of app1", "abc", False, None) is None  # ask the operator
    assert "approved up front (yes)" in approved_up_front("failover of app1", "abc", True, None)
    assert "plan digest abc" in approved_up_front("failover of app1", "abc", False, " abc ")
    with pytest.raises(PlanNotApproved, match="approval was for plan abd, but the plan is now abc") as raised:
        approved_up_front("rebuild of app1", "abc", False, "abd")
    assert exit_code_of(raised.value) == 7


@pytest.mark.parametrize("approve, typed", [(False, "abc"), (True, "abd"), (True, "")])
def test_the_gate_refuses_anything_but_exactly_this_plan(approve, typed):
    with pytest.raises(PlanNotApproved, match="not approved"):
        approved_at_the_gate("failover of app1", "abc", approve, typed, "dana")


def test_the_gate_names_who_approved():
    assert approved_at_the_gate("failover of app1", "abc", True, "abc ", "dana") == (
        "failover of app1: approved by dana (plan digest abc)")
    assert "an operator in the Prefect UI" in approved_at_the_gate("failover of app1", "abc", True, "abc", "")


def test_a_plan_that_changed_under_the_lock_stops_the_run():
    same_plan("failover of app1", "abc", "abc", "plan")  # unchanged: nothing raised
    with pytest.raises(PlanNotApproved, match="stopped before any step.*now abd \\(refused: no copy\\)"):
        same_plan("failover of app1", "abc", "abd", "# new plan", refusal="no copy")
