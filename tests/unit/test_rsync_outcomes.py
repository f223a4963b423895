"""rsync outcomes classified in one place; file names taken from real rsync runs on this machine."""

from __future__ import annotations

import pytest

from hotspare.planning import replication as plan
from hotspare.planning import verification as content
from hotspare.planning.rsync_outcomes import classify_rsync, failed_files, matches_any, rsync_exclude_args


@pytest.mark.parametrize(
    "status, stderr, kind",
    [
        (0, "", "ok"),
        (24, 'file has vanished: "/srv/app1/data/tmp.1"', "ok"),
        (1, "rsync: --bogus: unknown option", "permanent"),
        (2, "protocol version mismatch -- is your shell clean?", "permanent"),
        (
            11,
            'rsync: [receiver] write failed on "/srv/hotspare/app1/copies/x/tree/srv/app1/data/big": No space left on device (28)',
            "permanent",
        ),
        (12, "rsync: [receiver] write error: No space left on device (28)", "permanent"),
        (255, "Host key verification failed.", "permanent"),
        (255, "root@10.211.71.11: Permission denied (publickey).", "permanent"),
        (4, "rsync: The server is configured to refuse --files-from", "permanent"),
        (12, "hotspare transfer view (app1): cannot mount the view", "permanent"),
        (255, "ssh: connect to host 10.211.71.11 port 22: Connection timed out", "transient"),
        (12, "rsync: connection unexpectedly closed (0 bytes received so far) [sender]", "transient"),
        (30, "[sender] io timeout after 60 seconds -- exiting", "transient"),
        (10, "rsync error: error in socket IO (code 10)", "transient"),
    ],
)
def test_exit_status_and_message_decide_the_kind(status, stderr, kind):
    outcome = classify_rsync(status, stderr)
    assert outcome.kind == kind
    if kind != "ok":
        assert outcome.reason  # a sentence for the operator


def test_a_partial_transfer_names_the_files():
    stderr = "\n".join(
        [
            'rsync: [sender] send_files failed to open "/srv/app1/data/secret.db": Permission denied (13)',
            'rsync: [sender] read errors mapping "/srv/app1/data/disk.img": Input/output error (5)',
            "ERROR: srv/app1/data/live.log failed verification -- update discarded.",
            'rsync: [sender] link_stat "/srv/app1/gone" failed: No such file or directory (2)',
            "rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338) [generator=3.5.0]",
        ]
    )
    outcome = classify_rsync(23, stderr)
    assert outcome.kind == "partial"
    assert outcome.failed_paths == [
        "/srv/app1/data/secret.db",
        "/srv/app1/data/disk.img",
        "/srv/app1/data/live.log",
        "/srv/app1/gone",
    ]
    assert "Permission denied" in outcome.reason and "/srv/app1/data/secret.db" in outcome.reason


def test_files_read_through_the_transfer_module_are_named_by_their_absolute_paths():
    """rsync's daemon adds the module's name after the path; the path is the absolute one."""
    stderr = "\n".join(
        [
            'rsync: [sender] link_stat "/srv/app1/gone" (in hotspare) failed: No such file or directory (2)',
            'rsync: [sender] send_files failed to open "/srv/app1/data/secret.db" (in hotspare): Permission denied (13)',
        ]
    )
    outcome = classify_rsync(23, stderr)
    assert outcome.failed_files == (
        ("/srv/app1/gone", "No such file or directory (2)"),
        ("/srv/app1/data/secret.db", "Permission denied (13)"),
    )


def test_unreadable_files_always_fail_verification_unless_fuzzy():
    itemized = [("content", "/srv/app1/data/a"), ("unreadable", "/srv/app1/data/live.log"), ("unreadable", "/srv/app1/data/b")]
    report = content.classify_differences(itemized, {"/srv/app1/data/a": 100.0}, copy_started=50.0, fuzzy=["*.log"])
    assert [d.path for d in report.corrupt] == ["/srv/app1/data/b"]  # unreadable: nothing was compared
    assert [d.path for d in report.changed_during_copy] == ["/srv/app1/data/a"]
    assert [d.path for d in report.tolerated] == ["/srv/app1/data/live.log"]
    assert failed_files("") == []


@pytest.mark.parametrize(
    "path, patterns, expected",
    [
        ("/srv/app1/data/cache/x/y", ["/srv/app1/data/cache"], True),
        ("/srv/app1/data/cachex", ["/srv/app1/data/cache"], False),
        ("/srv/app1/data/run/app.sock", ["*.sock"], True),
        ("/srv/app1/data/tmp/a.tmp", ["/srv/app1/data/tmp/*"], True),
        ("/srv/app1/data/a.db", ["*.sock", "/srv/app1/data/cache"], False),
    ],
)
def test_patterns_match_folders_and_globs(path, patterns, expected):
    assert matches_any(path, patterns) is expected


def test_excludes_reach_copy_verify_and_repair_identically():
    peer = plan.peer_access("t", "root", "10.211.71.11", 22)
    excludes = ["/srv/app1/data/cache", "*.sock"]
    wanted = rsync_exclude_args(excludes)
    assert wanted == ["--exclude=/srv/app1/data/cache", "--exclude=*.sock"]
    for argv in (
        plan.rsync_copy_argv(peer, ["/srv/app1/data"], "/t", None, excludes),
        plan.rsync_verify_argv(peer, ["/srv/app1/data"], "/t", excludes),
        plan.rsync_repair_argv(peer, ["/srv/app1/data/x"], "/t", excludes),
    ):
        assert [arg for arg in argv if arg.startswith("--exclude")] == wanted
        assert argv.index(wanted[-1]) < argv.index(next(a for a in argv if a.startswith("root@")))


def test_files_rsync_did_not_compare_are_found_from_the_listings():
    tree = "/srv/hotspare/app1/copies/c1/tree"
    production = (
        "100.0\t/srv/app1/data/a\n100.0\t/srv/app1/data/dropped\n300.0\t/srv/app1/data/new\n100.0\t/srv/app1/data/cache/x\n"
    )
    copy = f"100.0\t{tree}/srv/app1/data/a\n"
    itemized = [("missing", "/srv/app1/data/new")]
    # "dropped": rsync -c left it out of its list without a word (unreadable); "new" was named;
    # the excluded cache is not expected in the copy
    assert content.not_compared(production, copy, tree, itemized, ["/srv/app1/data/cache"]) == {"/srv/app1/data/dropped": 100.0}
    assert content.file_listing_argv(["/srv/app1/data"]) == ["find", "/srv/app1/data", "-type", "f", "-printf", "%T@\t%p\n"]


def test_restore_proofs_leave_excluded_files_out_of_both_sides():
    from hotspare.planning.manifests import compare_manifests

    expected = {"srv/app1/data/a": "1", "srv/app1/data/cache/page": "2", "srv/app1/data/run/app.sock": "3"}
    actual = {"srv/app1/data/a": "1"}  # restic did not back the excluded files up
    comparison = compare_manifests(expected, actual, excludes=["/srv/app1/data/cache", "*.sock"])
    assert comparison.identical and comparison.files_checked == 1
    assert not compare_manifests(expected, actual).identical  # without the patterns: missing files
