"""The mirror's preparation and finish of a replication, one program each
(``planning/run_programs.py``).

- **prepare** (beside production's key install): the store closed to all but root, the
  service's quota group, the working subvolume, the service's account lines staged into the new
  copy, and the mirror's own account files read back for the finish;
- **finish** (after verification): the ``current`` link, the account merge under the host lock
  (replaced only over the bytes the preparation read), the pruned copies.

The service's account lines come from production's files as its preflight read them; both they
and the mirror's files stay in this process, per copy (they hold password hashes: never in a
task's parameters or results). A step that finds nothing here (a retry in another process) reads
the hosts itself, and a merge whose files changed since they were read (another service's merge
on a shared mirror) is done again the long way, under the held host lock (``apply_accounts``).
"""

from __future__ import annotations

import threading
import uuid

from prefect import get_run_logger

from hotspare import access
from hotspare.adapters.errors import RemoteCommandError, TransientError
from hotspare.fleet import Fleet
from hotspare.inventory import copies
from hotspare.planning import accounts as account_plan
from hotspare.planning import copy_backends, run_programs, space
from hotspare.planning import host_lock as host_lock_plan
from hotspare.planning import replication as plan
from hotspare.planning import shell_programs as shell
from hotspare.planning import snapshot_shipping as shipping
from hotspare.planning import space_recovery as room
from hotspare.planning.replication import Decision
from tasks.account_merge import apply_accounts

_STAGED: dict[str, dict] = {}  # copy id -> {"service", "own": ServiceAccounts, "mirror": files or None}
_LOCK = threading.Lock()


def stage_accounts_read(fleet: Fleet, service: str, copy_id: str, source: str, files: dict[str, str] | None) -> None:
    """Keep the service's lines of production's account files (read by its preflight) for ``copy_id``."""
    with _LOCK:
        for stale in [key for key, value in _STAGED.items() if value["service"] == service]:
            del _STAGED[stale]  # an earlier run of this service that ended before its finish
        if files is not None:
            rules = fleet.service(service).accounts
            own = account_plan.service_accounts(files, rules.uid_min, rules.uid_max, rules.users)
            _STAGED[copy_id] = {"service": service, "source": source, "own": own, "mirror": None}


def _staged(fleet: Fleet, service: str, copy_id: str, source: str) -> dict:
    with _LOCK:
        found = _STAGED.get(copy_id)
    if found is None:  # not read by this process's preflight: read production's files now
        with access.connect(fleet, source) as production:
            files = shell.split_files(
                account_plan.ACCOUNT_FILES, production.run(shell.read_files(account_plan.ACCOUNT_FILES), timeout=60).stdout
            )
        stage_accounts_read(fleet, service, copy_id, source, files)
        with _LOCK:
            found = _STAGED[copy_id]
    return found


