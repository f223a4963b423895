"""Which runs may act on a service in which state: pure rules with the sentence that explains them.

A replication, verification or backup of a service that is failing over, failed over without
reprotect, or being rebuilt would copy a stale production, promote that copy over the one the
failover uses, or merge old accounts onto the now-live host. These rules refuse it.
"""

from __future__ import annotations

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
