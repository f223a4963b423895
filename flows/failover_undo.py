"""Undoing a failover that stopped before DNS moved, and saying truly where the service serves.

A planned switchover that stops before the cutover goes back to production; a failure after the
copy went live (a full disk, the app's start) takes the activation back. Both use only what the
run holds (the context it resolved at its start), so they work with the inventory unreachable; an
outcome the inventory cannot take now is kept for the next run to write (``late_outcomes``).
"""

from __future__ import annotations

from prefect import get_run_logger

from flows.failover_signals import fence_outcome
from hotspare.fleet.context import ServiceContext
from hotspare.inventory import failovers, late_outcomes
from hotspare.inventory.db import InventoryUnreachable
from hotspare.planning.failover import FailoverPlan
from tasks.failover import health_check_direct, run_app_commands, undo_activation


def back_to_production(plan: FailoverPlan, context: ServiceContext, run_id: int, stop_target: bool = True) -> str:
    """A planned switchover that stops before DNS moved leaves everything on production: the app
    stopped on the target, started on the source and checked there. Uses only what the run
    holds (the context it resolved at its start), so it works with the inventory unreachable.
    Returns the sentence of what really happened, also logged."""
    logger = get_run_logger()
    done, trouble = [], []
    if stop_target:
        try:
            run_app_commands(context, plan.target, "deactivate")
            done.append(f"the app on {plan.target} was stopped again")
        except Exception as error:  # keep going: the source matters more, the operator needs every reason
            trouble.append(f"the app on {plan.target} could NOT be stopped ({error})")
    try:
        run_app_commands(context, plan.source, "activate")
        if context.spec.health_url:
            health_check_direct(context, plan.source_address)
            done.append(f"the app runs on {plan.source} again and answers its health check")
        else:
            done.append(f"the app was started on {plan.source} again (no health URL to check it)")
    except Exception as error:
        trouble.append(f"the app on {plan.source} is NOT confirmed running ({error}): start it there with its activate commands")
    sentence = "; ".join(done + trouble) + f"; DNS was not changed (it points to {plan.source} at {plan.source_address})"
    sentence += clear_in_flight_or_keep(plan.service, run_id)
    (logger.error if trouble else logger.warning)("switchover stopped before the DNS cutover: %s", sentence)
    return sentence


def clear_in_flight_or_keep(service: str, run_id: int) -> str:
    """Record that the failover stopped; with the inventory unreachable, keep that for the next
    run to write (``late_outcomes``). An empty string, or the sentence saying so."""
    try:
        failovers.clear_in_flight(service, get_run_logger())
        return ""
    except InventoryUnreachable:
        late_outcomes.keep(run_id, failover_stopped=service)
        return (
            f"; the inventory is unreachable, so it still shows {service} failing over: the next run that starts "
            "once it answers records that this one was undone"
        )


def undo_activated_copy(
    plan: FailoverPlan,
    copy_id: str,
    activation: dict,
    fencing,
    details: dict,
    error: BaseException,
    context: ServiceContext,
    run_id: int,
) -> None:
    """A failure after the copy went live (the target's disk filled by the app's start, its
    accounts or start command failing) and before DNS moved: take the activation back, so the
    target is as it was and a new failover starts afresh, and say where the service serves now."""
    logger = get_run_logger()
    try:
        undone = undo_activation(context, plan.target, activation)
    except Exception as failure:  # noqa: BLE001  (the run's own error stays the outcome; resume can finish it)
        logger.error(
            "failover of %s stopped after copy %s went live on %s (%s), and undoing that failed too (%s): "
            "the service stays failing-over; fix both, then run the failover with resume",
            plan.service,
            copy_id,
            plan.target,
            error,
            failure,
        )
        return
    if plan.mode == "planned":  # the target's app is stopped already (the undo)
        where = back_to_production(plan, context, run_id, stop_target=False)
    else:
        where = _where_it_serves(plan, fencing, details) + clear_in_flight_or_keep(plan.service, run_id)
    sentence = (
        f"failover of {plan.service} stopped after copy {copy_id} went live on {plan.target} ({error}); "
        f"the activation was undone: {undone}. {where}"
    )
    logger.error(sentence)
    if not getattr(error, "advice", None):
        try:
            error.advice = (
                f"{sentence}. Fix what stopped it (a full disk: free space on {plan.target}), then run the "
                "failover again: a new run, not a resume"
            )
        except AttributeError:
            pass


def _where_it_serves(plan: FailoverPlan, fencing, details: dict) -> str:
    """After an emergency failover was undone: the truth about the old production and DNS."""
    try:
        outcome = fence_outcome(fencing) if fencing is not None else None
    except Exception as error:  # the fence's own failure is part of the truth
        outcome = {"fenced": False, "detail": str(error)}
    if outcome is not None:
        details["fencing"] = outcome
    dns_phrase = f"DNS still points to it ({plan.source_address}), the inventory shows {plan.service} there, not failing over"
    if outcome and outcome.get("fenced"):
        return f"{plan.service} serves nowhere now: {plan.source} was fenced ({outcome.get('method')}); {dns_phrase}"
    if outcome:
        return (
            f"{plan.service} is served only if {plan.source} still runs it: it was not fenced "
            f"({outcome.get('detail')}); {dns_phrase}"
        )
    return f"{plan.service} serves on {plan.source} only if it still runs there; {dns_phrase}"
