"""The plans that let a service at its space bound finish, prune and recover its copies: pure
argument lists, the parser of what the mirror removed, and the sentences (the lab test
``tests/test_space_recovery.py`` runs them against the kernel)."""

from __future__ import annotations

from hotspare.planning import copy_backends, space
from hotspare.planning import space_recovery as recovery


def test_a_metadata_step_runs_with_the_services_own_limit_lifted_and_set_again():
    removal = copy_backends.remove_copy_argv("shop", "shop-1")
    argv = recovery.under_lifted_limit("shop", removal)
    assert argv[:3] == ["sh", "-c", recovery.LIFTED_LIMIT_SCRIPT]
    assert argv[3:6] == ["sh", "/srv/hotspare/shop", space.qgroup_id("shop")] and argv[6:] == removal
    script = recovery.LIFTED_LIMIT_SCRIPT
    # the limit set again is the one the kernel showed, on every way out but SIGKILL
    assert script.index('btrfs qgroup limit none "$group"') < script.index('"$@"; status=$?')
    assert 'trap \'btrfs qgroup limit "$limit" "$group" "$root"\' EXIT' in script
    assert 'trap "exit 1" HUP INT TERM PIPE' in script
    assert 'case $limit in ""|none) exec "$@";; esac' in script  # no group, no limit: nothing to lift


def test_making_room_removes_only_the_copies_named_and_the_working_tree_when_asked():
    argv = recovery.make_room_argv("shop", ["shop-1", "shop-2"], reset_work=True)
    inner = argv[6:]
    assert inner[0] == "env" and inner[1] == f"REMOVE={copy_backends.REMOVE_SCRIPT}"
    assert inner[-4:] == [
        "/srv/hotspare/shop",
        "/srv/hotspare/shop/work",
        "/srv/hotspare/shop/copies/shop-1",
        "/srv/hotspare/shop/copies/shop-2",
    ]
    assert recovery.make_room_argv("shop", [], reset_work=False)[-2:] == ["/srv/hotspare/shop", ""]
    made = recovery.parse_room_made(f"{recovery.ROOM_MARK}shop-1\nnoise\n{recovery.ROOM_MARK}work\n")
    assert made == recovery.RoomMade(("shop-1",), True)
    assert recovery.parse_room_made("") == recovery.RoomMade((), False)


def test_room_is_made_only_when_something_may_go():
    assert recovery.should_make_room(["shop-1"], False) and recovery.should_make_room([], True)
    assert not recovery.should_make_room([], False)  # a shipped copy's area with nothing beyond retention


def test_the_sentences_say_what_went_and_what_the_operator_can_do():
    made = recovery.RoomMade(("shop-1", "shop-2"), True)
    said = recovery.room_sentence("shop", "mirror-west", made, 2)
    assert "removed 2 copies beyond copies_to_keep (2): shop-1, shop-2" in said and "removed the working tree" in said
    detail = recovery.still_over_detail(90 * space.MIB, 22 * space.MIB, recovery.RoomMade((), True), 3)
    assert detail.startswith("it holds 90.0 MiB after removing the working tree and this copy needs about 22.0 MiB")
    assert "copies_to_keep is 3, and lowering it takes effect on the next run" in detail
    assert "never the current one" in detail
    plain = recovery.still_over_detail(90 * space.MIB, 22 * space.MIB, recovery.RoomMade((), False), 1)
    assert plain.startswith("it holds 90.0 MiB and this copy")
