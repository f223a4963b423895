"""The pure planners, with golden inputs and outputs: no lab, no Prefect API, no network.

Command output used as input here is what the real tools print (rsync 3.x ``--stats`` and
``-i``, ``df -B1``, ``/proc/meminfo``, ``dpkg-query``). Two tests run real local commands
because the product runs them too: the ``PEER_SCRIPT`` wrapper (a plain ``sh`` script) and
rsync's itemized comparison, so the parser is checked against rsync itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hotspare.inventory.models import CopyRow, RunRow, ServiceRow
from hotspare.planning import replication as plan
from hotspare.planning import verification as content
from hotspare.planning import transfer_keys
from hotspare.planning.verification import Difference
from hotspare.planning.failover import CopyChoice, ServiceFacts, activation_argv, plan_failover
from hotspare.planning.replication import (
    Decision,
    HardwareFacts,
    PeerAccess,
    SourceTotals,
    TransferStats,
)
from hotspare.status import copy_facts, failover_facts

NOW = datetime(2026, 11, 25, 13, 0, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


# ---------------------------------------------------------------------------------------
# judge_source / judge_room


def test_sane_source_goes():
    decision = plan.judge_source(SourceTotals(1000, 5_000_000), SourceTotals(990, 4_900_000), 0.5, [], force=False)
    assert decision == Decision(True, "source looks sane: 1000 files, 5000000 bytes")


def test_empty_source_is_refused_and_nothing_touched():
    decision = plan.judge_source(SourceTotals(0, 0), SourceTotals(1000, 5_000_000), 0.5, [], force=False)
    assert not decision.go
    assert "hold no files" in decision.reason
    assert "Nothing was touched; use force to override." in decision.reason


def test_missing_data_path_is_refused_and_named():
    decision = plan.judge_source(SourceTotals(10, 100), None, 0.5, ["/srv/shop/uploads"], force=False)
    assert not decision.go
    assert "data path(s) missing on production: /srv/shop/uploads" in decision.reason


def test_missing_path_and_empty_source_both_reported():
    decision = plan.judge_source(SourceTotals(0, 0), None, 0.5, ["/srv/a", "/srv/b"], force=False)
    assert not decision.go
    assert "/srv/a, /srv/b" in decision.reason and "hold no files" in decision.reason


def test_file_count_shrink_beyond_limit_is_refused_with_both_numbers():
    decision = plan.judge_source(SourceTotals(400, 5_000_000), SourceTotals(1000, 5_000_000), 0.5, [], force=False)
    assert not decision.go
    assert "1000 -> 400 files" in decision.reason
    assert "5000000 -> 5000000 bytes" in decision.reason
    assert "more than 50% gone" in decision.reason


def test_byte_shrink_beyond_limit_is_refused_even_with_same_file_count():
    decision = plan.judge_source(SourceTotals(1000, 1_000_000), SourceTotals(1000, 8_000_000), 0.5, [], force=False)
    assert not decision.go
    assert "1000 -> 1000 files" in decision.reason
    assert "8000000 -> 1000000 bytes" in decision.reason


def test_force_goes_but_says_forced_despite():
    decision = plan.judge_source(SourceTotals(100, 1000), SourceTotals(1000, 10_000), 0.5, [], force=True)
    assert decision.go
    assert decision.reason.startswith("forced despite: ")
    assert "1000 -> 100 files" in decision.reason


def test_force_on_an_empty_source_still_says_why():
    decision = plan.judge_source(SourceTotals(0, 0), None, 0.5, [], force=True)
    assert decision.go and "forced despite" in decision.reason and "hold no files" in decision.reason


def test_shrink_within_the_limit_goes():
    decision = plan.judge_source(SourceTotals(600, 6_000), SourceTotals(1000, 10_000), 0.5, [], force=False)
    assert decision.go
    assert decision.reason.startswith("source looks sane")


@pytest.mark.parametrize("max_shrink", [0.1, 0.2, 0.3, 0.5, 0.7])
def test_shrink_of_exactly_the_limit_goes(max_shrink):
    """"Refuse when dropped by more than this fraction": exactly the fraction is allowed."""
    remaining = round(1000 * (1 - max_shrink))
    decision = plan.judge_source(SourceTotals(remaining, remaining), SourceTotals(1000, 1000), max_shrink, [], force=False)
    assert decision.go, decision.reason


def test_without_previous_copy_only_emptiness_matters():
    assert plan.judge_source(SourceTotals(1, 1), None, 0.5, [], force=False).go
    assert not plan.judge_source(SourceTotals(0, 0), None, 0.5, [], force=False).go


def test_previous_copy_of_zero_bytes_does_not_divide_by_zero():
    assert plan.judge_source(SourceTotals(10, 0), SourceTotals(10, 0), 0.5, [], force=False).go


def test_parse_file_sizes():
    assert plan.parse_file_sizes("12\n0\n4096\n\n") == SourceTotals(files=3, bytes=4108)
    assert plan.parse_file_sizes("") == SourceTotals(0, 0)


MIB16 = 16 * 2**20


def test_first_copy_needs_whole_size_plus_ten_percent():
    source = SourceTotals(10, 1_000_000_000)
    needed = 1_100_000_000 + MIB16
    assert plan.judge_room(needed, source, has_previous_copy=False) == Decision(
        True, f"mirror has room: {needed} bytes free, {needed} needed"
    )
    short = plan.judge_room(needed - 1, source, has_previous_copy=False)
    assert not short.go
    assert short.reason == (
        f"mirror is short of space: {needed - 1} bytes free, at least {needed} needed; free space or add disk"
    )


def test_later_copies_need_a_fifth():
    source = SourceTotals(10, 1_000_000_000)
    needed = 200_000_000 + MIB16
    assert plan.judge_room(needed, source, has_previous_copy=True).go
    assert not plan.judge_room(needed - 1, source, has_previous_copy=True).go
    # the same free space is not enough for a first copy
    assert not plan.judge_room(needed, source, has_previous_copy=False).go


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
    spec = {"data_paths": ["/srv/shop/data/", "/srv/shop/data"], "app_paths": ["/opt/shop"], "config_paths": ["/etc/shop"],
            "accounts": {"files": ["/srv/shop/accounts"]}}
    assert plan.source_paths(spec) == ["/srv/shop/data", "/opt/shop", "/etc/shop", "/srv/shop/accounts"]


def test_peer_access_layout():
    assert PEER == PeerAccess(
        "/run/hotspare/replicate-shop-1a2b3c4d", "/run/hotspare/replicate-shop-1a2b3c4d/key",
        "/run/hotspare/replicate-shop-1a2b3c4d/known_hosts", "hotspare", "10.211.70.12", 2222,
    )
    assert PEER.pid_file == "/run/hotspare/replicate-shop-1a2b3c4d/transfer.pid"
    assert PEER.ssh_command() == SSH_E


def test_rsync_copy_argv_with_link_dest():
    assert plan.rsync_copy_argv(PEER, PATHS, NEW_TREE, PREVIOUS_TREE) == [
        "rsync", "-aHAX", "--numeric-ids", "--relative", "--delete", "--partial", "--mkpath", "--stats",
        "--itemize-changes", "--timeout=60", "-e", SSH_E, f"--link-dest={PREVIOUS_TREE}",
        "hotspare@10.211.70.12::hotspare/srv/shop/data", "hotspare@10.211.70.12::hotspare/etc/passwd", f"{NEW_TREE}/",
    ]


def test_rsync_copy_argv_without_link_dest():
    argv = plan.rsync_copy_argv(PEER, PATHS, NEW_TREE, None)
    assert not any(arg.startswith("--link-dest") for arg in argv)
    assert "--copy-dest=/" in argv  # reuse the mirror's own identical live files, by copy
    assert argv[-3:] == ["hotspare@10.211.70.12::hotspare/srv/shop/data", "hotspare@10.211.70.12::hotspare/etc/passwd", f"{NEW_TREE}/"]


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
        "rsync", "-aHAX", "--numeric-ids", "--relative", "--delete", "--dry-run", "--checksum",
        "--itemize-changes", "--timeout=60", "-e", SSH_E,
        "hotspare@10.211.70.12::hotspare/srv/shop/data", "hotspare@10.211.70.12::hotspare/etc/passwd", f"{NEW_TREE}/",
    ]


def test_rsync_repair_argv_resends_with_checksums_and_deletes_nothing():
    argv = plan.rsync_repair_argv(PEER, ["/srv/shop/data/a.db"], NEW_TREE)
    assert argv == [
        "rsync", "-aHAX", "--numeric-ids", "--relative", "--checksum", "--timeout=60", "-e", SSH_E,
        "hotspare@10.211.70.12::hotspare/srv/shop/data/a.db", f"{NEW_TREE}/",
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
    result = _run(plan.with_peer_access(peer, ["/nonexistent/hotspare-no-such-command"]), plan.peer_stdin(KNOWN_HOSTS, SECRET_KEY))
    assert result.returncode == 127
    assert not os.path.exists(peer.directory)


def test_with_peer_access_without_stdin_runs_nothing(key_folder):
    peer, out = key_folder
    marker = out / "ran"
    result = _run(plan.with_peer_access(peer, ["touch", str(marker)]), b"")
    assert result.returncode == 1
    assert not marker.exists()
    assert not os.path.exists(peer.directory)


# ---------------------------------------------------------------------------------------
# rsync output

RSYNC_STATS = """\
sending incremental file list

