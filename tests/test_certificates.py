"""SSH certificates per run instead of a standing fleet-wide key (docs/trust-model.md).

- The planner (pure, tests/unit/test_certificate_plans.py): which hosts a run may log in to,
  from where; refusals for runs that are not running, of another site's pool, unapproved gated.
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

import pytest

from hotspare.planning.certificates import (
    Requester,
)


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
        with SshConnection(
            access.endpoint(fleet, host), Login("root", private_key, certificate), connect_timeout=10
        ) as connection:
            return connection.run(["cat", "/etc/hostname"]).text.strip() == host
    except PermanentError as error:
        assert "refused the certificate login" in str(error), error
        return False


def test_a_certificate_for_app1_opens_its_production_and_mirror_and_no_other_host(lab, fleet):
    private_key, certificate = signed(lab, ("prod-east", "mirror-west"))
    assert {
        host: opens(fleet, host, private_key, certificate)
        for host in ("prod-east", "mirror-west", "prod-west", "mirror-east", "storage-vault")
    } == {"prod-east": True, "mirror-west": True, "prod-west": False, "mirror-east": False, "storage-vault": False}


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
    from hotspare import access
    from hotspare.adapters.ssh import Login, SshConnection
    from hotspare.adapters.ssh_ca import Signing, sign
    from hotspare.keys import generate_ed25519

    from lab_helpers import host_path

    private_key, public_key = generate_ed25519("test")
    certificate = sign(
        lab.directory / "ssh_ca",
        public_key,
        Signing("run-page", ("web-vault",), "-1m:+10m", (lab.layout.gateway,), "internal-sftp"),
    )
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
    write_private(
        config,
        config_json(
            lab.directory / "ssh_ca",
            [
                (Requester("control", ("127.0.0.1", lab.layout.gateway), ("hotspare-control",), control=True), token),
                (Requester("east", (lab.layout.address(host_by_name("standby-east")),), ("hotspare-east",)), new_token()),
            ],
        ),
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(Path(__file__).parents[1])}
    with open(folder / "issuer.log", "wb") as log:  # the issuer keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "hotspare.issuer.service", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, folder / "issuer.log")
        yield {"url": url, "token": token, "log": folder / "issuer.log"}
    finally:
        process.kill()
        process.wait(timeout=10)


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
    issuer, lab, lab_env, fleet, monkeypatch
):
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
