"""System accounts between hosts: a service's lines staged from production into its copy, and
merged into a mirror's /etc under the host-level lock.

Only the service's own accounts travel (``planning/accounts.py`` screens them on both ends); the
merge reads, merges and writes the mirror's four account files inside one ``host_lock``, with new
files named per run and renamed only over the bytes it read, so two services' merges on a shared
mirror never lose each other's lines (``tasks/host_lock.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import uuid

from prefect import get_run_logger

from hotspare import access
from hotspare.fleet import Fleet
from hotspare.planning import accounts as account_plan
from hotspare.planning import host_lock as host_lock_plan
from hotspare.planning import replication as plan
from hotspare.planning import shell_programs as shell
from tasks.host_lock import host_lock


def write_private_sftp(sftp, path: str, content: bytes) -> None:
    """Write a new file ``path`` over SFTP, mode 0600 before the first byte (it may hold hashes)."""
    with sftp.open(path, "wx") as handle:
        handle.chmod(0o600)
        handle.write(content)


# ---------------------------------------------------------------------------------------
# Preflight


def stage_accounts(fleet: Fleet, service: str, source: str, target: str, tree: str) -> dict:
    """Only the service's accounts travel: read production's account files over the
    orchestrator's own login, keep the service's lines (``account_plan.service_accounts``) and
    write just those into the copy (``<tree>/etc/passwd`` …), through stdin. The transfer key
    never reads /etc/shadow, and the mirror never holds root's or another account's hash."""
    logger = get_run_logger()
    rules = fleet.service(service).accounts
    with access.connect(fleet, source) as production:
        files = shell.split_files(
            account_plan.ACCOUNT_FILES, production.run(shell.read_files(account_plan.ACCOUNT_FILES), timeout=60).stdout
        )
    own = account_plan.service_accounts(files, rules.uid_min, rules.uid_max, rules.users)
    with access.connect(fleet, target) as mirror:
        for path in account_plan.ACCOUNT_FILES:
            mirror.run(shell.replace_secret_file(tree + path), stdin=own.files[path].encode(errors="surrogateescape"))
    for sentence in own.refused:
        logger.warning("accounts of %s on %s: %s", service, source, sentence)
    logger.info(
        "accounts of %s taken from %s: users %s, groups %s (every other line left on production)",
        service,
        source,
        ", ".join(own.users) or "none",
        ", ".join(own.groups) or "none",
    )
    return {"users": list(own.users), "groups": list(own.groups), "refused": list(own.refused)}


def apply_accounts(service: str, copy_id: str, target: str, locked: bool = False) -> dict:
    """Merge the copy's accounts into the mirror's /etc: only the service's own accounts
    (``hotspare.planning.accounts``); each refused entry is a warning in the run log.

    ``locked`` (a routine replication): their passwords are locked on the mirror, which does not
    serve the service yet; a failover merges them unlocked, as production had them."""
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    rules = fleet.service(service).accounts
    tree = plan.copy_tree(service, copy_id)
    suffix = host_lock_plan.temporary_suffix(uuid.uuid4().hex[:12])
    # Other services on this host merge into the same files: the whole read-merge-write holds
    # the host's lock (tasks/host_lock.py), and this run's new files have names of their own.
    with (
        access.connect(fleet, target) as mirror,
        host_lock(mirror, f"merge of {service}'s accounts") as held,
        mirror.open_sftp() as sftp,
    ):

        def read(path: str) -> str:
            with sftp.open(path, "r") as handle:
                return handle.read().decode(errors="surrogateescape")  # the target's own bytes stay as they are

        folders = {posixpath.dirname(path) for path in account_plan.ACCOUNT_FILES}
        for leftover in host_lock_plan.leftovers(account_plan.ACCOUNT_FILES, {f: sftp.listdir(f) for f in folders}):
            sftp.remove(leftover)  # a killed run's new file
        # the copy holds the service's lines only (``stage_accounts``); screened again all the
        # same, for a copy made before that rule (its files were production's whole files)
        own = account_plan.service_accounts(
            {path: read(tree + path) for path in account_plan.ACCOUNT_FILES}, rules.uid_min, rules.uid_max, rules.users
        )
        current = {path: read(path) for path in account_plan.ACCOUNT_FILES}
        source = dict(own.files)
        if locked:
            source[account_plan.SHADOW] = account_plan.locked_passwords(source.get(account_plan.SHADOW, ""))
        merge = account_plan.merge_accounts(current, source, rules.uid_min, rules.uid_max, rules.users)
        changed = merge.changed(current)
        try:
            for path in changed:
                write_private_sftp(sftp, path + suffix, merge.files[path].encode(errors="surrogateescape"))
            if changed:  # only over the bytes read; each new file takes its file's mode and owner
                held.check(f"replacing {', '.join(changed)}")
                read_digests = {
                    path: hashlib.sha256(current[path].encode(errors="surrogateescape")).hexdigest() for path in changed
                }
                mirror.run(host_lock_plan.replace_checked_argv(suffix, read_digests))
        except BaseException:  # nothing of this run's stays behind (if the host still answers)
            for path in changed:
                with contextlib.suppress(OSError):
                    sftp.remove(path + suffix)
            raise
    refused = [*own.refused, *merge.refused]
    for sentence in refused:
        logger.warning("accounts of %s on %s: %s", service, target, sentence)
    logger.info(
        "accounts of %s on %s: %s (%d file(s) updated, %d entr%s refused)",
        service,
        target,
        ", ".join(merge.users) or "none",
        len(changed),
        len(refused),
        "y" if len(refused) == 1 else "ies",
    )
    return {"users": list(merge.users), "groups": list(merge.groups), "files_updated": changed, "refused": refused}
