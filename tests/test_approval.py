"""One approval rule for every gated runbook: up front, at the gate, again under the lock.

The rule is pure (``hotspare/planning/approval.py``, tests/unit/test_approval_rules.py); the gate (``flows/approval.py``) runs
here in real flow runs on the session's Prefect API: a wrong digest pauses again with the
reason, the server refuses an incomplete answer, reject and a pre-approval that outlived its
window end the run cancelled, and the approver is recorded as a person.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from hotspare.planning.approval import (
    PlanRejected,
)

from lab_helpers import poll

DIGEST = "0123456789abcdef"


# --- the gate in real flow runs ---------------------------------------------------------------


def gated_flow():
    """A flow with the gate every gated runbook has (the plan is a fixed digest): it returns
    who approved, or ends cancelled."""
    from prefect import flow

    from flows.approval import await_approval, cancelled_state

    @flow(name="approval-gate-under-test")
    def gated(yes: bool = False, approval_expires_at: datetime | None = None) -> str:
        try:
            approval = await_approval(
                "test of the gate", DIGEST, "# The plan\n\nPlan digest: `0123456789abcdef`", yes, None, 90, approval_expires_at
            )
        except PlanRejected as error:
            return cancelled_state(error)
        return approval.operator

    return gated


def paused_run_of_the_gate(after_pause: int = 0):
    """The paused run of the flow under test, once it paused more than ``after_pause`` times."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["approval-gate-under-test"])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
        )
    found = [run for run in found if int(run.state.state_details.pause_key) > after_pause]
    return found[0] if found else None


def form_of(run) -> tuple[dict, str]:
    """The JSON schema and the description the UI shows for the run's current pause."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.input import keyset_from_paused_state

    keyset = keyset_from_paused_state(run.state)
    with get_client(sync_client=True) as client:
        schema = client.read_flow_run_input(run.id, keyset["schema"])
        description = client.read_flow_run_input(run.id, keyset["description"])
    return json.loads(schema), json.loads(description)


def test_the_form_requires_every_field_and_shows_the_digest_beside_its_field(prefect_api):
    from prefect.flow_runs import resume_flow_run

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(gated_flow(), return_state=True)
        try:
            paused = poll(paused_run_of_the_gate, 60, "the gate to pause")
            schema, description = form_of(paused)
            assert set(schema["required"]) == {"decision", "plan_digest", "operator"}
            properties = schema["properties"]
            assert all(properties[name].get("description") for name in ("decision", "plan_digest", "operator"))
            assert DIGEST in properties["plan_digest"]["title"] and DIGEST in properties["plan_digest"]["description"]
            assert "# The plan" in description
            with pytest.raises(RuntimeError, match="'decision' is a required property"):  # what the UI shows
                resume_flow_run(paused.id, run_input={"plan_digest": DIGEST})  # no decision, no operator
            assert paused_run_of_the_gate() is not None  # still paused, at the same pause
            resume_flow_run(paused.id, run_input={"decision": "approve", "plan_digest": DIGEST, "operator": "Dana Ops"})
            state = waiting.result(timeout=120)
        finally:
            _end_paused_runs()
    assert state.is_completed() and state.result() == "Dana Ops"


def test_a_wrong_digest_pauses_again_with_the_reason_instead_of_failing(prefect_api):
    from prefect.flow_runs import resume_flow_run

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(gated_flow(), return_state=True)
        try:
            first = poll(paused_run_of_the_gate, 60, "the gate to pause")
            resume_flow_run(
                first.id, run_input={"decision": "approve", "plan_digest": "0123456789abcdee", "operator": "Dana Ops"}
            )
            second = poll(
                lambda: paused_run_of_the_gate(after_pause=int(first.state.state_details.pause_key)),
                60,
                "the gate to pause again",
            )
            assert second.id == first.id  # the same run, not failed
            _schema, description = form_of(second)
            assert "Not approved yet: the digest typed (0123456789abcdee) is not this plan's (0123456789abcdef)" in description
            resume_flow_run(second.id, run_input={"decision": "approve", "plan_digest": "", "operator": "Dana Ops"})
            third = poll(
                lambda: paused_run_of_the_gate(after_pause=int(second.state.state_details.pause_key)),
                60,
                "the gate to pause a third time",
            )
            assert "the plan digest was left empty" in form_of(third)[1]
            resume_flow_run(third.id, run_input={"decision": "approve", "plan_digest": DIGEST, "operator": "Dana Ops"})
            state = waiting.result(timeout=120)
        finally:
            _end_paused_runs()
    assert state.is_completed() and state.result() == "Dana Ops"


def test_reject_ends_the_run_cancelled_and_names_who_rejected(prefect_api):
    from prefect.flow_runs import resume_flow_run

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(gated_flow(), return_state=True)
        try:
            paused = poll(paused_run_of_the_gate, 60, "the gate to pause")
            resume_flow_run(paused.id, run_input={"decision": "reject", "plan_digest": "-", "operator": "Lee Lead"})
            state = waiting.result(timeout=120)
        finally:
            _end_paused_runs()
    assert state.is_cancelled(), state
    assert "rejected by Lee Lead" in state.message and "nothing was changed" in state.message


def test_a_pre_approved_run_that_starts_after_its_deadline_ends_cancelled(prefect_api):
    late = datetime.now(timezone.utc) - timedelta(seconds=1)
    state = gated_flow()(yes=True, approval_expires_at=late, return_state=True)
    assert state.is_cancelled() and "up-front approval was good until" in state.message
    assert gated_flow()(yes=True, return_state=True).result()  # due now: within the default window


def test_a_queued_pre_approved_run_picked_up_late_ends_cancelled_without_a_deadline_parameter(prefect_api):
    """Whoever created the run (UI, API) and whenever a worker starts it: the run's own scheduled
    start plus the window is the deadline. Run here as a worker's process runs it."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow_sync
    from prefect.states import Scheduled

    from hotspare.planning.approval import UP_FRONT_WINDOW_SECONDS

    gated = gated_flow()
    due = datetime.now(timezone.utc) - timedelta(seconds=UP_FRONT_WINDOW_SECONDS + 60)
    with get_client(sync_client=True) as client:
        queued = client.create_flow_run(gated, parameters={"yes": True}, state=Scheduled(scheduled_time=due))
    state = run_flow_sync(gated, flow_run=queued, parameters={"yes": True}, return_type="state")
    assert state.is_cancelled(), state
    assert "it waited for a worker" in state.message


def _end_paused_runs() -> None:
    """Leave no run of the flow under test paused for the next test."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    while (run := paused_run_of_the_gate()) is not None:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelled(message="test over"), force=True)
