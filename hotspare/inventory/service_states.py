"""A service's state in the inventory and the only transitions the runbooks may make.

    protected ──failover starts──> failing-over ──users moved──> failed-over
        ▲    <──stopped, nothing moved──┘                            │
        │                                                            │ reprotect starts
        └──────────── mirror verified ─── reprotecting <─────────────┘
    unprotected (no mirror: lost facility, rebuild, failed reprotect) ──reprotect starts──> reprotecting

Runbooks change a service's state only through ``move`` (or ``next_state`` to ask first), so a
new runbook cannot invent a state or jump over one, and every change is a logged sentence.
The values are the strings stored in ``ServiceRow.state``; planners that read a state compare
with the same strings (``ServiceState`` is a ``str`` enum).
"""

from __future__ import annotations

from enum import Enum


class ServiceState(str, Enum):
    protected = "protected"  # production serves, a verified mirror stands by
    failing_over = "failing-over"  # a failover run is moving users (its record says where)
    failed_over = "failed-over"  # users are on the former mirror; no mirror until reprotect
    reprotecting = "reprotecting"  # a mirror is assigned, its first copy not verified yet
    unprotected = "unprotected"  # production serves, no usable mirror


class Event(str, Enum):
    """What happened to the service, in the words of the runbooks."""

    failover_started = "failover started"
    failover_stopped = "failover stopped with nothing moved"
    users_moved = "users moved to the new production"
    reprotect_started = "reprotect started"
    mirror_verified = "the new mirror's copy was verified"
    reprotect_failed = "reprotect failed"
    mirror_lost = "the mirror's facility was lost"
    rebuilt = "rebuilt on a standby"


S, E = ServiceState, Event
# (state, event) -> next state. ``failover_stopped`` depends on whether a mirror remains, so it
# has two entries chosen by ``move(..., has_mirror=...)``.
TRANSITIONS: dict[tuple[ServiceState, Event], ServiceState] = {
    (S.protected, E.failover_started): S.failing_over,
    (S.unprotected, E.failover_started): S.failing_over,
    (S.failed_over, E.failover_started): S.failing_over,  # a failed-over service moved again (emergency)
    (S.failing_over, E.failover_started): S.failing_over,  # resume
    (S.reprotecting, E.failover_started): S.failing_over,  # forced, to a mirror not verified yet
    (S.failing_over, E.users_moved): S.failed_over,
    (S.failed_over, E.reprotect_started): S.reprotecting,
    (S.unprotected, E.reprotect_started): S.reprotecting,
    (S.reprotecting, E.reprotect_started): S.reprotecting,  # a failed reprotect run again
    (S.reprotecting, E.mirror_verified): S.protected,
    (S.reprotecting, E.reprotect_failed): S.unprotected,
    (S.protected, E.mirror_lost): S.unprotected,
}
# Any state may end in a rebuild (production and mirror both lost).
TRANSITIONS.update({(state, E.rebuilt): S.unprotected for state in S})


class InvalidTransition(ValueError):
    """A runbook asked for a state change the service's state does not allow."""


def next_state(current: str, event: Event, has_mirror: bool = True) -> ServiceState:
    """The state after ``event`` in state ``current``; InvalidTransition when not allowed."""
    state = ServiceState(current)
    if event is Event.failover_stopped:
        if state is not S.failing_over:
            raise InvalidTransition(f"a service that is {state.value} has no failover to stop")
        return S.protected if has_mirror else S.unprotected
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s is state)
        raise InvalidTransition(
            f"a service that is {state.value} cannot go through '{event.value}' (allowed: {', '.join(allowed) or 'none'})"
        ) from None


def move(row, event: Event, logger=None) -> ServiceState:
    """Set ``row.state`` (a ServiceRow) to its next state after ``event``, log the sentence, return it."""
    before = row.state
    after = next_state(before, event, has_mirror=bool(getattr(row, "mirror_server", None)))
    row.state = after.value
    if logger is not None:
        logger.info("%s: %s -> %s (%s)", row.name, before, after.value, event.value)
    return after
