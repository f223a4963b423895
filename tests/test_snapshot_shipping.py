"""Snapshot shipping against the real lab: production's data path is a btrfs subvolume, the
mirror receives ``btrfs send -p`` streams confined to the service's received area.

Checked independently of the code under test: stream sizes as the mirror counted them, copies
hashed on this machine, UUIDs read with ``btrfs subvolume show`` on each host's filesystem.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from flows.replicate import replicate_service
from hotspare.inventory import copies, copy_stores
from hotspare.planning import snapshot_shipping as shipping
from hotspare.planning.replication import copy_tree

from lab_helpers import host_path, ssh_argv, tree_digest

SERVICE = "app1"
MiB = 2**20


def service_of(lab_env):
    return lab_env["services"][SERVICE]


def production_data(lab_env) -> Path:
    return host_path(lab_env, service_of(lab_env)["production"], service_of(lab_env)["data_path"])


def copy_data(lab_env, copy_id: str) -> Path:
    return host_path(lab_env, service_of(lab_env)["mirror"], copy_tree(SERVICE, copy_id) + service_of(lab_env)["data_path"])


def area(lab_env) -> Path:
    return host_path(lab_env, service_of(lab_env)["mirror"], shipping.received_area(SERVICE))


def show(path: Path) -> dict:
    """``btrfs subvolume show`` as {field: value}."""
    output = subprocess.run(["btrfs", "subvolume", "show", str(path)], capture_output=True, text=True, check=True).stdout
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in output.splitlines()[1:])}


def _chains(lab_env) -> str:
    """Each end's snapshots as ``btrfs subvolume show`` reads them (for a failure's report)."""
    production = host_path(lab_env, service_of(lab_env)["production"], "/srv/app1/.hotspare-snapshots")
    seen = []
    for folder in (production, area(lab_env)):
        for entry in sorted(folder.iterdir()) if folder.exists() else ():
            fields = show(entry)
            wanted = ("UUID", "Received UUID", "Generation", "Gen at creation", "Flags")
            seen.append(f"{entry.name}: " + ", ".join(f"{key}={fields.get(key)}" for key in wanted))
    return "; ".join(seen)


def replicate() -> dict:
    result = replicate_service(SERVICE)
    assert result["outcome"] == "ok"
    return result


@pytest.fixture(scope="module")
def shipping_fleet(fleet, lab_env, tmp_path_factory):
    """The lab fleet with ``copy_backend: btrfs-send`` (shipping is asked for, never the default);
    the lab's own fleet again after the module."""
    from lab_helpers import lab_fleet_changed

    def ship(data: dict) -> None:
        data.setdefault("replication", {})["copy_backend"] = shipping.SHIPPING_PREFERENCE

    with lab_fleet_changed(lab_env, tmp_path_factory.mktemp("fleet"), ship) as data:
        yield data


@pytest.fixture(scope="module")
def shipped(shipping_fleet, lab_env):
    """app1 with 8 MiB of incompressible data, shipped once."""
    (production_data(lab_env) / "blob.bin").write_bytes(os.urandom(8 * MiB))
    return replicate()


def test_a_first_replication_ships_the_whole_snapshot_and_the_copy_verifies(shipped, lab_env):
    transfer = shipped["transfer"]
    assert transfer["stream_bytes"] >= 8 * MiB, transfer
    assert list(transfer["shipped"]) == [service_of(lab_env)["data_path"]]
    store = copy_stores.store_of(SERVICE, service_of(lab_env)["mirror"])
    assert store.backend == "btrfs-send", store.reason
    row = copies.current_copy(SERVICE)
    assert row.id == shipped["copy_id"] and row.status == "verified"
    assert tree_digest(copy_data(lab_env, row.id)) == tree_digest(production_data(lab_env))
    # the chain, read on both filesystems: production's snapshot -> received subvolume -> the copy
    name = shipping.snapshot_name(service_of(lab_env)["data_path"], row.id)
    snapshot = host_path(
        lab_env, service_of(lab_env)["production"], shipping.production_snapshot(service_of(lab_env)["data_path"], row.id)
    )
    received = show(area(lab_env) / name)
    assert received["Received UUID"] == show(snapshot)["UUID"]
    assert show(copy_data(lab_env, row.id))["Parent UUID"] == received["UUID"]
    checks = {check["check"]: check for check in row.verification["checks"]}
    assert checks["shipped data"]["result"] == "ok", checks["shipped data"]


