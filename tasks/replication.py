"""Replication steps: thin tasks that execute the plans of ``hotspare.planning.replication``.

Data flows host to host: the mirror runs rsync and pulls from production with a scoped,
short-lived transfer key (``tasks/transfer_access.py``). The orchestrator only sends commands
and reads small outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from hotspare import access
from hotspare.adapters.errors import PermanentError, TransientError
from hotspare.fleet import Fleet
from hotspare.inventory import copies, locks, runs
from hotspare.inventory.models import CopyRow, utcnow
from hotspare.inventory import copy_stores
from hotspare.planning import accounts as account_plan
from hotspare.planning import host_lock as host_lock_plan
from hotspare.planning import copy_backends
from hotspare.planning import preflight_facts
from hotspare.planning import replication as plan
from hotspare.planning import shell_programs as shell
from hotspare.planning import verification_scope
from tasks.host_lock import host_lock
from tasks.retry import TRANSIENT_RETRIES
from tasks.transfer_access import pull

STEP = dict(cache_policy=NO_CACHE, **TRANSIENT_RETRIES)


class Refused(PermanentError):
    """A safety check said no; nothing was changed."""


@dataclass(frozen=True)
class CopyPlan:
    service: str
    source: str
    target: str
    copy_id: str
    tree: str
    link_dest: str | None
    resume_from: str | None  # an unverified copy folder to reuse (cheap resume)
    paths: tuple[str, ...]
    data_totals: dict
    source_clock: float  # production's clock (epoch s) at preflight: files newer changed during the copy
    backend: str = copy_backends.HARD_LINKS  # how the mirror keeps copies (planning/copy_backends.py)
    prepare: tuple[tuple[str, ...], ...] = ()  # mirror commands run before the transfer
    copy_dest: str | None = None  # a local folder whose identical files are copied, not sent
    hooks: int = 0  # pre-sync commands the fleet file gives for production


def _spec(fleet: Fleet, service: str) -> dict:
    return fleet.service(service).model_dump(mode="json")


# ---------------------------------------------------------------------------------------
# Helpers


def write_private_sftp(sftp, path: str, content: bytes) -> None:
    """Write a new file ``path`` over SFTP, mode 0600 before the first byte (it may hold hashes)."""
    with sftp.open(path, "wx") as handle:
        handle.chmod(0o600)
        handle.write(content)


# ---------------------------------------------------------------------------------------
# Preflight


@task(name="preflight", **STEP)
def preflight(service: str, force: bool = False) -> CopyPlan:
    """Both hosts reachable, room on the mirror, a sane source; otherwise refuse, touching nothing."""
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    spec = _spec(fleet, service)
    row = copies.service_row(service)
    if not row.mirror_server:
        raise Refused(f"service {service} has no mirror assigned (state {row.state}); nothing to replicate to")
    source, target = row.active_server, row.mirror_server
    on_production, on_mirror = _host_facts(fleet, service, source, target, spec["data_paths"])
    previous = _baseline_copy(service, target, on_mirror)
    previous_totals = plan.SourceTotals(previous.total_files, previous.total_bytes) if previous else None
    decision = plan.judge_source(on_production.totals, previous_totals, spec["max_shrink"],
                                 list(on_production.missing_paths), force)
    logger.info(decision.reason)
    if not decision.go:
        raise Refused(decision.reason)
    totals = on_production.totals
    store = copy_backends.parse_store_facts(on_mirror.store_output)
    choice = copy_backends.choose_backend(store, fleet.replication.copy_backend)
    known = copy_stores.store_of(service, target)
    logger.info(copy_backends.judge_backend_switch(known.backend if known else None, choice).reason)
    copy_stores.record(service, target, backend=choice.backend, reason=choice.reason, decided_at=utcnow())
    baseline_is_snapshot = bool(previous) and choice.backend == copy_backends.SNAPSHOT and on_mirror.baseline_is_snapshot
    room = plan.judge_room(on_mirror.available_bytes, totals, previous is not None)
    logger.info(room.reason)
    if not room.go:
        raise Refused(room.reason)
    clock = on_production.clock
    copy_id = _new_copy_id(service)
    link_base = previous.id if previous else None
    resume = on_mirror.resumable if choice.backend == copy_backends.HARD_LINKS else None
    paths = tuple(plan.source_paths(spec))
    if choice.backend == copy_backends.SNAPSHOT:
        prepare = copy_backends.prepare_work_argvs(service, store, link_base if baseline_is_snapshot else None,
                                                   _data_paths(spec))
        # a new working tree beside hard-linked copies: copy their identical files locally
        # (never link: a permission change in the working tree would reach the old copy)
        fresh = store.work != "subvolume"
        copy_dest = plan.copy_tree(service, link_base) if link_base and fresh and not baseline_is_snapshot else None
        logger.info("new copy %s of %s: %s -> %s (working subvolume %s, then read-only snapshots%s)", copy_id, service,
                    source, target, copy_backends.work_root(service),
                    "; the working subvolume is made first" if fresh else "")
        return CopyPlan(service, source, target, copy_id, copy_backends.work_tree(service), None, None, paths,
                        asdict(totals), clock, choice.backend, tuple(tuple(argv) for argv in prepare), copy_dest,
                        len(spec["pre_sync"]))
    link_dest = plan.copy_tree(service, link_base) if link_base else None
    logger.info("new copy %s of %s: %s -> %s (hard links against %s%s)", copy_id, service, source, target,
                link_base or "nothing: full copy", f", resuming {resume}" if resume else "")
    return CopyPlan(service, source, target, copy_id, plan.copy_tree(service, copy_id), link_dest, resume,
                    paths, asdict(totals), clock, hooks=len(spec["pre_sync"]))


def _data_paths(spec: dict) -> list[str]:
    return [path.rstrip("/") or "/" for path in spec["data_paths"]]


def _new_copy_id(service: str) -> str:
    base = f"{service}-{plan.copy_id_for(datetime.now(timezone.utc))}"
    taken = {row.id for row in copies.copies_of(service)}
    candidate, number = base, 1
    while candidate in taken:
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def _host_facts(fleet: Fleet, service: str, source: str, target: str, data_paths: list[str]):
    """Production's and the mirror's answers to the preflight's questions, both hosts at once,
    one round trip each (``planning/preflight_facts.py``)."""
    rows = copies.copies_of(service, target)  # newest first
    verified = [row.id for row in rows if row.status == "verified"]
    newest_verified = next((index for index, row in enumerate(rows) if row.status == "verified"), len(rows))
    unverified = [row.id for row in rows[:newest_verified] if row.status in ("in-progress", "copied", "failed")]

    def ask(server: str, argv: list[str]) -> str:
        with access.connect(fleet, server) as connection:
            return connection.run(argv, timeout=600).text

    with ThreadPoolExecutor(2) as pool:
        production = pool.submit(ask, source, preflight_facts.production_facts_argv(data_paths))
        mirror = pool.submit(ask, target, preflight_facts.mirror_facts_argv(service, verified, unverified))
        return preflight_facts.parse_production_facts(production.result()), preflight_facts.parse_mirror_facts(mirror.result())


def _baseline_copy(service: str, target: str, on_mirror) -> CopyRow | None:
    """The newest verified copy still on the mirror's disk: the baseline of the source checks
    and the base of the next copy. A verified copy that is gone from the disk (mirror
    reinstalled, folder removed by hand) is marked missing, so nothing counts on it."""
    for copy_id in on_mirror.gone:
        copies.update_copy(copy_id, status="missing")
        get_run_logger().warning("copy %s is no longer on %s; marked missing", copy_id, target)
    return next((row for row in copies.copies_of(service, target) if row.id == on_mirror.baseline), None)


# ---------------------------------------------------------------------------------------
# Hooks and copy


@task(name="pre-sync hooks", **STEP)
def run_pre_sync(service: str, source: str) -> int:
    """Run the fleet file's pre-sync commands on production (e.g. a database dump)."""
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    commands = fleet.service(service).pre_sync
    if not commands:
        logger.info("no pre-sync hooks for %s", service)
        return 0
    with access.connect(fleet, source) as production:
        for argv in commands:
            production.run(argv, timeout=1800)
            logger.info("pre-sync hook ran on %s: %s", source, " ".join(argv))
    return len(commands)


