"""Rebuild steps: bring a service up on a standby from its backup on the storage host.

Thin tasks over ``hotspare.planning.backup``. restic runs on the standby and pulls the snapshot
over SFTP (pinned storage host key, per-run key removed afterwards); everything else is local
to the standby. Temporary passwords are made here, go to the standby on stdin and to the
operator in a root-only file; they never enter logs, artifacts, results or the inventory.
"""

from __future__ import annotations

import os
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlmodel import select

from hotspare import access
from hotspare.adapters.errors import PermanentError, TransientError
from hotspare.errors import Refused
from hotspare.fleet import Fleet
from hotspare.inventory import session
from hotspare.inventory.backup_models import TemporaryAccountRow
from hotspare.inventory.models import ServerRow, ServiceRow, utcnow
from hotspare.inventory.service_states import Event, move
from hotspare.planning import accounts as account_plan
from hotspare.planning import backup as plan
from hotspare.planning import live_data as live_plan
from hotspare.planning import manifests as manifest_plan
from hotspare.planning import rebuild as rebuild_plan
from hotspare.planning import replication as replication_layout
from hotspare.planning import restic as restic_plan
from hotspare.planning import shell_programs as shell
from hotspare.planning import temporary_accounts as login_plan
from hotspare.probes import http_get_via_dns, reachability, tcp_reachable
from hotspare.settings import hotspare_home
from tasks.backup import (
    RESTIC_TIMEOUT,
    compare_with_manifest,
    list_snapshots,
    plan_grant,
    repository_password,
    run_restic,
    storage_grant,
)
from tasks.host_lock import host_lock
from tasks.live_data import neutralise, run_tag
from tasks.retry import TRANSIENT_RETRIES

