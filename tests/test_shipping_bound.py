"""A hostile production's stream is bounded by the kernel while it is received (simple quotas).

With ``copy_backend: btrfs-send`` on the lab (production's data path is a subvolume, the mirror's
kernel has simple quotas, which the first copy turns on), the received area is in the service's level-1 quota group, so every subvolume
``btrfs receive`` creates there joins it at creation. A stream that would pass the bound — plain
data, or a hand-written v2 ``fallocate`` that reserves space no byte of the stream pays for — is
stopped with EDQUOT: the copy refused with the bound's sentence, the current copy untouched, the
mirror's free space and another service's group as they were.

Checked independently of the code under test: the kernel's quota mode and groups read on the
mirror, free space with ``df``, the current copy hashed on this machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.replicate import replicate_service
from hotspare.inventory import copies, copy_stores
from hotspare.planning import snapshot_shipping as shipping
from hotspare.planning import space
from hotspare.planning.replication import copy_tree

from lab_helpers import host_path, lab_fleet_changed, poll, ssh, tree_digest

SERVICE, OTHER = "app1", "app3"
BOUND_ROOM_MIB = 128  # the bound: what app1's area holds, plus this
SENDER = Path(__file__).with_name("send_streams.py")


def mirror(lab_env) -> str:
    return lab_env["services"][SERVICE]["mirror"]


def group_bytes(lab_env, service: str) -> int:
    shown = ssh(lab_env, mirror(lab_env), "btrfs", "qgroup", "show", "-re", "--raw", "/srv")
    assert shown.returncode == 0, shown.stderr
    row = next(line.split() for line in shown.stdout.splitlines() if line.split()[:1] == [space.qgroup_id(service)])
    return int(row[1])


def free_bytes(lab_env) -> int:
    done = ssh(lab_env, mirror(lab_env), "df", "-B1", "--output=avail", "/srv")
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def current_data(lab_env) -> tuple[str, str]:
    row = copies.current_copy(SERVICE)
    path = host_path(lab_env, mirror(lab_env), copy_tree(SERVICE, row.id) + lab_env["services"][SERVICE]["data_path"])
    return row.id, tree_digest(path)


@pytest.fixture(scope="module")
def bounded(fleet, lab_env, tmp_path_factory) -> int:
    """app1 with shipping asked for and a bound of 128 MiB above what its area holds, replicated
    once; the bound in bytes. Earlier modules may have left app1 several large copies: one copy is
    kept first, so the bound is room for a stream whatever ran before."""

    def shipping_one_copy(data: dict) -> dict:
        next(s for s in data["services"] if s["name"] == SERVICE)["copies_to_keep"] = 1
        data["replication"] = {**(data.get("replication") or {}), "copy_backend": shipping.SHIPPING_PREFERENCE}
        return data

    with lab_fleet_changed(lab_env, tmp_path_factory.mktemp("fleet"), shipping_one_copy):
        assert replicate_service(SERVICE)["outcome"] == "ok"
    # squota frees a pruned copy's extents as btrfs cleans the subvolume up: a bounded wait
    assert ssh(lab_env, mirror(lab_env), "timeout", "60", "btrfs", "subvolume", "sync", "/srv").returncode == 0
    bound_mib = -(-group_bytes(lab_env, SERVICE) // space.MIB) + BOUND_ROOM_MIB

    def small(data: dict) -> None:
        shipping_one_copy(data)
        next(s for s in data["services"] if s["name"] == SERVICE)["space_gib"] = bound_mib / 1024

    with lab_fleet_changed(lab_env, tmp_path_factory.mktemp("fleet"), small):
        assert replicate_service(OTHER)["outcome"] == "ok"
        assert replicate_service(SERVICE)["outcome"] == "ok"
        yield bound_mib * space.MIB


def test_asked_for_shipping_is_bounded_by_simple_quotas_on_the_received_area(bounded, lab_env):
    store = copy_stores.store_of(SERVICE, mirror(lab_env))
    assert store.backend == shipping.SHIPPING, store.reason
    assert "inside the service's quota group" in store.reason, store.reason
    mode = ssh(lab_env, mirror(lab_env), "sh", "-c", 'cat "/sys/fs/btrfs/$(findmnt -n -o UUID --target /srv)/qgroups/mode"')
    assert mode.stdout.strip() == "squota", mode
    parents = ssh(lab_env, mirror(lab_env), "btrfs", "qgroup", "show", "-p", "--raw", "/srv").stdout
    area = shipping.received_area(SERVICE).removeprefix("/srv/")
    received = [line.split() for line in parents.splitlines() if area in line]
    # the area and every received subvolume in it are members of the service's group alone
    assert received and all(words[3] == space.qgroup_id(SERVICE) for words in received), parents


def _refused(lab_env) -> str:
    with pytest.raises(Exception) as refused:
        replicate_service(SERVICE)
    return str(refused.value)


def test_a_stream_of_data_past_the_bound_is_stopped_by_the_kernel(bounded, lab_env):
    held, free, other = group_bytes(lab_env, SERVICE), free_bytes(lab_env), group_bytes(lab_env, OTHER)
    before = current_data(lab_env)
    room = bounded - held
    assert room > 32 * space.MIB, held
    big = host_path(
        lab_env, lab_env["services"][SERVICE]["production"], lab_env["services"][SERVICE]["data_path"] + "/hostile.bin"
    )
    try:
        big.write_bytes(os.urandom(room + 48 * space.MIB))
        message = _refused(lab_env)
    finally:
        big.unlink(missing_ok=True)
    assert (
        f"replication of {SERVICE} refused: its area on {mirror(lab_env)} would pass its bound of {space.size_text(bounded)}"
        in message
    )
    assert space.QUOTA_EXCEEDED in message and "no other service's space was used" in message
    assert current_data(lab_env) == before
    assert group_bytes(lab_env, OTHER) == other
    # the kernel stopped the stream at the bound, and the half-received subvolume is gone again
    assert free_bytes(lab_env) > free - room - 16 * space.MIB
    poll(lambda: group_bytes(lab_env, SERVICE) <= held + 4 * space.MIB, 120, "the half-received subvolume to be freed")


# A compromised production: instead of its snapshot, a v2 stream of the expected name whose file
# is fallocated to 1 GiB (no data in the stream pays for it). The writer's source travels inside
# the program: production's namespace may not see this checkout (a private /tmp).
HOSTILE_SENDER = f"""#!/bin/sh
exec /usr/bin/python3 - "${{2##*/}}" 1073741824 <<'HOSTILE_STREAM_WRITER'
{SENDER.read_text()}
HOSTILE_STREAM_WRITER
"""


def test_a_v2_stream_fallocating_past_the_bound_is_stopped_by_the_kernel(bounded, lab_env, monkeypatch):
    held, free, other = group_bytes(lab_env, SERVICE), free_bytes(lab_env), group_bytes(lab_env, OTHER)
    before = current_data(lab_env)
    assert free > 1100 * space.MIB  # without the bound, the fallocate would succeed
    monkeypatch.setattr(shipping, "SEND_SCRIPT", HOSTILE_SENDER)  # what production runs as its sender
    message = _refused(lab_env)
    assert f"replication of {SERVICE} refused: its area on {mirror(lab_env)} would pass its bound" in message
    assert space.QUOTA_EXCEEDED in message
    assert current_data(lab_env) == before
    assert group_bytes(lab_env, OTHER) == other
    assert free_bytes(lab_env) > free - (bounded - held) - 16 * space.MIB
    poll(lambda: group_bytes(lab_env, SERVICE) <= held + 4 * space.MIB, 120, "the half-received subvolume to be freed")
    monkeypatch.undo()
    assert replicate_service(SERVICE)["outcome"] == "ok"  # the real sender ships again, inside the bound
    assert replicate_service(OTHER)["outcome"] == "ok"