@task(name="copy to mirror", **STEP)
def copy_to_mirror(copy_plan: CopyPlan, run_tag: str) -> dict:
    """The mirror pulls production into the new copy folder, hard-linking unchanged files.

    The mirror's own work before the transfer (the working subvolume) and after it (the
    read-only snapshot) runs while production installs and removes the transfer key."""
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    service = copy_plan.service
    if copy_plan.resume_from and copy_plan.resume_from != copy_plan.copy_id:
        with access.connect(fleet, copy_plan.target) as mirror:
            mirror.run(["mv", "--", plan.copy_root(service, copy_plan.resume_from), plan.copy_root(service, copy_plan.copy_id)])
            mirror.run(copy_backends.unshare_resumed_copy_argv(service, copy_plan.copy_id), timeout=1800)
        copies.update_copy(copy_plan.resume_from, status="pruned", ended_at=utcnow())
        logger.info("resuming the interrupted copy %s as %s", copy_plan.resume_from, copy_plan.copy_id)
    _record_copy_start(copy_plan)

    def mirror_runs(argvs: list[list[str]]):
        def run() -> None:
            with access.connect(fleet, copy_plan.target) as mirror:
                for argv in argvs:
                    mirror.run(argv, timeout=600)
        return run if argvs else None

    def before() -> None:  # the store closed to all but root, the working subvolume (snapshots), the accounts
        mirror_runs([copy_backends.close_store_argv(service), *(list(argv) for argv in copy_plan.prepare)])()
        screened["accounts"] = stage_accounts(fleet, service, copy_plan.source, copy_plan.target, copy_plan.tree)

    screened: dict = {}
    snapshot = [copy_backends.snapshot_copy_argv(service, copy_plan.copy_id, _data_paths(_spec(fleet, service)))] \
        if copy_plan.backend == copy_backends.SNAPSHOT else []
    try:
        result, outcome = pull(
            fleet, service, copy_plan.source, copy_plan.target, list(copy_plan.paths), run_tag,
            lambda peer: plan.rsync_copy_argv(peer, list(copy_plan.paths), copy_plan.tree, copy_plan.link_dest,
                                              fleet.service(service).exclude, copy_dest=copy_plan.copy_dest),
            f"copy {copy_plan.source} -> {copy_plan.target}",
            "The previous verified copy is untouched; the next run resumes.",
            before=before, after=mirror_runs(snapshot))
        if snapshot:
            logger.info("copy %s is a read-only snapshot of the working subvolume", copy_plan.copy_id)
    except (PermanentError, TransientError):
        copies.update_copy(copy_plan.copy_id, status="failed", ended_at=utcnow())
        raise
    if outcome.kind == "partial":
        logger.warning("copy %s is incomplete: %s; verification decides whether it may become current",
                       copy_plan.copy_id, outcome.reason)
    stats = plan.parse_rsync_stats(result.text)
    copies.update_copy(
        copy_plan.copy_id, status="copied", ended_at=utcnow(), bytes_transferred=stats.bytes_transferred,
        files_transferred=stats.files_transferred, total_files=copy_plan.data_totals["files"],
        total_bytes=copy_plan.data_totals["bytes"],
    )
    logger.info("copied %s: %d files / %d bytes transferred of %d files / %d bytes", copy_plan.copy_id,
                stats.files_transferred, stats.bytes_transferred, stats.total_files, stats.total_bytes)
    return asdict(stats) | {"source_clock_start": copy_plan.source_clock, "failed_files": outcome.failed_paths,
                            "changed_files": verification_scope.itemized_files(result.text),
                            "accounts": screened.get("accounts", {})}


