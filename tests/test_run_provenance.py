"""What a person's run may claim, attacked in the lab: the facts and the login decide, not parameters.

- An operator (otto) who starts the ``failover`` deployment with ``unattended: true`` for app2
  (its health policy ``off``, nothing declared down) is refused before any change, with one
  sentence of the NotApproved kind (exit 7), also when the run claims a health run as its parent;
  the certificate issuer reads that run as unapproved. A viewer cannot start it at all.
- The health run's own in-process subflow is refused too while the facts are missing: with the
  policy off, and with ``unattended`` but no fresh health record holding production down. (That it
  fails over when they hold is ``tests/test_health_failover.py``.)
- Acknowledging or resolving an incident through the proxy records the login that started the run
  ("otto (operator) for Dana Ops"), whatever ``by`` says; a viewer cannot start either run; the
  control site's own runs keep the name they were given.

The control site is ``tests/test_access_roles.py``'s ``site``; runs are created through nginx under
a person's login and executed in this process under the control site's login with
``HOTSPARE_API_PROXY=1``, as the control site's worker executes them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_access_roles import call, site  # noqa: F401 (fixture)
from test_hardware_health import clear_health_state, health_settings

pytestmark = pytest.mark.lab


def layout(service: str) -> tuple:
    from sqlmodel import select

    from hotspare.inventory import copies
    from hotspare.inventory.db import session
    from hotspare.inventory.models import RunRow

    row = copies.service_row(service)
    with session() as db:
        runs = db.exec(select(RunRow).where(RunRow.service == service, RunRow.kind == "failover")).all()
    return row.active_server, row.state, len(runs)


def refusal_of(state):
    """The exception a failed run raised, and its exit code as the CLI would report it."""
    from hotspare.commands.errors import exit_code_of

    assert state.is_failed(), state
    error = state.result(raise_on_failure=False)
    return error, exit_code_of(error)


# --- the health run's own subflow, without the facts (the session's lab, no proxy) -------------


@pytest.fixture
def app2_unattended(fleet, lab_env, tmp_path):
    with health_settings(lab_env, tmp_path, services=[{"name": "app2", "automatic_failover": "unattended"}]):
        clear_health_state()
        yield
    clear_health_state()


def test_the_health_runs_subflow_is_refused_when_the_policy_is_off(fleet):
    from flows.failover import failover
    from flows.unattended_gate import from_the_health_run

    before = layout("app2")
    with from_the_health_run("probe"):
        state = failover("app2", yes=True, unattended=True, return_state=True)
    error, exit_code = refusal_of(state)
    assert "automatic_failover: off, not unattended" in str(error) and exit_code == 7, error
    assert "\n" not in str(error)
    assert layout("app2") == before


def test_the_health_runs_subflow_is_refused_without_a_fresh_declaration(app2_unattended):
    from flows.failover import failover
    from flows.unattended_gate import from_the_health_run
    from hotspare.inventory import copies, session
    from hotspare.inventory.health import HealthComponentRow
    from hotspare.inventory.models import utcnow

    production = copies.service_row("app2").active_server
    before = layout("app2")
    with from_the_health_run("probe"):
        state = failover("app2", yes=True, unattended=True, return_state=True)
    error, exit_code = refusal_of(state)
    assert f"no health run declares its production {production} down now" in str(error) and exit_code == 7, error
    assert "policy" not in str(error)  # the policy allows it: only the missing declaration is named
    # a declaration the health runs stopped renewing two hours ago is none either
    with session() as db:
        db.add(
            HealthComponentRow(
                subject=production,
                component="reachability:tcp",
                kind="reachability",
                state="failed",
                evidence="planted",
                checked_at=utcnow() - timedelta(hours=2),
            )
        )
    with from_the_health_run("probe"):
        state = failover("app2", yes=True, unattended=True, return_state=True)
    error, _ = refusal_of(state)
    assert "older than" in str(error), error
    assert layout("app2") == before


# --- a person's run through the proxy ---------------------------------------------------------


@pytest.fixture
def proxy_worker(monkeypatch):
    """This process executes runs as the control site's worker does: behind the proxy."""
    monkeypatch.setenv("HOTSPARE_API_PROXY", "1")


def start(site, lab, name: str, deployment_id, parameters: dict, **extra):  # noqa: F811 (site is the fixture)
    return call(
        site, lab, name, "POST", f"/deployments/{deployment_id}/create_flow_run", json={"parameters": parameters, **extra}
    )


