"""The orchestrator survives losing a facility: the control site (Prefect server and inventory
on PostgreSQL) and one worker per facility, each in its facility's network.

- With east failed (its hosts and its worker), a failover of app1 (production prod-east)
  submitted through the API runs on west's worker, and app1 answers from mirror-west.
- The same failover submitted to west's and the control site's pools at once: both workers run
  it, exactly one acts (the inventory's service lock on PostgreSQL; the DNS compare-and-swap
  behind it).
- With the control site cut off, no worker reaches the API; healed, they carry on.
- A worker's flow-run process killed (SIGKILL) after the copy went live leaves a run that
  ``hotspare failover app1 --resume`` converges. That process was forked from the worker's warm
  process (``hotspare/warm_worker``), which outlives the kill and starts the next run warm.

Production stays reachable in the race and the kill (an emergency failover then fences it at
once): an unreachable one would only add its SSH connect timeout to every run.

The control site and workers start once for the module; every test restores app1's layout, and
the module restores the lab (the session's inventory and API again) at the end.
"""

from __future__ import annotations

import contextvars
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_failover import SERVICE, address, dns_answer, reset_layout, through_dns

from hotspare.lab import control

from lab_helpers import host_path, poll

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def control_site(lab, lab_env, fleet):
    """Control site + workers; this module's Prefect client and inventory are the control site's.

    The workers start up (a Prefect import each, ~10 s on a busy machine) while the blocks, the
    fleet, the deployments and a verified copy go into the control site; then they must be ONLINE.
    """
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from flows.replicate import replicate_service
    from hotspare import access
    from hotspare.cli import main
    from hotspare.commands.deploy_commands import deploy_to_pools
    from hotspare.lab.workers import start_workers, wait_online

    try:
        workers = start_workers(lab, wait=False)
        client = control.client_environment(lab)
        with (
            pytest.MonkeyPatch.context() as patch,
            temporary_settings(
                updates={PREFECT_API_URL: client["PREFECT_API_URL"], PREFECT_API_AUTH_STRING: client["PREFECT_API_AUTH_STRING"]}
            ),
        ):
            patch.setenv("HOTSPARE_DB_URL", client["HOTSPARE_DB_URL"])
            lab.register_blocks()
            assert main(["fleet", "load", lab_env["fleet_file"]]) == 0
            # the control site becomes the fleet's orchestrator, deliberately (the session's refuses meanwhile)
            assert main(["fleet", "claim", "--takeover"]) == 0
            fleet_here = access.loaded_fleet()
            deploy_to_pools(fleet_here, ["control", "east", "west"], flows=["failover"])
            access.close_connections()
            assert replicate_service(SERVICE)["outcome"] == "ok"  # a verified copy this inventory knows
            wait_online(lab, client)
            yield {"workers": workers, "client": client}
            access.close_connections()
    finally:
        control.stop_site(lab)
        from tasks.orchestrator import forget_checks

        forget_checks()
        assert main(["fleet", "claim", "--takeover"]) == 0  # the session's inventory holds the fleet again
        reset_layout(lab, lab_env)  # the session's own inventory and API again


@pytest.fixture
def app1_here(control_site, lab, lab_env):
    """app1 in its original layout in the control site's inventory, before and after the test."""
    reset_layout(lab, lab_env)
    yield
    reset_layout(lab, lab_env)


def failover_runs(flow_run_ids: list[str]) -> dict[str, str]:
    """{flow run id: outcome} of the inventory's failover records those flow runs made."""
    from sqlmodel import select

    from hotspare.inventory.db import session
    from hotspare.inventory.models import RunRow

    with session() as db:
        rows = db.exec(
            select(RunRow).where(RunRow.kind == "failover", RunRow.service == SERVICE, RunRow.flow_run_id.in_(flow_run_ids))
        ).all()
        return {row.flow_run_id: row.outcome for row in rows}


def test_lab_env_lists_a_worker_per_facility_each_in_its_own_network(control_site, lab, lab_env):
    workers = {worker["facility"]: worker for worker in lab.env()["workers"]}
    assert {facility: worker["pool"] for facility, worker in workers.items()} == {
        "east": "hotspare-east",
        "west": "hotspare-west",
        "control": "hotspare-control",
    }
    assert workers["east"]["netns"] == lab_env["hosts"]["standby-east"]["netns"]
    assert workers["west"]["netns"] == lab_env["hosts"]["standby-west"]["netns"]


