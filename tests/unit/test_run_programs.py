"""The joined programs of a replication run here, in a scratch folder (no lab): each step's
commands in one program, markers that say what was done, and the parsers that read them."""

from __future__ import annotations

import subprocess

from hotspare.planning import replication as plan
from hotspare.planning import run_programs as programs
from hotspare.planning import shipped_verification as checks
from hotspare.planning.accounts import ACCOUNT_FILES


def run(argv: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=30)


def test_written_files_are_new_files_renamed_over_the_old_ones(tmp_path):
    old = tmp_path / "etc" / "passwd"
    old.parent.mkdir()
    old.write_text("old\n")
    linked = tmp_path / "linked"
    linked.hardlink_to(old)  # an older copy's file: must keep its bytes
    result = run(programs.write_files_argv([str(old), str(tmp_path / "new" / "group")]), b"a:x:1\n\0b:x:2\n\0")
    assert result.returncode == 0, result.stderr
    assert old.read_text() == "a:x:1\n" and linked.read_text() == "old\n"
    assert (tmp_path / "new" / "group").read_text() == "b:x:2\n"
    assert oct((tmp_path / "new" / "group").stat().st_mode & 0o777) == "0o600"


def test_a_short_stdin_writes_nothing(tmp_path):
    result = run(programs.write_files_argv([str(tmp_path / "a"), str(tmp_path / "b")]), b"only one\0")
    assert result.returncode != 0 and not list(tmp_path.iterdir())


def test_preflight_output_splits_into_facts_and_account_files():
    files = b"".join(f"{path} text\n".encode() + b"\0" for path in ACCOUNT_FILES)
    facts, accounts = programs.split_account_files(b"sizes\n12\nclock=5.5\n" + programs.ACCOUNTS_MARK.encode() + b"\n" + files)
    assert facts.endswith("clock=5.5\n") and accounts["/etc/shadow"] == "/etc/shadow text\n"
    # a NUL inside a file: the files did not arrive whole, the facts still did
    facts, accounts = programs.split_account_files(b"clock=1\n" + programs.ACCOUNTS_MARK.encode() + b"\nx\0y\0")
    assert accounts is None and "clock=1" in facts


def test_the_preparation_says_the_quota_and_reads_the_account_files_back(tmp_path):
    files = b"".join(b"line\n\0" for _ in ACCOUNT_FILES)
    output = (
        b"referenced=10\nlimit=99\n" + programs.QUOTA_MARK.encode() + b"0\n" + programs.ACCOUNTS_MARK.encode() + b"\n" + files
    )
    prepared = programs.parse_prepared(output)
    assert prepared.quota_status == 0 and "referenced=10" in prepared.quota_output
    assert prepared.mirror_accounts == {path: "line\n" for path in ACCOUNT_FILES}


def test_the_transfer_takes_the_snapshot_only_when_rsync_let_the_copy_go_on(tmp_path):
    peer = plan.PeerAccess(str(tmp_path / "run"), "", "", "root", "127.0.0.1", 22)
    marker = tmp_path / "snapshot"
    for status, made in ((0, True), (23, True), (24, True), (12, False)):
        marker.unlink(missing_ok=True)
        argv = plan.with_peer_access_then(peer, ["sh", "-c", f"exit {status}"], ["touch", str(marker)])
        result = run(argv, b"known-hosts-line\nKEY\n")
        assert result.returncode == status
        assert plan.snapshot_made(result.stdout.decode()) is made and marker.exists() is made
        assert not (tmp_path / "run").exists()  # the key folder is gone whatever happened


def test_the_finish_markers_say_what_was_done():
    done = programs.parse_finished(f"{programs.PROMOTED_MARK}\n{programs.ACCOUNTS_EXIT_MARK}75\n")
    assert done.promoted and done.accounts_status == 75 and done.pruned == ()
    done = programs.parse_finished(f"{programs.PROMOTED_MARK}\n{programs.PRUNED_MARK}app1-1\n{programs.PRUNED_MARK}app1-2\n")
    assert done.accounts_status is None and done.pruned == ("app1-1", "app1-2")
    assert not programs.parse_finished("").promoted


def test_scrub_counters_become_a_sentence_and_uncorrectable_damage_a_problem():
    clean = checks.parse_scrub("scrub=ran\nscrub-status=aborted\nscrub-data_bytes_scrubbed=4096\nscrub-csum_errors=0\n")
    assert clean.problems == [] and "4096 bytes" in clean.sentence and "resumes at the next shipment" in clean.sentence
    damaged = checks.parse_scrub("scrub=ran\nscrub-status=finished\nscrub-csum_errors=3\nscrub-uncorrectable_errors=2\n")
    assert damaged.problems and "uncorrectable errors 2" in damaged.problems[0]
    assert checks.parse_scrub("scrub=unavailable\n").sentence == "no btrfs scrub on the mirror"
