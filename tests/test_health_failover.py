"""Automatic failover from the health runbook, against the lab: a production declared down
submits the ``failover`` deployment only for a service whose policy says
``automatic_failover: approval`` (or ``true``); with the default (off) nothing is submitted and
the run says why; ``unattended`` fails the service over in the health run itself, fenced, once. Both productions fail at once (app1 on prod-east keeps the default, app2 on prod-west
allows it), so one health run shows both outcomes. Nothing serves the deployment here: the
submitted run is checked (deployment, parameters) and deleted, and the lab is healed.
"""

from __future__ import annotations

import pytest
from test_failover import protected
from test_hardware_health import clear_health_state, health_settings

pytestmark = pytest.mark.lab

FAILURES_TO_DOWN = 2
INTERVAL = 0.1


@pytest.fixture
def app2_fails_over_by_itself(fleet, lab_env, tmp_path):
    """The lab fleet with automatic failover for app2 only, short probes, and no health state."""
    with health_settings(
        lab_env,
        tmp_path,
        probe_timeout_seconds=1.5,
        failures_to_down=FAILURES_TO_DOWN,
        services=[{"name": "app2", "automatic_failover": True}],
    ):
        clear_health_state()
        yield
    clear_health_state()


def failover_runs(client, deployment_id) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def test_declared_down_production_submits_failover_only_where_the_policy_allows(lab, app2_fails_over_by_itself):
    from prefect.client.orchestration import get_client

    from flows.failover import failover
    from flows.health import health
    from tasks.health_actions import FAILOVER_DEPLOYMENT

    deployment_id = failover.to_deployment(name=FAILOVER_DEPLOYMENT.split("/")[1]).apply()
    with get_client(sync_client=True) as client:
        before = {run.id for run in failover_runs(client, deployment_id)}
    try:
        lab.fail("prod-east")
        lab.fail("prod-west")
        summary = health(rounds=FAILURES_TO_DOWN, interval_seconds=INTERVAL)
    finally:
        lab.heal("prod-east")
        lab.heal("prod-west")
    outcomes = {entry["service"]: entry for entry in summary["failovers"]}
    with get_client(sync_client=True) as client:
        created = [run for run in failover_runs(client, deployment_id) if run.id not in before]
        for run in created:  # it would wait for approval; nobody is to approve it here
            client.delete_flow_run(run.id)
    assert set(outcomes) == {"app1", "app2", "app3"}, summary["failovers"]  # app3 shares prod-east with app1
    for manual in ("app1", "app3"):
        assert outcomes[manual]["submitted"] is False
        assert "does not allow automatic failover" in outcomes[manual]["reason"]
    assert outcomes["app2"]["submitted"] is True, outcomes["app2"]["reason"]
    assert [(str(run.id), run.parameters) for run in created] == [(outcomes["app2"]["flow_run_id"], {"service": "app2"})]


@pytest.fixture
def app1_unattended(fleet, lab_env, tmp_path, protected):
    """app1 protected, with an unattended failover policy, short probes and no health state."""
    with health_settings(
        lab_env,
        tmp_path,
        probe_timeout_seconds=1.5,
        failures_to_down=FAILURES_TO_DOWN,
        services=[{"name": "app1", "automatic_failover": "unattended"}],
    ):
        clear_health_state()
        yield
    clear_health_state()


def test_unattended_policy_fails_over_at_once_fenced_and_only_once(lab, lab_env, app1_unattended):
    from test_failover import address, dns_answer

    from flows.health import health
    from hotspare.inventory import copies
    from hotspare.lab import bmc
    from hotspare.lab.probes import http_get
    from hotspare.lab.topology import host_by_name

    lab.fail("prod-east")
    summary = health(rounds=FAILURES_TO_DOWN, interval_seconds=INTERVAL)

    [outcome] = [entry for entry in summary["failovers"] if entry["service"] == "app1"]
    assert outcome["unattended"] is True and outcome["outcome"] == "ok", outcome
    assert "failed app1 over unattended: it runs on mirror-west now" in outcome["reason"]
    assert dns_answer(lab_env) == [address(lab_env, "mirror")]
    assert copies.service_row("app1").active_server == "mirror-west"
    assert bmc.is_powered_off(lab.directory, host_by_name("prod-east")), "fenced through its BMC"

    lab.heal("prod-east")  # production comes back: powered on, its app stopped
    again = health(rounds=FAILURES_TO_DOWN, interval_seconds=INTERVAL)
    assert not [entry for entry in again["failovers"] if entry["service"] == "app1"], again["failovers"]
    assert copies.service_row("app1").active_server == "mirror-west" and dns_answer(lab_env) == [address(lab_env, "mirror")]
    production_app = f"http://{address(lab_env, 'production')}:{lab_env['services']['app1']['app_port']}/"
    assert http_get(production_app, 2.0) is None, "no second production after it came back"
