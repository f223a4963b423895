"""Unattended failover: the health runbook fails a service over itself, at once.

For services whose health policy is ``automatic_failover: unattended``: the multi-site quorum
has declared the production down, and every minute an approver takes is a minute of outage.
"""

from __future__ import annotations

from prefect.runtime import flow_run

from flows.failover import failover
from flows.unattended_gate import from_the_health_run
from hotspare.inventory import copies
from hotspare.planning.health import Change


def fail_over_unattended(service: str, change: Change, logger) -> dict:
    """Fail ``service`` over in this run, approved by the fleet's ``unattended`` policy: the
    multi-site quorum has declared its production down, and every minute an approver takes is a
    minute of outage. The failover fences the old production (its app stopped, else its power
    off), so it can come back without serving; paging and customer notices follow the incident
    as for any outage. Never raises: the outcome is a sentence in the round's summary."""
    logger.warning(
        "failing %s over now, unattended (the fleet's health policy): its production %s is down",
        service,
        change.subject.removeprefix("server:"),
    )
    try:
        with from_the_health_run(flow_run.get_id()):  # the proof this failover is the health run's own subflow
            state = failover(service, yes=True, unattended=True, return_state=True)
    except Exception as error:  # a side channel of the health round: never stops the checks
        state, result = None, {"outcome": "failed", "error": str(error)}
    else:
        result = state.result(raise_on_failure=False) if state.is_completed() else {"outcome": state.name}
    if (
        state is not None
        and state.is_completed()
        and isinstance(result, dict)
        and result.get("outcome") in ("ok", "already-done")
    ):
        sentence = f"failed {service} over unattended: it runs on {copies.service_row(service).active_server} now" + (
            "" if result.get("fencing", {}).get("fenced", True) else "; the old production is UNFENCED"
        )
        logger.warning(sentence)
        return {"service": service, "submitted": True, "unattended": True, "outcome": result.get("outcome"), "reason": sentence}
    detail = str(state.message) if state is not None and state.message else str(result)
    sentence = f"the unattended failover of {service} did not complete: {detail[:300]}"
    logger.error(sentence)
    return {"service": service, "submitted": True, "unattended": True, "outcome": "failed", "reason": sentence}
