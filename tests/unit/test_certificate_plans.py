"""Which hosts a run's SSH certificate may open, from where, and why a run gets none: the pure
planner and the signer's ssh-keygen arguments (the lab side is tests/test_certificates.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hotspare.planning.certificates import (
    FleetLayout,
    Requester,
    RunFacts,
    ServiceHosts,
    hosts_of_run,
    plan_certificate,
)

LAYOUT = FleetLayout(
    facility_of={
        "prod-east": "east",
        "mirror-west": "west",
        "prod-west": "west",
        "mirror-east": "east",
        "standby-east": "east",
        "standby-west": "west",
        "storage-vault": "vault",
        "web-vault": "vault",
    },
    standbys=("standby-east", "standby-west"),
    services=(
        ServiceHosts("app1", ("prod-east", "mirror-west"), "storage-vault"),
        ServiceHosts("app2", ("prod-west", "mirror-east"), "storage-vault"),
    ),
    status_page_server="web-vault",
)
EAST = Requester("east", ("10.0.0.21",), ("hotspare-east",))
CONTROL = Requester("control", ("10.0.0.5",), ("hotspare-control",), control=True)
RUN = "0b5c1a52-8d3e-4c43-9a51-0f7c2b0e1d11"


def run(
    flow: str, state: str = "RUNNING", pool: str | None = "hotspare-east", approval: str | None = None, **parameters
) -> RunFacts:
    return RunFacts(RUN, flow, state, parameters, pool, approval)


# --- the planner -------------------------------------------------------------------------------


def test_a_replication_of_app1_gets_its_production_and_mirror_from_the_asking_site_only():
    plan = plan_certificate(run("replicate-service", service="app1"), EAST, LAYOUT)
    assert plan.refusal is None, plan.refusal
    assert (plan.principals, plan.source_addresses, plan.key_id) == (("mirror-west", "prod-east"), ("10.0.0.21",), f"run-{RUN}")
    assert plan.validity_minutes <= 15 and plan.force_command is None


def test_each_runbook_gets_the_hosts_its_plan_needs():
    assert hosts_of_run("backup", {"service": "app2"}, LAYOUT) == ({"prod-west", "mirror-east", "storage-vault"}, None)
    assert hosts_of_run("restore-proof", {"service": "app1"}, LAYOUT) == ({"storage-vault"}, None)
    assert hosts_of_run("rebuild", {"service": "app1", "standby": "standby-west"}, LAYOUT) == (
        {"prod-east", "mirror-west", "storage-vault", "standby-west"},
        None,
    )
    assert hosts_of_run("facility-failover", {"facility": "west"}, LAYOUT)[0] == {
        "prod-east",
        "mirror-west",
        "prod-west",
        "mirror-east",
    }
    assert hosts_of_run("replicate", {"services": ["app2"]}, LAYOUT) == ({"prod-west", "mirror-east"}, None)
    assert hosts_of_run("health", {}, LAYOUT)[0] == set(LAYOUT.facility_of)
    assert hosts_of_run("status-page-publish", {}, LAYOUT) == ({"web-vault"}, None)
    plan = plan_certificate(run("status-page-publish"), EAST, LAYOUT)
    assert (plan.principals, plan.force_command) == (("web-vault",), "internal-sftp")  # SFTP only


def test_where_a_service_runs_now_counts_as_well_as_the_plan():
    from hotspare.fleet import parse_fleet
    from hotspare.planning.certificates import layout_of

    text = (Path(__file__).parents[2] / "docs" / "fleet-example.yaml").read_text()
    fleet = parse_fleet(text, "fleet-example.yaml")
    service = fleet.services[0]
    spare = next(server.name for server in fleet.servers if server.name not in (service.production, service.mirror))
    layout = layout_of(fleet, {service.name: [spare, None]})
    assert set(layout.service(service.name).servers) == {service.production, service.mirror, spare}


@pytest.mark.parametrize(
    "facts, requester, words",
    [
        (run("replicate-service", state="COMPLETED", service="app1"), EAST, "completed, not running"),
        (run("replicate-service", state="PAUSED", service="app1"), EAST, "paused, not running"),
        (run("replicate-service", pool="hotspare-west", service="app1"), EAST, "which east's workers do not poll"),
        (run("replicate-service", pool=None, service="app1"), EAST, "only the control site runs it"),
        (run("failover", service="app1"), EAST, "not approved yet"),
        (run("failover", approval="reject", service="app1"), EAST, "not approved yet"),
        (run("replicate-service", service="app9"), EAST, "services the fleet does not have: app9"),
        (run("rebuild", yes=True, service="app1", standby="nowhere"), EAST, "servers the fleet does not have: nowhere"),
        (run("incident-page"), EAST, "logs in to no server"),
    ],
)
def test_refusals_say_why(facts, requester, words):
    plan = plan_certificate(facts, requester, LAYOUT)
    assert plan.refusal and words in plan.refusal, plan.refusal
    assert plan.principals == () and "no certificate" in plan.sentence()


@pytest.mark.parametrize(
    "facts",
    [
        run("failover", yes=True, service="app1"),
        run("failover", approved_plan_digest="0123456789abcdef", service="app1"),
        run("failover", approval="approve", service="app1"),
        replace(run("failover", unattended=True, service="app1"), creator_role="worker", parent_flow="health"),
    ],
)
def test_a_gated_run_is_served_to_a_facility_once_approved(facts):
    plan = plan_certificate(facts, EAST, LAYOUT)
    assert plan.refusal is None and plan.principals == ("mirror-west", "prod-east")


@pytest.mark.parametrize(
    "parameters, creator, words",
    [
        ({"yes": "no"}, None, "a string is no approval"),
        ({"approved_plan_digest": "0000"}, None, "not a digest"),
        ({"yes": True, "approval_expires_at": "2026-01-01T00:00:00+00:00"}, None, "an approval past its deadline"),
        ({"approved_plan_digest": "0123456789abcdef", "approval_expires_at": "not a time"}, None, "an unreadable deadline"),
        ({"yes": True}, "worker", "a pre-approved run a worker made behind the proxy"),
        ({"yes": True}, "operator", "a pre-approved run an operator made"),
        ({"unattended": True}, "operator", "an operator's unattended run"),
        ({"unattended": True}, "approver", "an approver's unattended run: the health runbook's, not a person's"),
        ({"unattended": True}, "worker", "a worker's unattended run that is no health run's subflow"),
        ({"unattended": True}, None, "an unattended run without a proxy's stamp or a health parent"),
    ],
)
def test_what_does_not_count_as_an_up_front_approval(parameters, creator, words):
    """A run forged with a worker's credential (or an honest one whose approval expired) gets no
    certificate for a gated runbook: the flow would not run on such an approval either."""
    from datetime import datetime, timezone

    facts = replace(run("failover", service="app1", **parameters), creator_role=creator)
    plan = plan_certificate(facts, EAST, LAYOUT, datetime(2026, 6, 1, tzinfo=timezone.utc))
    assert plan.refusal and "not approved yet" in plan.refusal, words
    approved = replace(run("failover", service="app1", yes=True), creator_role="approver")
    assert plan_certificate(approved, EAST, LAYOUT, datetime(2026, 6, 1, tzinfo=timezone.utc)).refusal is None


def test_a_gate_answer_counts_only_with_the_digest_its_pause_showed():
    from types import SimpleNamespace

    from hotspare.issuer.facts import newest_decision

    schema = '{"properties": {"plan_digest": {"title": "Plan digest: type 0123456789abcdef to approve"}}}'

    def answers(typed: str, decision: str = "approve"):
        return [
            SimpleNamespace(key="paused-1-schema", value=schema),
            SimpleNamespace(
                key="paused-1-response", value=f'{{"decision": "{decision}", "plan_digest": "{typed}", "operator": "x"}}'
            ),
        ]

    assert newest_decision(answers("0123456789abcdef")) == "approve"
    assert newest_decision(answers("0000000000000000")) != "approve"
    assert newest_decision(answers("-", "reject")) == "reject"
    assert newest_decision(answers("0123456789abcdef")[1:]) != "approve"  # no schema: the digest shown is unknown


def test_the_control_site_is_served_a_gated_run_before_approval_and_runs_without_a_pool():
    """It holds the CA key: refusing it would protect nothing (a rebuild surveys over SSH first)."""
    plan = plan_certificate(run("rebuild", pool=None, service="app1"), CONTROL, LAYOUT)
    assert plan.refusal is None and "storage-vault" in plan.principals


def test_the_signer_puts_the_plan_into_ssh_keygen_arguments(tmp_path):
    from hotspare.adapters.ssh_ca import Signing, sign_argv

    argv = sign_argv(
        tmp_path / "ca", Signing("run-x", ("a", "b"), "-1m:+10m", ("10.0.0.1",), "internal-sftp"), 7, tmp_path / "run.pub"
    )
    assert argv[:3] == ["ssh-keygen", "-q", "-s"]
    assert argv[argv.index("-n") + 1] == "a,b" and argv[argv.index("-I") + 1] == "run-x"
    assert argv[argv.index("clear") - 1 : argv.index("clear") + 1] == ["-O", "clear"]
    assert "source-address=10.0.0.1" in argv and "force-command=internal-sftp" in argv


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ssh-rsa AAAAB3NzaC1yc2E= x",
        "ssh-ed25519 !!!",
        "ssh-ed25519 AAAA\nssh-ed25519 AAAA",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== short",
    ],
)
def test_the_signer_refuses_anything_but_one_ed25519_public_key(text):
    from hotspare.adapters.ssh_ca import BadPublicKey, checked_public_key

    with pytest.raises(BadPublicKey):
        checked_public_key(text)


# --- the lab's hosts -----------------------------------------------------------------------------
