"""Verification steps: is the mirror's copy an exact (or better) copy of production?

Content is compared with full checksums, so a same-size, same-mtime corruption is caught: what
changed plus a rolling slice by SHA-256 read on each host over the orchestrator's own
connections (``planning/file_digests.py``), the whole tree by ``rsync -anc`` pulled by the mirror
through a scoped transfer key like the copy. Differences whose production file changed after
the copy began are reported as such, not as corruption.
"""

from __future__ import annotations

import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime, timezone

from prefect import get_run_logger, task

from hotspare import access
from hotspare.adapters.errors import PermanentError
from hotspare.inventory import copies, copy_stores
from hotspare.inventory.models import as_utc, utcnow
from hotspare.planning import accounts as account_plan
from hotspare.planning import copy_backends, space
from hotspare.planning import file_digests as digests
from hotspare.planning import replication as plan
from hotspare.planning import snapshot_shipping as shipping
from hotspare.planning import tree_comparison as tree_plan
from hotspare.planning import verification as content
from hotspare.planning import verification_scope as scope_plan
from hotspare.planning.replication_schedule import replications_per_day_of
from tasks.replication import STEP
from tasks.transfer_access import pull


@task(name="verify content", **STEP)
def verify_content(
    service: str,
    copy_id: str,
    source: str,
    target: str,
    unreadable: list[str] = (),
    changed: list[str] | None = None,
    full: bool = False,
    sources: dict[str, str] | None = None,
) -> dict:
    """Checksum-compare production with the copy; classify every difference. A file that could
    not be read or compared, here or in the transfers before (``unreadable``), is a difference of
    its own ("unreadable"), never a silent pass: ``rsync -c`` compares such a file by a zero
    checksum or leaves it out without a word.

    Every file's size and mtime are compared on the mirror against production's listing, piped
    from production into the mirror's comparer and never held here
    (``planning/tree_comparison.py``). By checksum: with ``full`` or for a first copy the whole
    tree (``rsync -anc``); otherwise what changed (``changed``: the copy step's itemized files,
    given by a replication, and production's files modified since the previous verified copy
    began; None for a re-verification of the current copy) plus the rolling slice of the rest,
    hashed by each host in the same two programs. ``sources``: a shipped data path -> production's
    snapshot of this copy, which production lists instead of the live path (shipped paths are
    listed every run like the others). The returned ``scope`` is recorded by ``record_pass`` once
    the verification passed."""
    logger = get_run_logger()
    fleet = access.loaded_fleet()
    spec = fleet.service(service)
    paths = plan.source_paths(spec.model_dump(mode="json"))
    row = next(row for row in copies.copies_of(service) if row.id == copy_id)
    tree = plan.copy_tree(service, copy_id)
    state = _pass_state(service, target)
    since = _previous_start(service, target, copy_id) if changed is not None else None
    whole = full or (changed is not None and since is None)  # a first copy: everything changed
    limit = tree_plan.record_limit(row.total_files or 0)
    now = time.time()
    if whole:
        logger.info(
            "%s: comparing the whole tree by checksum (%s)",
            copy_id,
            "a full comparison was asked for" if full else "no earlier verified copy to compare changes against",
        )
        rsync_found, not_read = _compare_whole_tree(fleet, service, source, target, paths, tree, spec.exclude)
        request = tree_plan.Request(
            tuple(paths), tuple(spec.exclude), probes=tuple(path for _, path in rsync_found), max_records=limit
        )
        answer = _compare_trees(fleet, service, copy_id, source, target, tree, request)
        itemized, mtimes = scope_plan.merge_whole_tree(rsync_found, answer)
        runs = 0
    else:
        runs = scope_plan.runs_left(
            fleet.replication.full_verification_days, replications_per_day_of(fleet, service), state.started_at, now
        )
        request = tree_plan.Request(
            tuple(paths),
            tuple(spec.exclude),
            since,
            tuple(changed or ()),
            state.cursor if state.started_at is not None else "",
            runs,
            max_records=limit,
            sources=tuple((sources or {}).items()),
        )
        answer = _compare_trees(fleet, service, copy_id, source, target, tree, request)
        itemized, mtimes, not_read = scope_plan.answer_differences(answer)
    scope = scope_plan.scope_record(answer, state, whole, runs, now)
    logger.info("%s: %s", copy_id, scope["reason"])
    not_read = set(not_read) | set(unreadable)
    itemized = [(kind, path) for kind, path in itemized if path not in not_read]
    itemized += [("unreadable", path) for path in sorted(not_read)]
    for _, path in itemized:  # read from production's own snapshot of the copy: nothing there changed since
        if any(path == root or path.startswith(root.rstrip("/") + "/") for root in sources or {}):
            mtimes[path] = 0.0
    report = content.classify_differences(itemized, mtimes, row.source_clock_start or 0.0, spec.fuzzy)
    corrupt = [asdict(d) for d in report.corrupt]
    changed_since = [asdict(d) for d in report.changed_during_copy]
    tolerated = [asdict(d) for d in report.tolerated]
    logger.info(
        "content of %s: %d difference(s) not explained by production changes, %d file(s) changed on "
        "production since the copy began, %d in fuzzy paths",
        copy_id,
        len(corrupt),
        len(changed_since),
        len(tolerated),
    )
    return {"corrupt": corrupt, "changed_during_copy": changed_since, "fuzzy": tolerated, "scope": scope}


