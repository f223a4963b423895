"""Failover, reprotect, failback and a drill with shipped copies (``copy_backend: btrfs-send``).

One pass over app1 (prod-east -> mirror-west), each step a test that reads the state the one
before left (the session lab is shared; the module puts app1 back in its starting layout and
loads the lab's own fleet file again at the end, whatever happened):

1. a shipped copy (production's snapshot -> the mirror's received subvolume -> the copy);
2. production dies while its next snapshot is half received; the emergency failover takes the
   service over from that replication and makes the last shipped copy live: users read it
   through DNS from the mirror; the live data is a clone of the copy, never of the received
   subvolume, which stays as shipped; the half-received subvolume has no received UUID, so
   nothing can ever ship against it;
3. reprotect: the old production becomes the mirror; the reverse direction ships too (the live
   data on the mirror is a subvolume), in full, the copy verified;
4. a planned failback whose final sync finds its chain broken (the snapshot of the reprotect's
   copy lost on the mirror while it served): that copy goes by rsync with the sentence saying so
   and the received subvolume without its other end is removed; the switchover's reprotect then
   ships from the newest snapshot both ends still hold with matching UUIDs (the pre-outage one),
   and the next replication ships from that new copy;
5. a drill boots the newest shipped copy in its bubble and leaves production, DNS, the copies
   and the received area as they were.

Checked independently of the code under test: UUIDs read with ``btrfs subvolume show`` on the
hosts' filesystems from this machine, files hashed here, answers through the lab's DNS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from test_drill import nothing_left
from test_drill import snapshot as drill_snapshot
from test_failover import address, reset_layout, through_dns

from flows.failover import failover
from flows.replicate import replicate_service
from flows.reprotect import reprotect
from hotspare.cli import main
from hotspare.inventory import copies, copy_stores, locks
from hotspare.planning import snapshot_shipping as shipping
from hotspare.planning.replication import copy_tree
from hotspare.status import STATUS_HEADERS, status_rows

from lab_helpers import host_path, lab_fleet_changed, poll, ssh, tree_digest

SERVICE = "app1"
PRODUCTION, MIRROR = "prod-east", "mirror-west"
TAG = uuid.uuid4().hex[:8]
MiB = 2**20
BULK = f"bulk-{TAG}"  # written on production right before it dies mid-shipment
FILES = {
    "shipped": f"shipped-{TAG}.txt",  # in the shipped copy before the outage
    "lost": f"lost-{TAG}.txt",  # written on production after the last copy: the data-loss window
    "failed-over": f"failed-over-{TAG}.txt",  # written on the mirror while it serves
    "last": f"last-{TAG}.txt",  # written on the mirror right before the failback
}


@pytest.fixture(scope="module")
def journey(fleet, lab, lab_env, tmp_path_factory):
    """app1 in its starting layout with ``copy_backend: btrfs-send``; what each step learnt, for
    the next ones. The lab's fleet and layout are back at the end."""

    def ship(data: dict) -> None:
        data.setdefault("replication", {})["copy_backend"] = shipping.SHIPPING_PREFERENCE

    reset_layout(lab, lab_env)
    try:
        with lab_fleet_changed(lab_env, tmp_path_factory.mktemp("fleet"), ship):
            yield {}
    finally:
        reset_layout(lab, lab_env)
        for host in (PRODUCTION, MIRROR):
            srv = host_path(lab_env, host, "/srv/app1")
            for name in FILES.values():
                (srv / "data" / name).unlink(missing_ok=True)
            for bulk in [srv / "data" / BULK, *srv.glob(f".hotspare-replaced-*/{BULK}")]:  # 192 MiB
                shutil.rmtree(bulk, ignore_errors=True)


def data_path(lab_env) -> str:
    return lab_env["services"][SERVICE]["data_path"]


def show(path: Path) -> dict:
    """``btrfs subvolume show`` as {field: value}, read on this machine."""
    output = subprocess.run(["btrfs", "subvolume", "show", str(path)], capture_output=True, text=True, check=True).stdout
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in output.splitlines()[1:])}


def area_of(lab_env, server: str) -> Path:
    return host_path(lab_env, server, shipping.received_area(SERVICE))


def identity(path: Path) -> dict:
    """What makes a subvolume the one it is, read on this machine (its quota usage changes as
    snapshots come and go, its identity must not)."""
    shown = show(path)
    return {
        key: shown.get(key)
        for key in ("UUID", "Parent UUID", "Received UUID", "Flags", "Creation time", "Send transid", "Receive transid")
    }


