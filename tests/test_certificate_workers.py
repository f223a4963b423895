"""Facility workers hold no SSH key: each run logs in with a certificate the control site issued
for it (docs/trust-model.md). The control site's Prefect server holds no SSH key block at all
here, so nothing a worker's credentials read opens a host.

- A failover submitted to west's worker runs end to end with its run's certificate: prod-east
  (the fence) and mirror-west (the activation) log the run's id, from west's worker's address.
- A worker's environment and folders hold no private key; with its own Prefect credentials the
  SSH key block is not there to read (while the DNS key is: the positive control).
- Attacked from east's worker's network with east's token: a certificate for an approved east
  run of app1 opens prod-east and mirror-west and is refused by prod-west and mirror-east; the
  same run unapproved gets none, west's run gets none, and east's token from another address
  gets none.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from test_failover import SERVICE, reset_layout

from hotspare.lab import control

pytestmark = pytest.mark.lab
PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(lab, lab_env, fleet):
    """Control site, issuer and workers; no SSH key block; this process asks as the control site."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from flows.replicate import replicate_service
    from hotspare import access
    from hotspare.cli import main
    from hotspare.commands.deploy_commands import deploy_to_pools
    from hotspare.lab import issuer
    from hotspare.lab.workers import start_workers, wait_online

    try:
        workers = start_workers(lab, wait=False)
        client = control.client_environment(lab)
        tokens = issuer.tokens(lab)
        with (
            pytest.MonkeyPatch.context() as patch,
            temporary_settings(
                updates={PREFECT_API_URL: client["PREFECT_API_URL"], PREFECT_API_AUTH_STRING: client["PREFECT_API_AUTH_STRING"]}
            ),
        ):
            patch.setenv("HOTSPARE_DB_URL", client["HOTSPARE_DB_URL"])
            patch.setenv("HOTSPARE_SSH_ISSUER_URL", issuer.url(lab))
            patch.setenv("HOTSPARE_SSH_ISSUER_TOKEN", tokens["control"])
            access.forget_credentials()
            # `hotspare lab blocks` leaves the SSH key out once the issuer runs
            assert main(["lab", "blocks", "--dir", str(lab.directory), "--slot", str(lab.slot)]) == 0
            assert main(["fleet", "load", lab_env["fleet_file"]]) == 0
            assert main(["fleet", "claim", "--takeover"]) == 0
            deploy_to_pools(access.loaded_fleet(), ["control", "east", "west"], flows=["failover"])
            access.close_connections()
            assert replicate_service(SERVICE)["outcome"] == "ok"  # in process, with its own certificate
            wait_online(lab, client)
            yield {"workers": workers, "client": client, "tokens": tokens, "url": issuer.url(lab)}
            access.close_connections()
    finally:
        control.stop_site(lab)
        from hotspare import access
        from tasks.orchestrator import forget_checks

        access.forget_credentials()
        forget_checks()
        assert main(["fleet", "claim", "--takeover"]) == 0
        reset_layout(lab, lab_env)


def logins_of_run(lab, host: str, run_id: str) -> list[str]:
    """sshd's lines on ``host`` accepting the certificate of run ``run_id``."""
    text = (lab.directory / "logs" / f"sshd-{host}.log").read_text(errors="replace")
    return [line for line in text.splitlines() if "Accepted publickey" in line and f"ID run-{run_id} " in line]


def test_a_failover_through_west_worker_logs_in_with_its_run_certificate(site, lab, lab_env, monkeypatch):
    from test_failover import address, dns_answer

    from hotspare.commands.deploy_commands import submit
    from hotspare.lab.topology import host_by_name

    monkeypatch.setenv("HOTSPARE_OPERATOR", "Dana Ops")
    reset_layout(lab, lab_env)
    try:
        outcome = submit("failover", {"service": SERVICE, "yes": True}, facility="west", timeout=300)
        assert outcome["state"] == "COMPLETED", outcome
        assert outcome["worker"] == f"worker-west-slot{lab.slot}"
        assert dns_answer(lab_env) == [address(lab_env, "mirror")]
        west = lab.layout.address(host_by_name("standby-west"))
        for host in ("prod-east", "mirror-west"):  # the fence, the activation
            lines = logins_of_run(lab, host, outcome["flow_run"])
            assert lines and all(f"from {west} " in line and "ED25519-CERT" in line for line in lines), (host, lines)
    finally:
        reset_layout(lab, lab_env)


