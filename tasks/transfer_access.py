"""Host-to-host access for one transfer: the mirror pulls from production with a scoped key.

``transfer_access`` makes a key pair for the transfer, installs its public half on production
(restricted: the mirror's address only, forced into rsync's own read-only daemon chrooted into
a view of the service's declared paths, expires in minutes; see
``hotspare.planning.transfer_keys``), yields how the mirror reaches production
plus the stdin that carries the private half to the mirror, and removes the line afterwards.
If the process dies in between, the line expires by itself and the next transfer of the
service removes it. The line's expiry is computed on production's clock (its sshd checks it):
the offset the preflight measured, corrected by the clock production prints after the install.

Installing and removing the key are round trips to production; work the mirror must do before or
after the transfer (``alongside``, ``after``) runs at the same time, on its own SSH channel, so
the pair costs one round trip instead of two.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime, timezone

from hotspare import access
from hotspare.adapters.errors import PermanentError, TransientError
from hotspare.fleet import Fleet
from hotspare.keys import generate_ed25519
from hotspare.planning import host_clocks, run_programs, transfer_keys
from hotspare.planning import replication as plan
from hotspare.planning.rsync_outcomes import classify_rsync
from tasks import clock_offsets

log = logging.getLogger(__name__)


def _meanwhile(work: Callable[[], object] | None) -> Future | None:
    """``work`` started in a thread of its own (in a copy of this context), or None."""
    if work is None:
        return None
    future: Future = Future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            future.set_result(context.run(work))
        except BaseException as error:  # handed to whoever waits for the result
            future.set_exception(error)

    threading.Thread(target=run, name="transfer-meanwhile", daemon=True).start()
    return future


@contextmanager
def transfer_access(
    fleet: Fleet,
    service: str,
    source: str,
    target: str,
    paths: list[str],
    purpose: str,
    alongside: Callable[[], object] | None = None,
    hooks: list[list[str]] = (),
    still_ours: Callable[[], None] | None = None,
) -> Iterator[tuple[plan.PeerAccess, bytes]]:
    """(how ``target`` reaches ``source`` for rsync, stdin for ``plan.with_peer_access``).

    ``paths`` are the only source paths (or files under them) the key may read. ``alongside``
    (work on the mirror that must be done before the transfer) runs while the key is installed;
    its error is raised once the key is removed again. ``hooks`` (the fleet file's pre-sync
    commands) run on production first, in the install's own round trip; ``still_ours`` (the
    run's lease check) is called once they returned, before anything reads production.
    """
    production = access.endpoint(fleet, source)
    mirror = access.endpoint(fleet, target)
    user = access.login_user(fleet, source)
    # a random suffix: two transfers must never share (and remove) each other's key or folder
    tag = f"{purpose}-{secrets.token_hex(4)}"
    private_key, public_key = generate_ed25519(f"hotspare-transfer-{service}")

    def key_on_production_clock(offset: float) -> tuple[transfer_keys.TransferKey, int]:
        production_now = host_clocks.host_time(datetime.now(timezone.utc), offset)
        key = transfer_keys.transfer_key_line(
            public_key, service=service, tag=tag, source_address=mirror.address, paths=paths, now=production_now
        )
        return key, int(production_now.timestamp())

    assumed = clock_offsets.offset_of(source)
    key, production_now = key_on_production_clock(assumed)
    beside = _meanwhile(alongside)
    try:
        with access.connect(fleet, source) as connection:
            answer = connection.run(
                run_programs.after_hooks(hooks, transfer_keys.install_key_argv(key, production_now)),
                timeout=run_programs.hooks_timeout(hooks),
            ).text
            measured = clock_offsets.record(source, host_clocks.parse_clock(answer))
            if measured is not None and abs(measured - assumed) >= host_clocks.NAMED_SKEW_SECONDS:
                # production's clock is not what this process knew: the line just installed would
                # expire early (or late) by production's sshd; the same tag replaces it
                log.warning(
                    "%s: transfer key %s installed again with its expiry on production's clock",
                    host_clocks.skew_sentence("production", source, measured),
                    tag,
                )
                key, production_now = key_on_production_clock(measured)
                connection.run(transfer_keys.install_key_argv(key, production_now))
    finally:
        if beside is not None:
            beside.exception()  # wait for it either way; its error is raised below, after the removal
    try:
        if beside is not None:
            beside.result()
        if still_ours is not None:  # a hook may have taken long: a failover may own the service now
            still_ours()
        peer = plan.peer_access(tag, user, production.address, production.port)
        yield peer, plan.peer_stdin(production.known_hosts_line(), private_key)
    finally:
        try:
            production_now = host_clocks.host_time(datetime.now(timezone.utc), clock_offsets.offset_of(source))
            with access.connect(fleet, source, connect_timeout=5) as connection:
                connection.run(transfer_keys.remove_key_argv(service, tag, int(production_now.timestamp())), timeout=30)
        except Exception as error:  # the line expires by itself; never hide the transfer's outcome
            log.warning(
                "could not remove transfer key %s from %s (it expires at %s anyway): %s",
                tag,
                source,
                datetime.fromtimestamp(key.expires_epoch, timezone.utc).isoformat(),
                error,
            )


def pull(
    fleet: Fleet,
    service: str,
    source: str,
    target: str,
    roots: list[str],
    purpose: str,
    make_argv: Callable[[plan.PeerAccess], list[str]],
    what: str,
    consequence: str = "",
    before: Callable[[], object] | None = None,
    after: Callable[[], object] | None = None,
    then: list[str] | None = None,
    hooks: list[list[str]] = (),
    still_ours: Callable[[], None] | None = None,
):
    """Run on ``target`` the rsync that ``make_argv(peer)`` builds, reading ``source`` through a
    scoped transfer key for ``roots``; return (result, outcome). A permanent or transient
    outcome (``planning/rsync_outcomes.py``) raises the matching error naming ``what`` failed.

    ``before`` runs while the key is installed, ``after`` (only when the outcome lets the caller
    go on) while it is removed; an error of either is raised after the key is gone. ``then`` is a
    mirror command run in the transfer's own program once rsync let the copy go on (one round
    trip instead of two; ``plan.snapshot_made`` tells from the output that it did)."""
    finishing = None
    with access.connect(fleet, target) as mirror:
        with transfer_access(
            fleet, service, source, target, roots, purpose, alongside=before, hooks=hooks, still_ours=still_ours
        ) as (peer, stdin):
            argv = (
                plan.with_peer_access_then(peer, make_argv(peer), then) if then else plan.with_peer_access(peer, make_argv(peer))
            )
            result = mirror.run(argv, stdin=stdin, timeout=6 * 3600, check=False)
            outcome = classify_rsync(result.exit_status, result.stderr_tail)
            if outcome.kind not in ("permanent", "transient"):
                finishing = _meanwhile(after)
        if finishing is not None:
            finishing.result()
    if outcome.kind in ("permanent", "transient"):
        error = PermanentError if outcome.kind == "permanent" else TransientError
        retry = "not retried" if outcome.kind == "permanent" else "may be retried"
        raise error(
            f"{what} failed ({outcome.kind}, {retry}): {outcome.reason}"
            f"{clock_offsets.skew_note(source, 'production')}.{' ' + consequence if consequence else ''}"
        )
    return result, outcome
