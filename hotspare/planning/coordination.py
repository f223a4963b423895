"""Which runs may act on a service in which state: pure rules with the sentence that explains them.

A replication, verification or backup of a service that is failing over, failed over without
reprotect, or being rebuilt would copy a stale production, promote that copy over the one the
failover uses, or merge old accounts onto the now-live host. These rules refuse it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hotspare.planning.replication import Decision

# States in which routine work (replicate, verify, backup, restore proof) runs on its own.
ROUTINE_STATES = {
    "replicate": ("protected",),
    "verify": ("protected",),
    "backup": ("protected", "failed-over", "unprotected"),
}
WHAT_TO_DO = {
    "failing-over": "let the failover finish (or resume it with `hotspare failover SERVICE --resume`)",
    "failed-over": "run `hotspare reprotect SERVICE` first; it replicates and verifies in the new direction",
    "unprotected": "assign a mirror with `hotspare reprotect SERVICE --mirror SERVER`",
    "reprotecting": "let the reprotect finish",
    "rebuilding": "let the rebuild finish",
}


def judge_routine_run(kind: str, service: str, state: str) -> Decision:
    """May a routine run of ``kind`` start on ``service`` in ``state``?"""
    allowed = ROUTINE_STATES[kind]
    if state in allowed:
        return Decision(True, f"{service} is {state}: {kind} may run")
    advice = WHAT_TO_DO.get(state, "check `hotspare status`").replace("SERVICE", service)
    return Decision(False, f"refusing to {kind} {service}: it is {state}; {advice}. Nothing was touched.")


def judge_failback(service: str, state: str, active: str, planned_production: str, in_flight: dict[str, Any] | None) -> Decision:
    """May a failback (a planned switchover to the planned production) start? If not, the
    command that does what the operator wants: after a failback whose process died, that is the
    resume of that failover, not a reprotect."""
    if state == "failing-over" and in_flight:
        target, source = in_flight.get("target"), in_flight.get("source")
        what = "a failback" if target == planned_production else "a failover"
        return Decision(
            False,
            (
                f"{what} of {service} from {source} to {target} is in flight (it stopped midway if its run is gone): "
                f"`hotspare failover {service} --resume` continues it once no run holds {service}'s lock "
                f"(`hotspare status` names the holder). Nothing was touched."
            ),
        )
    if state == "reprotecting" and active == planned_production:
        return Decision(
            False,
            f"{service} is back on {planned_production} and its reprotect stopped midway: "
            f"`hotspare reprotect {service}` finishes it. Nothing was touched.",
        )
    if active == planned_production:
        return Decision(
            False,
            f"{service} already runs on its planned production {planned_production} ({state}): "
            f"there is nothing to fail back. Nothing was touched.",
        )
    if state != "protected":
        return Decision(
            False,
            f"{service} is {state} on {active}: failback needs a reprotected service running away "
            f"from its planned production {planned_production}; run `hotspare reprotect {service}` "
            f"first. Nothing was touched.",
        )
    return Decision(True, f"{service} is protected on {active}: it may fail back to {planned_production}")


def judge_drill_gone(
    drill_id: str, service: str, started: datetime, lock_holder: str | None, now: datetime, grace: timedelta
) -> Decision:
    """Is a drill recorded as running gone (killed, its bubble left with production's address)?

    A live drill holds its service's lock as ``drill:<id>`` from a moment after its record is
    made until its teardown is proven; so a drill older than ``grace`` (a couple of leases, by
    the inventory's clock) whose lock is free or someone else's is gone."""
    if lock_holder == f"drill:{drill_id}":
        return Decision(False, f"drill {drill_id} of {service} is alive: it holds the service's lock")
    if now - started < grace:
        return Decision(
            False,
            f"drill {drill_id} of {service} started {(now - started).total_seconds():.0f} s ago: it may not hold its lock yet",
        )
    holder = f"{lock_holder} holds the lock" if lock_holder else "its lock is free"
    return Decision(True, f"drill {drill_id} of {service} is recorded as running but is gone ({holder}): removing its bubble")