def test_a_worker_holds_no_ssh_private_key_and_reads_no_key_block(site, lab):
    import httpx

    from hotspare.lab.topology import BLOCK_NAMES

    for worker in site["workers"]:
        environment = dict(
            entry.split("=", 1)
            for entry in Path(f"/proc/{worker['pid']}/environ").read_bytes().decode().split("\0")
            if "=" in entry
        )
        assert environment.get("HOTSPARE_SSH_ISSUER_TOKEN"), worker["name"]
        assert not any("PRIVATE KEY" in value for value in environment.values()), worker["name"]
        homes = [Path(environment[name]) for name in ("HOTSPARE_HOME", "PREFECT_HOME") if name in environment]
        for home in homes:
            for path in (path for path in home.rglob("*") if path.is_file() and path.stat().st_size < 10_000_000):
                assert b"PRIVATE KEY" not in path.read_bytes(), f"{worker['name']} keeps a private key in {path}"
        user, _, password = environment["PREFECT_API_AUTH_STRING"].partition(":")
        api = environment["PREFECT_API_URL"]

        def block(type_slug: str, name: str) -> int:
            return httpx.get(
                f"{api}/block_types/slug/{type_slug}/block_documents/name/{name}",
                params={"include_secrets": "true"},
                auth=(user, password),
                timeout=10,
            ).status_code

        assert block("hotspare-ssh-credentials", BLOCK_NAMES["ssh"]) == 404, worker["name"]
        assert block("hotspare-dns-update-key", BLOCK_NAMES["tsig"]) == 200  # the positive control: the same credentials work


NETNS_CLIENT = r"""
import json, sys
from hotspare.adapters.errors import HotspareError
from hotspare.adapters.issuer import request_certificate
from hotspare.adapters.ssh import Endpoint, Login, SshConnection
from hotspare.keys import generate_ed25519
request = json.loads(sys.argv[1])
private_key, public_key = generate_ed25519("attempt")
try:
    issued = request_certificate(request["url"], request["token"], request["run"], public_key)
except HotspareError as error:
    print(json.dumps({"refused": str(error)}))
    raise SystemExit(0)
opened = {}
for name, (address, host_key) in request["hosts"].items():
    try:
        with SshConnection(Endpoint(name, address, 22, host_key), Login("root", private_key, issued.certificate),
                           connect_timeout=10) as connection:
            opened[name] = connection.run(["cat", "/etc/hostname"]).text.strip() == name
    except HotspareError as error:
        opened[name] = str(error)
print(json.dumps({"principals": list(issued.principals), "opened": opened}))
"""


def from_network(namespace: str | None, url: str, token: str, run_id: str, fleet, hosts: tuple[str, ...]) -> dict:
    """Ask the issuer and log in with what it gives, from inside ``namespace`` (None: this machine)."""
    request = {
        "url": url,
        "token": token,
        "run": run_id,
        "hosts": {name: (fleet.server(name).address, fleet.server(name).host_key) for name in hosts},
    }
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    result = subprocess.run(
        prefix + [sys.executable, "-c", NETNS_CLIENT, json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


@pytest.fixture
def held_runs(site):
    """Create runs of failover@east / failover@west and hold them RUNNING (no worker takes them:
    they were scheduled an hour ahead); cancel them afterwards."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Running, Scheduled

    made = []

    def hold(deployment_name: str, parameters: dict) -> str:
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(f"failover/{deployment_name}")
            run = client.create_flow_run_from_deployment(
                deployment.id,
                parameters=parameters,
                state=Scheduled(scheduled_time=datetime.now(timezone.utc) + timedelta(hours=1)),
            )
            made.append(run.id)
            client.set_flow_run_state(run.id, Running(), force=True)
        return str(run.id)

    yield hold
    with get_client(sync_client=True) as client:
        for run_id in made:
            client.set_flow_run_state(run_id, Cancelled(message="test over"), force=True)


def test_from_east_worker_a_certificate_opens_only_its_runs_hosts_and_only_for_its_runs(site, lab, held_runs):
    from hotspare import access

    fleet = access.loaded_fleet()
    east = next(worker for worker in site["workers"] if worker["facility"] == "east")
    west = next(worker for worker in site["workers"] if worker["facility"] == "west")
    hosts = ("prod-east", "mirror-west", "prod-west", "mirror-east")
    approved = held_runs("failover@east", {"service": SERVICE, "yes": True})
    unapproved = held_runs("failover@east", {"service": SERVICE})
    wests = held_runs("failover@west", {"service": SERVICE, "yes": True})

    answer = from_network(east["netns"], site["url"], site["tokens"]["east"], approved, fleet, hosts)
    assert answer.get("principals") == ["mirror-west", "prod-east"], answer
    assert answer["opened"]["prod-east"] is True and answer["opened"]["mirror-west"] is True, answer
    for other in ("prod-west", "mirror-east"):
        assert "refused the certificate login" in str(answer["opened"][other]), answer

    refusals = {
        "unapproved": from_network(east["netns"], site["url"], site["tokens"]["east"], unapproved, fleet, hosts),
        "west's run": from_network(east["netns"], site["url"], site["tokens"]["east"], wests, fleet, hosts),
        "elsewhere": from_network(None, site["url"], site["tokens"]["east"], approved, fleet, hosts),
    }
    assert "not approved yet" in refusals["unapproved"].get("refused", ""), refusals
    assert "which east's workers do not poll" in refusals["west's run"].get("refused", ""), refusals
    assert "does not ask from" in refusals["elsewhere"].get("refused", ""), refusals
    # west's worker gets west's run (the positive control of the pool rule)
    assert from_network(west["netns"], site["url"], site["tokens"]["west"], wests, fleet, ("mirror-west",))["opened"] == {
        "mirror-west": True
    }
