"""The project's exceptions by kind: one base class per kind of failure an operator must tell apart.

Code raises the kind that says what happened (or a subclass of it that carries more); callers
catch kinds, never ``type(error) is RuntimeError``. Each kind has one exit code, in the one
table the command line uses (``EXCEPTION_KINDS`` in hotspare/commands/errors.py, listed in the
docs/runbooks.md, "Exit codes"):

    kind                     exit  example
    Refused                   3    a safety check said no; nothing changed
    Busy                      4    another run holds the service's lock
    TransientError            5    a host or server did not answer (unreachable)
    MissingConfiguration      6    a Prefect block, the loaded fleet or a setting is missing
    NotApproved               7    the approval gate was rejected, bound elsewhere or timed out
    NotFound                  8    no such service, server, copy or snapshot
    SeveralFailed             9    a runbook over several services ran; some failed
    BadConfiguration          2    the fleet file (or another input file) is unusable

``permanent`` tells retry logic whether trying again can help: a timeout can, a rejected host
key or a wrong TSIG secret cannot. This module imports nothing of the project, so every layer
may raise its kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any


class HotspareError(Exception):
    """A failure with a message meant for the operator: what, where, and what to do."""

    permanent = True


class TransientError(HotspareError):
    """Might succeed if tried again (timeouts, refused connections, lost links): the host or
    server named is unreachable for now."""

    permanent = False


class PermanentError(HotspareError):
    """Cannot succeed by retrying (authentication, host key, bad configuration)."""

    permanent = True


class Refused(PermanentError):
    """A safety check said no; nothing was changed."""


class Busy(PermanentError):
    """Another run holds the service's lock: wait for it to finish, or resume it if it died.

    ``holder`` names the run holding the lock, ``since`` when it took it (a datetime, or None).
    """

    def __init__(self, message: str, service: str = "", holder: str = "", since: datetime | None = None):
        self.service = service
        self.holder = holder
        self.since = since
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # keep the attributes when Prefect pickles a failed state
        return (_rebuild_busy, (type(self), str(self), self.service, self.holder, self.since))


def _rebuild_busy(cls: type[Busy], message: str, service: str, holder: str, since: datetime | None) -> Busy:
    return cls(message, service=service, holder=holder, since=since)


class NotApproved(PermanentError):
    """The approval gate was rejected, bound to another plan, or timed out; nothing changed."""


class MissingConfiguration(PermanentError):
    """Something the run needs is not set up: a Prefect block, the loaded fleet, a setting."""


class BadConfiguration(PermanentError):
    """An input file is unusable as written (the fleet file): the message lists every problem."""


class NotFound(PermanentError):
    """The named service, server, copy or snapshot does not exist."""


class SeveralFailed(HotspareError, RuntimeError):
    """A runbook over several services ran to the end and some of them failed; the others
    completed. ``failed`` names them; each one's reason is logged above.

    Also a RuntimeError, what these runbooks raised before, so callers that catch that keep working.
    """

    def __init__(self, message: str, failed: Sequence[str] = ()):
        self.failed = tuple(failed)
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # keep ``failed`` when Prefect pickles a failed state
        return (type(self), (str(self), self.failed))


def is_transient(error: BaseException) -> bool:
    """True when a retry could help; unknown errors count as permanent."""
    return isinstance(error, HotspareError) and not error.permanent