def execute(flow, run_id: str):
    """Run an API-created run here, under the control site's login (as its worker would)."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow_sync

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    return run_flow_sync(flow, flow_run=run, parameters=run.parameters, return_type="state")


def a_health_task_run(site, lab) -> str:  # noqa: F811
    """A task run inside a run of a flow named health: the parent an attacker would claim."""
    health_flow = call(site, lab, "control", "POST", "/flows/", json={"name": "health"}).json()
    parent = call(site, lab, "control", "POST", "/flow_runs/", json={"flow_id": health_flow["id"]}).json()
    task = call(
        site,
        lab,
        "control",
        "POST",
        "/task_runs/",
        json={"flow_run_id": parent["id"], "task_key": "probe", "dynamic_key": "0", "name": "probe"},
    )
    assert task.status_code in (200, 201), task.text
    return task.json()["id"]


def test_an_operators_unattended_failover_is_refused_before_any_change(site, lab, proxy_worker):  # noqa: F811
    from flows.failover import failover
    from hotspare.issuer.facts import run_facts
    from hotspare.planning.certificates import approved

    deployment_id = failover.to_deployment(name="provenance-probe").apply()
    parameters = {"service": "app2", "unattended": True}
    assert start(site, lab, "ada", deployment_id, parameters).status_code == 403  # a viewer starts nothing
    before = layout("app2")
    plain = start(site, lab, "otto", deployment_id, parameters)
    claimed = start(site, lab, "otto", deployment_id, parameters, parent_task_run_id=a_health_task_run(site, lab))
    for created in (plain, claimed):
        assert created.status_code == 201, created.text
        facts = run_facts(created.json()["id"])
        assert facts.creator_role == "operator"
        assert not approved(facts), facts  # the issuer: no certificate for it, whatever it claims
        error, exit_code = refusal_of(execute(failover, created.json()["id"]))
        assert exit_code == 7 and "\n" not in str(error), error
        for fact in ("automatic_failover: off, not unattended", "started by a person, otto (operator)", "Nothing was changed"):
            assert fact in str(error), error
    assert run_facts(claimed.json()["id"]).parent_flow == "health"
    assert layout("app2") == before
    call(site, lab, "control", "DELETE", f"/deployments/{deployment_id}")


def test_an_acknowledgement_through_the_proxy_names_the_login_not_the_typed_name(site, lab, proxy_worker):  # noqa: F811
    from flows.incident import acknowledge_incident, resolve_incident
    from hotspare.inventory import incidents

    opening = incidents.open_incident(1, "low", "provenance probe", detection_text="opened by the test")
    acknowledge = acknowledge_incident.to_deployment(name="provenance-acknowledge").apply()
    resolve = resolve_incident.to_deployment(name="provenance-resolve").apply()
    typed = {"incident_id": opening.incident_id, "by": "Dana Ops"}
    assert start(site, lab, "ada", acknowledge, typed).status_code == 403  # a viewer acknowledges nothing
    assert start(site, lab, "ada", resolve, typed).status_code == 403
    by_otto = start(site, lab, "otto", acknowledge, typed)
    assert by_otto.status_code == 201, by_otto.text
    assert execute(acknowledge_incident, by_otto.json()["id"]).is_completed()
    by_april = start(site, lab, "april", resolve, {**typed, "by": "april", "text": "probe done"})
    assert execute(resolve_incident, by_april.json()["id"]).is_completed()

    incident = incidents.get_incident(opening.incident_id)
    texts = [event["text"] for event in incident["events"]]
    assert "acknowledged by otto (operator) for Dana Ops via Prefect UI" in texts, texts
    assert incident["acknowledged_by"] == "otto (operator) for Dana Ops"
    assert "resolved by april (approver): probe done" in texts, texts
    assert incident["resolved_by"] == "april (approver)"
    assert not any(event["actor"] == "Dana Ops" for event in incident["events"])
    # the control site's own run keeps the name it was given (its operator)
    again = incidents.open_incident(1, "low", "provenance probe 2", detection_text="opened by the test")
    by_control = start(site, lab, "control", acknowledge, {"incident_id": again.incident_id, "by": "Dana Ops"})
    assert execute(acknowledge_incident, by_control.json()["id"]).is_completed()
    assert incidents.get_incident(again.incident_id)["acknowledged_by"] == "Dana Ops"
    for deployment_id in (acknowledge, resolve):
        call(site, lab, "control", "DELETE", f"/deployments/{deployment_id}")