def copy_data(lab_env, server: str, copy_id: str) -> Path:
    return host_path(lab_env, server, copy_tree(SERVICE, copy_id) + data_path(lab_env))


def received(lab_env, server: str, copy_id: str) -> Path:
    return host_path(lab_env, server, shipping.received_area(SERVICE)) / shipping.snapshot_name(data_path(lab_env), copy_id)


def sent(lab_env, server: str, copy_id: str) -> Path:
    """The snapshot ``server`` took as production for copy ``copy_id``."""
    return host_path(lab_env, server, shipping.production_snapshot(data_path(lab_env), copy_id))


def assert_chain(lab_env, production: str, mirror: str, copy_id: str) -> None:
    """production's snapshot -> the mirror's received subvolume -> the copy's data path."""
    arrived = show(received(lab_env, mirror, copy_id))
    assert arrived["Received UUID"] == show(sent(lab_env, production, copy_id))["UUID"], arrived
    assert show(copy_data(lab_env, mirror, copy_id))["Parent UUID"] == arrived["UUID"]


def assert_shipped_and_verified(lab_env, production: str, mirror: str, copy_id: str) -> None:
    row = next(row for row in copies.copies_of(SERVICE, mirror) if row.id == copy_id)
    assert row.status == "verified", row.verification
    checks = {check["check"]: check for check in row.verification["checks"]}
    assert checks["shipped data"]["result"] == "ok", checks["shipped data"]
    assert_chain(lab_env, production, mirror, copy_id)
    live = host_path(lab_env, production, data_path(lab_env))
    assert tree_digest(copy_data(lab_env, mirror, copy_id)) == tree_digest(live)


def status_of(capsys) -> dict:
    capsys.readouterr()
    assert main(["status", "--json", "--timeout", "1"]) == 0
    return next(r for r in json.loads(capsys.readouterr().out)["services"] if r["service"] == SERVICE)


def write_live(lab_env, server: str, key: str, text: str) -> None:
    (host_path(lab_env, server, data_path(lab_env)) / FILES[key]).write_text(text)


def test_1_a_shipped_copy_is_the_point_to_fail_over_to(journey, lab_env, capsys):
    write_live(lab_env, PRODUCTION, "shipped", "in the shipped copy\n")
    result = replicate_service(SERVICE)
    assert result["outcome"] == "ok" and result["transfer"]["shipped"], result["transfer"]
    assert_shipped_and_verified(lab_env, PRODUCTION, MIRROR, result["copy_id"])
    record = status_of(capsys)
    assert (record["copy_backend"], record["mirror"]["name"]) == ("btrfs-send", MIRROR), record
    [row] = status_rows([record])
    assert ", shipped snapshots;" in row[STATUS_HEADERS.index("COPY")], row
    journey["first"] = result["copy_id"]
    journey["received"] = identity(received(lab_env, MIRROR, result["copy_id"]))


def _this_labs_receive(lab_env) -> int | None:
    """The PID of the ``btrfs receive`` running on this lab's mirror for a shipment."""
    from hotspare.lab.processes import pids_in_netns

    for pid in pids_in_netns(lab_env["hosts"][MIRROR]["netns"]):
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if words[:2] == [b"btrfs", b"receive"] and shipping.RECEIVE_VIEW.encode() in words:
            return pid
    return None