def _compare_trees(
    fleet, service: str, copy_id: str, source: str, target: str, tree: str, request: tree_plan.Request
) -> tree_plan.Answer:
    """Production's lister piped into the mirror's comparer: one command per host, production's
    listing streamed through a bounded buffer, only the differences read here. A malformed or
    oversized answer is a permanent error: the copy stays unverified."""
    started = time.monotonic()
    with access.connect(fleet, source) as production, access.connect(fleet, target) as mirror:
        piped = production.pipe_into(
            tree_plan.production_argv(),
            tree_plan.production_header(request),
            mirror,
            tree_plan.mirror_argv(),
            tree_plan.mirror_header(request, tree),
            timeout=3600,
        )
    seconds = time.monotonic() - started
    result = piped.sink
    what = f"copy {copy_id} of {service} is not verified"
    for host, status, errors in (
        (source, piped.source_status, piped.source_stderr_tail),
        (target, result.exit_status, result.stderr_tail),
    ):
        if status == tree_plan.UNLISTED:  # find, sed or sort missing or broken there: not production's answer
            raise PermanentError(
                f"{host} could not list its side for the tree comparison ({_last_line(errors)}); {what} "
                "(it needs GNU find, sed and sort)"
            )
    if result.exit_status == tree_plan.MALFORMED:
        raise PermanentError(
            f"{source}'s answer to the tree comparison was refused on {target}: "
            f"{result.stderr_tail.strip().splitlines()[-1] if result.stderr_tail.strip() else 'malformed'}; "
            f"{what} (production's program or data is not what hotspare sent)"
        )
    if result.exit_status != 0:
        raise PermanentError(
            f"the tree comparison on {target} failed with exit status {result.exit_status}: "
            f"{result.stderr_tail.strip()[-300:]}; {what}"
        )
    try:
        answer = tree_plan.parse_answer(result.text)
    except tree_plan.AnswerError as error:
        raise PermanentError(f"the tree comparison on {target} answered out of format ({error}); {what}") from None
    if answer.truncated:
        raise PermanentError(
            f"the copy differs from {source} in {answer.difference_count} files, more than the "
            f"{tree_plan.MAX_DIFFERENCES} a comparison reports; {what}: the next replication copies "
            "again"
        )
    get_run_logger().info(
        "compared %d files on %s against %s's listing in %.1f s, %d of them by checksum (%d bytes piped through, none kept)",
        answer.files,
        target,
        source,
        seconds,
        answer.hashed_files,
        piped.relayed_bytes,
    )
    return answer


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][-300:] if lines else "no message"


