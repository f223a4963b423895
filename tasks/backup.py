"""Backup steps: thin tasks that run the plans of ``hotspare.planning.backup`` over SSH.

restic runs on the host that holds the data (production for a backup, the storage host for
checks and restore proofs, the standby for a rebuild): customer data never relays through the
orchestrator. The repository password reaches restic on stdin -> environment, never argv.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import MissingContextError
from sqlmodel import select

from hotspare import access
from hotspare.adapters.errors import PermanentError, RemoteCommandError, TransientError
from hotspare.adapters.ssh import CommandResult, SshConnection, secret_env_command
from hotspare.fleet import Fleet
from hotspare.inventory import session
from hotspare.inventory.backup_models import BackupRow, RepositoryCheckRow, RestoreProofRow
from hotspare.inventory.models import ServiceRow, as_utc, utcnow
from hotspare.keys import generate_ed25519
from hotspare.planning import backup as plan
from hotspare.planning import manifests as manifest_plan
from hotspare.planning import restic as restic_plan
from hotspare.planning import shell_programs as shell
from hotspare.planning import storage_accounts as accounts
from tasks.host_lock import host_lock
from tasks.retry import TRANSIENT_RETRIES

STEP = dict(cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
RESTIC_TIMEOUT = 6 * 3600.0


class ResticFailed(PermanentError):
    """restic said no in a way a retry cannot fix (wrong password, corrupt data, …)."""


def repository_password(block_name: str) -> str:
    """The repository password from its block; only ever handed to ``run_restic``."""
    from prefect.exceptions import PrefectHTTPStatusError

    from blocks.credentials import BackupRepositoryPassword
    from hotspare.access import refused_block

    try:
        block = BackupRepositoryPassword.load(block_name)
    except ValueError as error:
        raise PermanentError(f"Prefect block {block_name!r} (BackupRepositoryPassword) could not be loaded: {error}") from None
    except PrefectHTTPStatusError as error:
        if error.response.status_code != 403:
            raise
        raise refused_block(block_name, "BackupRepositoryPassword") from None
    return block.password.get_secret_value()


def run_restic(
    connection: SshConnection, argv: list[str], password: str, *, timeout: float = RESTIC_TIMEOUT, check: bool = True
) -> CommandResult:
    """Run restic on ``connection``'s host with the password in its environment.

    restic 0.14 exits 1 for every error: stderr decides whether a retry may help.
    """
    result = connection.run(
        secret_env_command("RESTIC_PASSWORD", argv), stdin=(password + "\n").encode(), timeout=timeout, check=False
    )
    if check and result.exit_status != 0:
        raise restic_error(connection.endpoint.name, argv, result)
    return result


def restic_error(host: str, argv: list[str], result: CommandResult) -> Exception:
    subcommand = next((word for word in argv[1:] if word in plan_subcommands), "restic")
    message = f"on {host}: restic {subcommand} exited {result.exit_status}: {result.stderr_tail.strip()[-800:] or '(no stderr)'}"
    if restic_plan.restic_error_is_transient(result.stderr_tail):
        return TransientError(message)
    return ResticFailed(message)


plan_subcommands = ("backup", "restore", "check", "forget", "init", "snapshots", "cat", "dump", "prune")


def grant_expiry(now: datetime | None = None) -> str:
    """authorized_keys expiry of a per-run key: past the longest restic run, then it dies anyway."""
    moment = (now or datetime.now(timezone.utc)) + timedelta(seconds=RESTIC_TIMEOUT + 600)
    return moment.strftime("%Y%m%d%H%M%SZ")


def plan_grant(fleet: Fleet, service_name: str, client_server: str, run_name: str) -> accounts.StorageGrant:
    try:
        return accounts.plan_grant(fleet, service_name, client_server, run_name, grant_expiry())
    except accounts.GrantRefused as refused:
        raise PermanentError(str(refused)) from None


def prepare_repository(storage: SshConnection, grant: accounts.StorageGrant, password: str, *, create: bool, logger) -> None:
    """On the storage host, as root: the service's account, its repository (created here, with
    the password, when ``create``), and the append-only layout of the repository's files."""
    with host_lock(storage, f"storage account of {grant.service}"):  # other services' runs add theirs
        storage.run(grant.ensure_account())
    if storage.run(grant.repository_exists(), check=False).exit_status != 0:
        if not create:
            raise PermanentError(
                f"{grant.storage_server} holds no repository at {grant.repository_path} for {grant.service}: "
                "nothing to restore from"
            )
        storage.run(grant.make_repository_folder())
        run_restic(
            storage,
            restic_plan.local_restic(
                restic_plan.Repository(grant.service, grant.storage_server, grant.repository_path, ""), "init"
            ),
            password,
            timeout=300,
        )
        logger.info("created the repository %s:%s", grant.storage_server, grant.repository_path)
    storage.run(grant.lay_out(), timeout=RESTIC_TIMEOUT)


