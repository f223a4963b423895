"""Replication and verification against the real lab (sshd hosts, rsync, real Prefect API).

Copies are checked independently of the verify code: by reading both hosts' folders on this
machine (each lab host's filesystem lives under its ``root``) and hashing every file.
"""

from __future__ import annotations

import glob
import hashlib
import os
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from flows.replicate import replicate_service
from flows.verify import verify
from hotspare.cli import main
from hotspare.inventory import copies
from hotspare.planning.replication import copy_tree

from lab_helpers import host_path, poll, ssh, tree_digest

SERVICE = "app1"


def current_copy_data(lab_env: dict) -> Path:
    service = lab_env["services"][SERVICE]
    current = copies.current_copy(SERVICE)
    return host_path(lab_env, service["mirror"], copy_tree(SERVICE, current.id) + service["data_path"])


def production_data(lab_env: dict) -> Path:
    service = lab_env["services"][SERVICE]
    return host_path(lab_env, service["production"], service["data_path"])


@pytest.fixture(scope="module")
def replicated(fleet, lab_env):
    """app1 replicated once, so there is a verified current copy."""
    result = replicate_service(SERVICE)
    assert result["outcome"] == "ok"
    return result


def test_copy_equals_production_byte_for_byte(replicated, lab_env):
    assert tree_digest(current_copy_data(lab_env)) == tree_digest(production_data(lab_env))
    assert len(tree_digest(production_data(lab_env))) >= 3
    row = copies.current_copy(SERVICE)
    assert row.status == "verified" and row.verified_at is not None


def is_snapshot(folder: Path) -> bool:
    """True when ``folder`` (a copy's root, seen from this machine) is a btrfs subvolume."""
    import subprocess

    return subprocess.run(["btrfs", "subvolume", "show", str(folder)], capture_output=True).returncode == 0


def copy_root_of(data: Path) -> Path:
    """The copy's root (``copies/<id>``) above one of its data folders."""
    return next(parent for parent in data.parents if parent.parent.name == "copies")


@contextmanager
def writable_copy(data: Path):
    """Let a test damage a copy: a snapshot copy is read-only, so lift that while it writes."""
    import subprocess

    root = copy_root_of(data)
    # the copy's root and each data path inside it are read-only subvolumes of their own
    subvolumes = [
        folder
        for folder in [root, *[parent for parent in [data, *data.parents] if root in parent.parents]]
        if is_snapshot(folder)
    ]
    for folder in subvolumes:
        subprocess.run(["btrfs", "property", "set", "-ts", str(folder), "ro", "false"], check=True)
    try:
        yield
    finally:
        for folder in subvolumes:
            subprocess.run(["btrfs", "property", "set", "-ts", str(folder), "ro", "true"], check=True)


def remove_every_copy(folder: Path) -> None:
    """What a reinstalled mirror looks like: no copies and no working tree (snapshots deleted
    as subvolumes, everything else removed)."""
    import shutil
    import subprocess

    from hotspare.planning.copy_backends import REMOVE_SCRIPT

    for path in [*folder.glob("copies/*"), folder / "work"]:
        subprocess.run(["sh", "-c", REMOVE_SCRIPT, "sh", str(path)], check=True)
    shutil.rmtree(folder / "copies")


def test_second_copy_shares_unchanged_files(replicated, lab_env):
    first = current_copy_data(lab_env)
    replicate_service(SERVICE)
    second = current_copy_data(lab_env)
    assert first != second
    unchanged = first / "index.html"
    assert unchanged.stat().st_ino == (second / "index.html").stat().st_ino
    if is_snapshot(copy_root_of(second)):  # a read-only snapshot: nothing can write into it
        assert is_snapshot(copy_root_of(first))
        with pytest.raises(OSError):
            (second / "index.html").chmod(0o600)
    else:  # hard links
        assert unchanged.stat().st_nlink >= 2


def test_status_json_reports_current_copy_and_rpo(replicated, lab_env, capsys):
    import json

    assert main(["status", "--json", "--timeout", "1"]) == 0
    records = {record["service"]: record for record in json.loads(capsys.readouterr().out)["services"]}
    record = records[SERVICE]
    assert record["rpo_state"] == "ok"
    assert record["current_copy"]["id"] == copies.current_copy(SERVICE).id
    mirror = lab_env["services"][SERVICE]["mirror"]
    assert host_path(lab_env, mirror, record["current_copy"]["path"]) == current_copy_data(lab_env)
    assert record["current_copy"]["verified_at"]