Number of files: 12,345 (reg: 12,000, dir: 340, link: 5)
Number of created files: 17 (reg: 17)
Number of deleted files: 2 (reg: 2)
Number of regular files transferred: 1,234
Total file size: 9,876,543,210 bytes
Total transferred file size: 45,678,901 bytes
Literal data: 45,678,901 bytes
Matched data: 0 bytes
File list size: 262,140
File list generation time: 0.012 seconds
File list transfer time: 0.000 seconds
Total bytes sent: 45,990,012
Total bytes received: 23,456

sent 45,990,012 bytes  received 23,456 bytes  9,202,693.60 bytes/sec
total size is 9,876,543,210  speedup is 214.64
"""


def test_parse_rsync_stats_with_thousands_separators():
    assert plan.parse_rsync_stats(RSYNC_STATS) == TransferStats(
        files_transferred=1234, bytes_transferred=45_678_901, total_files=12_345, total_bytes=9_876_543_210
    )


def test_parse_rsync_stats_without_stats_is_zero():
    assert plan.parse_rsync_stats("rsync error: some files could not be transferred\n") == TransferStats(0, 0, 0, 0)


ITEMIZED = """\
*deleting   srv/shop/data/stale.tmp
*deleting   srv/shop/data/olddir/
.d..t...... srv/shop/data/
>fc.T...... srv/shop/data/orders.db
>fcst...... srv/shop/data/sessions.db
>f+++++++++ srv/shop/data/new-upload.jpg
cd+++++++++ srv/shop/data/thumbnails/
.f...p..... etc/shadow
.f....o.... etc/gshadow
cL+++++++++ srv/shop/current -> releases/42
hf+++++++++ srv/shop/data/alias.jpg => srv/shop/data/new-upload.jpg
"""


def test_parse_itemized_golden():
    assert content.parse_itemized(ITEMIZED) == [
        ("extra", "/srv/shop/data/stale.tmp"),
        ("extra", "/srv/shop/data/olddir"),
        ("content", "/srv/shop/data/orders.db"),
        ("content", "/srv/shop/data/sessions.db"),
        ("missing", "/srv/shop/data/new-upload.jpg"),
        ("missing", "/srv/shop/data/thumbnails"),
        ("metadata", "/etc/shadow"),
        ("metadata", "/etc/gshadow"),
        ("missing", "/srv/shop/current"),
        ("missing", "/srv/shop/data/alias.jpg"),
    ]


def test_parse_itemized_ignores_noise():
    noise = "sending incremental file list\n.d..t...... srv/\n\nsent 1,234 bytes  received 56 bytes\n"
    assert content.parse_itemized(noise) == []


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync not installed")
def test_parse_itemized_reads_what_rsync_prints(tmp_path: Path):
    """The verify flags against real rsync, locally: every kind of difference is found, with a
    path that exists (or existed) on the source."""
    source, copy = tmp_path / "source", tmp_path / "copy"
    data = source / "srv" / "shop"
    data.mkdir(parents=True)
    for name in ("kept", "corrupt", "perm", "linked"):
        (data / name).write_text(name)
    os.symlink("kept", data / "link")
    os.link(data / "linked", data / "linked-too")
    subprocess.run(["rsync", "-aH", "--relative", f"{source}/./srv", f"{copy}/"], check=True)
    (copy / "srv/shop/corrupt").write_text("CORRUPT")  # same size, other content
    os.utime(copy / "srv/shop/corrupt", ((data / "corrupt").stat().st_atime, (data / "corrupt").stat().st_mtime))
    os.chmod(copy / "srv/shop/perm", 0o600)
    os.remove(copy / "srv/shop/link")
    os.remove(copy / "srv/shop/linked-too")
    (copy / "srv/shop/extra").write_text("extra")
    (data / "new").write_text("new")

    verify = plan.rsync_verify_argv(PEER, [f"{source}/./srv"], "unused")
    # the same flags, locally: no -e, the local copy as destination; ACLs and xattrs are beside
    # the point here and need filesystem support
    module = f"::{transfer_keys.MODULE}"
    sources = [remote.split(module, 1)[1] for remote in verify[verify.index("-e") + 2 : -1]]
    local = verify[: verify.index("-e")] + sources + [f"{copy}/"]
    local[local.index("-aHAX")] = "-aH"
    output = subprocess.run(local, capture_output=True, text=True, check=True).stdout
    found = set(content.parse_itemized(output))
    assert found == {
        ("content", "/srv/shop/corrupt"),
        ("metadata", "/srv/shop/perm"),
        ("missing", "/srv/shop/link"),
        ("missing", "/srv/shop/linked-too"),
        ("missing", "/srv/shop/new"),
        ("extra", "/srv/shop/extra"),
    }, output


def test_classify_differences():
    copy_started = 1_700_000_000.0
    itemized = [
        ("content", "/srv/shop/data/old.db"),  # production did not touch it: corruption
        ("content", "/srv/shop/data/busy.db"),  # production wrote it after the copy began
        ("missing", "/srv/shop/data/gone.tmp"),  # gone from production since: a change there
        ("extra", "/srv/shop/data/deleted"),  # deleted on production after the copy
        ("extra", "/srv/shop/data/phantom"),  # in the copy but still on production: unexplained
        ("metadata", "/srv/shop/data/same-second"),  # changed exactly at the start: counts as a change
    ]
    mtimes = {
        "/srv/shop/data/old.db": copy_started - 3600,
        "/srv/shop/data/busy.db": copy_started + 5,
        "/srv/shop/data/phantom": copy_started - 10,
        "/srv/shop/data/same-second": copy_started,
    }
    report = content.classify_differences(itemized, mtimes, copy_started)
    assert report.corrupt == (
        Difference("/srv/shop/data/old.db", "content", False),
        Difference("/srv/shop/data/phantom", "extra", False),
    )
    assert report.changed_during_copy == (
        Difference("/srv/shop/data/busy.db", "content", True),
        Difference("/srv/shop/data/gone.tmp", "missing", True),
        Difference("/srv/shop/data/deleted", "extra", True),
        Difference("/srv/shop/data/same-second", "metadata", True),
    )


def test_parse_stat_mtimes():
    output = (
        "1700000123.456789012\t/srv/shop/data/orders.db\n"
        "1700000000.000000000\t/srv/shop/data/name\twith tab\n"
        "stat: cannot statx '/srv/shop/data/gone': No such file or directory\n"
        "garbage\t/srv/x\n"
    )
    assert content.parse_stat_mtimes(output) == {
        "/srv/shop/data/orders.db": 1700000123.456789012,
        "/srv/shop/data/name\twith tab": 1700000000.0,
    }


# ---------------------------------------------------------------------------------------
# Host facts

MEMINFO = """\
MemTotal:        8153424 kB
MemFree:          512000 kB
MemAvailable:    4096000 kB
"""
DF = """\
         Size        Avail
 107374182400  53687091200
