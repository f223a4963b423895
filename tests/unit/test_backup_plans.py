"""Backup planning without the lab: run keys, storage accounts, restic's errors and summaries,
manifests, rolling check subsets, restore proofs and temporary logins (the lab side is
tests/test_backup.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hotspare.planning import accounts as account_plan
from hotspare.planning import manifests as manifest_plan
from hotspare.planning import rebuild as rebuild_plan
from hotspare.planning import restic as restic_plan
from hotspare.planning import shell_programs as shell
from hotspare.planning import temporary_accounts as login_plan


def test_manifest_comparison_names_every_difference():
    expected = {"srv/a": "1" * 64, "srv/b": "2" * 64, "srv/c": "3" * 64, "run/m/.hotspare-manifest": "x"}
    actual = {"srv/a": "1" * 64, "srv/b": "9" * 64, "srv/d": "4" * 64}
    comparison = manifest_plan.compare_manifests(expected, actual, ignore=["run/m/.hotspare-manifest"])
    assert (comparison.missing, comparison.changed, comparison.unexpected) == (("srv/c",), ("srv/b",), ("srv/d",))
    assert not comparison.identical and comparison.files_checked == 3
    assert manifest_plan.compare_manifests(expected, dict(expected)).identical


def test_manifest_parsing_keeps_odd_file_names():
    data = ("a" * 64 + "  srv/x y\nz\0" + "b" * 64 + "  srv/plain\0").encode()
    assert manifest_plan.parse_manifest(data) == {"srv/x y\nz": "a" * 64, "srv/plain": "b" * 64}


def test_rolling_check_subsets_wrap_round():
    assert [restic_plan.next_subset(last, 3) for last in (None, 1, 2, 3, 7)] == [1, 2, 3, 1, 1]


def test_scratch_removal_refuses_paths_outside_its_base():
    assert (
        shell.remove_tree("/var/tmp/hotspare-restore/app1-x", rebuild_plan.RESTORE_BASE)[-1] == "/var/tmp/hotspare-restore/app1-x"
    )
    for bad in ("/", "/var/tmp/hotspare-restore", "/var/tmp/hotspare-restore/../etc", "/etc"):
        with pytest.raises(ValueError):
            shell.remove_tree(bad, rebuild_plan.RESTORE_BASE)


def _grant(**changes):
    from hotspare.planning.storage_accounts import StorageGrant

    values = dict(
        service="app1",
        run_name="run1",
        storage_server="storage",
        storage_address="10.0.0.31",
        storage_port=2222,
        known_hosts_line="[10.0.0.31]:2222 ssh-ed25519 AAAA\n",
        repository_path="/srv/backup/app1",
        client_server="prod-east",
        client_address="10.0.0.11",
        expires_at="20260101120000Z",
    )
    values.update(changes)
    return StorageGrant(**values)


def test_restic_reaches_the_repository_as_the_services_chrooted_account_with_a_pinned_host_key():
    grant = _grant()
    argv = grant.restic("snapshots")
    assert argv[:3] == ["restic", "-r", "sftp:hsb-app1@10.0.0.31:/"]  # "/" is the repository inside the chroot
    command = argv[4]
    for option in (
        "BatchMode=yes",
        "IdentitiesOnly=yes",
        "StrictHostKeyChecking=yes",
        f"UserKnownHostsFile={grant.known_hosts_path}",
        "-p 2222",
        "-s sftp",
    ):
        assert option in command
    assert grant.key_path.startswith("/run/hotspare/storage/app1@10.0.0.31/run1/")
    assert "password" not in " ".join(argv).lower()


def test_a_run_key_is_scoped_to_one_host_one_account_and_expires():
    from hotspare.planning import storage_accounts as accounts

    grant = _grant()
    line = grant.authorized_line("ssh-ed25519 AAAAC3Nza hotspare-run=app1/run1")
    assert line == ('restrict,from="10.0.0.11",expiry-time="20260101120000Z" ssh-ed25519 AAAAC3Nza hotspare-run=app1/run1')
    assert grant.keys_file == "/etc/hotspare/backup-keys/hsb-app1"
    # the next run removes every per-run key (marker), its own run removes exactly its own
    assert grant.authorize("ssh-ed25519 AAAAC3Nza x")[-1] == accounts.RUN_MARKER
    assert grant.revoke()[-1] == "hotspare-run=app1/run1"
    assert accounts.account_name("a" * 63).startswith("hsb-") and len(accounts.account_name("a" * 63)) == 32
    block = accounts.sshd_match_block()
    assert "ChrootDirectory %h" in block and "ForceCommand internal-sftp -P " in block
    for request in ("setstat", "symlink", "hardlink", "posix-rename"):
        assert request in block


def test_repository_errors_are_classified():
    assert restic_plan.repository_missing("Fatal: unable to open config file: stat /srv/backup/x/config: no such file")
    assert not restic_plan.repository_missing("Fatal: wrong password or no key found")
    assert restic_plan.restic_error_is_transient("unable to create lock in backend: repository is already locked by PID 1")
    assert not restic_plan.restic_error_is_transient("Fatal: wrong password or no key found")


def test_accounts_are_recreated_idempotently_and_clashes_refused():
    wanted_groups = [account_plan.Group("web", 2001, ()), account_plan.Group("batch", 2002, ("web",))]
    wanted = [
        account_plan.Account("web", 2001, 2001, "", "/home/web", "/bin/sh"),
        account_plan.Account("batch", 2002, 2002, "", "/home/batch", "/bin/sh"),
    ]
    commands, _ = login_plan.account_commands(wanted_groups, wanted, [], [])
    assert [c[0] for c in commands] == ["groupadd", "groupadd", "useradd", "useradd", "gpasswd"]
    again, sentences = login_plan.account_commands(wanted_groups, wanted, wanted_groups, wanted)
    assert again == [["gpasswd", "--members", "web", "batch"]] and all("already exists" in s for s in sentences)
    with pytest.raises(shell.PlanRefused, match="taken by other"):
        login_plan.account_commands([], wanted, [], [account_plan.Account("other", 2001, 2001, "", "/", "/bin/sh")])


def test_temporary_logins_expire_no_earlier_than_promised():
    created = datetime(2026, 1, 1, 23, 30, tzinfo=timezone.utc)
    (login,) = login_plan.temporary_accounts([account_plan.Account("web", 2001, 2001, "", "/home/web", "/bin/sh")], created, 72)
    assert login.name == "tmp-web" and login.expires_at == created + timedelta(hours=72)
    assert login.expire_date == "2026-01-05"
    create = login_plan.temporary_account_commands(login, exists=False)
    assert create[0][:4] == ["useradd", "--non-unique", "--uid", "2001"]
    assert login_plan.disable_account_commands("tmp-web") == [
        ["usermod", "--lock", "--expiredate", "1", "tmp-web"],
        ["chage", "--expiredate", "0", "tmp-web"],
    ]


def test_standby_choice_prefers_idle_hosts_away_from_the_loss():
    candidates = [
        rebuild_plan.StandbyCandidate("standby-east", "east", "10.0.0.21", "ok", True),
        rebuild_plan.StandbyCandidate("standby-west", "west", "10.0.0.22", "ok", True),
        rebuild_plan.StandbyCandidate("standby-north", "north", "10.0.0.23", "failed", True),
    ]
    assert rebuild_plan.choose_standby(candidates, {"east"}).name == "standby-west"
    assert rebuild_plan.choose_standby(candidates, {"east", "west"}).name == "standby-east"
    with pytest.raises(shell.PlanRefused, match="marked failed"):
        rebuild_plan.choose_standby(candidates, set(), requested="standby-north")
    with pytest.raises(shell.PlanRefused, match="no usable standby"):
        rebuild_plan.choose_standby([rebuild_plan.StandbyCandidate("s", "x", "a", "ok", False)], set())


def test_a_restore_proof_proves_the_recorded_snapshot_and_calls_a_lost_one_a_rollback():
    from datetime import datetime, timedelta, timezone

    from hotspare.planning import restic

    moment = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)

    def snapshot(name: str, minutes: int) -> restic.Snapshot:
        return restic.Snapshot(name * 8, name * 4, moment + timedelta(minutes=minutes), ("/srv",))

    older, recorded, unrecorded = snapshot("a", 0), snapshot("b", 10), snapshot("c", 20)
    record = restic.RecordedBackup("b" * 8, moment + timedelta(minutes=11))
    check = restic.check_against_record([older, recorded, unrecorded], record)
    assert check.snapshot == recorded and check.rollback is None and "cccc" in check.note  # never the unrecorded newest
    rolled = restic.check_against_record([older], record)
    assert rolled.snapshot is None
    assert "rolled back" in rolled.rollback and "bbbbbbbb" in rolled.rollback and "aaaa" in rolled.rollback
    assert "older than the recorded one" in rolled.rollback
    assert restic.check_against_record([older], None).snapshot == older  # nothing recorded: the newest, said so
    with pytest.raises(shell.PlanRefused):
        restic.check_against_record([], None)