def _compare_whole_tree(
    fleet, service: str, source: str, target: str, roots: list[str], tree: str, excludes: list[str]
) -> tuple[list, set]:
    """``rsync -anc --delete -i`` of the whole tree, pulled by the mirror through a transfer key:
    content, links, hard links, ACLs and extended attributes (``verify --full``, a first copy)."""
    result, outcome = pull(
        fleet,
        service,
        source,
        target,
        roots,
        f"verify-{service}",
        lambda peer: plan.rsync_verify_argv(peer, roots, tree, excludes),
        f"checksum comparison {source} -> {target}",
    )
    return content.parse_itemized(result.text), set(outcome.failed_paths)


def _compare_named_files(fleet, source: str, target: str, tree: str, files: list[str]) -> tuple[list, set, set, dict]:
    """Checksums and metadata of the named files, read by each host at once over the connections
    the orchestrator holds (``planning/file_digests.py``): no transfer key, no new connection."""

    def read(server: str, prefix: str):
        with access.connect(fleet, server) as connection:
            output = connection.run(digests.digest_argv(prefix), stdin=digests.nul_separated(files), timeout=3600).text
        return digests.parse_digests(output)

    with ThreadPoolExecutor(2) as pool:
        on_production, in_copy = [
            future.result()
            for future in [  # in the run's context (its certificate)
                pool.submit(contextvars.copy_context().run, read, server, prefix)
                for server, prefix in [(source, ""), (target, tree)]
            ]
        ]
    comparison = digests.compare(files, on_production, in_copy)
    return list(comparison.itemized), set(comparison.unreadable), set(comparison.vanished), comparison.production_mtimes


def _pass_state(service: str, target: str) -> scope_plan.PassState:
    """Where the rolling pass stands (``copy_stores``)."""
    store = copy_stores.store_of(service, target)
    if store and store.pass_started_at:
        return scope_plan.PassState(store.pass_cursor, as_utc(store.pass_started_at).timestamp(), store.pass_files_done)
    return scope_plan.PassState()


def _previous_start(service: str, target: str, copy_id: str) -> float | None:
    """Production's clock when the previous verified copy began (None: no such copy)."""
    previous = next(
        (other for other in copies.copies_of(service, target) if other.status == "verified" and other.id < copy_id), None
    )
    return previous.source_clock_start if previous else None


def record_pass(service: str, target: str, scope: dict) -> None:
    """After a verification passed: advance the rolling pass, or record the complete pass."""

    def moment(epoch: float | None) -> datetime | None:
        return datetime.fromtimestamp(epoch, timezone.utc) if epoch is not None else None

    values = {
        "pass_cursor": scope["next_cursor"],
        "pass_started_at": moment(scope["next_started_at"]),
        "pass_files_done": scope["next_files_done"],
    }
    if scope["pass_complete"]:
        values |= {
            "last_full_pass_at": utcnow(),
            "last_full_pass_started_at": moment(scope["pass_started_at"]),
            "last_full_pass_files": scope["pass_files"],
        }
    copy_stores.record(service, target, **values)


