"""Snapshot shipping's steps: production snapshots and sends, the mirror receives confined.

The plan comes from ``hotspare.planning.snapshot_shipping`` (decided in the preflight). One
transfer costs three commands beside the mirror's own work, like an rsync copy:

1. production, one round trip: take the read-only snapshots (after the pre-sync hooks), install
   two per-transfer key lines of one tag: the rsync view's (for the paths that are not shipped)
   and the sender's, whose forced command sends exactly this copy's snapshots;
2. the mirror, one command: pull the stream into ``btrfs receive`` confined to the service's
   received area, rsync the other paths into the working subvolume meanwhile, then make the copy
   (the working tree plus a read-only snapshot of each received subvolume, whose received UUID
   must be production's snapshot's);
3. production, one round trip: remove the key lines and every snapshot but this copy's and its
   parent's.
"""

from __future__ import annotations

import contextvars
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from prefect import get_run_logger

from hotspare import access
from hotspare.adapters.errors import PermanentError, TransientError
from hotspare.fleet import Fleet
from hotspare.keys import generate_ed25519
from hotspare.planning import copy_backends, host_clocks, run_programs, space, transfer_keys
from hotspare.planning import replication as plan
from hotspare.planning import shipped_verification as checks
from hotspare.planning import snapshot_shipping as shipping
from hotspare.planning.containment import each_argv
from hotspare.planning.rsync_outcomes import classify_rsync
from tasks import clock_offsets
from tasks.transfer_access import _meanwhile


def ship(
    fleet: Fleet, copy_plan, run_tag: str, rsync_argv, before=None, hooks=(), still_ours=None
) -> tuple[str, dict, list[str]]:
    """Ship ``copy_plan.shipments`` and rsync ``copy_plan.paths`` (the rest); return the mirror's
    output (rsync's itemized lines and statistics) and {data path: production snapshot UUID}.

    ``rsync_argv(peer)`` builds the rsync of the other paths (None when there are none);
    ``before`` runs on the mirror while production takes the snapshots; ``hooks`` (the fleet
    file's pre-sync commands) run on production right before them, in the same round trip, and
    ``still_ours`` (the run's lease check) once they returned."""
    logger = get_run_logger()
    service, source, target = copy_plan.service, copy_plan.source, copy_plan.target
    shipments = copy_plan.shipments
    production = access.endpoint(fleet, source)
    mirror = access.endpoint(fleet, target)
    user = access.login_user(fleet, source)  # the transfer login: the run certificate's user, or the block's
    tag = f"{run_tag}-{secrets.token_hex(4)}"
    view_private, view_public = generate_ed25519(f"hotspare-transfer-{service}")
    send_private, send_public = generate_ed25519(f"hotspare-send-{service}")
    # production's sshd checks the keys' expiry on its own clock (the preflight measured it)
    now = host_clocks.host_time(datetime.now(timezone.utc), clock_offsets.offset_of(source))
    view_key = transfer_keys.transfer_key_line(
        view_public,
        service=service,
        tag=tag,
        source_address=mirror.address,
        paths=list(copy_plan.paths) or [shipments[0].path],
        now=now,
    )
    send_key = transfer_keys.transfer_key_line(
        send_public,
        service=service,
        tag=tag,
        source_address=mirror.address,
        paths=shipping.send_words(shipments),
        now=now,
        program=shipping.SEND_PATH,
    )
    both = transfer_keys.TransferKey(service, tag, view_key.line + "\n" + send_key.line, view_key.expires_epoch)
    beside = _meanwhile(before)
    try:
        with access.connect(fleet, source) as connection:
            taken = shipping.parse_taken(
                connection.run(
                    run_programs.after_hooks(
                        hooks,
                        transfer_keys.install_key_argv(
                            both,
                            int(now.timestamp()),
                            also=(shipping.TAKE_SCRIPT, shipping.take_words(shipments)),
                            programs=(shipping.SEND_PATH, shipping.SEND_SCRIPT),
                        ),
                    ),
                    timeout=run_programs.hooks_timeout(hooks),
                ).text
            )
    finally:
        if beside is not None:
            beside.exception()
    try:
        if beside is not None:
            beside.result()
        if still_ours is not None:  # a hook may have taken long: a failover may own the service now
            still_ours()
        logger.info("production %s took %s", source, ", ".join(f"{s.snapshot} ({taken.get(s.path, '?')})" for s in shipments))
        peer = plan.peer_access(tag, user, production.address, production.port)
        argv = shipping.ship_argv(
            service,
            peer.directory,
            f"{user}@{production.address}",
            production.port,
            [s.name for s in shipments],
            rsync_argv(peer) if copy_plan.paths else None,
            _copy_argv(copy_plan, taken),
            bound=(space.qgroup_id(service), copy_plan.bound) if copy_plan.bound else None,
        )  # the copy in the same command
        with access.connect(fleet, target) as connection:
            result = connection.run(
                argv,
                stdin=shipping.ship_stdin(production.known_hosts_line(), view_private, send_private),
                timeout=6 * 3600,
                check=False,
            )
        received = shipping.parse_received(result.text)
        outcome = classify_rsync(result.exit_status, result.stderr_tail) if copy_plan.paths else None
    finally:
        _remove(fleet, service, source, tag, shipments)
    if received.unexpected:
        raise PermanentError(
            f"the stream from {source} made {', '.join(received.unexpected)} in the received area of "
            f"{service} besides its snapshots (removed): copy {copy_plan.copy_id} refused; "
            "production may be compromised"
        )
    if received.exit_status != 0:
        said = "; ".join(received.messages) or f"exit status {received.exit_status}"
        raise TransientError(f"btrfs receive of {service} from {source} failed: {said}. The previous verified copy is untouched.")
    if outcome is not None and outcome.kind in ("permanent", "transient"):
        error = PermanentError if outcome.kind == "permanent" else TransientError
        raise error(f"copy of the other paths {source} -> {target} failed ({outcome.kind}): {outcome.reason}.")
    logger.info("copy %s: %s", copy_plan.copy_id, _copy_made(copy_plan, result))
    return result.text, taken, (outcome.failed_paths if outcome else [])


