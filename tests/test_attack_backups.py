"""A compromised production cannot destroy backups: attacks from the host that runs restic.

The attacker is root on prod-west (app2's production) and holds everything the backup puts
there: the run's storage key and known_hosts under /run/hotspare/storage, and app2's repository
password (it is in restic's environment during the run). With that it must not read or list
app1's repository, delete or rewrite app2's older snapshots, or get a shell on the storage host;
and once the run ends the key opens nothing. Each attack runs on prod-west itself, as the
attacker would, against the real sshd (chroot, forced internal-sftp) of the storage host.

(The lab's own root key for every host lies in the lab folder on this machine, which lab hosts
can see; a real production has no such file, so the attacks use only what the product puts there.)
"""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

ATTACKER = "prod-west"
SERVICE = "app2"
OTHER = "app1"


@pytest.fixture(scope="module")
def snapshots(fleet):
    """app1 has a repository; app2 has at least two snapshots (no pruning in between)."""
    from flows.backup import backup

    assert backup(service=OTHER, prune=False)[OTHER]["outcome"] == "ok"
    first = backup(service=SERVICE, prune=False)[SERVICE]["snapshot_id"]
    second = backup(service=SERVICE, prune=False)[SERVICE]["snapshot_id"]
    return first, second


def _ssh_options(grant) -> list[str]:
    return [
        "-F",
        "/dev/null",
        "-i",
        grant.key_path,
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={grant.known_hosts_path}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=10",
    ]


def _sftp(connection, grant, batch: str, user: str | None = None):
    """One sftp batch on the attacker's host with the run's key; a failing command ends it."""
    argv = ["sftp", "-b", "-", *_ssh_options(grant), f"{user or grant.account}@{grant.storage_address}"]
    return connection.run(argv, stdin=batch.encode(), check=False, timeout=60)


def _ssh(connection, grant, user: str, *command: str):
    argv = ["ssh", *_ssh_options(grant), "-T", f"{user}@{grant.storage_address}", *command]
    return connection.run(argv, stdin=b"", check=False, timeout=60)


def _repository_files(lab_env, service: str, folder: str) -> dict[str, str]:
    root = Path(lab_env["hosts"]["storage-vault"]["root"]) / "srv/backup" / service / folder
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in root.iterdir() if path.is_file()}


def test_a_stolen_run_key_neither_reads_other_services_nor_destroys_snapshots_nor_opens_a_shell(fleet, lab_env, snapshots):
    from hotspare import access
    from hotspare.planning import restic as restic_plan
    from tasks.backup import list_snapshots, plan_grant, repository_password, run_restic, storage_grant

    older, newer = snapshots
    password = repository_password(fleet.service(SERVICE).backup.password_block)
    repository = restic_plan.repository_of(SERVICE, "storage-vault", fleet.service(SERVICE).backup)
    snapshot_files = _repository_files(lab_env, SERVICE, "snapshots")
    assert any(name.startswith(older) for name in snapshot_files)
    grant = plan_grant(fleet, SERVICE, ATTACKER, f"attack-{uuid.uuid4().hex[:8]}")
    snapshot_name = next(name for name in snapshot_files if name.startswith(older))

    def restic_removals():
        """restic forget, then forget --prune, of its own older snapshot with the stolen key: each
        is refused and retried by restic for ~35 s (storage_accounts.py), so they run beside the
        SFTP and shell attacks below, which take no restic lock; one after the other, so neither
        meets the other's lock instead of the refusal."""
        forget = run_restic(production, grant.restic("forget", older), password, check=False)
        prune = run_restic(production, grant.restic("forget", "--keep-last", "1", "--prune"), password, check=False)
        return forget, prune

    with access.connect(fleet, ATTACKER) as production:
        with storage_grant(fleet, production, grant, password), ThreadPoolExecutor(1) as beside:
            # What the attacker finds on production during the run: the key and the pinned host key.
            found = production.run(["find", grant.folder, "-type", "f"]).text.split()
            assert sorted(found) == sorted([grant.key_path, grant.known_hosts_path])
            # The key works for what a backup needs: the account's own repository, read.
            assert _sftp(production, grant, "ls /snapshots\n").exit_status == 0
            removals = beside.submit(restic_removals)

            # Another service's repository: not there for this account, not reachable as its account.
            for batch in (f"ls /srv/backup/{OTHER}\n", f"get /srv/backup/{OTHER}/config /dev/null\n", "cd ..\nls ../app1\n"):
                assert _sftp(production, grant, batch).exit_status != 0, batch
            assert _sftp(production, grant, "ls /\n", user=f"hsb-{OTHER}").exit_status != 0
            other = run_restic(
                production,
                [
                    "restic",
                    "-r",
                    f"sftp:{grant.account}@{grant.storage_address}:/srv/backup/{OTHER}",
                    "-o",
                    f"sftp.command={grant.sftp_command()}",
                    "snapshots",
                ],
                password,
                check=False,
            )
            assert other.exit_status != 0

            # Its own older snapshot: raw SFTP removal, rename, overwrite, chmod all fail (and
            # restic forget/prune, running beside these, below).
            for batch in (
                f"rm /snapshots/{snapshot_name}\n",
                f"rename /snapshots/{snapshot_name} /snapshots/moved\n",
                f"put /etc/hostname /snapshots/{snapshot_name}\n",
                f"chmod 666 /snapshots/{snapshot_name}\n",
                "rm /config\n",
                "rmdir /data/00\n",
                f"ln -s /snapshots/{snapshot_name} /snapshots/link\n",
            ):
                assert _sftp(production, grant, batch).exit_status != 0, batch

            # A shell on the storage host, with the key it saw: the account gets SFTP only, root nothing.
            shell = _ssh(production, grant, grant.account, "id")
            assert "uid=" not in shell.text
            assert _ssh(production, grant, "root", "id").exit_status == 255
            assert _ssh(production, grant, f"hsb-{OTHER}", "id").exit_status == 255
            forget, prune = removals.result(timeout=600)  # before the run's key goes
            assert forget.exit_status != 0, forget.text
            assert prune.exit_status != 0, prune.text
            stolen = production.run(["cat", grant.key_path]).stdout

        # After the run: the key is gone from production, and a copy the attacker kept opens nothing.
        assert production.run(["test", "-e", grant.folder], check=False).exit_status != 0
        production.run(["install", "-d", "-m", "0700", grant.folder])
        try:
            production.run(["sh", "-c", 'umask 077 && cat > "$1"', "sh", grant.key_path], stdin=stolen)
            production.run(
                ["sh", "-c", 'umask 077 && cat > "$1"', "sh", grant.known_hosts_path], stdin=grant.known_hosts_line.encode()
            )
            late = _sftp(production, grant, "ls /\n")
            assert late.exit_status != 0 and "Permission denied" in late.stderr_tail
        finally:
            production.run(["rm", "-rf", "--", grant.folder])

    # The snapshots are all still there, byte for byte, as the storage host itself sees them.
    assert _repository_files(lab_env, SERVICE, "snapshots") == snapshot_files
    with access.connect(fleet, "storage-vault") as storage:
        listed = {snapshot.id for snapshot in list_snapshots(storage, repository, password)}
        assert {name for name in snapshot_files} <= listed and any(i.startswith(older) for i in listed)
        keys = storage.run(["cat", grant.keys_file], check=False).text
    assert grant.marker not in keys


