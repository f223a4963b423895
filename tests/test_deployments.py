"""Deployments: served by ``hotspare serve``, scheduled twice a day, runnable over the API.

A real served process picks up a run created through the Prefect API, the same call the UI's
run button makes, and the run replicates a lab service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from hotspare.inventory import copies
from lab_helpers import poll


@pytest.fixture
def served(fleet, prefect_api):
    from prefect.settings import PREFECT_API_URL

    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    process = subprocess.Popen([sys.executable, "-m", "hotspare.cli", "serve"], env=environment, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield process
    os.killpg(process.pid, signal.SIGTERM)  # the serving process this fixture started
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def read_deployment(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name)
        except Exception:
            return None


def test_replication_is_scheduled_twice_a_day_and_runs_from_the_api(served):
    from prefect.client.orchestration import get_client

    deployment = poll(lambda: read_deployment("replicate/replicate-all"), 60, "the served replicate deployment")
    crons = sorted((schedule.schedule.cron, schedule.schedule.timezone) for schedule in deployment.schedules)
    assert crons == [("0 1 * * *", "UTC"), ("0 13 * * *", "UTC")]
    for name in ("failover/failover", "verify/verify", "reprotect/reprotect", "rebuild/rebuild"):
        assert poll(lambda: read_deployment(name), 30, name) is not None

    before = copies.newest_verified("app2")
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment.id, parameters={"services": ["app2"]})

        def finished():
            state = client.read_flow_run(run.id).state
            return state if state and state.is_final() else None

        state = poll(finished, 180, "the API-created replicate run to finish")
    assert state.is_completed(), state.message
    after = copies.newest_verified("app2")
    assert after is not None and (before is None or after.id != before.id)