STEP = dict(cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
PROBE_TIMEOUT = 3.0


class RebuildRefused(Refused):
    """A precondition of the rebuild does not hold; nothing was changed."""


# ----- survey and plan ---------------------------------------------------------------------------


@task(name="survey-rebuild", **STEP)
def survey(
    fleet: Fleet, service_name: str, standby: str | None, snapshot: str | None, temporary_hours: float, force: bool = False
) -> rebuild_plan.RebuildPlan:
    """Read the facts a rebuild plan needs (inventory, reachability, snapshots) and plan it."""
    logger = get_run_logger()
    service = fleet.service(service_name)
    if service.backup is None:
        raise RebuildRefused(f"{service_name} has no backup section in the fleet file: nothing to rebuild from")
    with session() as db:
        row = db.get(ServiceRow, service_name)
        if row is None:
            raise RebuildRefused(f"{service_name} is not in the inventory: run `hotspare fleet load` first")
        lost = [name for name in (row.active_server, row.mirror_server) if name]
        states = {server.name: server.state for server in db.exec(select(ServerRow))}
        busy: dict[str, list[str]] = {}
        for other in db.exec(select(ServiceRow).where(ServiceRow.retired == False)):
            if other.name != service_name:
                busy.setdefault(other.active_server, []).append(other.name)
    standbys = [server for server in fleet.servers if server.role.value == "standby"]
    probes = reachability({s.name: (s.address, s.ssh_port) for s in [*standbys, *(fleet.server(n) for n in lost)]}, PROBE_TIMEOUT)
    still_up = [name for name in lost if probes.get(name)]
    warnings = []
    if still_up:
        sentence = f"{', '.join(still_up)} still answer(s) SSH: a rebuild is for when production and mirror are both gone"
        if not force:
            raise RebuildRefused(sentence + " (use failover instead, or force=True if they are broken in another way)")
        warnings.append(sentence + "; forced by the operator")
    logger.info("lost: %s (%s)", ", ".join(lost), "unreachable" if not still_up else "forced")
    candidates = [
        rebuild_plan.StandbyCandidate(
            s.name, s.facility, s.address, states.get(s.name, "ok"), bool(probes.get(s.name)), tuple(busy.get(s.name, ()))
        )
        for s in standbys
    ]
    lost_facilities = {fleet.server(name).facility for name in lost}
    try:
        choice = rebuild_plan.choose_standby(candidates, lost_facilities, standby)
    except shell.PlanRefused as refused:
        raise RebuildRefused("no standby to rebuild on: " + "; ".join(refused.reasons)) from None
    logger.info(choice.reason)
    repository = restic_plan.repository_of(service.name, service.storage, service.backup)
    password = repository_password(repository.password_block)
    with access.connect(fleet, service.storage) as connection:
        try:
            chosen = restic_plan.pick_snapshot(list_snapshots(connection, repository, password), snapshot)
        except shell.PlanRefused as refused:
            raise RebuildRefused("; ".join(refused.reasons)) from None
        passwd = run_restic(
            connection,
            restic_plan.local_restic(repository, "dump", chosen.id, _meta_file(service_name, "passwd")),
            password,
            timeout=300,
        ).text
    rules = service.accounts
    screened = account_plan.merge_accounts({}, {account_plan.PASSWD: passwd}, rules.uid_min, rules.uid_max, rules.users)
    accounts = screened.accepted_accounts()
    for sentence in screened.refused:
        logger.warning("snapshot %s: %s", chosen.short_id, sentence)
    warnings += [f"snapshot accounts: {sentence}" for sentence in screened.refused]
    logger.info(
        "snapshot %s of %s holds accounts: %s",
        chosen.short_id,
        chosen.time.isoformat(timespec="seconds"),
        ", ".join(a.name for a in accounts) or "none",
    )
    return rebuild_plan.plan_rebuild(
        service=service,
        lost_servers=lost,
        choice=choice,
        repository=repository,
        snapshot=chosen,
        accounts=accounts,
        temporary_hours=temporary_hours,
        dns_from=fleet.server(row.active_server).address,
        warnings=warnings,
    )


def _meta_file(service_name: str, name: str) -> str:
    return f"{manifest_plan.META_DIR}/{service_name}/accounts/{name}"


def _account_merge(fleet: Fleet, connection, rebuild: rebuild_plan.RebuildPlan, meta: str) -> account_plan.AccountMerge:
    """The account merge (the same rule as replication) of the restored snapshot's accounts into
    the standby's. shadow/gshadow enter by name only: their hashes stay on the standby."""

    def read(argv: list[str]) -> str:
        return connection.run(argv).text

    def names(path: str) -> list[str]:
        return read(["cut", "-d:", "-f1", "--", path]).splitlines()

    source = {
        account_plan.PASSWD: read(["cat", "--", f"{meta}/passwd"]),
        account_plan.GROUP: read(["cat", "--", f"{meta}/group"]),
        account_plan.SHADOW: account_plan.placeholder_shadow(names(f"{meta}/shadow")),
        account_plan.GSHADOW: account_plan.placeholder_shadow(names(f"{meta}/gshadow"), account_plan.GSHADOW),
    }
    current = {account_plan.PASSWD: read(["cat", "/etc/passwd"]), account_plan.GROUP: read(["cat", "/etc/group"])}
    rules = fleet.service(rebuild.service).accounts
    return account_plan.merge_accounts(current, source, rules.uid_min, rules.uid_max, rules.users)


# ----- execution --------------------------------------------------------------------------------------


@task(name="restore-on-standby", **STEP)
def restore_on_standby(fleet: Fleet, rebuild: rebuild_plan.RebuildPlan, run_name: str, verify: bool = True) -> dict:
    """Pull the snapshot onto the standby (restic over SFTP) into scratch space; verify it."""
    logger = get_run_logger()
    scratch = rebuild_plan.restore_folder(rebuild.service, run_name)
    repository = restic_plan.repository_of(rebuild.service, rebuild.storage, fleet.service(rebuild.service).backup)
    grant = plan_grant(fleet, rebuild.service, rebuild.standby, run_name)  # the service's append-only account
    password = repository_password(repository.password_block)
    with access.connect(fleet, rebuild.standby) as connection:
        missing = [
            tool
            for tool in ("restic", "rsync", "useradd", "chpasswd")
            if connection.run(["sh", "-c", 'command -v "$1"', "sh", tool], check=False).exit_status != 0
        ]
        if missing:
            raise RebuildRefused(f"standby {rebuild.standby} lacks {', '.join(missing)}: install them first")
        connection.run(shell.remove_tree(scratch, rebuild_plan.RESTORE_BASE), timeout=600)
        connection.run(["install", "-d", "-m", "0700", scratch])
        with storage_grant(fleet, connection, grant, password):
            started = time.monotonic()
            run_restic(connection, grant.restic("restore", rebuild.snapshot_id, "--target", scratch), password)
            restore_seconds = round(time.monotonic() - started, 3)
        logger.info(
            "restored snapshot %s onto %s:%s in %.1f s", rebuild.snapshot_id[:8], rebuild.standby, scratch, restore_seconds
        )
        result = {"scratch": scratch, "restore_s": restore_seconds}
        if verify:
            started = time.monotonic()
            snapshot = restic_plan.Snapshot(
                rebuild.snapshot_id, rebuild.snapshot_id[:8], datetime.now(timezone.utc), rebuild.snapshot_paths
            )
            comparison = compare_with_manifest(connection, scratch, rebuild.service, snapshot)
            if not comparison.identical:
                raise PermanentError(
                    f"the restored snapshot does not match its manifest: {comparison.sentence()}: "
                    + "; ".join(comparison.problems(5))
                )
            result["verify_s"] = round(time.monotonic() - started, 3)
            logger.info("restored files verified: %s (%.1f s)", comparison.sentence(), result["verify_s"])
        else:
            logger.info("verification of the restored files skipped: verify=False")
    return result


@task(name="recreate-accounts", **STEP)
def recreate_accounts(fleet: Fleet, rebuild: rebuild_plan.RebuildPlan, scratch: str) -> list[str]:
    """Create the snapshot's groups and accounts on the standby, with their password hashes:
    only those the account merge accepts (the service's own); each refused entry is a warning.

    The hashes go from the restored shadow file straight into ``chpasswd -e`` on the standby.
    """
    logger = get_run_logger()
    meta = f"{scratch}/{shell.relative(manifest_plan.META_DIR)}/{rebuild.service}/accounts"
    # other services rebuilt on this standby change the same account files: read, plan and
    # create under the host's lock (tasks/host_lock.py)
    with access.connect(fleet, rebuild.standby) as connection, host_lock(connection, f"accounts of {rebuild.service}'s rebuild"):
        merge = _account_merge(fleet, connection, rebuild, meta)
        for sentence in merge.refused:
            logger.warning("accounts of %s on %s: %s", rebuild.service, rebuild.standby, sentence)
        wanted_accounts, wanted_groups = merge.accepted_accounts(), merge.accepted_groups()
        present_accounts = account_plan.parse_passwd(connection.run(["cat", "/etc/passwd"]).text)
        present_groups = account_plan.parse_group(connection.run(["cat", "/etc/group"]).text)
        try:
            commands, sentences = login_plan.account_commands(wanted_groups, wanted_accounts, present_groups, present_accounts)
        except shell.PlanRefused as refused:
            raise RebuildRefused(f"accounts clash on {rebuild.standby}: " + "; ".join(refused.reasons)) from None
        for command in commands:
            connection.run(command)
        if wanted_accounts:
            connection.run(login_plan.set_password_hashes(f"{meta}/shadow", [account.name for account in wanted_accounts]))
    for sentence in sentences:
        logger.info(sentence)
    return sentences + list(merge.refused)


@task(name="place-files", **STEP)
def place_files(fleet: Fleet, rebuild: rebuild_plan.RebuildPlan, scratch: str) -> dict:
    """Copy data, application and configuration from scratch to their live paths (local rsync),
    keeping whatever they replace in this run's folder; then one program on the standby
    neutralises hostile data in them and lists the kept files (``tasks/live_data.py``)."""
    logger = get_run_logger()
    placed = []
    backup_root = live_plan.backup_folder(replication_layout.service_root(rebuild.service), "rebuild", run_tag())
    with access.connect(fleet, rebuild.standby) as connection:
        present = set(
            plan.parse_existing(
                connection.run(shell.existing_paths([f"{scratch}/{shell.relative(path)}" for path in rebuild.live_paths])).stdout
            )
        )
        for path in rebuild.live_paths:
            if f"{scratch}/{shell.relative(path)}" not in present:
                logger.warning("%s is not in the snapshot; skipped", path)
                continue
            connection.run(rebuild_plan.place_command(scratch, path, backup_root), timeout=RESTIC_TIMEOUT)
            placed.append(path)
        report = neutralise(
            connection,
            fleet.service(rebuild.service),
            [(path, path) for path in placed],
            kept=[(backup_root + path, path) for path in placed],
            logger=logger,
        )
    logger.info("placed on %s: %s (anything they replaced is kept in %s)", rebuild.standby, ", ".join(placed), backup_root)
    return {"placed": placed, "backup_dir": backup_root, "live_data": report.as_dict(), "markdown": report.markdown()}


@task(name="issue-temporary-accounts", cache_policy=NO_CACHE)
def issue_temporary_accounts(
    fleet: Fleet,
    rebuild: rebuild_plan.RebuildPlan,
    scratch: str,
    run_name: str,
    flow_run_id: str | None,
    now: datetime | None = None,
) -> dict:
    """Temporary logins for the service's users: random passwords, expiry on the host and in the
    inventory, passwords delivered only in a root-only file on the orchestrator.

    Not retried by Prefect: a second attempt would make new passwords; re-running the flow
    renews the accounts instead.
    """
    logger = get_run_logger()
    now = now or datetime.now(timezone.utc)
    meta = f"{scratch}/{shell.relative(manifest_plan.META_DIR)}/{rebuild.service}/accounts"
    with (
        access.connect(fleet, rebuild.standby) as connection,
        host_lock(connection, f"temporary logins of {rebuild.service}'s rebuild"),
    ):
        accounts = _account_merge(fleet, connection, rebuild, meta).accepted_accounts()
        logins = login_plan.temporary_accounts(
            accounts,
            now,
            rebuild.temporary_hours,
            only=[name.removeprefix(account_plan.TEMPORARY_PREFIX) for name in rebuild.temporary_logins],
        )
        if not logins:
            logger.info("no service accounts in the snapshot: no temporary logins issued")
            return {"logins": [], "delivery_file": None}
        present = {account.name for account in account_plan.parse_passwd(connection.run(["cat", "/etc/passwd"]).text)}
        passwords = {login.name: secrets.token_urlsafe(18) for login in logins}
        delivery = _delivery_file(rebuild, run_name, logins, passwords)
        for login in logins:
            for command in login_plan.temporary_account_commands(login, login.name in present):
                connection.run(command)
        lines = "".join(f"{login.name}:{passwords[login.name]}\n" for login in logins)
        connection.run(["chpasswd"], stdin=lines.encode())
    del passwords, lines
    with session() as db:
        for login in logins:
            db.add(
                TemporaryAccountRow(
                    service=rebuild.service,
                    server=rebuild.standby,
                    user_name=login.name,
                    for_user=login.for_user,
                    flow_run_id=flow_run_id,
                    created_at=now,
                    expires_at=login.expires_at,
                )
            )
    expires = logins[0].expires_at.isoformat(timespec="minutes")
    logger.info(
        "issued temporary logins %s on %s, valid until %s; passwords are in %s (root only)",
        ", ".join(login.name for login in logins),
        rebuild.standby,
        expires,
        delivery,
    )
    return {"logins": [login.name for login in logins], "expires_at": expires, "delivery_file": str(delivery)}


def _delivery_file(rebuild: rebuild_plan.RebuildPlan, run_name: str, logins, passwords: dict[str, str]) -> Path:
    """Write the passwords for the operator: created 0600 (never briefly wider), folder 0700."""
    folder = hotspare_home() / "temporary-accounts"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / f"{rebuild.service}-{run_name}.txt"
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"# Temporary logins for {rebuild.service} on {rebuild.standby} ({rebuild.standby_address}).\n")
        handle.write("# Hand each to its user over a trusted channel; they stop working at the expiry time.\n")
        for login in logins:
            handle.write(
                f"{login.name}\t{passwords[login.name]}\tfor {login.for_user}\texpires {login.expires_at.isoformat(timespec='minutes')}\n"
            )
    return path