def _copy_argv(copy_plan, taken: dict[str, str]) -> list[str]:
    """The mirror's copy from the working tree and the received subvolumes (checked by UUID)."""
    return each_argv(
        [
            shipping.snapshot_copy_argv(
                copy_plan.service,
                copy_backends.work_root(copy_plan.service),
                plan.copy_root(copy_plan.service, copy_plan.copy_id),
                copy_plan.shipments,
                taken,
                copy_backends.REMOVE_SCRIPT,
                qgroup=space.qgroup_id(copy_plan.service),
            ),
            checks.scrub_start_argv(plan.service_root(copy_plan.service)),
        ]
    )  # scrubs until the verification


def _copy_made(copy_plan, result) -> str:
    """What the shipment's own command said of the copy; raise when it failed or did not run."""
    status = shipping.copy_exit(result.text)
    if status is None:
        raise TransientError(
            f"copy {copy_plan.copy_id}: the snapshot copy did not run after the shipment "
            f"({result.stderr_tail.strip()[-300:]}); the previous verified copy is untouched"
        )
    if status != 0:
        mismatch = [line.split("=", 1)[1] for line in result.text.splitlines() if line.startswith("hotspare-mismatch=")]
        if mismatch:
            raise PermanentError(
                f"copy {copy_plan.copy_id}: the received subvolume is not production's snapshot ({'; '.join(mismatch)}); refused"
            )
        raise TransientError(f"copy {copy_plan.copy_id}: making the snapshot copy failed: {result.stderr_tail}")
    return "read-only snapshots of the received subvolumes: " + ", ".join(
        line.split("=", 1)[1] for line in result.text.splitlines() if line.startswith("hotspare-shipped=")
    )


def restart_chain(fleet: Fleet, service: str, target: str, why: str) -> None:
    """A shipped copy failed verification: drop the chain's received subvolumes on ``target``, so
    the next run copies by rsync and ships from a new, verified parent (a parent production
    changed after sending would otherwise spoil every later copy). A failure is logged; the next
    verification fails the same way and tries again."""
    try:
        with access.connect(fleet, target, connect_timeout=5) as connection:
            connection.run(shipping.restart_chain_argv(service), timeout=600)
        get_run_logger().warning(
            "%s: the shipped chain of %s on %s is dropped; the next copy goes by rsync and starts a new one", why, service, target
        )
    except Exception as error:
        get_run_logger().error("%s: could not drop the shipped chain of %s on %s: %s", why, service, target, error)


