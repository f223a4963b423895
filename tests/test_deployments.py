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
    process = subprocess.Popen(
        [sys.executable, "-m", "hotspare.cli", "serve"],
        env=environment,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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

    deployment = poll(lambda: read_deployment("replicate/replicate-all"), 180, "the served replicate deployment")
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


def test_serve_answers_the_fleets_acknowledgement_url_so_an_sms_ack_acknowledges(served, fleet, lab, lab_env):
    """``hotspare serve`` alone (no ``hotspare incident webhook``): a contact's signed "ACK N"
    reaches the webhook at the fleet's acknowledgement URL and acknowledges incident N."""
    import time
    import uuid

    from hotspare.fleet.values import e164
    from hotspare.inventory import incidents, pages
    from hotspare.lab.phone import PhoneControl, acknowledgement_port
    from hotspare.probes import tcp_reachable
    from tasks.paging import sms_acknowledgement_url

    port = acknowledgement_port(lab.slot)
    assert fleet.incidents.acknowledgement_url == f"http://127.0.0.1:{port}"
    poll(
        lambda: served.poll() is not None or tcp_reachable("127.0.0.1", port, timeout=0.5),
        120,
        "the acknowledgement webhook of `hotspare serve`",
    )
    assert served.poll() is None, "hotspare serve exited"
    opening = incidents.open_incident(
        2, "low", "acknowledged through serve", servers=["prod-west"], dedup_key=f"test:serve-ack:{time.time()}"
    )
    # only an incident paged to that contact's number, within the window, may be acknowledged by it
    pages.record_page(opening.incident_id, "lab-phone-primary", f"CA{uuid.uuid4().hex}", "call", "Lee Lead", e164("+1 555 0101"))
    reply = PhoneControl(lab_env).sms_reply(
        "+1 555 0101", f"ACK {opening.incident_id}", sms_acknowledgement_url(fleet, "lab-phone-primary")
    )
    assert reply["webhook_status"] == 200, reply
    incident = incidents.get_incident(opening.incident_id)
    assert (incident["status"], incident["acknowledged_by"]) == ("acknowledged", "Lee Lead")


def test_the_webhook_listens_where_the_fleets_url_points_or_says_why_not():
    from deployments.serve import acknowledgement_listen

    assert acknowledgement_listen("http://127.0.0.1:7481", None)[0] == ("127.0.0.1", 7481)
    assert acknowledgement_listen("https://ops.example.com/hotspare", None)[0] is None
    assert "--acknowledgements HOST:PORT" in acknowledgement_listen("https://ops.example.com/hotspare", None)[1]
    assert acknowledgement_listen("https://ops.example.com/x", "10.0.0.5:8787")[0] == ("10.0.0.5", 8787)
    assert acknowledgement_listen("http://127.0.0.1:7481", "off")[0] is None
    assert acknowledgement_listen(None, None)[0] is None
