"""Replication commands as golden argument lists, and the ``PEER_SCRIPT`` wrapper run for real
(a plain ``sh`` script, as the product runs it) so the key folder's life is checked end to end."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hotspare.planning import replication as plan
from hotspare.planning.replication import (
    PeerAccess,
)

NOW = datetime(2026, 11, 25, 13, 0, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


# ---------------------------------------------------------------------------------------
# Commands: golden argument lists

SECRET_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-secret-material\n-----END OPENSSH PRIVATE KEY-----"
KNOWN_HOSTS = "[10.211.70.12]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMirrorHostKey"
PEER = plan.peer_access("replicate-shop-1a2b3c4d", "hotspare", "10.211.70.12", 2222)
SSH_E = (
    "ssh -i /run/hotspare/replicate-shop-1a2b3c4d/key -p 2222 -o BatchMode=yes -o IdentitiesOnly=yes "
    "-o StrictHostKeyChecking=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 "
    "-o UserKnownHostsFile=/run/hotspare/replicate-shop-1a2b3c4d/known_hosts"
)
PATHS = ["/srv/shop/data", "/etc/passwd"]
NEW_TREE = "/srv/hotspare/shop/copies/20261125T130000Z/tree"
PREVIOUS_TREE = "/srv/hotspare/shop/copies/20261125T120000Z/tree"


def test_layout_paths():
    assert plan.copy_id_for(NOW) == "20261125T130000Z"
    assert plan.copy_tree("shop", "20261125T130000Z") == NEW_TREE
    assert plan.copy_data_path("shop", "X", "/srv/shop/data") == "/srv/hotspare/shop/copies/X/tree/srv/shop/data"


def test_source_paths_are_unique_and_never_the_system_account_files():
    spec = {
        "data_paths": ["/srv/shop/data/", "/srv/shop/data"],
        "app_paths": ["/opt/shop"],
        "config_paths": ["/etc/shop"],
        "accounts": {"files": ["/srv/shop/accounts"]},
    }
    assert plan.source_paths(spec) == ["/srv/shop/data", "/opt/shop", "/etc/shop", "/srv/shop/accounts"]


def test_peer_access_layout():
    assert (
        PeerAccess(
            "/run/hotspare/replicate-shop-1a2b3c4d",
            "/run/hotspare/replicate-shop-1a2b3c4d/key",
            "/run/hotspare/replicate-shop-1a2b3c4d/known_hosts",
            "hotspare",
            "10.211.70.12",
            2222,
        )
        == PEER
    )
    assert PEER.pid_file == "/run/hotspare/replicate-shop-1a2b3c4d/transfer.pid"
    assert PEER.ssh_command() == SSH_E


def test_rsync_copy_argv_with_link_dest():
    assert plan.rsync_copy_argv(PEER, PATHS, NEW_TREE, PREVIOUS_TREE) == [
        "rsync",
        "-aHAX",
        "--numeric-ids",
        "--relative",
        "--delete",
        "--partial",
        "--mkpath",
        "--stats",
        "--itemize-changes",
        "--timeout=60",
        "-e",
        SSH_E,
        f"--link-dest={PREVIOUS_TREE}",
        "hotspare@10.211.70.12::hotspare/srv/shop/data",
        "hotspare@10.211.70.12::hotspare/etc/passwd",
        f"{NEW_TREE}/",
    ]


def test_rsync_copy_argv_without_link_dest():
    argv = plan.rsync_copy_argv(PEER, PATHS, NEW_TREE, None)
    assert not any(arg.startswith("--link-dest") for arg in argv)
    assert "--copy-dest=/" in argv  # reuse the mirror's own identical live files, by copy
    assert argv[-3:] == [
        "hotspare@10.211.70.12::hotspare/srv/shop/data",
        "hotspare@10.211.70.12::hotspare/etc/passwd",
        f"{NEW_TREE}/",
    ]


def test_delete_only_targets_the_new_copy():
    """The destination (the one --delete acts in) is the new copy's tree on the mirror, every
    remote path is a production source; the previous copy appears only as a hard-link source."""
    argv = plan.rsync_copy_argv(PEER, PATHS, NEW_TREE, PREVIOUS_TREE)
    remote = [arg for arg in argv if arg.startswith("hotspare@")]
    assert remote == [f"hotspare@10.211.70.12::hotspare{path}" for path in PATHS]
    assert argv[-1] == f"{NEW_TREE}/"
    assert [arg for arg in argv if PREVIOUS_TREE in arg] == [f"--link-dest={PREVIOUS_TREE}"]


def test_rsync_verify_argv_is_a_checksum_dry_run():
    assert plan.rsync_verify_argv(PEER, PATHS, NEW_TREE) == [
        "rsync",
        "-aHAX",
        "--numeric-ids",
        "--relative",
        "--delete",
        "--dry-run",
        "--checksum",
        "--itemize-changes",
        "--timeout=60",
        "-e",
        SSH_E,
        "hotspare@10.211.70.12::hotspare/srv/shop/data",
        "hotspare@10.211.70.12::hotspare/etc/passwd",
        f"{NEW_TREE}/",
    ]


def test_rsync_repair_argv_resends_with_checksums_and_deletes_nothing():
    argv = plan.rsync_repair_argv(PEER, ["/srv/shop/data/a.db"], NEW_TREE)
    assert argv == [
        "rsync",
        "-aHAX",
        "--numeric-ids",
        "--relative",
        "--checksum",
        "--timeout=60",
        "-e",
        SSH_E,
        "hotspare@10.211.70.12::hotspare/srv/shop/data/a.db",
        f"{NEW_TREE}/",
    ]
    assert "--delete" not in argv and "--dry-run" not in argv


def test_with_peer_access_passes_the_directory_as_first_argument():
    inner = plan.rsync_copy_argv(PEER, PATHS, NEW_TREE, None)
    assert plan.with_peer_access(PEER, inner) == ["sh", "-c", plan.PEER_SCRIPT, "sh", PEER.directory, *inner]
    assert plan.PEER_SCRIPT.startswith("dir=$1; shift;")


def test_peer_stdin_carries_host_key_line_then_private_key():
    stdin = plan.peer_stdin("  " + KNOWN_HOSTS + "\n", "\n" + SECRET_KEY + "\n\n")
    assert stdin == (KNOWN_HOSTS + "\n" + SECRET_KEY + "\n").encode()


def test_private_key_never_appears_in_any_argv():
    argvs = [
        plan.with_peer_access(PEER, plan.rsync_copy_argv(PEER, PATHS, NEW_TREE, PREVIOUS_TREE)),
        plan.with_peer_access(PEER, plan.rsync_verify_argv(PEER, PATHS, NEW_TREE)),
        plan.with_peer_access(PEER, plan.rsync_repair_argv(PEER, PATHS, NEW_TREE)),
    ]
    for argv in argvs:
        joined = "\0".join(argv)
        assert "secret-material" not in joined and "PRIVATE KEY" not in joined
        assert "MirrorHostKey" not in joined
    assert b"secret-material" in plan.peer_stdin(KNOWN_HOSTS, SECRET_KEY)


# The wrapped command: waits (with a deadline) for the PID file, then reports what it sees in
# the key folder and copies the key files out, so the test can check them after the folder is gone.
INSPECT = r"""
dir=$1; out=$2; status=$3
i=0
while [ ! -s "$dir/transfer.pid" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i + 1)); done
stat -c %a "$dir" > "$out/dir_mode"
stat -c %a "$dir/key" > "$out/key_mode"
cat "$dir/transfer.pid" > "$out/pid"
echo $$ > "$out/self"
ls -A "$dir" > "$out/listing"
cp "$dir/key" "$dir/known_hosts" "$out/"
exit "$status"
"""


@pytest.fixture
def key_folder(tmp_path: Path):
    """A PeerAccess whose folder is under a temporary directory (nested: mkdir -p must create it)."""
    peer = replace(PEER, directory=str(tmp_path / "run" / "replicate-shop-1a2b3c4d"))
    out = tmp_path / "out"
    out.mkdir()
    return peer, out


def _run(argv: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=20, check=False)


@pytest.mark.parametrize("status", [0, 3])
def test_with_peer_access_runs_for_real(key_folder, status):
    peer, out = key_folder
    argv = plan.with_peer_access(peer, ["sh", "-c", INSPECT, "sh", peer.directory, str(out), str(status)])
    result = _run(argv, plan.peer_stdin(KNOWN_HOSTS, SECRET_KEY))

    assert result.returncode == status, result.stderr
    assert (out / "dir_mode").read_text().strip() == "700"
    assert (out / "key_mode").read_text().strip() == "600"
    assert sorted((out / "listing").read_text().split()) == ["key", "known_hosts", "transfer.pid"]
    assert (out / "known_hosts").read_text() == KNOWN_HOSTS + "\n"
    assert (out / "key").read_text() == SECRET_KEY + "\n"
    # the PID recorded is the wrapped command's own (what a cancel would signal)
    assert (out / "pid").read_text().strip() == (out / "self").read_text().strip()
    assert not os.path.exists(peer.directory)


def test_with_peer_access_removes_the_folder_when_the_command_cannot_run(key_folder):
    peer, _ = key_folder
    result = _run(
        plan.with_peer_access(peer, ["/nonexistent/hotspare-no-such-command"]), plan.peer_stdin(KNOWN_HOSTS, SECRET_KEY)
    )
    assert result.returncode == 127
    assert not os.path.exists(peer.directory)


def test_with_peer_access_without_stdin_runs_nothing(key_folder):
    peer, out = key_folder
    marker = out / "ran"
    result = _run(plan.with_peer_access(peer, ["touch", str(marker)]), b"")
    assert result.returncode == 1
    assert not marker.exists()
    assert not os.path.exists(peer.directory)