def test_2_production_dies_mid_shipment_and_the_failover_serves_the_last_shipped_copy(journey, lab, lab_env, monkeypatch):
    """The worst moment: production goes silent while its next snapshot is half received. The
    failover takes the service over from the replication, makes the last verified shipped copy
    live, and the half-received subvolume can never be a parent (it has no received UUID)."""
    from concurrent.futures import ThreadPoolExecutor

    first = journey["first"]
    write_live(lab_env, PRODUCTION, "lost", "written after the last copy\n")
    bulk = host_path(lab_env, PRODUCTION, data_path(lab_env)) / BULK
    bulk.mkdir()
    for number in range(24):
        (bulk / f"blob-{number}.bin").write_bytes(os.urandom(8 * MiB))
    monkeypatch.setenv("HOTSPARE_TRANSFER_RETRIES", "0")
    area = area_of(lab_env, MIRROR)
    chain = {path.name for path in area.iterdir()}  # the last shipment and its parent
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(replicate_service, SERVICE, return_state=True)
        poll(lambda: _this_labs_receive(lab_env), 60, "the receive to start")
        poll(lambda: len(list(area.glob(f"data@*/{BULK}/blob-*"))) >= 4, 60, "part of the stream to arrive")
        lab.fail(PRODUCTION)
        result = failover(SERVICE, yes=True)
        interrupted = running.result(timeout=180)
    assert interrupted.is_failed() or interrupted.is_cancelled(), interrupted

    assert (result["outcome"], result["copy_id"]) == ("ok", first)
    assert through_dns(lab_env, FILES["shipped"]) == (200, b"in the shipped copy\n", address(lab_env, "mirror"))
    assert through_dns(lab_env, FILES["lost"])[0] == 404  # the data-loss window, as planned
    # The live data is a writable clone of the copy, never the received subvolume itself: it
    # carries no received UUID (btrfs receive finds parents by them), and the received
    # subvolume is exactly as the shipment left it.
    live = show(host_path(lab_env, MIRROR, data_path(lab_env)))
    assert live["Received UUID"] == "-" and live["Flags"] != "readonly", live
    assert live["Parent UUID"] == show(copy_data(lab_env, MIRROR, first))["UUID"]
    assert identity(received(lab_env, MIRROR, first)) == journey["received"]
    assert show(copy_data(lab_env, MIRROR, first))["Flags"] == "readonly"
    # What arrived of the interrupted stream is no snapshot anyone can ship against: the
    # shipment's command removed it when the receive failed, or (killed before that) it is left
    # without a received UUID for the next run to remove.
    leftovers = [path for path in area.iterdir() if path.name not in chain]
    assert all(show(path)["Received UUID"] == "-" for path in leftovers), leftovers
    assert copies.current_copy(SERVICE).id == first
    # production took the interrupted copy's snapshot whole: the one it holds beyond the chain
    held = sent(lab_env, PRODUCTION, first).parent
    [cut] = [path.name for path in held.iterdir() if path.name not in chain and path.name.split("@", 1)[1] > first]
    journey["half"] = cut
    write_live(lab_env, MIRROR, "failed-over", "written on the mirror while failed over\n")


def test_3_reprotect_ships_back_from_the_live_clone_and_verifies(journey, lab, lab_env, capsys):
    lab.heal(PRODUCTION)
    assert ssh(lab_env, PRODUCTION, "/srv/app1/app/ctl", "stop").returncode == 0  # it came back, not serving
    # it came back holding whole the snapshot whose stream its death cut
    assert sent(lab_env, PRODUCTION, journey["half"].split("@", 1)[1]).is_dir()
    protected = reprotect(SERVICE, yes=True)
    assert (protected["production"], protected["mirror"]) == (MIRROR, PRODUCTION)
    back = protected["copy_id"]
    store = copy_stores.store_of(SERVICE, PRODUCTION)
    assert store.backend == "btrfs-send", store.reason
    # nothing was ever shipped in this direction: a new chain, a full send
    assert f"{data_path(lab_env)} in full (first shipment)" in store.reason, store.reason
    assert_shipped_and_verified(lab_env, MIRROR, PRODUCTION, back)
    assert (
        copy_data(lab_env, PRODUCTION, back) / FILES["failed-over"]
    ).read_text() == "written on the mirror while failed over\n"
    record = status_of(capsys)
    assert (record["production"]["name"], record["mirror"]["name"], record["copy_backend"]) == (MIRROR, PRODUCTION, "btrfs-send")
    journey["back"] = back