"""
OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian"""
PACKAGES = """\
nginx 1.22.1-9
openssl 3.0.15-1~deb12u1
libc6 2.36-9+deb12u9
half-installed
"""


def test_parse_meminfo_df_packages():
    assert plan.parse_meminfo_mb(MEMINFO) == 7962
    assert plan.parse_meminfo_mb("") == 0
    assert plan.parse_df(DF) == (107_374_182_400, 53_687_091_200)
    assert plan.parse_packages(PACKAGES) == {
        "nginx": "1.22.1-9", "openssl": "3.0.15-1~deb12u1", "libc6": "2.36-9+deb12u9",
    }


def test_parse_host_facts_multi_section():
    output = "4\n---\n" + MEMINFO + "---\n" + DF + "---\n" + OS_RELEASE + "\n---\n" + PACKAGES
    facts = plan.parse_host_facts(output)
    assert facts == HardwareFacts(
        cpus=4, memory_mb=7962, disk_bytes=107_374_182_400, available_bytes=53_687_091_200, os_release=OS_RELEASE,
        packages={"nginx": "1.22.1-9", "openssl": "3.0.15-1~deb12u1", "libc6": "2.36-9+deb12u9"},
    )


def test_host_facts_argv_passes_the_path_as_argument():
    assert plan.host_facts_argv("/srv/shop data") == ["sh", "-c", plan.FACTS_SCRIPT, "sh", "/srv/shop data"]