def test_lab_env_gives_the_exports_that_point_commands_at_the_control_site(control_site, lab, capsys):
    import shlex

    from hotspare.cli import main

    assert main(["lab", "env", "--exports", "--dir", str(lab.directory)]) == 0
    exported = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in capsys.readouterr().out.splitlines())
    from hotspare.lab import issuer

    assert exported == {
        **control_site["client"],
        "HOTSPARE_LAB_DIR": str(lab.directory),
        "HOTSPARE_LAB_FLEET": str(lab.directory / "fleet.yaml"),
        "HOTSPARE_SSH_ISSUER_URL": issuer.url(lab),
        "HOTSPARE_SSH_ISSUER_TOKEN": issuer.tokens(lab)["control"],
    }
    assert main(["lab", "env", "--json", "--dir", str(lab.directory)]) == 0
    assert '"exports"' in capsys.readouterr().out


def test_with_east_lost_a_failover_submitted_through_the_api_runs_on_west(app1_here, lab, lab_env, monkeypatch):
    from sqlmodel import select

    from hotspare.commands.deploy_commands import submit
    from hotspare.inventory.db import session
    from hotspare.inventory.models import RunRow

    monkeypatch.setenv("HOTSPARE_OPERATOR", "Dana Ops")  # who submits it, pre-approved
    lab.fail("east")  # prod-east, mirror-east, standby-east and with it east's worker
    try:
        outcome = submit("failover", {"service": SERVICE, "yes": True}, timeout=300)
    finally:
        lab.heal("east")
    assert outcome["state"] == "COMPLETED", outcome
    assert outcome["pool"] == "hotspare-west" and outcome["deployment"] == "failover@west"
    assert outcome["worker"] == f"worker-west-slot{lab.slot}"
    with session() as db:
        [run] = db.exec(select(RunRow).where(RunRow.flow_run_id == outcome["flow_run"])).all()
    assert (run.operator, run.details["approved_by"]) == ("Dana Ops", "Dana Ops")  # the person, not the worker
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]
    status, _body, used = through_dns(lab_env, "health.txt")
    assert (status, used) == (200, address(lab_env, "mirror"))


def test_a_run_refused_on_a_worker_exits_with_its_own_kind(app1_here, lab, lab_env, capsys):
    """``hotspare run`` knows a worker's failure only by the run's state message: an unattended
    failover the policy does not allow exits 7 (not approved), as the same refusal does in process."""
    from hotspare.cli import main

    code = main(["run", "failover", SERVICE, "-p", "unattended=true", "-p", "yes=true", "--timeout", "300"])
    error = capsys.readouterr().err
    assert code == 7, error
    assert "not approved" in error and "automatic_failover: off, not unattended" in error, error
    assert dns_answer(lab_env) == [address(lab_env, "production")]  # nothing changed


def test_two_workers_racing_to_fail_over_one_service_exactly_one_acts(app1_here, lab, lab_env):
    """One operator submits to west, another to the control site, at the same moment."""
    from hotspare.commands.deploy_commands import submit
    from hotspare.inventory import copies

    with ThreadPoolExecutor(2) as pool:  # each thread in a copy of this context: the control site's API
        submitted = [
            pool.submit(
                contextvars.copy_context().run,
                submit,
                "failover",
                {"service": SERVICE, "yes": True},
                facility=facility,
                timeout=300,
            )
            for facility in ("west", "control")
        ]
        outcomes = [future.result() for future in submitted]
    assert {outcome["worker"] for outcome in outcomes} == {f"worker-west-slot{lab.slot}", f"worker-control-slot{lab.slot}"}, (
        outcomes
    )
    recorded = failover_runs([outcome["flow_run"] for outcome in outcomes])
    assert list(recorded.values()) == ["ok"], (recorded, outcomes)  # exactly one acted, and it finished
    [winner] = [outcome for outcome in outcomes if outcome["flow_run"] in recorded]
    [loser] = [outcome for outcome in outcomes if outcome is not winner]
    assert winner["state"] == "COMPLETED", winner
    # The loser found the lock taken (busy), found the facts changed under the lock, or ran after
    # the winner and found nothing to do (completed, "already-done").
    assert loser["state"] == "COMPLETED" or any(
        words in loser["message"] for words in ("is busy", "nothing was changed", "concurrency")
    ), loser
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server, row.mirror_server) == ("failed-over", "mirror-west", None)
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]


