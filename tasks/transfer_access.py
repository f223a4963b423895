"""Host-to-host access for one transfer: the mirror pulls from production with a scoped key.

``transfer_access`` makes a key pair for the transfer, installs its public half on production
(restricted: the mirror's address only, read-only rsync of the service's declared paths, expires
in minutes; see ``hotspare.planning.transfer_keys``), yields how the mirror reaches production
plus the stdin that carries the private half to the mirror, and removes the line afterwards.
If the process dies in between, the line expires by itself and the next transfer of the
service removes it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from hotspare import access
from hotspare.adapters.errors import PermanentError, TransientError
from hotspare.fleet import Fleet
from hotspare.keys import generate_ed25519
from hotspare.planning import replication as plan
from hotspare.planning import transfer_keys
from hotspare.planning.rsync_outcomes import classify_rsync

log = logging.getLogger(__name__)


@contextmanager
def transfer_access(fleet: Fleet, service: str, source: str, target: str, paths: list[str],
                    purpose: str) -> Iterator[tuple[plan.PeerAccess, bytes]]:
    """(how ``target`` reaches ``source`` for rsync, stdin for ``plan.with_peer_access``).

    ``paths`` are the only source paths (or files under them) the key may read.
    """
    production = access.endpoint(fleet, source)
    mirror = access.endpoint(fleet, target)
    user = access.login(fleet.ssh_block_of(fleet.server(source))).user
    # a random suffix: two transfers must never share (and remove) each other's key or folder
    tag = f"{purpose}-{secrets.token_hex(4)}"
    private_key, public_key = generate_ed25519(f"hotspare-transfer-{service}")
    now = datetime.now(timezone.utc)
    key = transfer_keys.transfer_key_line(public_key, service=service, tag=tag, source_address=mirror.address,
                                          paths=paths, now=now)
    with access.connect(fleet, source) as connection:
        connection.run(transfer_keys.install_key_argv(key, int(now.timestamp())))
    try:
        peer = plan.peer_access(tag, user, production.address, production.port)
        yield peer, plan.peer_stdin(production.known_hosts_line(), private_key)
    finally:
        try:
            with access.connect(fleet, source, connect_timeout=5) as connection:
                connection.run(transfer_keys.remove_key_argv(service, tag, int(datetime.now(timezone.utc).timestamp())),
                               timeout=30)
        except Exception as error:  # the line expires by itself; never hide the transfer's outcome
            log.warning("could not remove transfer key %s from %s (it expires at %s anyway): %s",
                        tag, source, datetime.fromtimestamp(key.expires_epoch, timezone.utc).isoformat(), error)


def pull(fleet: Fleet, service: str, source: str, target: str, roots: list[str], purpose: str,
         make_argv: Callable[[plan.PeerAccess], list[str]], what: str, consequence: str = ""):
    """Run on ``target`` the rsync that ``make_argv(peer)`` builds, reading ``source`` through a
    scoped transfer key for ``roots``; return (result, outcome). A permanent or transient
    outcome (``planning/rsync_outcomes.py``) raises the matching error naming ``what`` failed."""
    with access.connect(fleet, target) as mirror, transfer_access(fleet, service, source, target, roots, purpose) as (peer, stdin):
        result = mirror.run(plan.with_peer_access(peer, make_argv(peer)), stdin=stdin, timeout=6 * 3600, check=False)
    outcome = classify_rsync(result.exit_status, result.stderr_tail)
    if outcome.kind in ("permanent", "transient"):
        error = PermanentError if outcome.kind == "permanent" else TransientError
        retry = "not retried" if outcome.kind == "permanent" else "may be retried"
        raise error(f"{what} failed ({outcome.kind}, {retry}): {outcome.reason}.{' ' + consequence if consequence else ''}")
    return result, outcome
