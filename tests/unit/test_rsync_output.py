"""Parsing what rsync prints (``--stats``, ``-i``), checked against rsync itself where it matters."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hotspare.planning import replication as plan
from hotspare.planning import transfer_keys
from hotspare.planning import verification as content
from hotspare.planning.replication import (
    TransferStats,
)
from hotspare.planning.verification import Difference

NOW = datetime(2026, 11, 25, 13, 0, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


# ---------------------------------------------------------------------------------------
# rsync output

# The peer the verify command would reach; the test runs its flags locally.
PEER = plan.peer_access("replicate-shop-1a2b3c4d", "hotspare", "10.211.70.12", 2222)

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