@contextmanager
def storage_grant(
    fleet: Fleet, client: SshConnection, grant: accounts.StorageGrant, password: str, *, create: bool = False
) -> Iterator[None]:
    """Append-only access of ``client``'s host to the service's repository, for this block only.

    The orchestrator prepares the storage host as root (its own login never leaves it), makes a
    key for this run, authorizes it for the service's chrooted SFTP-only account from the client's
    address only, and gives the client the private key through stdin into a 0700 tmpfs folder.
    Whatever happens, the key is removed from both hosts and the run's new files are handed to
    root. A run killed before that is cleaned up by the next one (marker comment, folder name).
    """
    logger = _step_logger()
    with access.connect(fleet, grant.storage_server) as storage:
        prepare_repository(storage, grant, password, create=create, logger=logger)
        private_key, public_key = generate_ed25519(grant.marker)
        storage.run(grant.authorize(public_key))
        try:
            client.run(grant.clear_other_runs())
            client.run(shell.write_secret_file(grant.key_path), stdin=private_key.encode())
            client.run(shell.write_secret_file(grant.known_hosts_path), stdin=grant.known_hosts_line.encode())
            del private_key
            logger.info(
                "granted %s append-only access to %s's repository as %s until the run ends",
                grant.client_server,
                grant.service,
                grant.account,
            )
            yield
        finally:
            _quietly(
                logger,
                f"remove {grant.folder} on {grant.client_server}",
                lambda: client.run(shell.remove_tree(grant.folder, accounts.CLIENT_FOLDER), check=False, timeout=30),
            )
            _quietly(logger, f"revoke the run's key on {grant.storage_server}", lambda: storage.run(grant.revoke(), timeout=30))
            _quietly(
                logger,
                f"hand the run's files to root on {grant.storage_server}",
                lambda: storage.run(grant.lay_out(), timeout=RESTIC_TIMEOUT),
            )


def _step_logger():
    """The run's logger inside a flow or task; a plain one when called outside (benchmarks, tests)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("hotspare.backup")


def _quietly(logger, what: str, action) -> None:
    """Cleanup must not hide the real outcome: a failure is a warning naming what was left."""
    try:
        action()
    except Exception as error:
        logger.warning("could not %s: %s", what, error)


def active_server(service_name: str, default: str) -> str:
    """The server that serves the service now (inventory), the fleet's production otherwise."""
    with session() as db:
        row = db.get(ServiceRow, service_name)
    return row.active_server if row else default


# ----- backup ------------------------------------------------------------------------------------------