def stage_accounts(fleet: Fleet, service: str, source: str, target: str, tree: str) -> dict:
    """Only the service's accounts travel: read production's account files over the
    orchestrator's own login, keep the service's lines (``account_plan.service_accounts``) and
    write just those into the copy (``<tree>/etc/passwd`` …), through stdin. The transfer key
    never reads /etc/shadow, and the mirror never holds root's or another account's hash."""
    logger = get_run_logger()
    rules = fleet.service(service).accounts
    with access.connect(fleet, source) as production:
        files = shell.split_files(account_plan.ACCOUNT_FILES,
                                  production.run(shell.read_files(account_plan.ACCOUNT_FILES), timeout=60).stdout)
    own = account_plan.service_accounts(files, rules.uid_min, rules.uid_max, rules.users)
    with access.connect(fleet, target) as mirror:
        for path in account_plan.ACCOUNT_FILES:
            mirror.run(shell.replace_secret_file(tree + path), stdin=own.files[path].encode(errors="surrogateescape"))
    for sentence in own.refused:
        logger.warning("accounts of %s on %s: %s", service, source, sentence)
    logger.info("accounts of %s taken from %s: users %s, groups %s (every other line left on production)", service,
                source, ", ".join(own.users) or "none", ", ".join(own.groups) or "none")
    return {"users": list(own.users), "groups": list(own.groups), "refused": list(own.refused)}


def _record_copy_start(copy_plan: CopyPlan) -> None:
    clock = copy_plan.source_clock
    existing = {row.id for row in copies.copies_of(copy_plan.service)}
    if copy_plan.copy_id in existing:
        copies.update_copy(copy_plan.copy_id, status="in-progress", source_clock_start=clock)
        return
    copies.add_copy(CopyRow(
        id=copy_plan.copy_id, service=copy_plan.service, source_server=copy_plan.source,
        target_server=copy_plan.target, path=plan.copy_root(copy_plan.service, copy_plan.copy_id),
        source_clock_start=clock,
    ))


