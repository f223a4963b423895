"""The live-data program (hotspare/planning/live_data.py) run for real on a scratch tree.

Every hostile kind is planted with the kernel's own calls (mknod, mkfifo, a bound socket,
setuid/setgid bits, a ``security.capability`` attribute, links out of the service's paths,
names with a newline and with bytes that are not UTF-8); the program must leave none of them as
planted, keep what the fleet allows, name each, and list the kept-aside files that differ.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import subprocess

import pytest

from hotspare.planning import live_data

CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)  # cap_net_raw, effective


def run(stdin: bytes) -> live_data.Report:
    done = subprocess.run(live_data.neutralise_argv(), input=stdin, capture_output=True, timeout=60, check=True)
    return live_data.parse_report(done.stdout.decode())


@pytest.fixture
def tree(tmp_path):
    """A service with data and app paths under ``tmp_path``, full of planted things."""
    if os.geteuid() != 0:
        pytest.skip("planting device nodes and setuid-root files needs root")
    data, app = tmp_path / "srv/app1/data", tmp_path / "srv/app1/app"
    data.mkdir(parents=True)
    app.mkdir(parents=True)
    (data / "ok.txt").write_text("fine")
    (data / "setuid").write_bytes(b"#!/bin/sh\n")
    os.chmod(data / "setuid", 0o4755)
    (data / "setgid").write_bytes(b"x")
    os.chmod(data / "setgid", 0o2755)
    os.mknod(data / "loop", stat.S_IFBLK | 0o666, os.makedev(7, 0))
    os.mknod(data / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mkfifo(data / "fifo")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(data / "sock"))
    listener.close()
    (data / "capable").write_bytes(b"x")
    os.setxattr(data / "capable", "security.capability", CAPABILITY)
    (data / "shadow").symlink_to("/etc/shadow")
    (data / "escape").symlink_to("../../../../etc")
    (data / "to-app").symlink_to("../app/run.sh")  # inside another declared path: fine
    (data / "absolute-inside").symlink_to(str(data / "ok.txt"))
    (data / "line\nbreak").symlink_to("/etc/passwd")
    os.symlink(b"/etc/hostname", os.path.join(os.fsencode(data), b"bad-\xff-name"))
    (app / "run.sh").write_text("#!/bin/sh\n")
    (app / "ping").write_bytes(b"x")
    os.chmod(app / "ping", 0o4755)
    os.setxattr(app / "ping", "security.capability", CAPABILITY)
    listener.close()
    return tmp_path, data, app


def test_every_planted_kind_is_neutralised_and_named(tree):
    _root, data, app = tree
    report = run(live_data.neutralise_stdin([(str(data), str(data)), (str(app), str(app))], [str(data), str(app)], []))
    by_path = {finding.path: finding for finding in report.findings}
    assert not (data / "loop").exists() and not (data / "null").exists()
    assert not (data / "fifo").exists() and not (data / "sock").exists()
    assert stat.S_IMODE((data / "setuid").stat().st_mode) == 0o755
    assert stat.S_IMODE((data / "setgid").stat().st_mode) == 0o755
    with pytest.raises(OSError):
        os.getxattr(data / "capable", "security.capability")
    for name in ("shadow", "escape", "line\nbreak"):
        assert not (data / name).is_symlink() and (data / name).read_bytes() == b""
    assert not os.path.islink(os.path.join(os.fsencode(data), b"bad-\xff-name"))
    assert (data / "to-app").is_symlink() and (data / "absolute-inside").is_symlink()  # inside: untouched
    kinds = {(finding.kind, os.path.basename(finding.path)) for finding in report.findings}
    assert kinds == {
        ("devices", "loop"),
        ("devices", "null"),
        ("fifos", "fifo"),
        ("sockets", "sock"),
        ("setuid", "setuid"),
        ("setgid", "setgid"),
        ("capabilities", "capable"),
        ("links_outside", "shadow"),
        ("links_outside", "escape"),
        ("links_outside", "line\nbreak"),
        ("links_outside", "bad-\udcff-name"),
        ("setuid", "ping"),
        ("capabilities", "ping"),
    }
    assert by_path[str(data / "shadow")].detail == "/etc/shadow"
    sentences = "\n".join(finding.sentence() for finding in report.findings)
    assert "line\\x0abreak" in sentences and "bad-\\xff-name" in sentences
    assert len(sentences.splitlines()) == len(report.findings)  # a planted newline forges no line
    assert report.errors == () and report.scanned >= 17
    # a second pass finds nothing: the tree is clean
    again = run(live_data.neutralise_stdin([(str(data), str(data)), (str(app), str(app))], [str(data), str(app)], []))
    assert again.findings == ()


def test_the_fleet_allowance_keeps_what_it_names_and_only_that(tree):
    _root, data, app = tree
    allow = [{"path": str(app / "ping"), "allow": ["setuid", "capabilities"]}, {"path": str(data), "allow": ["fifos"]}]
    report = run(live_data.neutralise_stdin([(str(data), str(data)), (str(app), str(app))], [str(data), str(app)], allow))
    assert stat.S_IMODE((app / "ping").stat().st_mode) == 0o4755 and os.getxattr(app / "ping", "security.capability")
    assert stat.S_ISFIFO(os.lstat(data / "fifo").st_mode)
    assert not (data / "loop").exists()  # not allowed: removed all the same
    allowed = {(finding.kind, os.path.basename(finding.path)) for finding in report.findings if finding.action == "allowed"}
    assert allowed == {("setuid", "ping"), ("capabilities", "ping"), ("fifos", "fifo")}


def test_a_staged_tree_is_judged_where_it_will_live(tree):
    """A snapshot staged beside the live path: a relative link judged at its future place."""
    _root, data, app = tree
    staged = data.parent / ".hotspare-incoming-data"
    data.rename(staged)
    report = run(live_data.neutralise_stdin([(str(staged), str(data))], [str(data), str(app)], []))
    assert {finding.path for finding in report.findings} >= {str(data / "shadow"), str(data / "loop")}
    assert (staged / "to-app").is_symlink()  # ../app/run.sh from data: inside the app path


def test_report_only_touches_nothing(tree):
    _root, data, _app = tree
    report = run(live_data.neutralise_stdin([(str(data), str(data))], [str(data)], [], act=False))
    assert {finding.action for finding in report.findings} == {"found"}
    assert (data / "loop").exists() and (data / "shadow").is_symlink()
    assert stat.S_IMODE((data / "setuid").stat().st_mode) == 0o4755


def test_rsync_keeps_out_what_no_allowance_needs_and_the_copy_names_it(tree):
    """rsync's own options keep devices, FIFOs, sockets, capabilities and setuid/setgid bits out
    of a live path; the read-only copy, scanned without acting, names each as left out."""
    _root, data, app = tree
    live = data.parent / "live"
    strip, kinds = live_data.rsync_strips([])
    assert kinds == {"devices", "fifos", "sockets", "capabilities", "setuid", "setgid"}
    done = subprocess.run(["rsync", "-aHAX", "--numeric-ids", *strip, f"{data}/", f"{live}/"], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not os.path.lexists(live / "loop") and not os.path.lexists(live / "fifo") and not os.path.lexists(live / "sock")
    assert not (live / "setuid").stat().st_mode & stat.S_ISUID
    with pytest.raises(OSError):
        os.getxattr(live / "capable", "security.capability")
    report = live_data.left_out(
        run(live_data.neutralise_stdin([(str(live), str(data), True), (str(data), str(data), False)], [str(data), str(app)], [])),
        kinds,
    )
    actions = {(finding.kind, os.path.basename(finding.path)): finding.action for finding in report.findings}
    assert actions[("devices", "loop")] == "left out by rsync" and actions[("setuid", "setuid")] == "bit cleared by rsync"
    assert actions[("capabilities", "capable")] == "not copied by rsync"
    assert actions[("links_outside", "shadow")] == "replaced by an empty file"  # links: the program's job on live
    assert not any(finding.action == "found" for finding in report.findings)
    # an allowance anywhere leaves that kind to the program (rsync's options cover a whole run)
    strip, kinds = live_data.rsync_strips([{"path": str(app / "ping"), "allow": ["setuid", "fifos"]}])
    assert "--no-specials" not in strip and "--chmod=Fg-s" in strip and {"setuid", "fifos", "sockets"}.isdisjoint(kinds)