@task(name="repair copy", **STEP)
def repair_copy(service: str, copy_id: str, source: str, target: str, paths: list[str]) -> dict:
    """Fetch corrupt or unread files again into the new copy; rsync replaces them, so older copies
    keep theirs. Returns how many were asked for and which still could not be read."""
    fleet = access.loaded_fleet()
    roots = plan.source_paths(fleet.service(service).model_dump(mode="json"))
    excludes = fleet.service(service).exclude
    shipped = (next(row for row in copies.copies_of(service) if row.id == copy_id).verification or {}).get("shipped")
    if shipped:  # its data paths are not in the working tree: repaired in the copy itself
        return _repair_shipped(fleet, service, copy_id, source, target, roots, paths, excludes)
    with access.connect(fleet, target) as mirror:
        snapshot = mirror.run(copy_backends.is_snapshot_argv(service, copy_id), check=False).exit_status == 0
    # a snapshot copy is read-only: repair its working tree (which it equals) and snapshot again
    tree = copy_backends.work_tree(service) if snapshot else plan.copy_tree(service, copy_id)
    if not snapshot:  # its files may be hard links of older copies: fetch new files, never change those
        with access.connect(fleet, target) as mirror:
            mirror.run(copy_backends.remove_paths_argv(), stdin=digests.nul_separated([tree + path for path in paths]))
    _, outcome = pull(
        fleet,
        service,
        source,
        target,
        roots,
        f"repair-{service}",
        lambda peer: plan.rsync_repair_argv(peer, paths, tree, excludes),
        f"repairing copy {copy_id}",
    )
    if snapshot:
        with access.connect(fleet, target) as mirror:
            data_paths = [path.rstrip("/") or "/" for path in fleet.service(service).data_paths]
            mirror.run(
                copy_backends.snapshot_copy_argv(service, copy_id, data_paths, qgroup=space.qgroup_id(service)), timeout=600
            )
    logger = get_run_logger()
    logger.warning("re-sent %d file(s) that differed from production into %s", len(paths), copy_id)
    if outcome.kind == "partial":  # the next comparison names them as unreadable
        logger.warning("could not re-send every file: %s", outcome.reason)
    return {"resent": len(paths), "failed": outcome.failed_paths}


def _repair_shipped(
    fleet, service: str, copy_id: str, source: str, target: str, roots: list[str], paths: list[str], excludes: list[str]
) -> dict:
    """A shipped copy is made writable (its root and each subvolume in it), fetched into, and made
    read-only again: its snapshots own their blocks, so no received subvolume or older copy changes."""
    root = plan.copy_root(service, copy_id)
    with access.connect(fleet, target) as mirror:
        mirror.run(shipping.writable_argv(root, True), timeout=120)
    try:
        _, outcome = pull(
            fleet,
            service,
            source,
            target,
            roots,
            f"repair-{service}",
            lambda peer: plan.rsync_repair_argv(peer, paths, plan.copy_tree(service, copy_id), excludes),
            f"repairing copy {copy_id}",
        )
    finally:
        with access.connect(fleet, target) as mirror:
            mirror.run(shipping.writable_argv(root, False), timeout=120)
    get_run_logger().warning("re-sent %d file(s) that differed from production into the shipped copy %s", len(paths), copy_id)
    return {"resent": len(paths), "failed": outcome.failed_paths}


def recheck_files(service: str, copy_id: str, source: str, target: str, files: list[str]) -> list[dict]:
    """Differences left between production's live files and the copy's, for repaired files."""
    fleet = access.loaded_fleet()
    itemized, not_read, _, _ = _compare_named_files(fleet, source, target, plan.copy_tree(service, copy_id), files)
    return [{"path": path, "kind": kind} for kind, path in itemized] + [
        {"path": path, "kind": "unreadable"} for path in sorted(not_read)
    ]


# Host facts read within this many seconds are reused: a replicate --all of a hundred services
# on a few servers would otherwise read the same machine's packages a hundred times.
HOST_FACTS_SECONDS = 60.0
_recent_facts: dict[tuple[str, str], tuple[float, plan.HardwareFacts]] = {}
_recent_facts_lock = threading.Lock()


def hardware_facts(fleet, server: str, path: str) -> plan.HardwareFacts:
    """CPUs, memory, disk, OS release and packages of ``server`` in one round trip, or as read
    less than ``HOST_FACTS_SECONDS`` ago by this process."""
    key = (server, path)
    with _recent_facts_lock:
        read_at, facts = _recent_facts.get(key, (float("-inf"), None))
    if time.monotonic() - read_at < HOST_FACTS_SECONDS:
        return facts
    with access.connect(fleet, server) as connection:
        facts = plan.parse_host_facts(connection.run(plan.host_facts_argv(path)).text)
    with _recent_facts_lock:
        _recent_facts[key] = (time.monotonic(), facts)
    return facts