def prepare(fleet: Fleet, copy_plan) -> tuple[dict, Decision | None]:
    """The mirror's preparation of ``copy_plan`` in one command; ({users, groups, refused} of the
    staged accounts, the quota decision or None). A quota group the kernel refuses is a warning
    and the copy goes on unbounded (as ``space`` says). A group found at or past its bound gets
    room made once (``planning/space_recovery.py``: copies beyond retention, the unfinished working
    tree), then the preparation runs again and the bound is judged on the new numbers."""
    logger = get_run_logger()
    service, target = copy_plan.service, copy_plan.target
    staged = _staged(fleet, service, copy_plan.copy_id, copy_plan.source)
    own = staged["own"]
    bounded = copy_plan.backend == copy_backends.SNAPSHOT
    area = shipping.received_area(service) if copy_plan.shipments else None  # joins the group (simple quotas)
    ran, prepared = _run_preparation(fleet, copy_plan, own, area, bounded)
    facts = space.parse_quota(prepared.quota_output) if bounded and prepared.quota_status == 0 else None
    if facts is not None and not _fits(copy_plan, facts):  # also when the preparation stopped there (staging writes)
        made = room.RoomMade((), False)
        if room.should_make_room(copy_plan.prunable, not copy_plan.shipments):
            made = _make_room(fleet, copy_plan)
            ran, prepared = _run_preparation(fleet, copy_plan, own, area, bounded)
            facts = space.parse_quota(prepared.quota_output) if prepared.quota_status == 0 else None
        if facts is not None and not _fits(copy_plan, facts):  # the copies it keeps hold too much
            logger.info(space.quota_sentence(service, target, facts, copy_plan.bound_why))
            keep = fleet.copies_to_keep_of(fleet.service(service))
            detail = room.still_over_detail(facts.referenced, copy_plan.needed, made, keep)
            return {}, Decision(False, space.over_bound_sentence(service, target, copy_plan.bound, copy_plan.bound_why, detail))
    if ran.exit_status != 0:
        raise RemoteCommandError(target, f"the preparation of copy {copy_plan.copy_id}", ran.exit_status, ran.stderr_tail)
    with _LOCK:
        staged["mirror"] = prepared.mirror_accounts
    for sentence in own.refused:
        logger.warning("accounts of %s on %s: %s", service, copy_plan.source, sentence)
    logger.info(
        "accounts of %s taken from %s: users %s, groups %s (every other line left on production)",
        service,
        copy_plan.source,
        ", ".join(own.users) or "none",
        ", ".join(own.groups) or "none",
    )
    screened = {"users": list(own.users), "groups": list(own.groups), "refused": list(own.refused)}
    if not bounded:
        return screened, None
    if facts is None:
        logger.warning(
            "%s's area on %s is NOT bounded: btrfs quota groups could not be set up there (%s); enable "
            "them by hand (`btrfs quota enable /srv`) or ask for hard-linked copies with their reserve",
            service,
            target,
            (prepared.quota_output + ran.stderr_tail).strip()[-300:],
        )
        chosen = area and fleet.replication.copy_backend != shipping.SHIPPING_PREFERENCE  # auto ships only bounded
        return screened, space.unbounded_stream_refusal(service, target, "not set up") if chosen else None
    logger.info(space.quota_sentence(service, target, facts, copy_plan.bound_why))
    if area and not facts.area_bounded and fleet.replication.copy_backend != shipping.SHIPPING_PREFERENCE:
        return screened, space.unbounded_stream_refusal(service, target, facts.mode)
    return screened, space.judge_bound(service, target, facts.referenced, copy_plan.needed, copy_plan.bound, copy_plan.bound_why)


def _fits(copy_plan, facts: space.QuotaFacts) -> bool:
    return facts.referenced + copy_plan.needed <= copy_plan.bound


def _run_preparation(fleet: Fleet, copy_plan, own, area: str | None, bounded: bool):
    """The preparation's one program on the mirror: (the finished command, what it said)."""
    service = copy_plan.service
    quota = space.quota_argv(plan.service_root(service), service, copy_plan.bound, area) if bounded else None
    argv = run_programs.prepare_argv(
        copy_backends.close_store_argv(service),
        quota,
        [list(argv) for argv in copy_plan.prepare],
        copy_plan.tree,
        stage_accounts=True,
    )
    with access.connect(fleet, copy_plan.target) as mirror:
        ran = mirror.run(argv, stdin=run_programs.nul_terminated(own.files, account_plan.ACCOUNT_FILES), timeout=600, check=False)
    return ran, run_programs.parse_prepared(ran.stdout)


def _make_room(fleet: Fleet, copy_plan) -> room.RoomMade:
    """The service's group is at or past its bound before the transfer: remove the copies beyond
    retention and (snapshots filled by rsync) the working tree, with the limit lifted. The copies
    the fleet file keeps, the current one and a failover's are never touched."""
    service, target = copy_plan.service, copy_plan.target
    reset = not copy_plan.shipments  # a shipped copy's working tree holds no data paths
    with access.connect(fleet, target) as mirror:
        ran = mirror.run(room.make_room_argv(service, copy_plan.prunable, reset), timeout=1800, check=False)
    made = room.parse_room_made(ran.text)
    for copy_id in made.copies:
        copies.update_copy(copy_id, status="pruned")
    keep = fleet.copies_to_keep_of(fleet.service(service))
    get_run_logger().warning(room.room_sentence(service, target, made, keep))
    if ran.exit_status != 0:
        get_run_logger().warning(
            "making room for %s on %s stopped (exit %s): %s", service, target, ran.exit_status, ran.stderr_tail.strip()[-300:]
        )
    return made


