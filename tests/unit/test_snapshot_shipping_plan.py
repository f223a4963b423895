"""Snapshot shipping's planner: facts in, a decision and argument lists out (no lab)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hotspare.planning import shipped_verification as checks
from hotspare.planning import snapshot_shipping as shipping
from hotspare.planning import transfer_keys

DATA = "/srv/shop/data"
ROOTS = [DATA, "/srv/shop/app", "/etc/shop"]


def facts(snapshots=(), received=(), area="subvolume", subvolumes=(DATA,)):
    production = shipping.ShippingFacts(frozenset(subvolumes), tuple(snapshots))
    return production, shipping.ShippingFacts(area=area, received=tuple(received))


def test_a_first_shipment_is_a_full_send_and_the_rest_goes_by_rsync():
    result = shipping.plan_shipping("shop-2", [DATA], ROOTS, *facts(), snapshot_copies=True)
    assert result.ship and "in full (first shipment)" in result.reason
    [shipment] = result.shipments
    assert shipment.snapshot == "/srv/shop/.hotspare-snapshots/data@shop-2" and shipment.parent is None
    assert result.rest == ("/srv/shop/app", "/etc/shop")


def test_the_parent_is_the_newest_snapshot_both_ends_hold_by_uuid():
    result = shipping.plan_shipping(
        "shop-4",
        [DATA],
        ROOTS,
        *facts(
            snapshots=[(DATA, "data@shop-1", "u1"), (DATA, "data@shop-2", "u2"), (DATA, "data@shop-3", "u3")],
            received=[("data@shop-1", "u1"), ("data@shop-2", "u2"), ("data@shop-3", "-")],
        ),
        snapshot_copies=True,
    )
    [shipment] = result.shipments
    # shop-3 never finished receiving (no received UUID): shop-2 is the newest common one
    assert shipment.parent == "/srv/shop/.hotspare-snapshots/data@shop-2" and shipment.parent_name == "data@shop-2"
    assert shipping.send_words(result.shipments) == ["/srv/shop/.hotspare-snapshots/data@shop-4", shipment.parent]


def test_a_broken_chain_falls_back_to_rsync_and_clears_the_way_for_a_full_send():
    result = shipping.plan_shipping(
        "shop-4",
        [DATA],
        ROOTS,
        *facts(snapshots=[(DATA, "data@shop-3", "other")], received=[("data@shop-3", "u3")]),
        snapshot_copies=True,
    )
    assert not result.ship and "missing on production or on the mirror" in result.reason
    assert result.stale == ("data@shop-3",)


@pytest.mark.parametrize(
    "change, said",
    [
        (dict(subvolumes=()), "is not a btrfs subvolume on production"),
        (dict(area="folder"), "is a folder, not a subvolume"),
    ],
)
def test_facts_that_forbid_shipping_are_said(change, said):
    result = shipping.plan_shipping("shop-2", [DATA], ROOTS, *facts(**change), snapshot_copies=True)
    assert not result.ship and said in result.reason
    assert not shipping.plan_shipping("shop-2", [DATA], ROOTS, *facts(), snapshot_copies=False).ship
    overlapping = shipping.plan_shipping("shop-2", [DATA], [*ROOTS, "/srv/shop"], *facts(), snapshot_copies=True)
    assert not overlapping.ship and "overlaps" in overlapping.reason


def test_facts_parse_from_the_scripts_lines():
    production = shipping.parse_production_facts(
        "missing=/x\nship_subvolume=/srv/shop/data\nship_snapshot=/srv/shop/data data@shop-1 u1\n"
    )
    assert production.subvolumes == {DATA} and production.snapshots == ((DATA, "data@shop-1", "u1"),)
    mirror = shipping.parse_mirror_facts("baseline=shop-1\nreceived_area=subvolume\nreceived=data@shop-1 u1\n")
    assert mirror.area == "subvolume" and mirror.received == (("data@shop-1", "u1"),)


def test_the_send_key_forces_a_fixed_sender_of_those_snapshots_only():
    key = transfer_keys.transfer_key_line(
        "ssh-ed25519 AAAA",
        service="shop",
        tag="t",
        source_address="10.0.0.2",
        paths=["/srv/shop/.hotspare-snapshots/data@shop-2", "-"],
        now=datetime(2026, 1, 1, tzinfo=timezone.utc),
        program=shipping.SEND_PATH,
    )
    assert f'command="{shipping.SEND_PATH} shop /srv/shop/.hotspare-snapshots/data@shop-2 -"' in key.line
    assert key.line.startswith('restrict,from="10.0.0.2"')
    with pytest.raises(ValueError):  # "-" stands for "no parent" only for the sender
        transfer_keys.transfer_key_line(
            "ssh-ed25519 AAAA",
            service="shop",
            tag="t",
            source_address="10.0.0.2",
            paths=["-"],
            now=datetime(2026, 1, 1, tzinfo=timezone.utc),
        )
    assert "SSH_ORIGINAL_COMMAND" not in shipping.SEND_SCRIPT


def test_the_receive_runs_on_its_own_subvolume_mount_chrooted():
    argv = shipping.receive_argv("/srv/hotspare/shop/received")
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert "mount --bind" in argv[-4] and "--chroot -E 1" in argv[-4]
    assert argv[-2:] == ["/srv/hotspare/shop/received", shipping.RECEIVE_VIEW]


def test_receive_reports_and_the_chain_judgement():
    received = shipping.parse_received("x\nhotspare-receive-exit=0\nhotspare-unexpected=evil\nhotspare-receive: boom\n")
    assert received == shipping.Received(0, ("evil",), ("boom",))
    assert shipping.stream_bytes("hotspare-stream-bytes=1234\n") == 1234
    assert shipping.judge_chain(f"chain={DATA} own u1 own\n", {DATA: "u1"}) == []
    assert "received UUID is other" in shipping.judge_chain(f"chain={DATA} own other own\n", {DATA: "u1"})[0]
    assert "not a snapshot of the received" in shipping.judge_chain(f"chain={DATA} own u1 else\n", {DATA: "u1"})[0]


def test_the_slice_walks_in_order_from_its_cursor_within_its_budget(tmp_path):
    import subprocess

    snapshot = tmp_path / "snap"
    for name in ["a/1", "a/2", "a.txt", "b/c/3", "d"]:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text(name)

    def run(cursor, budget=10.0):
        output = subprocess.run(
            checks.slice_argv(budget, cursor, {DATA: str(snapshot)}), capture_output=True, text=True, check=True
        ).stdout
        from hotspare.planning.file_digests import parse_digests

        return list(parse_digests(output)), checks.parse_slice_end(output, cursor)

    files, end = run("")
    assert files == [f"{DATA}/a/1", f"{DATA}/a/2", f"{DATA}/a.txt", f"{DATA}/b/c/3", f"{DATA}/d"]
    assert end == checks.SliceEnd(True, "")
    files, end = run(f"{DATA}/a/2")
    assert files == [f"{DATA}/a.txt", f"{DATA}/b/c/3", f"{DATA}/d"]
    files, end = run("", budget=0)
    assert files == [] and end == checks.SliceEnd(False, "")