def test_with_the_control_site_lost_no_worker_reaches_it_and_healed_they_carry_on(control_site, lab, lab_env):
    import httpx

    from hotspare.lab.workers import worker_status

    client = control_site["client"]
    user, _, password = client["PREFECT_API_AUTH_STRING"].partition(":")
    west = next(worker["netns"] for worker in lab.env()["workers"] if worker["facility"] == "west")
    lab.fail("control")
    try:
        assert control.site_failed(lab)
        with pytest.raises(httpx.TimeoutException):  # the site is silent, as a lost site is
            httpx.get(f"{client['PREFECT_API_URL']}/health", timeout=2)
        # From west's worker's network, the API and the inventory do not answer either.
        assert not reachable_from(west, control.address(lab), control.PREFECT_PORT)
        assert not reachable_from(west, control.address(lab), control.POSTGRES_PORT)
    finally:
        lab.heal("control")
    assert not control.site_failed(lab)
    assert reachable_from(west, control.address(lab), control.PREFECT_PORT)
    healed = time.time()

    def heartbeat_after_heal() -> bool:
        response = httpx.post(
            f"{client['PREFECT_API_URL']}/work_pools/hotspare-west/workers/filter", json={}, auth=(user, password), timeout=5
        )
        return any(
            worker["status"] == "ONLINE" and _seconds(worker["last_heartbeat_time"]) > healed for worker in response.json()
        )

    poll(heartbeat_after_heal, 120, "west's worker to reach the healed control site again")
    assert worker_status(client, "hotspare-control") == {f"worker-control-slot{lab.slot}": "ONLINE"}


def reachable_from(namespace: str, address: str, port: int, seconds: float = 2) -> bool:
    """Whether a TCP connection from inside ``namespace`` to ``address:port`` opens in time."""
    import subprocess

    probe = subprocess.run(
        ["ip", "netns", "exec", namespace, "timeout", str(seconds), "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"],
        capture_output=True,
        timeout=seconds + 10,
    )
    return probe.returncode == 0


def _seconds(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_a_worker_killed_mid_failover_leaves_a_run_that_resume_converges(app1_here, lab, lab_env):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from hotspare.cli import main
    from hotspare.inventory import copies

    marker = host_path(lab_env, "mirror-west", "/srv/hotspare/app1/active-copy")
    marker.unlink(missing_ok=True)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("failover/failover@west")
    started = run_deployment(deployment.id, parameters={"service": SERVICE, "yes": True}, timeout=0)
    pid = flow_run_process(started.id, lab)  # known before the copy goes live: the kill follows at once
    warm = parent_of(pid)
    assert "hotspare.warm_worker.forkserver" in command_line(warm), "the run was not forked from the warm process"
    poll(marker.exists, 180, "the copy to be made live on mirror-west by west's worker")
    os.kill(pid, signal.SIGKILL)  # the flow-run process west's worker started, by its PID

    def crashed():
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(started.id).state
        return state if state and state.is_final() else None

    state = poll(crashed, 60, "the killed run to end")
    assert not state.is_completed(), state
    assert copies.service_row(SERVICE).state in ("failing-over", "failed-over")
    assert failover_runs([str(started.id)]) == {str(started.id): "running"}  # it never finished
    assert "hotspare.warm_worker.forkserver" in command_line(warm), "the killed run took the warm process with it"

    # The operator continues it from anywhere outside east (here: this machine, in process).
    assert main(["failover", SERVICE, "--yes", "--resume"]) == 0
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server) == ("failed-over", "mirror-west")
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]
    assert through_dns(lab_env, "health.txt")[:3:2] == (200, address(lab_env, "mirror"))

    # the same warm process starts the next run on west's worker (a plan only: nothing moves; the
    # plan may refuse a service already failed over, but the run itself ran to its own end)
    following = run_deployment(deployment.id, parameters={"service": SERVICE, "dry_run": True}, timeout=180)
    assert following.state.is_final() and not following.state.is_crashed(), following.state
    assert "hotspare.warm_worker.forkserver" in command_line(warm)
    worker_log = Path(next(worker["log"] for worker in lab.env()["workers"] if worker["facility"] == "west"))
    assert f"did not take flow run {following.id}" not in worker_log.read_text(errors="replace")


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def flow_run_process(flow_run_id, lab) -> int:
    """The PID of the flow run's process (``infrastructure_pid``), checked to be a child of
    west's worker, so the test kills nothing else."""
    from prefect.client.orchestration import get_client

    def recorded() -> str | None:
        with get_client(sync_client=True) as client:
            return client.read_flow_run(flow_run_id).infrastructure_pid

    pid = int(poll(recorded, 30, "the worker to record the flow run's PID").rpartition(":")[2])
    worker_pid = next(worker["pid"] for worker in lab.env()["workers"] if worker["facility"] == "west")
    ancestors, current = [], pid
    while current > 1 and len(ancestors) < 10:
        current = int(Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()[1])
        ancestors.append(current)
    assert worker_pid in ancestors, f"pid {pid} is not a process west's worker (pid {worker_pid}) started"
    return pid
