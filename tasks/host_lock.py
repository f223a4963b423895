"""The host lock: one change at a time to what several services share on one server.

``host_lock(connection, purpose)`` holds the server's lock (``hotspare.planning.host_lock``) for
the block: a ``flock`` kept running on its own SSH channel. Any step that reads, merges and
writes a file other services also change on that host (the account files, a storage host's
accounts) runs inside it, so two runs at once — a parallel ``replicate --all``, two failovers
to one mirror — take turns instead of overwriting each other. The lock frees itself when this
process dies (the server ends the command with the connection); a wait is bounded and its
error names the host and the holder.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import socket
import time
from collections.abc import Iterator

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from hotspare.access import Lease
from hotspare.adapters.errors import Busy, RemoteCommandError
from hotspare.adapters.ssh import Held, SshConnection
from hotspare.planning import host_lock as plan

READY_MARGIN_SECONDS = 30.0  # beyond the lock wait: the SSH channel and the command's start


class HostBusy(Busy):
    """Another run held the host's lock for the whole wait; ``holder`` is its note."""

    def __init__(self, message: str, host: str = "", holder: str = "") -> None:
        self.host = host
        super().__init__(message, holder=holder)

    def __reduce__(self):  # keep the attributes when Prefect pickles a failed state
        return (_rebuild_host_busy, (type(self), str(self), self.host, self.holder))


def _rebuild_host_busy(cls, message, host, holder):
    return cls(message, host=host, holder=holder)


def holder_note(purpose: str) -> str:
    """What a waiting run is told about this one: the purpose, and which process on which machine."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{purpose} (hotspare pid {os.getpid()}, {user}@{socket.gethostname()})"


@contextlib.contextmanager
def host_lock(connection: SshConnection | Lease, purpose: str, wait_seconds: float = plan.WAIT_SECONDS) -> Iterator[Held]:
    """Hold ``connection``'s server lock for the block, waiting at most ``wait_seconds`` for it.

    ``purpose`` says what this run changes ("merge of app1's accounts"); a run kept waiting
    past the bound gets ``HostBusy`` naming the host and the holder's note. The yielded
    ``Held.check(step)`` raises if the lock was lost (the connection dropped) before ``step``.
    """
    host = connection.endpoint.name
    started = time.monotonic()
    argv = plan.hold_argv(holder_note(purpose), wait_seconds)
    acquired = False
    try:
        with connection.holding(argv, ready=plan.LOCKED_LINE, timeout=wait_seconds + READY_MARGIN_SECONDS) as held:
            acquired = True
            waited = time.monotonic() - started
            if waited >= 1.0:
                _logger().info(
                    "took the host lock of %s after waiting %.1f s (another run held it), for the %s", host, waited, purpose
                )
            yield held
    except RemoteCommandError as error:
        if acquired or error.exit_status != plan.BUSY_EXIT:
            raise
        holder = connection.run(plan.holder_argv(), check=False, timeout=30).text.strip() or "a run that left no note"
        raise HostBusy(
            f"{host}: could not take the host lock ({plan.HOST_LOCK_FILE}) for the {purpose} within "
            f"{wait_seconds:g} s: it is held by {holder}. It frees itself when that run ends or its "
            f"orchestrator stops; run this again then",
            host=host,
            holder=holder,
        ) from None


def _logger():
    """The run's logger inside a flow or task; a plain one outside (tests, benchmarks)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("hotspare.host_lock")