def test_an_incremental_replication_ships_about_the_changed_bytes(shipped, lab_env):
    for index in range(3):  # three 64 KiB files changed, the 8 MiB blob untouched
        (production_data(lab_env) / f"changed-{index}.bin").write_bytes(os.urandom(64 * 1024))
    result = replicate()
    stream = result["transfer"]["stream_bytes"]
    print(f"incremental stream: {stream} bytes for 196608 bytes changed (8 MiB unchanged)")
    assert 3 * 64 * 1024 <= stream < 1 * MiB, stream
    assert tree_digest(copy_data(lab_env, result["copy_id"])) == tree_digest(production_data(lab_env))
    # the shipped data is checked without a listing: the UUID chain and a slice hashed on both hosts
    check = {c["check"]: c for c in copies.current_copy(SERVICE).verification["checks"]}["shipped data"]
    assert check["result"] == "ok" and "of the rolling slice match by checksum" in check["detail"], check
    assert not check["detail"].startswith("received UUIDs match production's snapshots; 0 file"), check


def test_a_parent_production_changed_after_sending_cannot_keep_a_file_in_the_copy(shipped, lab_env):
    """Production's root plants a file, lets one copy ship it, then removes it from the live data
    AND from the snapshot production keeps as the next parent: a stream computed from that parent
    never says "unlink", and the copy would keep the file production no longer has. The parent's
    btrfs generation moved: it is never shipped from, the copy goes by rsync (whose listing follows
    production) and the next one starts a new chain."""
    planted = production_data(lab_env) / "uploads-evil.php"
    planted.write_text("<?php system($_GET['c']); ?>\n")
    carried = replicate()
    assert (copy_data(lab_env, carried["copy_id"]) / planted.name).exists()
    planted.unlink()
    parent = host_path(
        lab_env,
        service_of(lab_env)["production"],
        shipping.production_snapshot(service_of(lab_env)["data_path"], carried["copy_id"]),
    )
    subprocess.run(["btrfs", "property", "set", "-ts", str(parent), "ro", "false"], check=True)
    (parent / planted.name).unlink()
    subprocess.run(["btrfs", "property", "set", "-ts", str(parent), "ro", "true"], check=True)

    fresh = replicate()
    assert fresh["transfer"]["shipped"] == {}, f"never shipped from the doctored parent; {_chains(lab_env)}"
    store = copy_stores.store_of(SERVICE, service_of(lab_env)["mirror"])
    assert store.backend == "btrfs-snapshot" and "changed after it was taken" in store.reason, store.reason
    assert not (copy_data(lab_env, fresh["copy_id"]) / planted.name).exists()
    assert tree_digest(copy_data(lab_env, fresh["copy_id"])) == tree_digest(production_data(lab_env))
    assert not list(area(lab_env).iterdir()), "the chain whose parent production changed is dropped"
    again = replicate()
    assert again["transfer"]["shipped"], "shipping again from a new chain"
    assert tree_digest(copy_data(lab_env, again["copy_id"])) == tree_digest(production_data(lab_env))


def test_a_shipped_copy_damaged_on_the_mirror_is_found_by_the_slice(shipped, lab_env):
    from flows.verify import verify

    row = copies.current_copy(SERVICE)
    data = copy_data(lab_env, row.id)
    victim = data / "blob.bin"
    subprocess.run(["btrfs", "property", "set", "-ts", str(data), "ro", "false"], check=True)
    with open(victim, "r+b") as handle:  # same size, same mtime: only a checksum sees it
        handle.seek(4 * MiB)
        handle.write(b"X" * 4096)
    stat = (production_data(lab_env) / "blob.bin").stat()
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    subprocess.run(["btrfs", "property", "set", "-ts", str(data), "ro", "true"], check=True)
    copies.update_copy(row.id, verification=row.verification | {"slice_cursor": ""})  # the pass starts over
    with pytest.raises(RuntimeError, match="verification failed"):
        verify([SERVICE])
    failed = next(r for r in copies.copies_of(SERVICE) if r.id == row.id)
    assert failed.status == "failed"
    detail = {check["check"]: check for check in failed.verification["checks"]}["shipped data"]
    assert detail["result"] == "FAIL" and "blob.bin (content)" in detail["detail"], detail
    fresh = replicate()  # the received subvolume was never touched: the next copy is whole again
    assert tree_digest(copy_data(lab_env, fresh["copy_id"])) == tree_digest(production_data(lab_env))


