"""SSH certificates per run instead of a standing fleet-wide key (docs/trust-model.md).

- The planner (pure): which hosts a run may log in to, from where; refusals for runs that are
  not running, runs of another site's pool, unapproved gated runs, runbooks that log in nowhere.
- The lab's hosts (real sshd): a certificate naming prod-east and mirror-west opens exactly
  those two, and only from its source address; an expired one opens nothing.
- The issuer (a real process, the session's Prefect API and inventory): a run that does not exist
  or is finished gets no certificate; a real replication run in process logs in with its own
  certificate (sshd logs the run's id), with no SSH key block in reach.

The facility workers' side (a failover through west's worker, what east's worker can get) is
``tests/test_certificate_workers.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from dataclasses import replace

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
    facility_of={"prod-east": "east", "mirror-west": "west", "prod-west": "west", "mirror-east": "east",
                 "standby-east": "east", "standby-west": "west", "storage-vault": "vault", "web-vault": "vault"},
    standbys=("standby-east", "standby-west"),
    services=(ServiceHosts("app1", ("prod-east", "mirror-west"), "storage-vault"),
              ServiceHosts("app2", ("prod-west", "mirror-east"), "storage-vault")),
    status_page_server="web-vault")
EAST = Requester("east", ("10.0.0.21",), ("hotspare-east",))
CONTROL = Requester("control", ("10.0.0.5",), ("hotspare-control",), control=True)
RUN = "0b5c1a52-8d3e-4c43-9a51-0f7c2b0e1d11"


def run(flow: str, state: str = "RUNNING", pool: str | None = "hotspare-east", approval: str | None = None,
        **parameters) -> RunFacts:
    return RunFacts(RUN, flow, state, parameters, pool, approval)


# --- the planner -------------------------------------------------------------------------------

def test_a_replication_of_app1_gets_its_production_and_mirror_from_the_asking_site_only():
    plan = plan_certificate(run("replicate-service", service="app1"), EAST, LAYOUT)
    assert plan.refusal is None, plan.refusal
    assert (plan.principals, plan.source_addresses, plan.key_id) == (("mirror-west", "prod-east"), ("10.0.0.21",),
                                                                      f"run-{RUN}")
    assert plan.validity_minutes <= 15 and plan.force_command is None


def test_each_runbook_gets_the_hosts_its_plan_needs():
    assert hosts_of_run("backup", {"service": "app2"}, LAYOUT) == ({"prod-west", "mirror-east", "storage-vault"}, None)
    assert hosts_of_run("restore-proof", {"service": "app1"}, LAYOUT) == ({"storage-vault"}, None)
    assert hosts_of_run("rebuild", {"service": "app1", "standby": "standby-west"}, LAYOUT) == (
        {"prod-east", "mirror-west", "storage-vault", "standby-west"}, None)
    assert hosts_of_run("facility-failover", {"facility": "west"}, LAYOUT)[0] == {"prod-east", "mirror-west",
                                                                                  "prod-west", "mirror-east"}
    assert hosts_of_run("replicate", {"services": ["app2"]}, LAYOUT) == ({"prod-west", "mirror-east"}, None)
    assert hosts_of_run("health", {}, LAYOUT)[0] == set(LAYOUT.facility_of)
    assert hosts_of_run("status-page-publish", {}, LAYOUT) == ({"web-vault"}, None)
    plan = plan_certificate(run("status-page-publish"), EAST, LAYOUT)
    assert (plan.principals, plan.force_command) == (("web-vault",), "internal-sftp")  # SFTP only


def test_where_a_service_runs_now_counts_as_well_as_the_plan():
    from hotspare.fleet import parse_fleet
    from hotspare.planning.certificates import layout_of

    text = (Path(__file__).parent.parent / "docs" / "fleet-example.yaml").read_text()
    fleet = parse_fleet(text, "fleet-example.yaml")
    service = fleet.services[0]
    spare = next(server.name for server in fleet.servers if server.name not in (service.production, service.mirror))
    layout = layout_of(fleet, {service.name: [spare, None]})
    assert set(layout.service(service.name).servers) == {service.production, service.mirror, spare}


@pytest.mark.parametrize("facts, requester, words", [
    (run("replicate-service", state="COMPLETED", service="app1"), EAST, "completed, not running"),
    (run("replicate-service", state="PAUSED", service="app1"), EAST, "paused, not running"),
    (run("replicate-service", pool="hotspare-west", service="app1"), EAST, "which east's workers do not poll"),
    (run("replicate-service", pool=None, service="app1"), EAST, "only the control site runs it"),
    (run("failover", service="app1"), EAST, "not approved yet"),
    (run("failover", approval="reject", service="app1"), EAST, "not approved yet"),
    (run("replicate-service", service="app9"), EAST, "services the fleet does not have: app9"),
    (run("rebuild", yes=True, service="app1", standby="nowhere"), EAST, "servers the fleet does not have: nowhere"),
    (run("incident-page"), EAST, "logs in to no server"),
])
def test_refusals_say_why(facts, requester, words):
    plan = plan_certificate(facts, requester, LAYOUT)
    assert plan.refusal and words in plan.refusal, plan.refusal
    assert plan.principals == () and "no certificate" in plan.sentence()


@pytest.mark.parametrize("facts", [
    run("failover", yes=True, service="app1"),
    run("failover", approved_plan_digest="0123456789abcdef", service="app1"),
    run("failover", approval="approve", service="app1"),
    replace(run("failover", unattended=True, service="app1"), creator_role="worker", parent_flow="health"),
])
def test_a_gated_run_is_served_to_a_facility_once_approved(facts):
    plan = plan_certificate(facts, EAST, LAYOUT)
    assert plan.refusal is None and plan.principals == ("mirror-west", "prod-east")


@pytest.mark.parametrize("parameters, creator, words", [
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
])
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
        return [SimpleNamespace(key="paused-1-schema", value=schema),
                SimpleNamespace(key="paused-1-response",
                                value=f'{{"decision": "{decision}", "plan_digest": "{typed}", "operator": "x"}}')]

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

    argv = sign_argv(tmp_path / "ca", Signing("run-x", ("a", "b"), "-1m:+10m", ("10.0.0.1",), "internal-sftp"), 7,
                     tmp_path / "run.pub")
    assert argv[:3] == ["ssh-keygen", "-q", "-s"]
    assert argv[argv.index("-n") + 1] == "a,b" and argv[argv.index("-I") + 1] == "run-x"
    assert ["-O", "clear"] == argv[argv.index("clear") - 1:argv.index("clear") + 1]
    assert "source-address=10.0.0.1" in argv and "force-command=internal-sftp" in argv


@pytest.mark.parametrize("text", ["", "ssh-rsa AAAAB3NzaC1yc2E= x", "ssh-ed25519 !!!", "ssh-ed25519 AAAA\nssh-ed25519 AAAA",
                                  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== short"])
def test_the_signer_refuses_anything_but_one_ed25519_public_key(text):
    from hotspare.adapters.ssh_ca import BadPublicKey, checked_public_key

    with pytest.raises(BadPublicKey):
        checked_public_key(text)


# --- the lab's hosts -----------------------------------------------------------------------------

def signed(lab, principals: tuple[str, ...], validity: str = "-1m:+10m", source: tuple[str, ...] | None = None):
    """(private key, certificate) signed by the lab's CA, from this machine's lab address by default."""
    from hotspare.adapters.ssh_ca import Signing, sign
    from hotspare.keys import generate_ed25519

    private_key, public_key = generate_ed25519("test")
    source = source if source is not None else (lab.layout.gateway,)
    return private_key, sign(lab.directory / "ssh_ca", public_key, Signing("run-test", principals, validity, source))


def opens(fleet, host: str, private_key: str, certificate: str) -> bool:
    """True when ``host`` lets the certificate log in as root (and runs a command); False when refused."""
    from hotspare import access
    from hotspare.adapters.errors import PermanentError
    from hotspare.adapters.ssh import Login, SshConnection

    try:
        with SshConnection(access.endpoint(fleet, host), Login("root", private_key, certificate),
                           connect_timeout=10) as connection:
            return connection.run(["cat", "/etc/hostname"]).text.strip() == host
    except PermanentError as error:
        assert "refused the certificate login" in str(error), error
        return False


def test_a_certificate_for_app1_opens_its_production_and_mirror_and_no_other_host(lab, fleet):
    private_key, certificate = signed(lab, ("prod-east", "mirror-west"))
    assert {host: opens(fleet, host, private_key, certificate)
            for host in ("prod-east", "mirror-west", "prod-west", "mirror-east", "storage-vault")} == {
        "prod-east": True, "mirror-west": True, "prod-west": False, "mirror-east": False, "storage-vault": False}


def test_an_expired_certificate_or_one_from_another_address_is_refused(lab, fleet):
    expired = signed(lab, ("prod-east",), validity="20200101:20200102")
    elsewhere = signed(lab, ("prod-east",), source=("10.99.0.1",))
    current = signed(lab, ("prod-east",))
    assert not opens(fleet, "prod-east", *expired)
    assert not opens(fleet, "prod-east", *elsewhere)
    assert opens(fleet, "prod-east", *current)  # the positive control: same CA, same host, valid now


def test_the_status_page_certificate_runs_only_sftp_whatever_is_asked(lab, fleet):
    """``force-command=internal-sftp``: the upload (a bounded probe, then SFTP) works; a command
    asked for never runs (its would-be output is absent, the file it would write stays absent)."""
    from lab_helpers import host_path

    from hotspare import access
    from hotspare.adapters.ssh import Login, SshConnection
    from hotspare.adapters.ssh_ca import Signing, sign
    from hotspare.keys import generate_ed25519

    private_key, public_key = generate_ed25519("test")
    certificate = sign(lab.directory / "ssh_ca", public_key,
                       Signing("run-page", ("web-vault",), "-1m:+10m", (lab.layout.gateway,), "internal-sftp"))
    marker = host_path(lab.env(), "web-vault", "/home/forced-command-escaped")
    marker.unlink(missing_ok=True)
    with SshConnection(access.endpoint(fleet, "web-vault"), Login("root", private_key, certificate)) as connection:
        connection.run(["true"], timeout=10, check=False)  # the upload's link probe still ends (else: TransientError)
        result = connection.run(["sh", "-c", "echo escaped; touch /home/forced-command-escaped"], timeout=10, check=False)
        sftp = connection.open_sftp()
        try:
            assert "hostname" in sftp.listdir("/etc")
        finally:
            sftp.close()
    assert b"escaped" not in result.stdout and not marker.exists()


def test_a_certificate_of_another_authority_is_refused(lab, fleet, tmp_path):
    from hotspare.adapters.ssh_ca import Signing, sign
    from hotspare.keys import generate_ed25519

    other_ca, _ = generate_ed25519("other-ca")
    (tmp_path / "ca").write_text(other_ca)
    (tmp_path / "ca").chmod(0o600)
    private_key, public_key = generate_ed25519("test")
    certificate = sign(tmp_path / "ca", public_key, Signing("run-x", ("prod-east",), "-1m:+10m", (lab.layout.gateway,)))
    assert not opens(fleet, "prod-east", private_key, certificate)


# --- the issuer as a process, with the session's Prefect API and inventory -----------------------

@pytest.fixture(scope="module")
def issuer(lab, fleet, tmp_path_factory):
    """The issuer on loopback for the control site (this process), its URL and token."""
    import socket

    from prefect.settings import PREFECT_API_URL

    from hotspare.issuer.service import config_json, new_token
    from hotspare.lab.topology import host_by_name
    from hotspare.local_secrets import write_private

    folder = tmp_path_factory.mktemp("issuer")
    token = new_token()
    config = folder / "issuer.json"
    write_private(config, config_json(lab.directory / "ssh_ca", [
        (Requester("control", ("127.0.0.1", lab.layout.gateway), ("hotspare-control",), control=True), token),
        (Requester("east", (lab.layout.address(host_by_name("standby-east")),), ("hotspare-east",)), new_token())]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(Path(__file__).parents[1])}
    log = open(folder / "issuer.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "hotspare.issuer.service", "--config", str(config),
                                "--listen", f"127.0.0.1:{port}"], env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, folder / "issuer.log")
        yield {"url": url, "token": token, "log": folder / "issuer.log"}
    finally:
        process.kill()
        process.wait(timeout=10)
        log.close()


def wait_healthy(url: str, process, log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the issuer did not start: {log_path.read_text()[-2000:]}")


def test_a_run_prefect_does_not_know_gets_no_certificate(issuer):
    from hotspare.adapters.issuer import CertificateRefused, request_certificate
    from hotspare.keys import generate_ed25519

    _, public_key = generate_ed25519("x")
    with pytest.raises(CertificateRefused, match="Prefect knows no flow run"):
        request_certificate(issuer["url"], issuer["token"], str(uuid.uuid4()), public_key)
    with pytest.raises(CertificateRefused, match="unknown token"):
        request_certificate(issuer["url"], "not-a-token", str(uuid.uuid4()), public_key)


def test_a_replication_in_process_logs_in_with_its_own_certificate_and_a_finished_run_gets_none(
        issuer, lab, lab_env, fleet, monkeypatch):
    """Every login the hosts saw during the run was the run's certificate, none the block's key."""
    from flows.replicate import replicate_service
    from hotspare import access
    from hotspare.adapters.issuer import CertificateRefused, request_certificate
    from hotspare.keys import generate_ed25519

    monkeypatch.setenv("HOTSPARE_SSH_ISSUER_URL", issuer["url"])
    monkeypatch.setenv("HOTSPARE_SSH_ISSUER_TOKEN", issuer["token"])
    logs = {host: lab.directory / "logs" / f"sshd-{host}.log" for host in ("prod-east", "mirror-west")}
    before = {host: path.stat().st_size for host, path in logs.items()}
    access.close_connections()
    access.forget_credentials()
    try:
        state = replicate_service("app1", return_state=True)
    finally:
        access.close_connections()
        access.forget_credentials()
    assert state.is_completed(), state.message
    assert state.result()["outcome"] == "ok"
    run_id = str(state.state_details.flow_run_id)
    for host, path in logs.items():
        with open(path, "rb") as handle:
            handle.seek(before[host])
            accepted = [line for line in handle.read().decode(errors="replace").splitlines() if "Accepted " in line]
        # the orchestrator's logins (this machine's lab address); the mirror's pull uses a transfer key
        root_logins = [line for line in accepted if f"for root from {lab.layout.gateway} " in line]
        assert root_logins, f"{host}'s sshd logged no root login of the orchestrator during the run"
        assert all(f"ID run-{run_id} " in line and "ED25519-CERT" in line for line in root_logins), root_logins
    _, public_key = generate_ed25519("x")
    with pytest.raises(CertificateRefused, match="completed, not running"):
        request_certificate(issuer["url"], issuer["token"], run_id, public_key)