@task(name="activate-service", **STEP)
def activate(fleet: Fleet, rebuild: rebuild_plan.RebuildPlan) -> list[str]:
    """Run the service's activate commands on the standby."""
    logger = get_run_logger()
    done = []
    with access.connect(fleet, rebuild.standby) as connection:
        for command in rebuild.activate:
            result = connection.run(list(command), timeout=300)
            done.append(" ".join(command))
            logger.info("ran %s: %s", " ".join(command), result.text.strip()[:200])
    if not done:
        logger.info("the service has no activate commands; nothing started")
    return done


@task(name="health-check", cache_policy=NO_CACHE)
def health_check(fleet: Fleet, rebuild: rebuild_plan.RebuildPlan, within: float = 30.0) -> dict:
    """Poll the app directly on the standby (its health URL with the standby's address)."""
    service = fleet.service(rebuild.service)
    started = time.monotonic()
    deadline = started + within
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            if service.health_url:
                status, _body, _address = http_get_via_dns(
                    service.health_url, lambda _name: [rebuild.standby_address], timeout=3.0
                )
                if 200 <= status < 300:
                    break
                last = f"HTTP {status}"
            elif tcp_reachable(rebuild.standby_address, service.app_port, 2.0):
                break
        except OSError as error:
            last = str(error)
        time.sleep(0.25)
    else:
        raise TransientError(f"{rebuild.service} on {rebuild.standby} is not healthy after {within:g} s: {last}")
    seconds = round(time.monotonic() - started, 3)
    get_run_logger().info("%s answers on %s after %.1f s", rebuild.service, rebuild.standby, seconds)
    return {"healthy_after_s": seconds}


