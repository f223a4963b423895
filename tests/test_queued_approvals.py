"""A pre-approved run does not outlive its moment: ``hotspare run`` against the session's real
Prefect API, with the lab's fleet deployed to the facilities' pools and no worker running.

- With no worker online in the chosen pool, ``hotspare run failover app1 -p yes=true`` submits
  nothing and names the pools that have one.
- A worker that sent its heartbeat and then died (its pool counts as online for a while): the
  pre-approved run is submitted with a deadline, nobody starts it, and when ``hotspare run``
  gives up it cancels the run: nothing is left queued for the next worker to poll.

The flow's own refusal of a run that starts after its approval's deadline is in
``test_approval.py`` (a queued run started late, as a worker starts it) and ``test_failover.py``.
"""

from __future__ import annotations

import pytest

from hotspare.commands.errors import exit_code_of

SERVICE = "app1"


@pytest.fixture(scope="module")
def pools(fleet):
    """The failover deployed to the control site's and west's pools of the session API."""
    from hotspare.commands.deploy_commands import deploy_to_pools

    deploy_to_pools(fleet, ["control", "west"], flows=["failover"])
    yield
    _cancel_everything_queued()


def queued_failovers() -> list:
    """Failover runs of these pools that a worker could still pick up."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["failover@control", "failover@west"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING, StateType.PAUSED])
                )
            ),
        )


def heartbeat(pool: str, worker: str) -> None:
    """What a worker sends when it starts polling; this one then dies without taking any run."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.send_worker_heartbeat(pool, worker, heartbeat_interval_seconds=300)


def test_a_pre_approved_run_with_no_worker_online_is_not_submitted(pools, capsys):
    from hotspare.cli import main

    code = main(["run", "failover", SERVICE, "-p", "yes=true", "--facility", "control", "--timeout", "5"])
    assert code == 3, capsys.readouterr()
    error = capsys.readouterr().err
    assert "no worker of hotspare-control is online" in error and "nothing was submitted" in error
    assert queued_failovers() == []


def test_it_names_the_pools_that_have_a_worker(pools):
    from hotspare.commands.deploy_commands import NoWorkerOnline, submit

    heartbeat("hotspare-west", "worker-west-gone")
    with pytest.raises(NoWorkerOnline, match="pools with a worker online: hotspare-west") as raised:
        submit("failover", {"service": SERVICE, "approved_plan_digest": "0123456789abcdef"}, facility="control", timeout=5)
    assert exit_code_of(raised.value) == 3
    assert queued_failovers() == []


def test_a_pre_approved_run_nobody_starts_is_cancelled_when_run_gives_up(pools, monkeypatch):
    from prefect.client.orchestration import get_client

    from hotspare.commands.deploy_commands import submit

    monkeypatch.setenv("HOTSPARE_OPERATOR", "Dana Ops")
    heartbeat("hotspare-control", "worker-control-gone")
    outcome = submit("failover", {"service": SERVICE, "yes": True}, facility="control", timeout=3, approval_window=120)
    assert outcome["state"] == "CANCELLED", outcome
    assert "not finished 3 s after submission" in outcome["message"] and "no worker acts on it later" in outcome["message"]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(outcome["flow_run"])
    assert run.state.is_cancelled()
    assert run.parameters["yes"] is True and run.parameters["approval_expires_at"]  # the flow's own deadline rides along
    # the person who submitted it is the run's operator and approver on whichever worker runs it
    assert run.job_variables == {"operator": "Dana Ops"}  # the only variable the pools' template takes
    assert queued_failovers() == []  # nothing left for the next worker that polls


def _cancel_everything_queued() -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        for run in queued_failovers():
            client.set_flow_run_state(run.id, Cancelled(message="test module over"), force=True)