@task(name="backup-service", **STEP)
def backup_service(fleet: Fleet, service_name: str, run_name: str, flow_run_id: str | None = None) -> dict:
    """Stage account entries and a manifest on the active server, then ``restic backup`` to storage."""
    logger = get_run_logger()
    service = fleet.service(service_name)
    source = active_server(service_name, service.production)
    backup_plan = plan.plan_backup(fleet, service_name)
    grant = plan_grant(fleet, service_name, source, run_name)
    password = repository_password(backup_plan.repository.password_block)
    with session() as db:
        row = BackupRow(
            service=service_name,
            flow_run_id=flow_run_id,
            source_server=source,
            storage_server=service.storage,
            repository=backup_plan.repository.path,
        )
        db.add(row)
    started = time.monotonic()
    try:
        with access.connect(fleet, source) as connection:
            summary = _backup_on(connection, fleet, backup_plan, grant, password, logger)
    except Exception as error:
        _finish(BackupRow, row.id, "failed", started, detail=str(error)[:2000])
        raise
    _finish(BackupRow, row.id, "ok", started, **summary)
    logger.info(
        "backed up %s from %s: snapshot %s, %d files, %.1f MB (%.1f MB new) in %.1f s",
        service_name,
        source,
        summary["snapshot_id"][:8],
        summary["files"],
        summary["bytes"] / 1e6,
        summary["bytes_added"] / 1e6,
        time.monotonic() - started,
    )
    return {
        "service": service_name,
        "source": source,
        "storage": service.storage,
        **summary,
        "duration_s": round(time.monotonic() - started, 3),
    }


def _backup_on(
    connection: SshConnection, fleet: Fleet, backup_plan: plan.BackupPlan, grant: accounts.StorageGrant, password: str, logger
) -> dict:
    existing = plan.parse_existing(connection.run(backup_plan.probe_paths()).stdout)
    missing = [path for path in backup_plan.live_paths if path not in existing]
    if missing:
        logger.warning("not on %s, so not backed up: %s", connection.endpoint.name, ", ".join(missing))
    if not any(path in existing for path in fleet.service(backup_plan.service).data_paths):
        raise PermanentError(
            f"none of {backup_plan.service}'s data paths exist on {connection.endpoint.name}: refusing an empty backup"
        )
    try:
        for command in backup_plan.account_commands():
            connection.run(command)
        logger.info("staged accounts with UIDs %d-%d", backup_plan.uid_min, backup_plan.uid_max)
        connection.run(backup_plan.manifest_command(existing), timeout=RESTIC_TIMEOUT)
        with storage_grant(fleet, connection, grant, password, create=True):
            result = run_restic(connection, backup_plan.backup_command(existing, grant), password)
        summary = plan.parse_backup_summary(result.text)
    finally:
        connection.run(shell.remove_tree(backup_plan.meta_dir, shell.RUN_DIR), check=False, timeout=60)
    return {
        "snapshot_id": summary["snapshot_id"],
        "files": int(summary.get("total_files_processed", 0)),
        "bytes": int(summary.get("total_bytes_processed", 0)),
        "bytes_added": int(summary.get("data_added", 0)),
    }


def _finish(row_type, row_id: int, outcome: str, started: float, **values) -> None:
    """Close a backup or restore-proof record with its outcome and duration."""
    with session() as db:
        row = db.get(row_type, row_id)
        row.outcome, row.ended_at = outcome, utcnow()
        row.duration_s = round(time.monotonic() - started, 3)
        for name, value in values.items():
            setattr(row, name, value)


@task(name="apply-retention", **STEP)
def apply_retention(fleet: Fleet, service_name: str, run_name: str) -> str:
    """``restic forget --prune`` with the fleet's keep rules, run on the storage host itself."""
    service = fleet.service(service_name)
    backup_plan = plan.plan_backup(fleet, service_name)
    repository = backup_plan.repository
    password = repository_password(repository.password_block)
    argv = restic_plan.local_restic(repository, *backup_plan.forget_arguments())
    with access.connect(fleet, service.storage) as connection:
        result = run_restic(connection, argv, password)
    removed = result.text.count("remove ")  # "remove N snapshots:" lines
    sentence = (
        f"retention for {service_name}: kept {backup_plan.keep_daily} daily, {backup_plan.keep_weekly} weekly, "
        f"{backup_plan.keep_monthly} monthly" + (" (pruned old snapshots)" if removed else " (nothing to remove)")
    )
    get_run_logger().info(sentence)
    return sentence


