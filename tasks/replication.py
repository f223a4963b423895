"""Replication steps: thin tasks that execute the plans of ``hotspare.planning.replication``.

Data flows host to host: the mirror runs rsync and pulls from production with a scoped,
short-lived transfer key (``tasks/transfer_access.py``). The orchestrator only sends commands
and reads small outputs.
"""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from hotspare import access
from hotspare.adapters.errors import PermanentError, TransientError
from hotspare.errors import Refused  # its home; importable from here as before
from hotspare.fleet import Fleet
from hotspare.inventory import copies, copy_stores, locks, runs
from hotspare.inventory.models import CopyRow, utcnow
from hotspare.planning import copy_backends, host_clocks, preflight_facts, run_programs, space, space_recovery, verification_scope
from hotspare.planning import replication as plan
from hotspare.planning import snapshot_shipping as shipping
from hotspare.planning.containment import each_argv
from tasks import clock_offsets, mirror_steps
from tasks.retry import TRANSIENT_RETRIES
from tasks.snapshot_shipping import ship
from tasks.transfer_access import pull

STEP = dict(cache_policy=NO_CACHE, **TRANSIENT_RETRIES)


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
    bound: int = 0  # bytes the service's area on the mirror may hold (planning/space.py)
    bound_why: str = ""  # where the bound comes from, for the sentences
    needed: int = 0  # about what this copy adds to the area
    # snapshot shipping (planning/snapshot_shipping.py): the data paths' snapshots; ``paths`` then
    # holds only the other declared paths, which still travel by rsync
    shipments: tuple = ()
    # copies beyond copies_to_keep at the preflight (never the current one nor a failover's): removed
    # before the transfer when the service's group is at its bound (planning/space_recovery.py)
    prunable: tuple[str, ...] = ()


def _spec(fleet: Fleet, service: str) -> dict:
    return fleet.service(service).model_dump(mode="json")


