"""Attacks on host-to-host transfer access, run in the lab with what a host can get hold of.

Replication pulls: the mirror holds a per-transfer key for production for the length of one
transfer. These tests take such a key as an attacker on the mirror (or on any other host)
would, and try everything the key must not allow. Each attack must fail; a read of the
service's own declared path is the positive control that proves the key was live. What the key
can read through rsync's daemon is attacked in ``test_transfer_confinement.py``.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from hotspare import access
from hotspare.planning import transfer_keys
from hotspare.planning.replication import source_paths
from tasks.transfer_access import transfer_access

from lab_helpers import host_path, ssh_argv

pytestmark = pytest.mark.lab

SERVICE = "app1"


def attempt(lab_env, from_host: str, peer, stdin: bytes, remote_command: list[str]):
    """Put the transfer key on ``from_host`` (as an attacker there would have it) and run ssh
    with it to the host ``peer`` names, asking for ``remote_command``; the key file is removed
    afterwards."""
    folder = f"/run/hotspare-attack-{from_host}"
    script = (
        'umask 077; mkdir -p "$1"; IFS= read -r line; printf "%s\\n" "$line" > "$1/known_hosts"; cat > "$1/key"; '
        'ssh -i "$1/key" -p "$2" -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes '
        '-o UserKnownHostsFile="$1/known_hosts" -o ConnectTimeout=5 "$3" "$4"; status=$?; rm -rf "$1"; exit $status'
    )
    argv = ["sh", "-c", script, "sh", folder, str(peer.port), f"{peer.user}@{peer.address}", shlex.join(remote_command)]
    return subprocess.run(ssh_argv(lab_env, from_host, argv), input=stdin, capture_output=True, timeout=60, check=False)


@pytest.fixture
def live_transfer_key(fleet, lab_env):
    service = lab_env["services"][SERVICE]
    paths = source_paths(fleet.service(SERVICE).model_dump(mode="json"))
    with transfer_access(fleet, SERVICE, service["production"], service["mirror"], paths, "attack-test") as (peer, stdin):
        yield service, peer, stdin


def test_production_holds_only_a_restricted_public_line_while_a_transfer_runs(live_transfer_key, lab_env):
    service, peer, _ = live_transfer_key
    installed = host_path(lab_env, service["production"], transfer_keys.TRANSFER_KEYS_FILE).read_text()
    lines = transfer_keys.key_lines(installed)
    assert len(lines) == 1 and lines[0]["service"] == SERVICE
    assert lines[0]["options"].startswith("restrict,from=")
    assert "PRIVATE KEY" not in installed


def test_the_key_reads_the_services_path_from_the_mirror_only(live_transfer_key, lab_env):
    service, peer, stdin = live_transfer_key
    read = ["rsync", "--server", "--daemon", "."]
    # positive control: from the mirror the key starts production's rsync daemon (which greets,
    # then ends when ssh closes its input)
    allowed = attempt(lab_env, service["mirror"], peer, stdin, read)
    assert allowed.stdout.startswith(b"@RSYNCD: "), (allowed.stdout, allowed.stderr)
    # the same key from any other host (production itself, a standby, the storage host): refused
    for host in (service["production"], "standby-east", "storage-vault"):
        result = attempt(lab_env, host, peer, stdin, read)
        assert result.returncode == 255 and b"Permission denied" in result.stderr, (host, result.stderr)


@pytest.mark.parametrize(
    "command",
    [
        ["sh", "-c", "id"],
        ["cat", "/etc/shadow"],
        ["rsync", "--server", "-logDtpre.iLsfxCIvu", ".", "/srv/app1/data"],  # a write into production
        ["rsync", "--server", "--sender", "-logDtpre.iLsfxCIvu", ".", "/etc/ssh/"],
        ["rsync", "--server", "--sender", "-logDtpre.iLsfxCIvu", ".", "/srv/app2/data"],
        ["rsync", "--server", "--sender", "-LogDtpre.iLsfxCIvu", ".", "/srv/app1/data"],
    ],
)
def test_the_key_runs_nothing_but_rsyncs_daemon_on_production(live_transfer_key, lab_env, command):
    """Whatever the key holder asks to run, production runs the forced command: rsync's daemon,
    which greets and reads a request in its own protocol; the command line asked for is ignored."""
    service, peer, stdin = live_transfer_key
    result = attempt(lab_env, service["mirror"], peer, stdin, command)
    assert result.stdout.startswith(b"@RSYNCD: "), (result.stdout, result.stderr)
    assert result.stdout.count(b"\n") == 1 and b"uid=" not in result.stdout and b"root:" not in result.stdout


def test_the_key_opens_no_other_host(live_transfer_key, lab_env):
    """The mirror's transfer key is worth nothing on the mirror itself, the storage host or a standby."""
    service, peer, stdin = live_transfer_key
    for host in (service["mirror"], "storage-vault", "standby-west"):
        target = lab_env["hosts"][host]
        other = peer.__class__(
            peer.directory, peer.key_path, peer.known_hosts_path, peer.user, target["address"], target["ssh_port"]
        )
        known = (access.endpoint(access.loaded_fleet(), host).known_hosts_line() + "\n").encode()
        private = stdin.split(b"\n", 1)[1]
        result = attempt(lab_env, service["mirror"], other, known + private, ["true"])
        assert result.returncode == 255 and b"Permission denied" in result.stderr, (host, result.stderr)


def test_the_line_is_gone_after_the_transfer_and_an_expired_line_is_refused(fleet, lab_env):
    service = lab_env["services"][SERVICE]
    paths = source_paths(fleet.service(SERVICE).model_dump(mode="json"))
    with transfer_access(fleet, SERVICE, service["production"], service["mirror"], paths, "attack-test") as (peer, stdin):
        pass
    installed = host_path(lab_env, service["production"], transfer_keys.TRANSFER_KEYS_FILE).read_text()
    assert transfer_keys.key_lines(installed) == []
    read = ["rsync", "--server", "--sender", "-logDtpre.iLsfxCIvu", ".", service["data_path"]]
    result = attempt(lab_env, service["mirror"], peer, stdin, read)
    assert result.returncode == 255 and b"Permission denied" in result.stderr


def test_every_lab_host_holds_no_unrestricted_key_but_the_orchestrators(lab, lab_env):
    """After the suite's replications: no transfer line is left, and each host's login file holds
    exactly the orchestrator's key."""
    orchestrator = Path(lab_env["ssh"]["key"] + ".pub").read_text().split()[:2]
    for name in lab_env["hosts"]:
        transfer_file = host_path(lab_env, name, transfer_keys.TRANSFER_KEYS_FILE)
        if transfer_file.exists():
            assert transfer_keys.key_lines(transfer_file.read_text()) == [], name
        logins = (lab.directory / "hosts" / name / "ssh" / "authorized_keys").read_text().split("\n")
        assert [line.split()[:2] for line in logins if line.strip()] == [orchestrator], name