PRODUCTION = HardwareFacts(8, 16000, 200 * 10**9, 100 * 10**9, OS_RELEASE, {"nginx": "1.22.1-9", "libc6": "2.36-9"})
DECLARED = {"cpus": 8, "memory_mb": 16000, "disk_gb": 200}


def test_compare_hardware_equal_or_better_is_fine():
    assert plan.compare_hardware(PRODUCTION, PRODUCTION, DECLARED, DECLARED) == []
    bigger = replace(PRODUCTION, cpus=16, memory_mb=32000, disk_bytes=400 * 10**9, packages={**PRODUCTION.packages, "extra": "1"})
    assert plan.compare_hardware(PRODUCTION, bigger, DECLARED, {"cpus": 16, "memory_mb": 32000, "disk_gb": 400}) == []


@pytest.mark.parametrize(
    ("mirror", "declared_mirror", "expected"),
    [
        (replace(PRODUCTION, cpus=4), DECLARED, ["mirror has 4 CPUs, production 8"]),
        (replace(PRODUCTION, memory_mb=8000), DECLARED, ["mirror has 8000 MiB memory, production 16000"]),
        (replace(PRODUCTION, disk_bytes=10**11), DECLARED, [f"mirror disk is {10**11} bytes, production {200 * 10**9}"]),
        (PRODUCTION, {**DECLARED, "memory_mb": 8000}, ["fleet file declares 8000 MiB memory on the mirror, 16000 on production"]),
        (PRODUCTION, {**DECLARED, "cpus": 2}, ["fleet file declares 2 CPUs on the mirror, 8 on production"]),
        (PRODUCTION, {**DECLARED, "disk_gb": 100}, ["fleet file declares 100 GiB disk on the mirror, 200 on production"]),
        (
            replace(PRODUCTION, os_release='PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu'),
            DECLARED,
            ["OS release differs: Ubuntu 24.04.1 LTS on the mirror vs Debian GNU/Linux 12 (bookworm)"],
        ),
        (replace(PRODUCTION, packages={"libc6": "2.36-9"}), DECLARED, ["1 package(s) missing on the mirror: nginx"]),
        (
            replace(PRODUCTION, packages={"nginx": "1.22.0-1", "libc6": "2.36-9"}),
            DECLARED,
            ["1 package(s) at another version on the mirror: nginx 1.22.0-1 vs 1.22.1-9"],
        ),
    ],
)
def test_compare_hardware_names_each_shortfall(mirror, declared_mirror, expected):
    assert plan.compare_hardware(PRODUCTION, mirror, DECLARED, declared_mirror) == expected


