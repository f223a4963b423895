"""What a failover tells the operator beyond its result: signals that do not lie.

- The fence step that cannot fence ends in a FAILED state named **Unfenced** (red in the
  Prefect UI) while the failover goes on: a Completed state is green whatever its name, and
  Cancelled or Crashed would say the step did not run or the machine broke. The summary says
  UNFENCED and what to do.
- A failover or switchover stopped midway says what it changed and undid (the copy went live
  and was stopped again), as the error's advice, which the command line shows instead of its
  kind's "nothing was changed".
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.states import Failed, State

from hotspare.planning.failover import FailoverPlan
from tasks.fencing import fence

UNFENCED = "Unfenced"


@task(name="fence production", cache_policy=NO_CACHE)
def fence_production(service: str, server: str, power_off: bool = True) -> dict | State:
    """Fence the old production (``tasks.fencing.fence``: its app stopped, or its power off). When that cannot be done
    the step ends in a FAILED state named "Unfenced", red in the Prefect UI, carrying the same
    result: the failover goes on (users need the service), but nobody should read a green step
    while the old production may still serve stale data. A Completed state is green whatever
    its name, and Cancelled or Crashed would say the step did not run or the machine broke."""
    result = fence.fn(service, server, power_off=power_off)
    if result["fenced"]:
        return result
    return Failed(
        name=UNFENCED,
        data=result,
        message=f"{server} was not fenced ({result['detail']}): it may still serve {service} with stale data "
        "if it comes back; stop its app before it does",
    )


def fence_step(service: str, server: str, power_off: bool = True) -> dict:
    """Fence ``server`` now and say what was done (see ``fence_outcome``)."""
    return fence_outcome(fence_production.submit(service, server, power_off))


def fence_outcome(submitted: PrefectFuture) -> dict:
    """What the submitted ``fence_production`` did, once it ends; an Unfenced step is an outcome
    the run carries on from, any other failure of the step stops the failover."""
    submitted.wait()
    state = submitted.state
    if state.is_failed() and state.name != UNFENCED:
        state.result()  # raises the step's own error
    return state.result(raise_on_failure=False)


def unfenced_warning(plan: FailoverPlan, details: dict) -> str:
    fencing = details.get("fencing")
    if not fencing or fencing.get("fenced", True):
        return ""
    return (
        f". WARNING: UNFENCED: the old production {plan.source} could not be stopped ({fencing.get('detail')}); if it "
        f"comes back it may still serve {plan.service} with stale data: stop its app (`deactivate`) before it does, "
        f"then `hotspare reprotect {plan.service}`"
    )


def say_what_was_undone(error: BaseException, undone: str) -> None:
    """Give ``error`` advice that says what this run changed and undid; the command line shows it
    instead of its kind's advice (a refusal's "nothing was changed" would not be true)."""
    if not getattr(error, "advice", None):
        try:
            error.advice = f"{undone}; fix what the message names, then run the switchover again"
        except AttributeError:  # an exception type without a __dict__: its kind's advice stays
            pass


def changes_before_cutover(plan: FailoverPlan, copy_id: str, details: dict) -> str:
    """The changes a failover made before its DNS cutover, in one phrase."""
    done = []
    if plan.mode == "planned":
        done.append(f"the app was stopped on {plan.source} for the final sync (and started again there)")
    else:
        fencing = details.get("fencing") or {}
        done.append(
            f"{plan.source} was fenced (its app stopped; it stays stopped)"
            if fencing.get("fenced")
            else f"{plan.source} could not be fenced"
        )
    done.append(f"copy {copy_id} was made live on {plan.target} and its app started")
    return "; ".join(done)