def test_4_a_planned_failback_ships_from_the_right_parents(journey, lab_env, capsys):
    """While app1 runs on the mirror, its snapshot of the reprotect's copy is lost there (removed
    by hand): the final sync's chain is broken on production's end. It goes by rsync with the
    sentence that says so, and the received subvolume that can no longer be a parent is removed
    from the old production, so nothing later ships against it."""
    write_live(lab_env, MIRROR, "last", "the last write before the failback\n")
    lost = sent(lab_env, MIRROR, journey["back"])
    assert lost.is_dir() and received(lab_env, PRODUCTION, journey["back"]).is_dir()
    subprocess.run(["btrfs", "-q", "subvolume", "delete", str(lost)], check=True)

    home = failover(SERVICE, planned=True, yes=True)
    assert home["outcome"] == "ok" and home["reprotect"]["outcome"] == "ok", home
    row = copies.service_row(SERVICE)
    assert (row.state, row.active_server, row.mirror_server) == ("protected", PRODUCTION, MIRROR)
    assert through_dns(lab_env, FILES["last"]) == (200, b"the last write before the failback\n", address(lab_env, "production"))
    assert through_dns(lab_env, FILES["failed-over"])[:2] == (200, b"written on the mirror while failed over\n")
    # the old production's own write after the last copy is not live, and not destroyed either
    assert through_dns(lab_env, FILES["lost"])[0] == 404
    kept = list(host_path(lab_env, PRODUCTION, "/srv/app1").glob(f".hotspare-replaced-*-data*/{FILES['lost']}"))
    assert [path.read_text() for path in kept] == ["written after the last copy\n"], kept

    # the final sync (mirror-west -> prod-east): the broken chain fell back to rsync, said why,
    # and removed the received subvolume whose other end is gone
    final = home["copy_id"]
    store = copy_stores.store_of(SERVICE, PRODUCTION)
    assert store.backend == "btrfs-snapshot" and "missing on production or on the mirror" in store.reason, store.reason
    assert not received(lab_env, PRODUCTION, journey["back"]).exists()
    assert not list(host_path(lab_env, PRODUCTION, shipping.received_area(SERVICE)).iterdir())
    final_row = next(row for row in copies.copies_of(SERVICE, PRODUCTION) if row.id == final)
    assert final_row.status == "verified"

    # the switchover's reprotect (prod-east -> mirror-west again): the newest snapshot both ends
    # hold with matching UUIDs is the last one shipped before the outage, not the one whose
    # stream production's death cut (production held it whole, the mirror only half)
    again = home["reprotect"]["copy_id"]
    store = copy_stores.store_of(SERVICE, MIRROR)
    parent = shipping.snapshot_name(data_path(lab_env), journey["first"])
    assert store.backend == "btrfs-send" and f"incremental from {parent}" in store.reason, store.reason
    assert_shipped_and_verified(lab_env, PRODUCTION, MIRROR, again)
    # the half-received subvolume is gone from the mirror, its whole snapshot from production
    assert not (area_of(lab_env, MIRROR) / journey["half"]).exists()
    assert not sent(lab_env, PRODUCTION, journey["half"].split("@", 1)[1]).exists()
    assert (copy_data(lab_env, MIRROR, again) / FILES["last"]).exists()
    assert copies.current_copy(SERVICE).id == again
    assert status_of(capsys)["copy_backend"] == "btrfs-send"

    # the next shipment goes from that new copy, and carries about what changed
    write_live(lab_env, PRODUCTION, "shipped", "changed after the failback\n")
    result = replicate_service(SERVICE)
    assert result["transfer"]["shipped"] and result["transfer"]["stream_bytes"] < 2**20, result["transfer"]
    reason = copy_stores.store_of(SERVICE, MIRROR).reason
    assert f"incremental from {shipping.snapshot_name(data_path(lab_env), again)}" in reason, reason
    assert_shipped_and_verified(lab_env, PRODUCTION, MIRROR, result["copy_id"])
    journey["newest"] = result["copy_id"]


def test_5_a_drill_boots_the_shipped_copy_and_touches_nothing(journey, lab_env, capsys):
    newest = journey["newest"]
    assert copies.newest_verified(SERVICE, MIRROR).id == newest
    poll(lambda: locks.holder_of(SERVICE) is None, 60, "app1's lock to be free")
    before = drill_snapshot(lab_env)  # production, the mirror's copies and received area, DNS
    area = {path.name: identity(path) for path in area_of(lab_env, MIRROR).iterdir()}

    capsys.readouterr()
    assert main(["drill", SERVICE, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["outcome"], result["copy_id"], result["host"]) == ("ok", newest, MIRROR)
    assert result["cleanup_proven"] is True and result["canary"] == "logged in as app1-web"
    assert result["isolation"]["route"].startswith(f"local {lab_env['hosts'][PRODUCTION]['address']} dev lo")
    assert result["isolation"]["default_route"] is False

    assert drill_snapshot(lab_env) == before
    assert {path.name: identity(path) for path in area_of(lab_env, MIRROR).iterdir()} == area
    nothing_left(lab_env, result["drill_id"])
    # the chain goes on from the drilled copy
    after = replicate_service(SERVICE)
    reason = copy_stores.store_of(SERVICE, MIRROR).reason
    assert after["transfer"]["shipped"] and f"incremental from {shipping.snapshot_name(data_path(lab_env), newest)}" in reason