def test_compare_hardware_lists_every_problem_and_skips_undeclared():
    worse = HardwareFacts(2, 1000, 1, 1, "", {})
    problems = plan.compare_hardware(PRODUCTION, worse, None, None)
    assert len(problems) == 5
    assert problems[3].startswith("OS release differs: unknown on the mirror")
    assert problems[4] == "2 package(s) missing on the mirror: libc6, nginx"


# ---------------------------------------------------------------------------------------
# Retention and RPO

IDS = ["20261120T000000Z", "20261121T000000Z", "20261122T000000Z", "20261123T000000Z", "20261124T000000Z"]


def test_copies_to_prune_keeps_the_newest():
    assert plan.copies_to_prune(list(reversed(IDS)), 3, set()) == IDS[:2]


def test_copies_to_prune_never_prunes_a_protected_copy_even_an_old_one():
    doomed = plan.copies_to_prune(IDS, 3, {IDS[0]})
    assert IDS[0] not in doomed
    assert doomed == IDS[1:3]  # the protected copy counts towards the ones kept


def test_copies_to_prune_nothing_when_under_the_limit():
    assert plan.copies_to_prune(IDS[:2], 3, set()) == []
    assert plan.copies_to_prune([], 3, {"whatever"}) == []


@pytest.mark.parametrize(
    ("age_hours", "expected"),
    [(0, "ok"), (17.9, "ok"), (18, "ok"), (18.01, "at risk"), (24, "at risk"), (24.01, "violated"), (100, "violated")],
)
def test_rpo_state_boundaries(age_hours, expected):
    assert plan.rpo_state(NOW - timedelta(hours=age_hours), NOW, 24) == expected


def test_rpo_state_without_copy_is_violated():
    assert plan.rpo_state(None, NOW, 24) == "violated"


# ---------------------------------------------------------------------------------------
# Failover planning

VERIFIED_OLD = CopyChoice("20261125T100000Z", "verified", NOW - 3 * HOUR, "/srv/hotspare/shop/copies/20261125T100000Z")
COPIED_NEW = CopyChoice("20261125T120000Z", "copied", NOW - HOUR, "/srv/hotspare/shop/copies/20261125T120000Z")
VERIFIED_STALE = CopyChoice("20261124T070000Z", "verified", NOW - 30 * HOUR, "/srv/hotspare/shop/copies/20261124T070000Z")