def corrupt_keeping_mtime(path: Path) -> None:
    """Flip one bit; same size, same mtime: only a content checksum can see it."""
    before = path.stat()
    content = bytearray(path.read_bytes())
    content[0] ^= 0x01
    with writable_copy(path.parent):
        path.write_bytes(bytes(content))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_corruption_with_restored_mtime_is_caught_by_verify(replicated, lab_env):
    corrupt_keeping_mtime(current_copy_data(lab_env) / "index.html")
    corrupted_copy = copies.current_copy(SERVICE).id

    state = verify([SERVICE], full=True, return_state=True)
    assert state.is_failed()
    row = next(row for row in copies.copies_of(SERVICE) if row.id == corrupted_copy)
    content_check = next(check for check in row.verification["checks"] if check["check"] == "content")
    assert content_check["result"] == "FAIL"
    assert "/srv/app1/data/index.html" in content_check["detail"]

    assert replicate_service(SERVICE)["outcome"] == "ok"


def test_replication_repairs_a_corrupt_file_it_would_hard_link(replicated, lab_env):
    damaged = current_copy_data(lab_env) / "index.html"
    corrupt_keeping_mtime(damaged)
    # The next copy hard-links the damaged file (same size and mtime), catches it by checksum,
    # re-sends it into the new copy only, and verifies.
    result = replicate_service(SERVICE)
    assert result["outcome"] == "ok"
    assert tree_digest(current_copy_data(lab_env)) == tree_digest(production_data(lab_env))


def test_emptied_source_is_refused_and_mirror_untouched(replicated, lab_env):
    data = production_data(lab_env)
    mirror_root = host_path(lab_env, lab_env["services"][SERVICE]["mirror"], "/srv/hotspare/app1/copies")
    copies_before = sorted(os.listdir(mirror_root))
    current_before = copies.current_copy(SERVICE).id
    parked = data.with_name("data.parked")
    data.rename(parked)
    data.mkdir()
    try:
        state = replicate_service(SERVICE, return_state=True)
        assert state.is_failed()
        assert "no files" in state.message
        assert sorted(os.listdir(mirror_root)) == copies_before
        assert copies.current_copy(SERVICE).id == current_before
    finally:
        data.rmdir()
        parked.rename(data)


def this_labs_transfer(pattern: str, lab_env: dict) -> int | None:
    """The PID of the rsync running on this lab's mirror (its PID file is in the mirror's own
    /run; the PID is checked to live in the mirror's network namespace all the same)."""
    from hotspare.lab.processes import pids_in_netns

    mirror = lab_env["services"][SERVICE]["mirror"]
    ours = set(pids_in_netns(lab_env["hosts"][mirror]["netns"]))
    for pid_file in glob.glob(str(host_path(lab_env, mirror, pattern))):
        try:
            pid = int(Path(pid_file).read_text().strip())
        except (OSError, ValueError):  # being written or already removed
            continue
        if pid in ours:
            return pid
    return None


@pytest.fixture
def rsync_into_snapshots(lab_env, tmp_path):
    """The fleet asks for snapshots filled by rsync: this lab's productions would ship snapshots
    instead (tests/test_snapshot_shipping.py interrupts a shipment), and btrfs send cannot resume."""
    from lab_helpers import lab_fleet_changed

    with lab_fleet_changed(
        lab_env, tmp_path, lambda data: data.setdefault("replication", {}).update(copy_backend="btrfs-snapshot")
    ):
        yield


