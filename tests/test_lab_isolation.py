"""A lab host sees what a fleet server would see: its own /root, /tmp, /var/tmp, /run and
/dev/shm, none of the machine's network namespaces, and nothing of the lab's or the
orchestrator's files (client key, secrets.json, the TSIG key, other hosts' keys).

Every check runs as the lab's root on a host over SSH, like a compromised server would, and has
a positive control (the same path is there on the machine, or the host's own file is readable),
so a check cannot pass because it looked in the wrong place.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from hotspare.lab.host_namespace import (
    FOLDER_PATHS,
    boot_argv,
    hidden_folders,
)
from hotspare.settings import hotspare_home

from lab_helpers import host_path, ssh

HOST, OTHER_HOST = "prod-east", "mirror-west"
# Prints "PATH: readable" or "PATH: unreadable" for every argument, as root on the host.
READABLE = (
    'for path in "$@"; do if head -c 1 -- "$path" >/dev/null 2>&1; then echo "$path: readable"; '
    'else echo "$path: unreadable"; fi; done'
)


def readable_on(lab_env: dict, host: str, paths: list[Path]) -> dict[str, bool]:
    result = ssh(lab_env, host, "sh", "-c", READABLE, "sh", *map(str, paths))
    assert result.returncode == 0, result.stderr
    lines = dict(line.rsplit(": ", 1) for line in result.stdout.splitlines())
    return {path: lines[path] == "readable" for path in map(str, paths)}


def test_a_host_reads_none_of_the_labs_secrets_but_its_own_files(lab, lab_env):
    directory = Path(lab_env["directory"])
    secret_files = [
        directory / "client_key",
        Path(lab_env["secrets_file"]),
        directory / "dns" / "tsig.key",
        directory / "hosts" / OTHER_HOST / "ssh" / "ssh_host_ed25519_key",
        directory / "hosts" / OTHER_HOST / "ssh" / "authorized_keys",
        directory / "known_hosts",
        directory / "state.json",
    ]
    own_files = [
        directory / "hosts" / HOST / "ssh" / "ssh_host_ed25519_key",
        directory / "hosts" / HOST / "ssh" / "authorized_keys",
        Path("/etc/hostname"),
    ]
    assert all(path.is_file() for path in secret_files + own_files[:2])  # there, on the machine
    seen = readable_on(lab_env, HOST, secret_files + own_files)
    assert [path for path in secret_files if seen[str(path)]] == []
    assert all(seen[str(path)] for path in own_files)  # positive control: the host's own files


def test_the_orchestrators_home_shows_only_the_way_to_the_hosts_own_ssh_folder(lab, lab_env):
    home = hotspare_home().resolve()
    own_ssh = Path(lab_env["directory"]).resolve() / "hosts" / HOST / "ssh"
    assert any(home.iterdir()) and home in own_ssh.parents  # the home holds the lab and more
    result = ssh(lab_env, HOST, "find", str(home))
    assert result.returncode == 0, result.stderr
    listed = {Path(line) for line in result.stdout.splitlines()}
    assert own_ssh / "sshd_config" in listed  # positive control: find did look there
    strays = [path for path in listed if path not in own_ssh.parents and path != own_ssh and own_ssh not in path.parents]
    assert strays == []


def test_a_host_lists_none_of_the_machines_network_namespaces(lab, lab_env):
    machine = sorted(path.name for path in Path("/run/netns").iterdir())
    assert lab_env["hosts"][HOST]["netns"] in machine  # positive control: the machine's list
    result = ssh(lab_env, HOST, "sh", "-c", "ls -A /run/netns 2>/dev/null; ip netns list; exit 0")
    assert result.returncode == 0, result.stderr
    assert [name for name in machine if name in result.stdout] == []
    sshd_folder = ssh(lab_env, HOST, "test", "-d", "/run/sshd")
    assert sshd_folder.returncode == 0  # sshd's privilege separation folder is in the host's own /run


def test_a_hosts_mount_table_holds_only_what_it_can_reach(lab, lab_env):
    """No mount of the machine or of another host under a path the host cannot reach: tools that
    walk the table (``btrfs filesystem show``) fail on those."""
    script = (
        'awk \'{print $5}\' /proc/self/mountinfo | while read -r point; do echo "$point: $([ -d "$point" ] && echo ok)"; done'
    )
    result = ssh(lab_env, HOST, "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    points = dict(line.rsplit(": ", 1) if line.endswith(": ok") else (line[:-2], "") for line in result.stdout.splitlines())
    assert "/srv" in points and "/run" in points  # positive control: the host's own mounts are listed
    assert [point for point, state in points.items() if state != "ok"] == []
    assert [point for point in points if f"/hosts/{OTHER_HOST}/" in point] == []
    shown = ssh(lab_env, HOST, "btrfs", "filesystem", "show", "/srv")
    assert shown.returncode == 0 and "Total devices" in shown.stdout, shown.stderr


@pytest.mark.parametrize("folder", ["/tmp", "/root", "/var/tmp", "/run", "/dev/shm"])
def test_a_file_written_on_one_host_is_that_hosts_alone(lab, lab_env, folder):
    path = f"{folder}/hotspare-isolation-{secrets.token_hex(6)}"
    content = secrets.token_hex(8)
    written = ssh(lab_env, HOST, "sh", "-c", 'printf %s "$2" > "$1"', "sh", path, content)
    assert written.returncode == 0, written.stderr
    try:
        assert ssh(lab_env, HOST, "cat", path).stdout == content  # positive control
        assert host_path(lab_env, HOST, path).read_text() == content  # where the machine finds it
        assert ssh(lab_env, OTHER_HOST, "test", "-e", path).returncode == 1
        assert not os.path.lexists(path)  # not the machine's
    finally:
        ssh(lab_env, HOST, "rm", "-f", path)


@pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")
def test_a_lab_folder_a_host_could_see_is_covered_but_for_the_hosts_own_ssh_folder():
    """The session lab lives under /tmp, which hosts replace with their own; a lab folder
    elsewhere (here under /var/lib) stays in a host's sight and must be covered. The boot script
    runs in a throwaway mount namespace and becomes a probe instead of sshd."""
    lab = Path(f"/var/lib/hotspare-isolation-{secrets.token_hex(6)}")
    host = lab / "hosts" / "h1"
    try:
        for path in FOLDER_PATHS + ("/ssh",):
            (host / path.lstrip("/")).mkdir(parents=True)
        (lab / "hosts" / "h2" / "ssh").mkdir(parents=True)
        secret_files = [lab / "secrets.json", lab / "client_key", lab / "hosts" / "h2" / "ssh" / "ssh_host_ed25519_key"]
        own_file = host / "ssh" / "sshd_config"
        for path in secret_files + [own_file]:
            path.write_text("x\n")
        probe = READABLE + '; ls -A /run; echo "tmp: $(ls -A /tmp)"'
        result = subprocess.run(
            [
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--",
                *boot_argv(
                    host, "h1", hidden_folders(lab, None), ["sh", "-c", probe, "sh", *map(str, secret_files + [own_file])]
                ),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[:4] == [f"{path}: unreadable" for path in secret_files] + [f"{own_file}: readable"]
        assert "sshd" in lines[4:-1] and "netns" not in lines[4:-1]  # a fresh /run
        assert lines[-1] == "tmp: "  # the host's own, empty /tmp
        assert all(path.read_text() == "x\n" for path in secret_files)  # there all along, on the machine
    finally:
        shutil.rmtree(lab, ignore_errors=True)