def facts(**changes) -> ServiceFacts:
    base = ServiceFacts(
        service="shop", state="protected", active_server="east-1", mirror_server="west-1",
        dns_name="shop.example.test.", addresses={"east-1": "10.211.70.11", "west-1": "10.211.70.12", "west-2": "10.211.70.13"},
        dns_answer=["10.211.70.11"], copies=[COPIED_NEW, VERIFIED_OLD],
    )
    return replace(base, **changes)


def test_emergency_picks_the_newest_verified_copy():
    newest_verified = CopyChoice("20261125T123000Z", "verified", NOW - HOUR / 2, "/p")
    result = plan_failover(facts(copies=[newest_verified, VERIFIED_OLD]), planned=False, now=NOW)
    assert result.refusal is None and result.warnings == ()
    assert (result.mode, result.source, result.target) == ("emergency", "east-1", "west-1")
    assert (result.source_address, result.target_address) == ("10.211.70.11", "10.211.70.12")
    assert result.copy_id == "20261125T123000Z"
    assert result.copy_age_seconds == 1800
    assert result.steps[0].startswith("fence production")


def test_emergency_skips_an_unverified_newest_copy():
    result = plan_failover(facts(), planned=False, now=NOW)
    assert result.refusal is None
    assert result.copy_id == VERIFIED_OLD.id
    assert result.copy_age_seconds == 3 * 3600


def test_no_verified_copy_is_refused_mentioning_force():
    result = plan_failover(facts(copies=[COPIED_NEW]), planned=False, now=NOW)
    assert result.refusal == (
        "no verified copy exists on the mirror; the newest copy 20261125T120000Z is copied. "
        "Use force to promote an unverified copy."
    )


def test_force_with_only_unverified_copies_proceeds_with_a_warning():
    result = plan_failover(facts(copies=[COPIED_NEW]), planned=False, now=NOW, force=True)
    assert result.refusal is None
    assert result.copy_id == COPIED_NEW.id
    assert len(result.warnings) == 1 and "no verified copy" in result.warnings[0]


def test_no_copy_at_all_is_refused_even_with_force():
    for force in (False, True):
        result = plan_failover(facts(copies=[]), planned=False, now=NOW, force=force)
        assert result.refusal is not None and result.copy_id is None


def test_named_copy_is_used():
    stale_allowed = plan_failover(facts(copies=[COPIED_NEW, VERIFIED_OLD]), planned=False, now=NOW, copy_id=VERIFIED_OLD.id)
    assert stale_allowed.copy_id == VERIFIED_OLD.id and stale_allowed.refusal is None


def test_named_unverified_copy_needs_force():
    refused = plan_failover(facts(), planned=False, now=NOW, copy_id=COPIED_NEW.id)
    assert refused.refusal == "copy 20261125T120000Z is copied, not verified. Use force to promote it anyway."
    forced = plan_failover(facts(), planned=False, now=NOW, copy_id=COPIED_NEW.id, force=True)
    assert forced.refusal is None and forced.copy_id == COPIED_NEW.id and forced.warnings


def test_missing_named_copy_is_refused():
    result = plan_failover(facts(), planned=False, now=NOW, copy_id="20200101T000000Z")
    assert result.refusal == (
        "copy 20200101T000000Z does not exist on the mirror (known: 20261125T120000Z, 20261125T100000Z)"
    )
    assert result.copy_id is None


def test_too_old_copy_is_refused_unless_forced():
    refused = plan_failover(facts(copies=[VERIFIED_STALE]), planned=False, now=NOW)
    assert refused.refusal == (
        "copy 20261124T070000Z is 30.0 h old, beyond the 24 h limit. Use force to accept the data loss."
    )
    assert plan_failover(facts(copies=[VERIFIED_STALE]), planned=False, now=NOW, max_copy_age_hours=48).refusal is None
    forced = plan_failover(facts(copies=[VERIFIED_STALE]), planned=False, now=NOW, force=True)
    assert forced.refusal is None and forced.copy_id == VERIFIED_STALE.id
    assert forced.warnings == (refused.refusal,)


def test_planned_mode_has_no_copy_and_planned_steps():
    result = plan_failover(facts(), planned=True, now=NOW, copy_id=COPIED_NEW.id)
    assert result.refusal is None
    assert result.mode == "planned"
    assert result.copy_id is None and result.copy_age_seconds is None
    assert "stop the app on production" in result.steps
    assert "final sync and verify (no writes are lost)" in result.steps
    assert not any("fence" in step for step in result.steps)


def test_planned_mode_needs_no_copy_on_the_mirror():
    assert plan_failover(facts(copies=[]), planned=True, now=NOW).refusal is None


