"""The orchestrator survives losing a facility: the control site (Prefect server and inventory
on PostgreSQL) and one worker per facility, each in its facility's network.

With east failed (its hosts and its worker), a failover of app1 (production prod-east)
submitted through the API runs on west's worker, and app1 answers from mirror-west through DNS.
The control site and workers start once for the module; the lab is restored at the end.
"""

from __future__ import annotations

import pytest

from hotspare.lab import control
from test_failover import SERVICE, address, dns_answer, reset_layout, through_dns

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def control_site(lab, lab_env, fleet):
    """Control site + workers; this module's Prefect client and inventory are the control site's."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from flows.replicate import replicate_service
    from hotspare import access
    from hotspare.cli import main
    from hotspare.commands.deploy_commands import deploy_to_pools
    from hotspare.lab.workers import start_workers

    workers = start_workers(lab)
    try:
        client = control.client_environment(lab)
        with pytest.MonkeyPatch.context() as patch, temporary_settings(updates={
                PREFECT_API_URL: client["PREFECT_API_URL"], PREFECT_API_AUTH_STRING: client["PREFECT_API_AUTH_STRING"]}):
            patch.setenv("HOTSPARE_DB_URL", client["HOTSPARE_DB_URL"])
            lab.register_blocks()
            assert main(["fleet", "load", lab_env["fleet_file"]]) == 0
            fleet_here = access.loaded_fleet()
            deploy_to_pools(fleet_here, ["control", "east", "west"], flows=["failover"])
            access.close_connections()
            assert replicate_service(SERVICE)["outcome"] == "ok"  # a verified copy this inventory knows
            yield {"workers": workers, "client": client}
            access.close_connections()
    finally:
        control.stop_site(lab)
        reset_layout(lab, lab_env)  # the session's own inventory and API again


def test_lab_env_lists_a_worker_per_facility_each_in_its_own_network(control_site, lab, lab_env):
    workers = {worker["facility"]: worker for worker in lab.env()["workers"]}
    assert {facility: worker["pool"] for facility, worker in workers.items()} == {
        "east": "hotspare-east", "west": "hotspare-west", "control": "hotspare-control"}
    assert workers["east"]["netns"] == lab_env["hosts"]["standby-east"]["netns"]
    assert workers["west"]["netns"] == lab_env["hosts"]["standby-west"]["netns"]


def test_with_east_lost_a_failover_submitted_through_the_api_runs_on_west(control_site, lab, lab_env):
    from hotspare.commands.deploy_commands import submit

    lab.fail("east")  # prod-east, mirror-east, standby-east and with it east's worker
    try:
        outcome = submit("failover", {"service": SERVICE, "yes": True}, timeout=300)
    finally:
        lab.heal("east")
    assert outcome["state"] == "COMPLETED", outcome
    assert outcome["pool"] == "hotspare-west" and outcome["deployment"] == "failover@west"
    assert outcome["worker"] == f"worker-west-slot{lab.slot}"
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]
    status, _body, used = through_dns(lab_env, "health.txt")
    assert (status, used) == (200, address(lab_env, "mirror"))
