"""Where a run executes: which facility's work pool gets it. Pure: facts in, a choice out.

A run that acts on a service never runs in the facility it recovers from: a failover of a
service that is active in east runs in west (its mirror's facility) or at the control site,
because east may be the thing that is lost. Runs that act on no single service go to the
control site. Among the allowed facilities, one whose worker is online wins, in the order
mirror facility, control, then the others by name.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTROL = "control"


@dataclass(frozen=True)
class Placement:
    """The chosen facility (None: nowhere to run) and the sentence that explains the choice."""

    facility: str | None
    reason: str


def choose_facility(active_facility: str | None, mirror_facility: str | None, online: dict[str, bool]) -> Placement:
    """Pick the facility whose pool runs the job.

    ``active_facility``: where the service serves users now (None for fleet-wide runs);
    ``mirror_facility``: its mirror's; ``online``: {facility: whether its pool has an online worker}.
    """
    candidates = [facility for facility in online if facility != active_facility]
    preferred = [mirror_facility, CONTROL] if active_facility else [CONTROL, mirror_facility]
    order = [facility for facility in preferred if facility in candidates]
    order += sorted(facility for facility in candidates if facility not in order)
    if not order:
        return Placement(
            None,
            f"no work pool outside {active_facility}: deploy to another facility (`hotspare deploy`) and start a worker there",
        )
    avoided = f"not {active_facility}, where the service runs now" if active_facility else "no single service"
    for facility in order:
        if online[facility]:
            return Placement(facility, f"runs in {facility} ({avoided}; its worker is online)")
    return Placement(
        order[0], f"runs in {order[0]} ({avoided}); no worker is online in {', '.join(order)}: the run waits until one starts"
    )