# ---------------------------------------------------------------------------------------
# Promotion, accounts, retention


@task(name="make copy current", **STEP)
def make_current(service: str, copy_id: str, target: str, holder: str, run_id: int) -> dict:
    """Promote the verified copy, merge its accounts into the mirror, prune old copies: one task
    run for three short steps (a task run of its own each cost the orchestrator and the Prefect
    server CPU for every service of a fleet run). Each step is timed in the run's record and
    first checks that this run still holds the service's lock."""
    lease = locks.held(holder)
    if lease is None:
        raise locks.LeaseLost(f"{holder} holds no lock of {service}: not going to promote copy {copy_id}")
    with runs.step(run_id, "promote"):
        lease.check(f"promote copy {copy_id}")
        promote_copy(service, copy_id, target)
    with runs.step(run_id, "accounts"):
        lease.check("merge accounts on the mirror")
        accounts = apply_accounts(service, copy_id, target, locked=True)  # the mirror serves nothing yet
    with runs.step(run_id, "prune"):
        lease.check("prune old copies")
        pruned = prune_copies(service, target)
    return {"accounts": accounts, "pruned": pruned}


def promote_copy(service: str, copy_id: str, target: str) -> None:
    """Make a verified copy current: the mirror's ``current`` link and the inventory."""
    fleet = access.loaded_fleet()
    with access.connect(fleet, target) as mirror:
        link = plan.service_root(service) + "/current"
        mirror.run(["sh", "-c", 'ln -sfn "$1" "$2.new" && mv -T "$2.new" "$2"', "sh", f"copies/{copy_id}", link])
    copies.make_current(service, copy_id)
    get_run_logger().info("copy %s is now the current copy of %s on %s", copy_id, service, target)


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
    with access.connect(fleet, target) as mirror, host_lock(mirror, f"merge of {service}'s accounts") as held, \
            mirror.open_sftp() as sftp:
        def read(path: str) -> str:
            with sftp.open(path, "r") as handle:
                return handle.read().decode(errors="surrogateescape")  # the target's own bytes stay as they are

        folders = {posixpath.dirname(path) for path in account_plan.ACCOUNT_FILES}
        for leftover in host_lock_plan.leftovers(account_plan.ACCOUNT_FILES, {f: sftp.listdir(f) for f in folders}):
            sftp.remove(leftover)  # a killed run's new file
        # the copy holds the service's lines only (``stage_accounts``); screened again all the
        # same, for a copy made before that rule (its files were production's whole files)
        own = account_plan.service_accounts({path: read(tree + path) for path in account_plan.ACCOUNT_FILES},
                                            rules.uid_min, rules.uid_max, rules.users)
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
                read_digests = {path: hashlib.sha256(current[path].encode(errors="surrogateescape")).hexdigest()
                                for path in changed}
                mirror.run(host_lock_plan.replace_checked_argv(suffix, read_digests))
        except BaseException:  # nothing of this run's stays behind (if the host still answers)
            for path in changed:
                with contextlib.suppress(OSError):
                    sftp.remove(path + suffix)
            raise
    refused = [*own.refused, *merge.refused]
    for sentence in refused:
        logger.warning("accounts of %s on %s: %s", service, target, sentence)
    logger.info("accounts of %s on %s: %s (%d file(s) updated, %d entr%s refused)", service, target,
                ", ".join(merge.users) or "none", len(changed), len(refused), "y" if len(refused) == 1 else "ies")
    return {"users": list(merge.users), "groups": list(merge.groups), "files_updated": changed, "refused": refused}


def prune_copies(service: str, target: str) -> list[str]:
    """Remove the oldest copies beyond the fleet's ``copies_to_keep``; never the current one or
    the one a failover uses."""
    fleet = access.loaded_fleet()
    keep = fleet.copies_to_keep_of(fleet.service(service))
    rows = copies.copies_of(service, target)
    service_row = copies.service_row(service)
    # never the current copy, nor the copy an in-flight or the last failover made live
    protected = {service_row.current_copy_id, (service_row.failover or {}).get("copy_id")} - {None}
    doomed = plan.copies_to_prune([row.id for row in rows], keep, protected)
    if doomed:
        with access.connect(fleet, target) as mirror:
            for copy_id in doomed:
                mirror.run(copy_backends.remove_copy_argv(service, copy_id), timeout=1800)
                copies.update_copy(copy_id, status="pruned")
    get_run_logger().info("kept %d copies of %s, pruned %s", keep, service, ", ".join(doomed) or "none")
    return doomed