def test_a_missing_parent_falls_back_to_rsync_then_a_new_chain_starts(shipped, lab_env):
    snapshots = production_data(lab_env).parent / shipping.SNAPSHOT_FOLDER
    for snapshot in snapshots.iterdir():  # production lost its snapshots (reinstalled, removed by hand)
        subprocess.run(["btrfs", "-q", "subvolume", "delete", str(snapshot)], check=True)
    (production_data(lab_env) / "after-loss.txt").write_text("written after the snapshots were lost\n")
    fallback = replicate()
    store = copy_stores.store_of(SERVICE, service_of(lab_env)["mirror"])
    assert fallback["transfer"]["shipped"] == {} and store.backend == "btrfs-snapshot"
    assert "missing on production or on the mirror" in store.reason
    assert tree_digest(copy_data(lab_env, fallback["copy_id"])) == tree_digest(production_data(lab_env))
    assert not list(area(lab_env).iterdir())  # the broken chain's subvolumes are gone
    again = replicate()
    assert again["transfer"]["stream_bytes"] >= 8 * MiB and again["transfer"]["shipped"]
    assert copy_stores.store_of(SERVICE, service_of(lab_env)["mirror"]).backend == "btrfs-send"


def _receive_on_mirror(lab_env, argv: list[str], stream: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(
        ssh_argv(lab_env, service_of(lab_env)["mirror"], argv, 5), input=stream, capture_output=True, timeout=120, check=False
    )


def test_a_stream_naming_another_services_subvolume_as_parent_is_refused(shipped, lab_env):
    """A compromised production sends a stream whose parent is another customer's received
    snapshot on the same mirror (its UUID leaked): plain ``receive --chroot`` would snapshot that
    customer's data into our area; the confined receive refuses it."""
    mirror_srv = host_path(lab_env, service_of(lab_env)["mirror"], "/srv")
    secret, other = mirror_srv / "hstest-secret", mirror_srv / "hotspare" / "hstest-other" / "received"
    scratch = area(lab_env) / "hstest-plain"
    try:
        other.parent.mkdir(parents=True, exist_ok=True)
        for command in (["btrfs", "-q", "subvolume", "create", str(secret)], ["btrfs", "-q", "subvolume", "create", str(other)]):
            subprocess.run(command, check=True)
        (secret / "canary").write_text("another customer's secret\n")
        subprocess.run(["btrfs", "-q", "subvolume", "snapshot", "-r", str(secret), str(secret) + "-P"], check=True)
        sent = subprocess.run(["btrfs", "send", "-q", str(secret) + "-P"], capture_output=True, check=True).stdout
        subprocess.run(["btrfs", "receive", "-q", str(other)], input=sent, check=True)
        (secret / "more").write_text("x\n")
        subprocess.run(["btrfs", "-q", "subvolume", "snapshot", "-r", str(secret), str(secret) + "-S"], check=True)
        stream = subprocess.run(
            ["btrfs", "send", "-q", "-p", str(secret) + "-P", str(secret) + "-S"], capture_output=True, check=True
        ).stdout
        confined = _receive_on_mirror(lab_env, shipping.receive_argv(shipping.received_area(SERVICE)), stream)
        assert confined.returncode != 0 and b"not reachable" in confined.stderr, confined.stderr
        assert not (area(lab_env) / "hstest-secret-S").exists()
        # the same stream without the subvolume mount: receive's --chroot alone lets it through
        scratch.mkdir()
        plain = _receive_on_mirror(
            lab_env, ["btrfs", "receive", "-q", "--chroot", "-E", "1", shipping.received_area(SERVICE) + "/hstest-plain"], stream
        )
        assert plain.returncode == 0, plain.stderr
        assert (scratch / "hstest-secret-S" / "canary").read_text() == "another customer's secret\n"
    finally:
        for path in (
            scratch / "hstest-secret-S",
            other / "hstest-secret-P",
            other,
            secret,
            Path(str(secret) + "-P"),
            Path(str(secret) + "-S"),
        ):
            if path.exists():
                subprocess.run(["btrfs", "-q", "subvolume", "delete", str(path)], check=False)
        for path in (scratch, other.parent):
            if path.exists():
                path.rmdir()


HOSTILE_SENDER = """#!/bin/sh
# a compromised production: the real stream, then a second subvolume it was never asked for
service=$1
if [ "$3" = - ]; then btrfs send -q "$2"; else btrfs send -q -p "$3" "$2"; fi
evil=${2%/*}/evil
btrfs -q subvolume snapshot -r /srv/app1/data "$evil" >/dev/null && btrfs send -q "$evil"
btrfs -q subvolume delete "$evil" >/dev/null
"""


def test_a_stream_carrying_more_than_its_snapshot_is_removed_and_the_copy_refused(shipped, lab_env, monkeypatch):
    before = copies.current_copy(SERVICE).id
    monkeypatch.setattr(shipping, "SEND_SCRIPT", HOSTILE_SENDER)  # what production runs as its sender
    (production_data(lab_env) / "during-attack.txt").write_text("x\n")
    with pytest.raises(Exception, match="besides its snapshots"):
        replicate_service(SERVICE)
    assert copies.current_copy(SERVICE).id == before
    assert not (area(lab_env) / "evil").exists()
    monkeypatch.undo()
    assert replicate()["transfer"]["shipped"]  # the next run, with the real sender, ships again


# A compromised production that opens the stream and sends nothing (an SSH keepalive does not
# notice: its end answers them).
SILENT_SENDER = """#!/bin/sh
exec sleep 3600
"""


def test_a_sender_that_sends_nothing_is_stopped_and_the_copy_refused(shipped, lab_env, monkeypatch):
    before = copies.current_copy(SERVICE).id
    received = sorted(path.name for path in area(lab_env).iterdir())
    monkeypatch.setattr(shipping, "SEND_SCRIPT", SILENT_SENDER)
    monkeypatch.setattr(shipping, "STREAM_IDLE_SECONDS", 5)
    monkeypatch.setenv("HOTSPARE_TRANSFER_RETRIES", "0")
    (production_data(lab_env) / "during-silence.txt").write_text("x\n")
    with pytest.raises(Exception, match="no byte of the stream came for 5 s; the sender was stopped"):
        replicate_service(SERVICE)
    assert copies.current_copy(SERVICE).id == before
    assert sorted(path.name for path in area(lab_env).iterdir()) == received  # nothing half-received left
    monkeypatch.undo()
    assert replicate()["transfer"]["shipped"]  # the real sender ships again


def _this_labs_receive(lab_env) -> int | None:
    """The PID of the ``btrfs receive`` running on this lab's mirror for a shipment."""
    from hotspare.lab.processes import pids_in_netns

    for pid in pids_in_netns(lab_env["hosts"][service_of(lab_env)["mirror"]]["netns"]):
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if words[:2] == [b"btrfs", b"receive"] and shipping.RECEIVE_VIEW.encode() in words:
            return pid
    return None


def test_an_interrupted_shipment_keeps_the_previous_copy_and_the_next_run_ships(shipped, lab_env, monkeypatch):
    import glob
    import signal
    from concurrent.futures import ThreadPoolExecutor

    from lab_helpers import poll

    current = copies.current_copy(SERVICE).id
    bulk = production_data(lab_env) / "bulk"
    bulk.mkdir()
    for number in range(24):
        (bulk / f"blob-{number}.bin").write_bytes(os.urandom(8 * MiB))
    monkeypatch.setenv("HOTSPARE_TRANSFER_RETRIES", "0")
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(replicate_service, SERVICE, return_state=True)
            pid = poll(lambda: _this_labs_receive(lab_env), 60, "the receive to start")
            poll(
                lambda: len(glob.glob(str(area(lab_env) / "data@*" / "bulk" / "blob-*"))) >= 4, 60, "part of the stream to arrive"
            )
            os.kill(pid, signal.SIGKILL)
            assert running.result(timeout=120).is_failed()
        assert copies.current_copy(SERVICE).id == current
        monkeypatch.setenv("HOTSPARE_TRANSFER_RETRIES", "2")
        result = replicate()
        assert result["transfer"]["shipped"] and result["transfer"]["stream_bytes"] >= 24 * 8 * MiB
        assert tree_digest(copy_data(lab_env, result["copy_id"])) == tree_digest(production_data(lab_env))
        # the interrupted receive's half subvolume is gone; the area holds this copy's and its parent
        assert len(list(area(lab_env).iterdir())) <= 2
    finally:
        for blob in bulk.glob("*"):
            blob.unlink()
        bulk.rmdir()
    assert replicate_service(SERVICE, force=True)["outcome"] == "ok"  # production shrank on purpose


def test_a_shipped_copy_is_checked_by_btrfs_scrub_within_a_time_budget(shipped, lab_env):
    """The verification lets the mirror's filesystem scrub for its budget (btrfs reads blocks from
    disk and checks their checksums) and says how far the rolling scrub pass got."""
    import re

    row = copies.current_copy(SERVICE)
    check = next(check for check in row.verification["checks"] if check["check"] == "shipped data")
    assert check["result"] == "ok" and "btrfs scrub:" in check["detail"], check
    said = int(re.search(r"btrfs scrub: (\d+) bytes", check["detail"]).group(1))
    # the filesystem's own record of the scrub, read on this machine
    status = subprocess.run(
        ["btrfs", "scrub", "status", "-R", str(area(lab_env).parent)], capture_output=True, text=True, check=True
    ).stdout
    scrubbed = int(re.search(r"data_bytes_scrubbed: (\d+)", status).group(1))
    assert said > 0 and scrubbed > 0, (check, status)