def _remove(fleet: Fleet, service: str, source: str, tag: str, shipments) -> None:
    """Remove the key lines and the snapshots no longer needed (this copy's and its parent stay)."""
    try:
        with access.connect(fleet, source, connect_timeout=5) as connection:
            connection.run(
                transfer_keys.remove_key_argv(
                    service,
                    tag,
                    int(datetime.now(timezone.utc).timestamp()),
                    also=(shipping.PRUNE_SCRIPT, shipping.kept_snapshots(shipments)),
                ),
                timeout=120,
            )
    except Exception as error:  # the lines expire by themselves; never hide the transfer's outcome
        get_run_logger().warning("could not remove transfer key %s (and old snapshots) from %s: %s", tag, source, error)


def _production_uuids_argv(snapshots: list[str]) -> list[str]:
    """Each snapshot's UUID as ``uuid=<snapshot> <uuid>`` lines (a missing one prints none)."""
    return [
        "sh",
        "-c",
        'for s do u=$(btrfs subvolume show "$s" 2>/dev/null | awk \'$1 == "UUID:" {print $2}\'); '
        '[ -n "$u" ] && echo "uuid=$s $u"; done; exit 0',
        "sh",
        *snapshots,
    ]


def _parse_uuids(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        if line.startswith("uuid="):
            snapshot, _, uuid = line[5:].partition(" ")
            found[snapshot] = uuid.strip()
    return found


def verify_shipped(
    service: str,
    copy_id: str,
    source: str,
    target: str,
    shipped: dict,
    cursor: str = "",
    budget_seconds: float = checks.SLICE_SECONDS,
) -> dict:
    """A shipped copy's data paths without a listing: the UUID chain (production's snapshot ->
    received subvolume -> the copy), the mirror's rolling scrub, and a slice of files hashed from
    ``cursor`` for ``budget_seconds`` on production's snapshot and in the copy, both hosts at once
    (``planning/shipped_verification.py``). A plain function, run beside the content check by
    ``flows/verify.check_copy`` (with its transient failures retried there), not a task run of its
    own: its two commands overlap the tree comparison's."""
    fleet = access.loaded_fleet()
    paths = sorted(shipped)
    snapshots = {path: shipping.production_snapshot(path, copy_id) for path in paths}
    tree = plan.copy_tree(service, copy_id)
    # production: its snapshots' UUIDs, then its walk; the mirror: the chain, its walk of the copy
    # from the same cursor for the same budget, then the scrub stopped and read (it ran since the
    # shipment, through the walks too); one command each, at once
    production_argv = each_argv(
        [_production_uuids_argv(list(snapshots.values())), checks.slice_argv(budget_seconds, cursor, snapshots)]
    )
    mirror_argv = each_argv(
        [
            shipping.chain_argv(service, tree, {p: shipping.snapshot_name(p, copy_id) for p in paths}),
            checks.slice_argv(budget_seconds, cursor, {path: tree + path for path in paths}),
            checks.scrub_argv(plan.service_root(service)),
        ]
    )

    def run(server: str, argv: list[str]) -> str:
        with access.connect(fleet, server) as connection:
            return connection.run(argv, timeout=3600, check=False).text

    with ThreadPoolExecutor(2) as pool:  # in the run's context (its certificate)
        at_production = pool.submit(contextvars.copy_context().run, run, source, production_argv)
        at_mirror = pool.submit(contextvars.copy_context().run, run, target, mirror_argv)
        output, answer = at_production.result(), at_mirror.result()
    uuids = _parse_uuids(output)
    scrub = checks.parse_scrub(answer)  # the mirror's btrfs checksums, a rolling slice by a time budget
    problems = shipping.judge_chain(answer, {path: uuids.get(snapshot, "none") for path, snapshot in snapshots.items()})
    problems += scrub.problems
    compared = checks.compare_slices(output, answer, cursor)
    differences = [{"path": path, "kind": kind} for kind, path in compared.itemized]
    get_run_logger().info(
        "%s: shipped data: %s; %s; a slice of %d file(s) from %s hashed on both hosts at once and compared, %d difference(s)%s",
        copy_id,
        "; ".join(problems) or "the UUID chain holds",
        scrub.sentence,
        len(compared.files),
        repr(cursor) if cursor else "the start",
        len(differences),
        "; the rolling pass reached the end" if compared.end.complete else "",
    )
    return {
        "problems": problems,
        "corrupt": differences,
        "compared_files": len(compared.files),
        "cursor": compared.end.cursor,
        "complete": compared.end.complete,
        "scrub": scrub.sentence,
    }