# ---------------------------------------------------------------------------------------
# Helpers


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
    (on_production, on_production_received, account_files), on_mirror = _host_facts(
        fleet, service, source, target, spec["data_paths"]
    )
    previous = _baseline_copy(service, target, on_mirror)
    previous_totals = plan.SourceTotals(previous.total_files, previous.total_bytes) if previous else None
    decision = plan.judge_source(
        on_production.totals, previous_totals, spec["max_shrink"], list(on_production.missing_paths), force
    )
    logger.info(decision.reason)
    if not decision.go:
        raise Refused(decision.reason)
    totals = on_production.totals
    store = copy_backends.parse_store_facts(on_mirror.store_output)
    choice = copy_backends.choose_backend(store, fleet.replication.copy_backend)
    copy_id = _new_copy_id(service)
    mirror_steps.stage_accounts_read(fleet, service, copy_id, source, account_files)
    paths = tuple(plan.source_paths(spec))
    wish = copy_backends.shipping_choice(store, fleet.replication.copy_backend)  # bounded by simple quotas?
    shipped = shipping.plan_shipping(
        copy_id,
        _data_paths(spec),
        list(paths),
        on_production.shipping,
        on_mirror.shipping,
        choice.backend == copy_backends.SNAPSHOT,
        shipping.SHIPPING_PREFERENCE if wish.go else fleet.replication.copy_backend,
        refusal=wish.reason,
    )
    shown = copy_backends.BackendChoice(shipping.SHIPPING, f"{shipped.reason}; {wish.reason}") if shipped.ship else choice
    if choice.backend == copy_backends.SNAPSHOT and not shipped.ship:  # status says why it does not ship
        shown = copy_backends.BackendChoice(choice.backend, f"{choice.reason}; {shipped.reason}")
    known = copy_stores.store_of(service, target)
    previous_backend = known.backend if known else None
    logger.info(copy_backends.judge_backend_switch(previous_backend, shown).reason)
    copy_stores.record(service, target, backend=shown.backend, reason=shown.reason, decided_at=utcnow())
    baseline_is_snapshot = bool(previous) and choice.backend == copy_backends.SNAPSHOT and on_mirror.baseline_is_snapshot
    room = plan.judge_room(on_mirror.available_bytes, totals, previous is not None)
    logger.info(room.reason)
    if not room.go:
        raise Refused(room.reason)
    bound, bound_why = space.bound_of(fleet, service, target, on_mirror.filesystem_bytes)
    needed = plan.room_needed(totals, previous is not None)
    if choice.backend != copy_backends.SNAPSHOT:  # no quota group: keep the reserve free for the others
        reserve = space.judge_reserve(target, on_mirror.available_bytes, on_mirror.filesystem_bytes, needed)
        logger.info(reserve.reason)
        if not reserve.go:
            raise Refused(reserve.reason)
    sized = dict(bound=bound, bound_why=bound_why, needed=needed, prunable=tuple(_doomed(service, target)))
    clock = on_production.clock
    offset = clock_offsets.record(source, clock, on_production_received)
    if offset is not None and host_clocks.is_skewed(offset):
        logger.warning(
            "%s: the transfer key's expiry is computed on production's clock, which its sshd checks",
            host_clocks.skew_sentence("production", source, offset),
        )
    link_base = previous.id if previous else None
    resume = on_mirror.resumable if choice.backend == copy_backends.HARD_LINKS else None
    if choice.backend == copy_backends.SNAPSHOT:
        prepare = copy_backends.prepare_work_argvs(
            service,
            store,
            link_base if baseline_is_snapshot else None,
            [] if shipped.ship else _data_paths(spec),
            qgroup=space.qgroup_id(service),
        )
        if shipped.stale:  # a broken chain: the next copy starts a new one with a full send
            prepare.append(shipping.remove_stale_argv(service, shipped.stale))
        if shipped.ship:
            logger.info(
                "new copy %s of %s: %s -> %s (snapshots shipped; %s by rsync into %s)",
                copy_id,
                service,
                source,
                target,
                ", ".join(shipped.rest) or "nothing else",
                copy_backends.work_root(service),
            )
            return CopyPlan(
                service,
                source,
                target,
                copy_id,
                copy_backends.work_tree(service),
                None,
                None,
                shipped.rest,
                asdict(totals),
                clock,
                choice.backend,
                tuple(tuple(argv) for argv in prepare),
                None,
                len(spec["pre_sync"]),
                shipments=shipped.shipments,
                **sized,
            )
        # a new working tree beside hard-linked copies: copy their identical files locally
        # (never link: a permission change in the working tree would reach the old copy)
        fresh = store.work != "subvolume"
        copy_dest = plan.copy_tree(service, link_base) if link_base and fresh and not baseline_is_snapshot else None
        logger.info(
            "new copy %s of %s: %s -> %s (working subvolume %s, then read-only snapshots%s)",
            copy_id,
            service,
            source,
            target,
            copy_backends.work_root(service),
            "; the working subvolume is made first" if fresh else "",
        )
        return CopyPlan(
            service,
            source,
            target,
            copy_id,
            copy_backends.work_tree(service),
            None,
            None,
            paths,
            asdict(totals),
            clock,
            choice.backend,
            tuple(tuple(argv) for argv in prepare),
            copy_dest,
            len(spec["pre_sync"]),
            **sized,
        )
    link_dest = plan.copy_tree(service, link_base) if link_base else None
    logger.info(
        "new copy %s of %s: %s -> %s (hard links against %s%s)",
        copy_id,
        service,
        source,
        target,
        link_base or "nothing: full copy",
        f", resuming {resume}" if resume else "",
    )
    return CopyPlan(
        service,
        source,
        target,
        copy_id,
        plan.copy_tree(service, copy_id),
        link_dest,
        resume,
        paths,
        asdict(totals),
        clock,
        hooks=len(spec["pre_sync"]),
        **sized,
    )


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
    one round trip each (``planning/preflight_facts.py``); production's with the moment it
    arrived (its clock's offset from ours)."""
    rows = copies.copies_of(service, target)  # newest first
    verified = [row.id for row in rows if row.status == "verified"]
    newest_verified = next((index for index, row in enumerate(rows) if row.status == "verified"), len(rows))
    unverified = [row.id for row in rows[:newest_verified] if row.status in ("in-progress", "copied", "failed")]

    def ask(server: str, argv: list[str]) -> tuple[bytes, float]:
        with access.connect(fleet, server) as connection:
            output = connection.run(argv, timeout=600).stdout
            return output, time.time()  # production's clock is its facts' last line: offset against arrival

    with ThreadPoolExecutor(2) as pool:
        # each thread in a copy of the run's context: the run's SSH certificate, its logger
        production = pool.submit(
            contextvars.copy_context().run,
            ask,
            source,
            run_programs.with_account_files(preflight_facts.production_facts_argv(data_paths)),
        )
        mirror = pool.submit(
            contextvars.copy_context().run, ask, target, preflight_facts.mirror_facts_argv(service, verified, unverified)
        )
        production_output, received = production.result()
        production_text, account_files = run_programs.split_account_files(production_output)
        return (
            (preflight_facts.parse_production_facts(production_text), received, account_files),
            preflight_facts.parse_mirror_facts(mirror.result()[0].decode(errors="replace")),
        )


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


@task(name="copy to mirror", **STEP)
def copy_to_mirror(copy_plan: CopyPlan, run_tag: str, holder: str | None = None) -> dict:
    """The mirror pulls production into the new copy folder, hard-linking unchanged files.

    The mirror's own work before the transfer (the working subvolume) and after it (the
    read-only snapshot) runs while production installs and removes the transfer key."""
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    service = copy_plan.service
    if copy_plan.resume_from and copy_plan.resume_from != copy_plan.copy_id:
        with access.connect(fleet, copy_plan.target) as mirror:
            mirror.run(
                each_argv(
                    [
                        ["mv", "--", plan.copy_root(service, copy_plan.resume_from), plan.copy_root(service, copy_plan.copy_id)],
                        copy_backends.unshare_resumed_copy_argv(service, copy_plan.copy_id),
                    ]
                ),
                timeout=1800,
            )
        copies.update_copy(copy_plan.resume_from, status="pruned", ended_at=utcnow())
        logger.info("resuming the interrupted copy %s as %s", copy_plan.resume_from, copy_plan.copy_id)
    _record_copy_start(copy_plan)

    def before() -> None:  # one mirror program: the store closed to all but root, the service's bound, the
        # working subvolume, the accounts staged (tasks/mirror_steps.py)
        screened["accounts"], bound = mirror_steps.prepare(fleet, copy_plan)
        if bound is not None and not bound.go:
            raise Refused(bound.reason)

    screened: dict = {}

    def rsync_argv(peer):
        return plan.rsync_copy_argv(
            peer,
            list(copy_plan.paths),
            copy_plan.tree,
            copy_plan.link_dest,
            fleet.service(service).exclude,
            copy_dest=copy_plan.copy_dest,
        )

    shipped: dict = {}
    hooks = [list(argv) for argv in fleet.service(service).pre_sync]  # run with the key's install
    lease = locks.held(holder) if holder else None
    still_ours = (lambda: lease.check("copy production to the mirror")) if lease is not None else None
    if hooks:
        logger.info(
            "pre-sync hooks of %s run on %s right before the transfer key is installed: %s",
            service,
            copy_plan.source,
            "; ".join(" ".join(argv) for argv in hooks),
        )
    try:
        if copy_plan.shipments:  # data paths by btrfs send | receive, the rest by rsync meanwhile
            text, shipped, failed = ship(fleet, copy_plan, run_tag, rsync_argv, before=before, hooks=hooks, still_ours=still_ours)
        else:
            # the copy's read-only snapshot in the transfer's own program, once rsync let it go on
            snapshot = (  # metadata only, so with the group's limit lifted: a copy that reached its bound is still made
                space_recovery.under_lifted_limit(
                    service,
                    copy_backends.snapshot_copy_argv(
                        service, copy_plan.copy_id, _data_paths(_spec(fleet, service)), qgroup=space.qgroup_id(service)
                    ),
                )
                if copy_plan.backend == copy_backends.SNAPSHOT
                else None
            )
            result, outcome = pull(
                fleet,
                service,
                copy_plan.source,
                copy_plan.target,
                list(copy_plan.paths),
                run_tag,
                rsync_argv,
                f"copy {copy_plan.source} -> {copy_plan.target}",
                "The previous verified copy is untouched; the next run resumes.",
                before=before,
                then=snapshot,
                hooks=hooks,
                still_ours=still_ours,
            )
            text, failed = result.text, outcome.failed_paths
            if snapshot:
                if not plan.snapshot_made(text):
                    raise TransientError(
                        f"on {copy_plan.target}: the read-only snapshot of copy {copy_plan.copy_id} "
                        f"failed ({result.stderr_tail.strip()[-300:]}); the next run resumes"
                    )
                logger.info("copy %s is a read-only snapshot of the working subvolume", copy_plan.copy_id)
            if outcome.kind == "partial":
                logger.warning(
                    "copy %s is incomplete: %s; verification decides whether it may become current",
                    copy_plan.copy_id,
                    outcome.reason,
                )
    except (PermanentError, TransientError) as error:
        copies.update_copy(copy_plan.copy_id, status="failed", ended_at=utcnow())
        if not isinstance(error, Refused) and space.QUOTA_EXCEEDED in str(error):
            _remove_unfinished_work(fleet, copy_plan)
            raise Refused(
                space.over_bound_sentence(
                    service,
                    copy_plan.target,
                    copy_plan.bound,
                    copy_plan.bound_why,
                    f"the kernel refused a write of copy {copy_plan.copy_id} ({space.QUOTA_EXCEEDED})",
                )
            ) from error
        raise
    stats = plan.parse_rsync_stats(text)
    stream = shipping.stream_bytes(text)
    copies.update_copy(
        copy_plan.copy_id,
        status="copied",
        ended_at=utcnow(),
        bytes_transferred=stats.bytes_transferred + stream,
        files_transferred=stats.files_transferred,
        total_files=copy_plan.data_totals["files"],
        total_bytes=copy_plan.data_totals["bytes"],
        verification={"shipped": shipped} if shipped else None,
    )
    if shipped:
        logger.info(
            "shipped %s: a stream of %d bytes, plus %d files / %d bytes by rsync",
            copy_plan.copy_id,
            stream,
            stats.files_transferred,
            stats.bytes_transferred,
        )
    else:
        logger.info(
            "copied %s: %d files / %d bytes transferred of %d files / %d bytes",
            copy_plan.copy_id,
            stats.files_transferred,
            stats.bytes_transferred,
            stats.total_files,
            stats.total_bytes,
        )
    return asdict(stats) | {
        "source_clock_start": copy_plan.source_clock,
        "failed_files": failed,
        "changed_files": verification_scope.itemized_files(text),
        "accounts": screened.get("accounts", {}),
        "shipped": shipped,
        "stream_bytes": stream,
    }


def _remove_unfinished_work(fleet: Fleet, copy_plan: CopyPlan) -> None:
    """The kernel refused a write at the service's bound: the working tree rsync left holds the
    group there (and a failover's live clones join that group), so it goes at once, with the limit
    lifted; the next run starts it again from the newest verified copy. A failure is logged: the
    next run's preparation makes the same room (planning/space_recovery.py)."""
    if copy_plan.backend != copy_backends.SNAPSHOT or copy_plan.shipments:
        return  # hard-linked copies have no group; a shipment cleans its received area itself
    logger = get_run_logger()
    try:
        with access.connect(fleet, copy_plan.target) as mirror:
            ran = mirror.run(space_recovery.make_room_argv(copy_plan.service, (), True), timeout=1800)
        made = space_recovery.parse_room_made(ran.text)
        logger.info(
            "copy %s of %s was refused at its bound: %s",
            copy_plan.copy_id,
            copy_plan.service,
            "its unfinished working tree was removed on " + copy_plan.target if made.work else "no working tree was left",
        )
    except Exception as error:  # the refusal is what the operator must read; this is its aftermath
        logger.error(
            "the unfinished working tree of %s on %s could not be removed: %s", copy_plan.service, copy_plan.target, error
        )


def _record_copy_start(copy_plan: CopyPlan) -> None:
    clock = copy_plan.source_clock
    existing = {row.id for row in copies.copies_of(copy_plan.service)}
    if copy_plan.copy_id in existing:
        copies.update_copy(copy_plan.copy_id, status="in-progress", source_clock_start=clock)
        return
    copies.add_copy(
        CopyRow(
            id=copy_plan.copy_id,
            service=copy_plan.service,
            source_server=copy_plan.source,
            target_server=copy_plan.target,
            path=plan.copy_root(copy_plan.service, copy_plan.copy_id),
            source_clock_start=clock,
        )
    )


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
    with runs.step(run_id, "promote, accounts, prune"):  # one program on the mirror (tasks/mirror_steps.py)
        lease.check(f"promote copy {copy_id}, merge its accounts and prune old copies")
        return mirror_steps.finish(service, copy_id, target, _doomed(service, target, copy_id))


def _doomed(service: str, target: str, promoting: str | None = None) -> list[str]:
    """The oldest copies beyond the fleet's ``copies_to_keep``: never the current one (or the one
    being promoted) nor the one a failover uses."""
    fleet = access.loaded_fleet()
    keep = fleet.copies_to_keep_of(fleet.service(service))
    rows = copies.copies_of(service, target)
    service_row = copies.service_row(service)
    protected = {promoting or service_row.current_copy_id, (service_row.failover or {}).get("copy_id")} - {None}
    return plan.copies_to_prune_of([(row.id, row.verified_at is not None) for row in rows], keep, protected, promoting)