def test_already_failed_over_is_done():
    after = facts(state="failed-over", active_server="west-1", mirror_server=None, dns_answer=["10.211.70.12"], copies=[])
    result = plan_failover(after, planned=False, now=NOW)
    assert result.already_done
    assert result.refusal == "shop already runs on west-1; reprotect it before failing over again"


def test_failed_over_but_dns_elsewhere_is_not_done_and_without_mirror_refused():
    after = facts(state="failed-over", active_server="west-1", mirror_server=None, dns_answer=["10.211.70.11"])
    result = plan_failover(after, planned=False, now=NOW)
    assert not result.already_done
    assert result.refusal == "shop has no mirror to fail over to (state failed-over)"


def test_service_without_mirror_is_refused():
    result = plan_failover(facts(state="unprotected", mirror_server=None), planned=True, now=NOW)
    assert result.refusal == "shop has no mirror to fail over to (state unprotected)"
    assert result.steps == ()


def test_crashed_emergency_failover_resumes_what_it_was_doing():
    crashed = facts(
        state="failing-over", mirror_server="west-2",  # the row may have moved on; the in-flight record rules
        in_flight={"source": "east-1", "target": "west-1", "mode": "emergency", "copy_id": VERIFIED_OLD.id, "run_id": 7},
    )
    # asked differently this time (planned, another copy): the crashed run's choices win
    result = plan_failover(crashed, planned=True, now=NOW, copy_id=COPIED_NEW.id)
    assert result.refusal is None
    assert (result.mode, result.source, result.target, result.copy_id) == ("emergency", "east-1", "west-1", VERIFIED_OLD.id)
    assert result.target_address == "10.211.70.12"


def test_crashed_planned_switchover_after_its_final_sync_keeps_that_copy():
    """The final sync's copy may already be live with users writing to it: a resumed run must
    make that copy live (idempotent), not take a new one from the stopped production."""
    crashed = facts(
        state="failing-over",
        in_flight={"source": "east-1", "target": "west-1", "mode": "planned", "copy_id": COPIED_NEW.id, "run_id": 8},
    )
    result = plan_failover(crashed, planned=False, now=NOW)
    assert result.refusal is None
    assert (result.mode, result.copy_id) == ("planned", COPIED_NEW.id)
    assert "no data loss" in result.markdown()


def test_crashed_planned_switchover_before_its_final_sync_does_it():
    crashed = facts(state="failing-over", in_flight={"source": "east-1", "target": "west-1", "mode": "planned", "copy_id": None})
    result = plan_failover(crashed, planned=True, now=NOW)
    assert (result.mode, result.copy_id, result.refusal) == ("planned", None, None)


def test_digest_is_stable_and_binds_copy_and_target():
    first = plan_failover(facts(), planned=False, now=NOW)
    again = plan_failover(facts(), planned=False, now=NOW + timedelta(minutes=5))  # age differs, plan does not
    assert first.digest == again.digest
    assert len(first.digest) == 16 and int(first.digest, 16) >= 0
    other_copy = plan_failover(facts(), planned=False, now=NOW, copy_id=COPIED_NEW.id, force=True)
    assert other_copy.digest != first.digest
    other_target = plan_failover(facts(mirror_server="west-2"), planned=False, now=NOW)
    assert other_target.copy_id == first.copy_id and other_target.digest != first.digest
    planned = plan_failover(facts(), planned=True, now=NOW)
    assert planned.digest != first.digest


def test_markdown_shows_digest_copy_and_steps():
    result = plan_failover(facts(), planned=False, now=NOW)
    text = result.markdown()
    assert f"Plan digest: `{result.digest}`" in text
    assert "copy **20261125T100000Z**, taken 3 h ago" in text
    assert "from **east-1** (10.211.70.11) to **west-1** (10.211.70.12)" in text
    for number, step in enumerate(result.steps, 1):
        assert f"{number}. {step}" in text
    assert "REFUSED" not in text


def test_markdown_shows_refusal_and_warnings():
    refused = plan_failover(facts(copies=[COPIED_NEW]), planned=False, now=NOW).markdown()
    assert "**REFUSED:** no verified copy" in refused
    forced = plan_failover(facts(copies=[COPIED_NEW]), planned=False, now=NOW, force=True).markdown()
    assert "## Warnings" in forced and "REFUSED" not in forced
    planned = plan_failover(facts(), planned=True, now=NOW).markdown()
    assert "final sync with the app stopped on production: no data loss" in planned


def test_activation_argv_golden():
    tree = "/srv/hotspare/shop/copies/20261125T100000Z/tree"
    assert activation_argv(tree, ["/srv/shop/data", "/etc/nginx/sites-enabled/shop.conf"]) == [
        "rsync", "-aHAX", "--numeric-ids", "--relative", "--delete",
        f"{tree}/./srv/shop/data", f"{tree}/./etc/nginx/sites-enabled/shop.conf", "/",
    ]


