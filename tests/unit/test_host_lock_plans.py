"""The host lock's commands without the lab: the names it may make, leftovers, checked replacement
and the lock file's own bound (merges under the lock on lab hosts are tests/test_host_lock.py)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from hotspare.planning import host_lock as plan


def run_program(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_replace_checked_replaces_only_what_still_holds_the_bytes_read(tmp_path):
    first, second = tmp_path / "passwd", tmp_path / "group"
    first.write_text("root:x:0:0::/root:/bin/sh\n")
    second.write_text("root:x:0:\n")
    first.chmod(0o644)
    suffix = plan.temporary_suffix("run1")
    for path in (first, second):
        Path(f"{path}{suffix}").write_text(path.read_text() + "app3-web:x:4001:4001::/home/app3-web:/bin/sh\n")
        Path(f"{path}{suffix}").chmod(0o600)
    read = {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in (first, second)}

    second.write_text("root:x:0:\nwritten-meanwhile:x:5000:\n")  # someone outside the lock
    refused = run_program(plan.replace_checked_argv(suffix, read))
    assert refused.returncode == plan.BUSY_EXIT and f"{second} changed while the merge ran" in refused.stderr
    assert "app3-web" not in first.read_text() and "written-meanwhile" in second.read_text()  # nothing replaced

    second.write_text("root:x:0:\n")
    done = run_program(plan.replace_checked_argv(suffix, read))
    assert done.returncode == 0, done.stderr
    assert "app3-web" in first.read_text() and "app3-web" in second.read_text()
    assert first.stat().st_mode & 0o777 == 0o644  # the file's own mode, not the new file's 0600
    assert sorted(path.name for path in tmp_path.iterdir()) == ["group", "passwd"]


def test_leftovers_are_only_ours():
    listing = {
        "/etc": [
            "shadow",
            "shadow.hotspare-new",
            "shadow.hotspare-new-0a1b2c3d4e5f",
            "shadow-",
            "shadow.dpkg-new",
            "passwd.hotspare-newer",
            "group.hotspare-new-x",
            "other.hotspare-new",
        ]
    }
    assert plan.leftovers(["/etc/shadow", "/etc/passwd", "/etc/group"], listing) == [
        "/etc/shadow.hotspare-new",
        "/etc/shadow.hotspare-new-0a1b2c3d4e5f",
        "/etc/group.hotspare-new-x",
    ]


def test_plan_refuses_names_that_are_not_ours_to_make():
    with pytest.raises(ValueError, match="run tag"):
        plan.temporary_suffix("../x")
    with pytest.raises(ValueError, match="absolute, normal"):
        plan.leftovers(["etc/passwd"], {})
    argv = plan.hold_argv("merge of app1's accounts\nsecond line", 2.5)
    assert argv[:3] == ["sh", "-c", plan.TAKE] and argv[-1] == plan.HOLD  # constant programs
    assert argv[4:7] == ["2.5", plan.HOST_LOCK_FILE, "merge of app1's accounts second line"]  # one line, an argument


def test_the_lock_file_is_roots_alone_and_a_second_taker_waits_its_bound(tmp_path):
    """With the machine's own sh and flock: the lock file is made 0600 (an older looser one is
    corrected), the holder's note is written into it, and a second taker gives up with BUSY_EXIT."""
    lock_file = tmp_path / "host.lock"
    lock_file.write_text("")
    lock_file.chmod(0o644)
    holder = subprocess.Popen(
        plan.hold_argv("first holder", 5, str(lock_file)), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline() == plan.LOCKED_LINE
        assert lock_file.stat().st_mode & 0o777 == 0o600
        assert lock_file.read_text().startswith("first holder, since ")
        second = run_program(plan.hold_argv("second", 0.2, str(lock_file)))
        assert second.returncode == plan.BUSY_EXIT and second.stdout == ""
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=10) == 0
    fresh = tmp_path / "fresh.lock"
    taker = subprocess.run(plan.hold_argv("third", 1, str(fresh)), input=b"", capture_output=True, timeout=10, check=False)
    assert taker.returncode == 0 and taker.stdout == plan.LOCKED_LINE
    assert fresh.stat().st_mode & 0o777 == 0o600
