"""The copy back-end planner: facts in, back-end and commands out (no lab)."""

from __future__ import annotations

from hotspare.planning import copy_backends as backends
from hotspare.planning.replication import PeerAccess, rsync_copy_argv

BTRFS = backends.StoreFacts("btrfs", True, "subvolume")


def test_facts_parse_from_the_probe_output():
    facts = backends.parse_store_facts("filesystem=btrfs\ntool=yes\nwork=absent\n")
    assert facts == backends.StoreFacts("btrfs", True, "absent")
    assert backends.parse_store_facts("filesystem=ext2/ext3\ntool=no\nwork=absent\n").filesystem == "ext2/ext3"


def test_btrfs_with_the_tool_gives_snapshots_everything_else_hard_links():
    assert backends.choose_backend(BTRFS).backend == backends.SNAPSHOT
    for facts, said in [
        (backends.StoreFacts("ext2/ext3", True, "absent"), "ext2/ext3, not btrfs"),
        (backends.StoreFacts("overlayfs", False, "absent"), "overlayfs"),
        (backends.StoreFacts("btrfs", False, "absent"), "btrfs-progs is not installed"),
        (backends.StoreFacts("btrfs", True, "folder"), "not a btrfs subvolume"),
    ]:
        choice = backends.choose_backend(facts)
        assert choice.backend == backends.HARD_LINKS and said in choice.reason
    assert backends.choose_backend(BTRFS, "hard-links").backend == backends.HARD_LINKS
    # a wish never overrides a fact
    assert backends.choose_backend(backends.StoreFacts("xfs", True, "absent"), "btrfs-snapshot").backend == backends.HARD_LINKS


def test_a_missing_working_subvolume_starts_from_the_newest_snapshot_copy():
    absent = backends.StoreFacts("btrfs", True, "absent")
    [from_copy] = backends.prepare_work_argvs("shop", absent, "shop-1", ["/srv/shop/data"])
    assert from_copy[4:] == ["/srv/hotspare/shop/work", "/srv/hotspare/shop/copies/shop-1", "/srv/shop/data"]
    [empty] = backends.prepare_work_argvs("shop", absent, None, ["/srv/shop/data"])
    assert empty[4:] == ["/srv/hotspare/shop/work", "", "/srv/shop/data"]
    # an existing working subvolume is kept by the program; the baseline is handed over all the same, for
    # its missing data-path subvolumes and for a working tree removed during the run (space_recovery)
    assert backends.prepare_work_argvs("shop", BTRFS, "shop-1", ["/srv/shop/data"])[0][5] == "/srv/hotspare/shop/copies/shop-1"


def test_snapshot_and_removal_commands_name_only_the_service_folders():
    argv = backends.snapshot_copy_argv("shop", "shop-2", ["/srv/shop/data"])
    assert argv[2:4] == ["sh", "-c"] and argv[-3:] == [
        "/srv/hotspare/shop/work",
        "/srv/hotspare/shop/copies/shop-2",
        "/srv/shop/data",
    ]
    assert "snapshot -r" in argv[4] and argv[1] == "REMOVE=" + backends.REMOVE_SCRIPT
    assert backends.remove_copy_argv("shop", "shop-2")[-1] == "/srv/hotspare/shop/copies/shop-2"
    assert backends.copy_target_tree("shop", "shop-2", backends.SNAPSHOT) == "/srv/hotspare/shop/work/tree"
    assert backends.copy_target_tree("shop", "shop-2", backends.HARD_LINKS) == "/srv/hotspare/shop/copies/shop-2/tree"


def test_a_working_tree_beside_hard_linked_copies_copies_never_links():
    peer = PeerAccess("/run/hotspare/t", "/run/hotspare/t/key", "/run/hotspare/t/kh", "root", "10.0.0.1", 22)
    argv = rsync_copy_argv(peer, ["/srv/a"], "/srv/hotspare/a/work/tree", None, copy_dest="/srv/hotspare/a/copies/a-1/tree")
    assert "--copy-dest=/srv/hotspare/a/copies/a-1/tree" in argv and not any(a.startswith("--link-dest") for a in argv)
    assert "--copy-dest=/" in rsync_copy_argv(peer, ["/srv/a"], "/t", None)


def test_a_backend_change_is_said():
    choice = backends.choose_backend(BTRFS)
    assert "changes from hard-links to btrfs-snapshot" in backends.judge_backend_switch("hard-links", choice).reason
    assert backends.judge_backend_switch("btrfs-snapshot", choice).reason == choice.reason


def test_activation_swaps_snapshots_and_keeps_what_stood_there():
    from hotspare.planning import activation

    argv = activation.clone_swap_argv("/srv/hotspare/shop/copies/shop-2/tree", "/srv/shop/data", "shop-2")
    assert argv[-3:] == ["/srv/hotspare/shop/copies/shop-2/tree/srv/shop/data", "/srv/shop/data", "shop-2"]
    result = activation.judge_clone_outcomes(
        {
            "/srv/shop/data": (0, "kept /srv/shop/.hotspare-replaced-shop-2-data\ncloned /srv/shop/data\n"),
            "/srv/shop/app": (3, ""),
            "/etc/shop": (4, ""),
        }
    )
    assert result.cloned == ("/srv/shop/data",) and result.rsync_paths == ("/srv/shop/app",)
    assert result.kept_aside == ("/srv/shop/.hotspare-replaced-shop-2-data",) and result.absent == ("/etc/shop",)
    import pytest

    from hotspare.adapters.errors import PermanentError

    with pytest.raises(PermanentError):
        activation.clone_swap_argv("/srv/hotspare/shop/copies/shop-2/tree", "/etc", "shop-2")
    with pytest.raises(PermanentError):
        activation.judge_clone_outcomes({"/srv/shop/data": (1, "mv: cannot move")})
    assert result.kept_pairs == (("/srv/shop/.hotspare-replaced-shop-2-data", "/srv/shop/data"),)


def test_activation_stages_the_clone_for_cleaning_before_the_swap():
    import pytest

    from hotspare.adapters.errors import PermanentError
    from hotspare.planning import activation

    tree = "/srv/hotspare/shop/copies/shop-2/tree"
    assert activation.stage_argv(tree, "/srv/shop/data", "shop-2")[-2:] == [tree + "/srv/shop/data", "/srv/shop/data"]
    assert activation.swap_argv(tree, "/srv/shop/data", "shop-2")[-2:] == ["/srv/shop/data", "shop-2"]
    assert activation.staged_path("/srv/shop/data") == "/srv/shop/.hotspare-incoming-data"
    for argv_of in (activation.stage_argv, activation.swap_argv):
        with pytest.raises(PermanentError):
            argv_of(tree, "/etc", "shop-2")


def test_fleet_run_starts_services_within_every_bound():
    from hotspare.planning.fleet_replication import Bounds, Job, startable

    jobs = [Job("a", "p1", "m1"), Job("b", "p1", "m1"), Job("c", "p2", "m1"), Job("d", "p3", "m2")]
    assert [job.service for job in startable(jobs, [], Bounds(2, 1, 2))] == ["a", "c"]  # b waits for p1
    assert [job.service for job in startable(jobs[1:], [jobs[0]], Bounds(3, 1, 1))] == ["d"]  # m1 full
    assert startable(jobs, jobs[:2], Bounds(2, 2, 2)) == []  # overall bound reached