def finish(service: str, copy_id: str, target: str, doomed: list[str]) -> dict:
    """Promote ``copy_id``, merge its accounts (locked: the mirror serves nothing yet), prune
    ``doomed``: one command on the mirror, then the inventory as its markers confirm."""
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    with _LOCK:
        staged = _STAGED.pop(copy_id, None)
    current = staged["mirror"] if staged else None
    merge = merged = None
    if current is not None and staged is not None:
        rules = fleet.service(service).accounts
        source = dict(staged["own"].files)
        source[account_plan.SHADOW] = account_plan.locked_passwords(source.get(account_plan.SHADOW, ""))
        merge = account_plan.merge_accounts(current, source, rules.uid_min, rules.uid_max, rules.users)
        merged = {path: merge.files[path] for path in merge.changed(current)}
    argv = run_programs.finish_argv(
        plan.service_root(service) + "/current",
        f"copies/{copy_id}",
        merged or {},
        current or {},
        uuid.uuid4().hex[:12],
        f"merge of {service}'s accounts",
        [(doomed_id, _removal(service, doomed_id)) for doomed_id in doomed],
    )
    with access.connect(fleet, target) as mirror:
        ran = mirror.run(argv, stdin=run_programs.finish_stdin(merged or {}), timeout=1800, check=False)
    done = run_programs.parse_finished(ran.text)
    if not done.promoted:
        raise TransientError(
            f"on {target}: copy {copy_id} could not be made current ({ran.stderr_tail.strip()[-300:]}); "
            "the previous copy stays current"
        )
    copies.make_current(service, copy_id)
    logger.info("copy %s is now the current copy of %s on %s", copy_id, service, target)
    for pruned in done.pruned:
        copies.update_copy(pruned, status="pruned")
    if merge is None or done.accounts_status not in (None, 0):
        if done.accounts_status not in (None, 0, host_lock_plan.BUSY_EXIT):
            raise RemoteCommandError(target, f"merge of {service}'s accounts", done.accounts_status, ran.stderr_tail)
        why = (
            "the account files changed since they were read (another merge)"
            if merge is not None
            else "this process did not read the accounts"
        )
        logger.info("accounts of %s on %s: merged under the held host lock, since %s", service, target, why)
        accounts = apply_accounts(service, copy_id, target, locked=True)
        left = [doomed_id for doomed_id in doomed if doomed_id not in done.pruned]
        if left:  # the finish stopped before pruning: prune now
            with access.connect(fleet, target) as mirror:
                for doomed_id in left:
                    mirror.run(_removal(service, doomed_id), timeout=1800)
                    copies.update_copy(doomed_id, status="pruned")
        return {"accounts": accounts, "pruned": list(doomed)}
    if ran.exit_status != 0:
        raise RemoteCommandError(target, f"pruning copies of {service}", ran.exit_status, ran.stderr_tail)
    assert staged is not None and merged is not None  # a merge was made from them (above)
    refused = [*staged["own"].refused, *merge.refused]
    for sentence in merge.refused:
        logger.warning("accounts of %s on %s: %s", service, target, sentence)
    logger.info(
        "accounts of %s on %s: %s (%d file(s) updated, %d entr%s refused)",
        service,
        target,
        ", ".join(merge.users) or "none",
        len(merged),
        len(refused),
        "y" if len(refused) == 1 else "ies",
    )
    return {
        "accounts": {"users": list(merge.users), "groups": list(merge.groups), "files_updated": list(merged), "refused": refused},
        "pruned": list(done.pruned),
    }


def _removal(service: str, copy_id: str) -> list[str]:
    """A copy's removal with the service's group limit lifted (metadata only): making a read-only
    copy writable, the first step of removing it, is refused at the limit (``space_recovery``)."""
    return room.under_lifted_limit(service, copy_backends.remove_copy_argv(service, copy_id))