def test_interrupted_transfer_keeps_previous_copy_and_next_run_resumes(replicated, lab_env, monkeypatch, rsync_into_snapshots):
    before = tree_digest(current_copy_data(lab_env))
    current_before = copies.current_copy(SERVICE).id
    bulk = production_data(lab_env) / "bulk"
    bulk.mkdir(exist_ok=True)
    for number in range(40):
        (bulk / f"blob-{number}.bin").write_bytes(os.urandom(8 * 2**20))
    monkeypatch.setenv("HOTSPARE_TRANSFER_RETRIES", "0")

    from concurrent.futures import ThreadPoolExecutor

    pattern = "/run/hotspare/replicate-app1-*/transfer.pid"
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(replicate_service, SERVICE, return_state=True)
            pid = poll(lambda: this_labs_transfer(pattern, lab_env), 60, "the transfer to start")
            root = str(host_path(lab_env, lab_env["services"][SERVICE]["mirror"], "/srv/hotspare/app1"))
            arrived = [root + "/copies/*/tree/srv/app1/data/bulk/blob-*", root + "/work/tree/srv/app1/data/bulk/blob-*"]
            poll(lambda: len(glob.glob(arrived[0]) + glob.glob(arrived[1])) >= 8, 60, "part of the data to arrive on the mirror")
            os.kill(pid, signal.SIGKILL)  # the rsync this test's replication started
            state = running.result(timeout=120)
        assert state.is_failed()
        assert copies.current_copy(SERVICE).id == current_before
        assert tree_digest(current_copy_data(lab_env)) == before

        monkeypatch.setenv("HOTSPARE_TRANSFER_RETRIES", "2")
        result = replicate_service(SERVICE)
        assert result["outcome"] == "ok"
        assert result["transfer"]["bytes_transferred"] < 40 * 8 * 2**20  # resumed, not restarted
        assert tree_digest(current_copy_data(lab_env)) == tree_digest(production_data(lab_env))
    finally:
        for blob in bulk.glob("*"):
            blob.unlink()
        bulk.rmdir()
    # The bulk data is gone again: production shrank on purpose, so re-baseline explicitly.
    assert replicate_service(SERVICE, return_state=True).is_failed()
    assert replicate_service(SERVICE, force=True)["outcome"] == "ok"


def test_new_user_and_changed_password_hash_reach_the_mirror_locked(replicated, lab, lab_env):
    production = lab_env["services"][SERVICE]["production"]
    mirror = lab_env["services"][SERVICE]["mirror"]
    new_hash = "$6$saltsalt$" + hashlib.sha256(os.urandom(8)).hexdigest()
    assert ssh(lab_env, production, "useradd", "-M", "-u", "2500", "-s", "/bin/sh", "app1-new").returncode == 0
    assert ssh(lab_env, production, "usermod", "-p", new_hash, "app1-web").returncode == 0
    try:
        replicate_service(SERVICE)
        passwd = host_path(lab_env, mirror, "/etc/passwd").read_text()
        shadow = host_path(lab_env, mirror, "/etc/shadow").read_text()
        assert any(line.startswith("app1-new:x:2500:") for line in passwd.splitlines())
        assert f"app1-web:!{new_hash}:" in shadow  # locked: the mirror serves nothing while production does
    finally:
        ssh(lab_env, production, "userdel", "app1-new")


def test_mirror_with_less_memory_fails_hardware_check(replicated, lab_env, tmp_path):
    fleet_file = Path(lab_env["fleet_file"])
    document = yaml.safe_load(fleet_file.read_text())
    mirror = lab_env["services"][SERVICE]["mirror"]
    for server in document["servers"]:
        if server["name"] == mirror:
            server["hardware"]["memory_mb"] = 1
            server["hardware"]["disk_gb"] = 1
    smaller = tmp_path / "fleet.yaml"
    smaller.write_text(yaml.safe_dump(document, sort_keys=False))
    assert main(["fleet", "load", str(smaller)]) == 0
    try:
        state = verify([SERVICE], return_state=True)
        assert state.is_failed()
        row = copies.copies_of(SERVICE)[0]
        hardware = next(check for check in row.verification["checks"] if check["check"] == "hardware and OS")
        assert hardware["result"] == "FAIL"
        assert "MiB memory on the mirror" in hardware["detail"] and "GiB disk on the mirror" in hardware["detail"]
    finally:
        assert main(["fleet", "load", str(fleet_file)]) == 0
    assert replicate_service(SERVICE)["outcome"] == "ok"


def test_copies_gone_from_the_mirror_are_marked_missing_and_not_a_baseline(replicated, lab_env):
    """A reinstalled mirror: the inventory's copies no longer exist there."""
    before = [row.id for row in copies.copies_of(SERVICE, "mirror-west") if row.status == "verified"]
    mirror = lab_env["services"][SERVICE]["mirror"]
    remove_every_copy(host_path(lab_env, mirror, "/srv/hotspare/app1"))
    result = replicate_service(SERVICE)
    assert result["outcome"] == "ok"
    from sqlmodel import select

    from hotspare.inventory.db import session
    from hotspare.inventory.models import CopyRow

    with session() as db:
        statuses = {row.id: row.status for row in db.exec(select(CopyRow))}
    assert before and all(statuses[copy_id] in ("missing", "pruned") for copy_id in before)
    assert copies.newest_verified(SERVICE).id == result["copy_id"]
    new_copy = current_copy_data(lab_env)
    assert all(path.stat().st_nlink == 1 for path in new_copy.rglob("*") if path.is_file())  # linked to nothing
    assert tree_digest(current_copy_data(lab_env)) == tree_digest(production_data(lab_env))