@task(name="record-rebuild", cache_policy=NO_CACHE)
def record_rebuild(rebuild: rebuild_plan.RebuildPlan) -> str:
    """The standby now serves the service; no mirror protects it yet."""
    with session() as db:
        row = db.get(ServiceRow, rebuild.service)
        move(row, Event.rebuilt, get_run_logger())
        row.active_server, row.mirror_server = rebuild.standby, None
        row.current_copy_id = None
        row.updated_at = utcnow()
    sentence = f"inventory: {rebuild.service} active on {rebuild.standby}, no mirror, state unprotected"
    get_run_logger().info(sentence)
    return sentence


@task(name="clean-standby", cache_policy=NO_CACHE)
def clean_scratch(fleet: Fleet, rebuild: rebuild_plan.RebuildPlan, run_name: str) -> str:
    scratch = rebuild_plan.restore_folder(rebuild.service, run_name)
    with access.connect(fleet, rebuild.standby) as connection:
        connection.run(shell.remove_tree(scratch, rebuild_plan.RESTORE_BASE), timeout=600)
    return f"removed {rebuild.standby}:{scratch}"


# ----- expiry ------------------------------------------------------------------------------------------------


@task(name="disable-temporary-accounts", cache_policy=NO_CACHE)
def disable_due_accounts(fleet: Fleet, now: datetime) -> dict:
    """Lock and expire every temporary login whose time is up; record each in the inventory."""
    logger = get_run_logger()
    with session() as db:
        due = login_plan.due_for_expiry(db.exec(select(TemporaryAccountRow)).all(), now)
    disabled, failed = [], []
    by_server: dict[str, list[TemporaryAccountRow]] = {}
    for row in due:
        by_server.setdefault(row.server, []).append(row)
    for server, rows in by_server.items():
        try:
            with access.connect(fleet, server) as connection, host_lock(connection, "expiry of temporary logins"):
                present = {a.name for a in account_plan.parse_passwd(connection.run(["cat", "/etc/passwd"]).text)}
                for row in rows:
                    if row.user_name in present:
                        for command in login_plan.disable_account_commands(row.user_name):
                            connection.run(command)
                        reason = "expired: locked and account expiry set"
                    else:
                        reason = "expired: account no longer exists on the server"
                    with session() as db:
                        stored = db.get(TemporaryAccountRow, row.id)
                        stored.disabled_at, stored.disabled_reason = utcnow(), reason
                    disabled.append(f"{row.user_name}@{server}")
                    logger.info("disabled temporary login %s on %s (%s)", row.user_name, server, reason)
        except Exception as error:
            failed.extend(f"{row.user_name}@{server}" for row in rows if f"{row.user_name}@{server}" not in disabled)
            logger.error("could not disable temporary logins on %s: %s", server, error)
    if not due:
        logger.info("no temporary login is due for expiry at %s", now.isoformat(timespec="minutes"))
    return {"disabled": disabled, "failed": failed}
