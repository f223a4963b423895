"""Service states and their transitions, without a lab: the runbooks can only make these moves."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from hotspare.inventory.service_states import TRANSITIONS, Event, InvalidTransition, ServiceState, move, next_state


def test_the_failover_cycle():
    state = ServiceState.protected
    for event, expected in [
        (Event.failover_started, "failing-over"),
        (Event.users_moved, "failed-over"),
        (Event.reprotect_started, "reprotecting"),
        (Event.mirror_verified, "protected"),
    ]:
        state = next_state(state, event)
        assert state.value == expected


@pytest.mark.parametrize("has_mirror, expected", [(True, "protected"), (False, "unprotected")])
def test_a_failover_stopped_with_nothing_moved_goes_back(has_mirror, expected):
    assert next_state("failing-over", Event.failover_stopped, has_mirror=has_mirror).value == expected
    with pytest.raises(InvalidTransition, match="no failover to stop"):
        next_state("protected", Event.failover_stopped)


def test_moves_that_skip_a_step_are_refused_with_what_is_allowed():
    with pytest.raises(InvalidTransition, match="protected cannot go through 'users moved.*allowed: .*failover started"):
        next_state("protected", Event.users_moved)
    with pytest.raises(InvalidTransition):
        next_state("failed-over", Event.mirror_verified)  # reprotect must start first
    with pytest.raises(ValueError):
        next_state("half-protected", Event.failover_started)  # not a state at all


def test_a_lost_mirror_and_a_rebuild():
    assert next_state("protected", Event.mirror_lost) is ServiceState.unprotected
    assert {next_state(state, Event.rebuilt) for state in ServiceState} == {ServiceState.unprotected}
    assert next_state("reprotecting", Event.reprotect_failed) is ServiceState.unprotected


def test_every_state_can_be_left():
    leaving = {state for state, _event in TRANSITIONS}
    assert leaving == set(ServiceState)


def test_move_sets_the_row_and_says_so(caplog):
    row = SimpleNamespace(name="app1", state="protected", mirror_server="mirror-west")
    with caplog.at_level(logging.INFO):
        assert move(row, Event.failover_started, logging.getLogger("test")) is ServiceState.failing_over
    assert row.state == "failing-over"
    assert "app1: protected -> failing-over (failover started)" in caplog.text
