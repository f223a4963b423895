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


def test_a_parent_changed_on_production_after_it_was_taken_is_never_a_parent():
    production, mirror = facts(snapshots=[(DATA, "data@shop-3", "u3")], received=[("data@shop-3", "u3")])
    production = shipping.ShippingFacts(production.subvolumes, production.snapshots, frozenset({(DATA, "data@shop-3")}))
    result = shipping.plan_shipping("shop-4", [DATA], ROOTS, production, mirror, snapshot_copies=True)
    assert not result.ship and "data@shop-3 of /srv/shop/data changed after it was taken" in result.reason
    assert result.stale == ("data@shop-3",)  # the chain is dropped: the next copy ships in full


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
        "missing=/x\nship_subvolume=/srv/shop/data\nship_snapshot=/srv/shop/data data@shop-1 u1 kept\n"
        "ship_snapshot=/srv/shop/data data@shop-2 u2 changed\n"
    )
    assert production.subvolumes == {DATA}
    assert production.snapshots == ((DATA, "data@shop-1", "u1"), (DATA, "data@shop-2", "u2"))
    assert production.changed == {(DATA, "data@shop-2")}
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
    # a budget spent at once still hashes the first file whole: a big file never stalls the pass
    files, end = run("", budget=0)
    assert files == [f"{DATA}/a/1"] and end == checks.SliceEnd(False, f"{DATA}/a/1")
    files, end = run(f"{DATA}/a/1", budget=0)
    assert files == [f"{DATA}/a/2"] and end == checks.SliceEnd(False, f"{DATA}/a/2")


def _walk(files: dict[str, str], stop: str | None = None) -> str:
    """A host's slice output: ``files`` {path: sha256 or "!error"} in order, then its end."""
    import json

    lines = []
    for path, digest in files.items():
        if digest.startswith("!"):
            lines.append({"path": path, "error": digest[1:]})
        else:
            lines.append({"path": path, "sha256": digest, "mode": 0o100644, "uid": 0, "gid": 0, "size": 1, "mtime": 1.0})
    lines.append({"slice": {"complete": stop is None, "cursor": stop or ""}})
    return "".join(json.dumps(line) + "\n" for line in lines)


def test_the_slices_are_compared_up_to_the_shorter_walk():
    a, b, c, d = (f"{DATA}/{name}" for name in ("a/1", "a.txt", "b/2", "c"))
    production = _walk({a: "1", b: "2", c: "3"}, stop=c)
    mirror = _walk({a: "1", b: "X"}, stop=b)  # the mirror walked less far: c is compared next time
    result = checks.compare_slices(production, mirror, "")
    assert result.files == (a, b) and result.itemized == (("content", b),)
    assert result.end == checks.SliceEnd(False, b)
    # both complete: everything either named is compared; one side's file alone is a difference
    result = checks.compare_slices(_walk({c: "3"}), _walk({c: "3", d: "4"}), b)
    assert result.itemized == (("extra", d),) and result.end == checks.SliceEnd(True, "")
    result = checks.compare_slices(_walk({c: "3", d: "!Input/output error"}), _walk({}), b)
    assert result.itemized == (("missing", c), ("unreadable", d))


def test_a_walk_that_said_nothing_keeps_the_cursor_and_an_answer_before_it_is_ignored():
    a, b, c = (f"{DATA}/{name}" for name in ("a", "b", "c"))
    result = checks.compare_slices("Killed\n", _walk({b: "2", c: "3"}), a)
    assert result.files == () and result.end == checks.SliceEnd(False, a)
    # a host naming files before the cursor (not asked for) is not compared on them
    result = checks.compare_slices(_walk({a: "evil", b: "2"}, stop=b), _walk({b: "2"}, stop=b), a)
    assert result.files == (b,) and result.itemized == () and result.end == checks.SliceEnd(False, b)
