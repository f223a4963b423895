"""The approval rules without a Prefect API: digests, who approved, up-front approvals and their
window, wrong answers at the gate (the gate itself, paused in a real run, is tests/test_approval.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hotspare.commands.errors import exit_code_of
from hotspare.planning.approval import (
    DIGEST_LENGTH,
    Approval,
    PlanNotApproved,
    PlanRejected,
    answer_at_the_gate,
    approved_up_front,
    plan_digest,
    same_plan,
)

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)


def test_the_digest_is_one_form_and_follows_the_content():
    first = plan_digest({"service": "app1", "target": "mirror-west"})
    assert len(first) == DIGEST_LENGTH and int(first, 16) >= 0
    assert first == plan_digest({"target": "mirror-west", "service": "app1"})  # key order does not matter
    assert first != plan_digest({"service": "app1", "target": "mirror-east"})


def test_up_front_approval_binds_to_the_digest_and_names_a_person():
    assert approved_up_front("failover of app1", "abc", False, None) is None  # ask the operator
    approval = approved_up_front("failover of app1", "abc", True, None, "Dana Ops")
    assert approval.operator == "Dana Ops" and approval.sentence() == (
        "failover of app1: approved by Dana Ops up front (yes) (plan digest abc)"
    )
    assert approved_up_front("failover of app1", "abc", False, " abc ", "dana").how == "up front (its plan digest)"
    with pytest.raises(PlanNotApproved, match="approval was for plan abd, but the plan is now abc") as raised:
        approved_up_front("rebuild of app1", "abc", False, "abd")
    assert exit_code_of(raised.value) == 7


def test_an_up_front_approval_does_not_outlive_its_window():
    deadline = NOW + timedelta(minutes=5)
    assert approved_up_front("failover of app1", "abc", True, None, "dana", deadline, NOW + timedelta(minutes=4))
    with pytest.raises(
        PlanRejected, match=r"good until 2026-12-06 09:05:00 UTC.*started at 09:12:00 UTC \(420 s later"
    ) as raised:
        approved_up_front("failover of app1", "abc", True, None, "dana", deadline, NOW + timedelta(minutes=12))
    assert "nothing was changed" in str(raised.value) and exit_code_of(raised.value) == 7
    with pytest.raises(PlanRejected):  # bound to a digest or not: late is late
        approved_up_front("failover of app1", "abc", False, "abc", "dana", deadline, NOW + timedelta(minutes=12))


@pytest.mark.parametrize(
    "decision, typed, operator, reason",
    [
        ("approve", "", "dana", "the plan digest was left empty"),
        ("approve", "abd", "dana", "the digest typed (abd) is not this plan's (abc)"),
        ("approve", "abc", "  ", "the operator field was empty"),
    ],
)
def test_a_wrong_answer_at_the_gate_is_a_reason_to_ask_again(decision, typed, operator, reason):
    assert reason in answer_at_the_gate("failover of app1", "abc", decision, typed, operator)


def test_reject_needs_no_digest_and_names_who_rejected():
    with pytest.raises(PlanRejected, match="rejected by Lee Lead at the pause.*nothing was changed"):
        answer_at_the_gate("failover of app1", "abc", "reject", "", "Lee Lead")


def test_the_gate_records_the_person_who_approved():
    approval = answer_at_the_gate("failover of app1", "abc", "approve", "abc ", " Dana Ops ")
    assert approval == Approval("failover of app1", "abc", "Dana Ops", "at the pause in the Prefect UI")


def test_a_plan_that_changed_under_the_lock_stops_the_run():
    same_plan("failover of app1", "abc", "abc", "plan")  # unchanged: nothing raised
    with pytest.raises(PlanNotApproved, match="stopped before any step.*now abd \\(refused: no copy\\)"):
        same_plan("failover of app1", "abc", "abd", "# new plan", refusal="no copy")