# ---------------------------------------------------------------------------------------
# Status (rows built in memory; no database)


def service_row() -> ServiceRow:
    return ServiceRow(
        name="shop", spec={"dns_name": "shop.example.test.", "data_paths": ["/srv/shop/data", "/srv/shop/uploads"]},
        planned_production="east-1", planned_mirror="west-1", active_server="east-1", mirror_server="west-1",
    )


def test_copy_facts():
    current = CopyRow(
        id="20261125T100000Z", service="shop", source_server="east-1", target_server="west-1",
        path="/srv/hotspare/shop/copies/20261125T100000Z", status="verified",
        started_at=datetime(2026, 11, 25, 10, 0), verified_at=datetime(2026, 11, 25, 10, 5),  # naive, as SQLite returns
    )
    assert copy_facts(service_row(), current, current, 24, NOW) == {
        "current_copy": {
            "id": "20261125T100000Z", "server": "west-1",
            "path": "/srv/hotspare/shop/copies/20261125T100000Z/tree/srv/shop/data", "status": "verified",
            "started_at": datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc),
            "verified_at": datetime(2026, 11, 25, 10, 5, tzinfo=timezone.utc),
        },
        "copy_age_hours": 3.0,
        "rpo_hours": 24,
        "rpo_state": "ok",
    }
    assert copy_facts(service_row(), current, current, 3.5, NOW)["rpo_state"] == "at risk"


def test_copy_facts_without_copies():
    assert copy_facts(service_row(), None, None, 24, NOW) == {
        "current_copy": None, "copy_age_hours": None, "rpo_hours": 24, "rpo_state": "violated",
    }


def failover_run(outcome: str = "ok", details: dict | None = None) -> RunRow:
    return RunRow(kind="failover", service="shop", started_at=datetime(2026, 11, 25, 12, 30, tzinfo=timezone.utc),
                  outcome=outcome, summary="shop now runs on west-1", details=details)


def test_failover_facts():
    run = failover_run(details={"mode": "emergency", "rto_seconds": 42.5, "data_loss_seconds": 3600.0,
                                "fencing": {"fenced": False}})
    assert failover_facts(run) == {
        "last_failover": {
            "at": datetime(2026, 11, 25, 12, 30, tzinfo=timezone.utc), "outcome": "ok", "mode": "emergency",
            "rto_seconds": 42.5, "data_loss_seconds": 3600.0, "fenced": False, "summary": "shop now runs on west-1",
        }
    }
    assert failover_facts(None) == {"last_failover": None}
    assert failover_facts(failover_run(details=None))["last_failover"]["fenced"] is True  # planned: nothing to fence


@pytest.mark.parametrize("live_path", ["/", "/etc", "/srv/hotspare/app1", "srv/app1/data", "/srv/app1/../etc"])
def test_a_rebuild_never_places_files_with_delete_outside_a_safe_declared_path(live_path):
    from hotspare.planning.rebuild import place_command
    from hotspare.planning.shell_programs import PlanRefused

    backup = "/srv/hotspare/app1/replaced/rebuild-20261206T100000Z"
    with pytest.raises(PlanRefused, match="refusing to place restored files"):
        place_command("/var/tmp/hotspare-restore/app1-x", live_path, backup)
    assert place_command("/var/tmp/hotspare-restore/app1-x", "/srv/app1/data", backup)[-2:] == ["/srv/app1/data", backup]
    with pytest.raises(PlanRefused, match="backup folder"):  # what a rebuild replaces is kept inside hotspare's root
        place_command("/var/tmp/hotspare-restore/app1-x", "/srv/app1/data", "/srv/app1/data/kept")


def test_activation_keeps_what_rsync_replaces_in_the_runs_folder():
    from hotspare.adapters.errors import PermanentError

    tree = "/srv/hotspare/shop/copies/20261125T100000Z/tree"
    backup = "/srv/hotspare/shop/replaced/20261125T100000Z-20261206T100000Z"
    assert activation_argv(tree, ["/srv/shop/data"], backup) == [
        "rsync", "-aHAX", "--numeric-ids", "--relative", "--delete", "--backup", f"--backup-dir={backup}",
        f"{tree}/./srv/shop/data", "/"]
    for outside in ("/srv/shop/data/kept", "/srv/hotspare/../tmp"):
        with pytest.raises(PermanentError, match="backup folder"):
            activation_argv(tree, ["/srv/shop/data"], outside)