def test_a_run_key_works_only_from_the_host_it_was_made_for(fleet, snapshots):
    from hotspare import access
    from tasks.backup import plan_grant, repository_password, storage_grant

    password = repository_password(fleet.service(SERVICE).backup.password_block)
    grant = plan_grant(fleet, SERVICE, ATTACKER, f"elsewhere-{uuid.uuid4().hex[:8]}")
    with access.connect(fleet, ATTACKER) as production, access.connect(fleet, "prod-east") as elsewhere:
        with storage_grant(fleet, production, grant, password):
            key = production.run(["cat", grant.key_path]).stdout
            elsewhere.run(["install", "-d", "-m", "0700", grant.folder])
            try:
                elsewhere.run(["sh", "-c", 'umask 077 && cat > "$1"', "sh", grant.key_path], stdin=key)
                elsewhere.run(
                    ["sh", "-c", 'umask 077 && cat > "$1"', "sh", grant.known_hosts_path], stdin=grant.known_hosts_line.encode()
                )
                assert _sftp(production, grant, "ls /\n").exit_status == 0
                refused = _sftp(elsewhere, grant, "ls /\n")
                assert refused.exit_status != 0 and "Permission denied" in refused.stderr_tail
            finally:
                elsewhere.run(["rm", "-rf", "--", grant.folder], check=False)


def test_the_next_backup_removes_what_a_killed_run_left(fleet, snapshots):
    from flows.backup import backup
    from hotspare import access
    from hotspare.keys import generate_ed25519
    from tasks.backup import plan_grant

    dead = plan_grant(fleet, SERVICE, ATTACKER, f"killed-{uuid.uuid4().hex[:8]}")
    _private, public = generate_ed25519(dead.marker)
    with access.connect(fleet, "storage-vault") as storage, access.connect(fleet, ATTACKER) as production:
        storage.run(dead.authorize(public))
        production.run(["install", "-d", "-m", "0700", dead.folder])
        assert dead.marker in storage.run(["cat", dead.keys_file]).text
        assert backup(service=SERVICE, prune=False)[SERVICE]["outcome"] == "ok"
        keys = storage.run(["cat", dead.keys_file]).text
        assert "hotspare-run=" not in keys
        assert production.run(["test", "-e", dead.folder], check=False).exit_status != 0
        # and nothing the backup wrote stays the account's: every file in the repository is root's
        owned = storage.run(["find", dead.repository_path, "-type", "f", "!", "-user", "root", "!", "-path", "*/locks/*"]).text
        assert owned.strip() == ""