# ----- snapshots on the storage host ------------------------------------------------------------------


def list_snapshots(connection: SshConnection, repository: restic_plan.Repository, password: str) -> list[restic_plan.Snapshot]:
    result = run_restic(
        connection, restic_plan.local_restic(repository, "snapshots", "--json", *repository.host_tag), password, timeout=300
    )
    return restic_plan.parse_snapshots(result.text)


# ----- repository check --------------------------------------------------------------------------------


@task(name="check-repository", cache_policy=NO_CACHE)
def check_repository(fleet: Fleet, service_name: str, subset: str | None = None) -> dict:
    """``restic check --read-data-subset=N/M`` on the storage host, rolling N run after run.

    Not retried: a failing check is the finding, not a glitch. ``subset`` ("1/1") overrides the
    rolling choice.
    """
    logger = get_run_logger()
    service = fleet.service(service_name)
    repository = restic_plan.repository_of(service.name, service.storage, service.backup)
    count = service.backup.check_subsets
    if subset:
        index, count = (int(part) for part in subset.split("/"))
    else:
        with session() as db:
            last = db.exec(
                select(RepositoryCheckRow)
                .where(RepositoryCheckRow.service == service_name)
                .where(RepositoryCheckRow.outcome == "ok")
                .order_by(RepositoryCheckRow.id.desc())
            ).first()
        index = restic_plan.next_subset(last.subset_index if last and last.subset_count == count else None, count)
    password = repository_password(repository.password_block)
    with session() as db:
        row = RepositoryCheckRow(service=service_name, subset_index=index, subset_count=count)
        db.add(row)
    started = time.monotonic()
    with access.connect(fleet, service.storage) as connection:
        result = run_restic(
            connection,
            restic_plan.local_restic(repository, "check", f"--read-data-subset={index}/{count}"),
            password,
            check=False,
        )
    outcome = "ok" if result.exit_status == 0 else "failed"
    detail = (result.stderr_tail or result.text[-2000:]).strip()[-2000:]
    with session() as db:
        stored = db.get(RepositoryCheckRow, row.id)
        stored.outcome, stored.ended_at = outcome, utcnow()
        stored.duration_s = round(time.monotonic() - started, 3)
        stored.detail = detail if outcome == "failed" else ""
    if outcome == "ok":
        logger.info(
            "repository of %s: subset %d/%d read and verified in %.1f s", service_name, index, count, time.monotonic() - started
        )
    return {
        "service": service_name,
        "subset": f"{index}/{count}",
        "outcome": outcome,
        "detail": detail if outcome == "failed" else "",
    }


# ----- restore proof ----------------------------------------------------------------------------------------