def verify_host(service: str, source: str, target: str, data_bytes: int = 0) -> dict:
    """Hardware exact or better, same OS release and packages, free-space headroom. A plain
    function, run beside the content check by ``flows/verify.check_copy``: not a task run of
    its own (each costs the orchestrator and the Prefect server CPU, at fleet scale)."""
    fleet = access.loaded_fleet()
    spec = fleet.service(service)
    with ThreadPoolExecutor(2) as pool:  # both hosts at once: one round trip each
        production_facts, mirror_facts = [
            future.result()
            for future in [  # in the run's context (its certificate)
                pool.submit(contextvars.copy_context().run, hardware_facts, fleet, server, path)
                for server, path in [(source, spec.data_paths[0]), (target, plan.COPIES_ROOT)]
            ]
        ]
    declared = {name: fleet.server(name).hardware for name in (source, target)}
    problems = plan.compare_hardware(
        production_facts,
        mirror_facts,
        declared[source].model_dump() if declared[source] else None,
        declared[target].model_dump() if declared[target] else None,
    )
    headroom = int(data_bytes * 0.2)
    if mirror_facts.available_bytes < headroom:
        problems.append(f"mirror has {mirror_facts.available_bytes} bytes free, less than 20 % of production data ({headroom})")
    return {
        "problems": problems,
        "production": {
            "cpus": production_facts.cpus,
            "memory_mb": production_facts.memory_mb,
            "disk_bytes": production_facts.disk_bytes,
        },
        "mirror": {
            "cpus": mirror_facts.cpus,
            "memory_mb": mirror_facts.memory_mb,
            "disk_bytes": mirror_facts.disk_bytes,
            "available_bytes": mirror_facts.available_bytes,
        },
        "packages_compared": len(production_facts.packages),
    }


@task(name="verify accounts", **STEP)
def verify_accounts(service: str, copy_id: str, target: str) -> dict:
    """The mirror's live accounts hold what the copy's accounts merge into: the service's own
    accounts only (entries the merge refuses are the replication's warnings, not differences)."""
    fleet = access.loaded_fleet()
    rules = fleet.service(service).accounts
    tree = plan.copy_tree(service, copy_id)
    with access.connect(fleet, target) as mirror:

        def files(root: str) -> dict[str, str]:
            return {path: mirror.run(["cat", root + path]).text for path in (account_plan.PASSWD, account_plan.SHADOW)}

        wanted, present = files(tree), files("")
    merge = account_plan.merge_accounts(present, wanted, rules.uid_min, rules.uid_max, rules.users)
    # a mirror keeps the service's passwords locked while production serves: a lock is no difference
    problems = [
        f"account {name} differs or is missing on the mirror"
        for name in merge.users
        if _unlocked(merge.user_lines(name)) != _unlocked(account_plan.user_lines(present, name))
    ]
    return {"users": list(merge.users), "problems": problems}


def _unlocked(lines: tuple[str | None, str | None]) -> tuple[str | None, str | None]:
    """An account's (passwd, shadow) lines with its password's lock mark taken off."""
    passwd, shadow = lines
    if shadow is None:
        return lines
    fields = shadow.split(":")
    if len(fields) > 1 and fields[1].startswith("!"):
        fields[1] = fields[1][1:]
    return passwd, ":".join(fields)


def record_verification(copy_id: str, passed: bool, checks: dict) -> None:
    values = {"verification": checks}
    if passed:
        values |= {"status": "verified", "verified_at": utcnow()}
    else:
        values |= {"status": "failed"}
    copies.update_copy(copy_id, **values)