@task(name="restore-proof", cache_policy=NO_CACHE)
def prove_restore(fleet: Fleet, service_name: str, run_name: str, flow_run_id: str | None = None) -> dict:
    """Restore the snapshot the inventory recorded for the newest backup (not merely the newest
    in the repository) on the storage host into scratch space and compare it with the manifest
    taken at backup time; a repository that lost the recorded snapshot fails as rolled back
    (``restic_plan.check_against_record``). Always removes the scratch folder."""
    logger = get_run_logger()
    service = fleet.service(service_name)
    repository = restic_plan.repository_of(service.name, service.storage, service.backup)
    base = restic_plan.scratch_base(repository)
    scratch = f"{base}/{service_name}-{run_name}"
    password = repository_password(repository.password_block)
    with session() as db:
        row = RestoreProofRow(service=service_name, flow_run_id=flow_run_id, server=service.storage)
        db.add(row)
    started = time.monotonic()
    values: dict = {}
    try:
        with access.connect(fleet, service.storage) as connection:
            check = restic_plan.check_against_record(
                list_snapshots(connection, repository, password), recorded_backup(service_name)
            )
            if check.rollback is not None:
                raise BackupRolledBack(check.rollback)
            snapshot = check.snapshot
            logger.info("restore proof of %s: %s", service_name, check.note)
            values.update(snapshot_id=snapshot.id, snapshot_time=snapshot.time)
            try:
                restore_started = time.monotonic()
                # --no-cache: prove what the repository itself holds, as a restore after a disaster would
                run_restic(
                    connection,
                    restic_plan.local_restic(repository, "restore", "--no-cache", snapshot.id, "--target", scratch),
                    password,
                )
                values["restore_seconds"] = round(time.monotonic() - restore_started, 3)
                comparison = compare_with_manifest(connection, scratch, service_name, snapshot)
            finally:
                connection.run(shell.remove_tree(scratch, base), check=False, timeout=600)
    except BackupRolledBack as error:
        _finish(RestoreProofRow, row.id, "failed", started, detail=str(error)[:2000], problems=[str(error)], **values)
        logger.error("restore proof of %s: %s", service_name, error)
        return {
            "service": service_name,
            "snapshot": "-",
            "outcome": "failed",
            "files_checked": 0,
            "problems": [str(error)],
            "duration_s": round(time.monotonic() - started, 3),
            "restore_s": None,
        }
    except Exception as error:
        _finish(RestoreProofRow, row.id, "failed", started, detail=str(error)[:2000], **values)
        raise
    outcome = "passed" if comparison.identical else "failed"
    _finish(
        RestoreProofRow,
        row.id,
        outcome,
        started,
        files_checked=comparison.files_checked,
        problems=comparison.problems(),
        detail=comparison.sentence(),
        **values,
    )
    duration = round(time.monotonic() - started, 3)
    logger.info("restore proof of %s, snapshot %s: %s (%.1f s)", service_name, snapshot.short_id, comparison.sentence(), duration)
    return {
        "service": service_name,
        "snapshot": snapshot.short_id,
        "outcome": outcome,
        "files_checked": comparison.files_checked,
        "problems": comparison.problems(),
        "duration_s": duration,
        "restore_s": values.get("restore_seconds"),
    }


class BackupRolledBack(PermanentError):
    """The repository no longer holds the snapshot the inventory recorded for the newest backup."""


def recorded_backup(service_name: str) -> restic_plan.RecordedBackup | None:
    """The newest backup of the service the inventory recorded as done, with its snapshot."""
    with session() as db:
        row = db.exec(
            select(BackupRow)
            .where(BackupRow.service == service_name, BackupRow.outcome == "ok", BackupRow.snapshot_id.is_not(None))
            .order_by(BackupRow.started_at.desc())
        ).first()
    if row is None:
        return None
    return restic_plan.RecordedBackup(row.snapshot_id, as_utc(row.ended_at or row.started_at))


def compare_with_manifest(
    connection: SshConnection, scratch: str, service_name: str, snapshot: restic_plan.Snapshot
) -> manifest_plan.ManifestComparison:
    """Hash the restored tree on its host and compare with the manifest inside the snapshot."""
    manifest_path = manifest_plan.manifest_in_snapshot(service_name)
    try:
        expected = manifest_plan.parse_manifest(connection.run(["cat", "--", f"{scratch}/{manifest_path}"]).stdout)
    except RemoteCommandError:
        raise PermanentError(
            f"snapshot {snapshot.short_id} of {service_name} has no manifest ({manifest_path}): cannot prove it"
        ) from None
    actual = manifest_plan.parse_manifest(
        connection.run(shell.hash_tree(scratch, snapshot.relative_paths()), timeout=RESTIC_TIMEOUT).stdout
    )
    excludes = access.loaded_fleet().service(service_name).exclude
    return manifest_plan.compare_manifests(expected, actual, ignore=[manifest_path], excludes=excludes)
