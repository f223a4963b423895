"""Error classes shared by the adapters and the flows.

``permanent`` tells retry logic whether trying again can help: a timeout can, a rejected host
key or a wrong TSIG secret cannot.
"""

from __future__ import annotations


class HotspareError(Exception):
    """A failure with a message meant for the operator: what, where, and what to do."""

    permanent = True


class TransientError(HotspareError):
    """Might succeed if tried again (timeouts, refused connections, lost links)."""

    permanent = False


class ChannelRefused(TransientError):
    """The server refused one new channel on a connection that is still up (too many sessions at
    once, say): that command may be tried again, and the connection stays good for the others."""


class PermanentError(HotspareError):
    """Cannot succeed by retrying (authentication, host key, bad configuration)."""

    permanent = True


class RemoteCommandError(HotspareError):
    """A remote command exited non-zero. Permanent: the same command would fail again."""

    def __init__(self, host: str, command: str, exit_status: int, stderr_tail: str):
        self.host = host
        self.command = command
        self.exit_status = exit_status
        self.stderr_tail = stderr_tail
        super().__init__(f"on {host}: `{command}` exited {exit_status}: {stderr_tail.strip() or '(no stderr)'}")


class DnsPrerequisiteFailed(PermanentError):
    """A compare-and-swap update found the record changed: somebody else moved it first."""


class Busy(PermanentError):
    """Another run holds the service's lock: wait for it to finish, or resume it if it died.

    ``holder`` names the run holding the lock, ``since`` when it took it (a datetime, or None).
    """

    def __init__(self, message: str, service: str = "", holder: str = "", since=None):
        self.service = service
        self.holder = holder
        self.since = since
        super().__init__(message)

    def __reduce__(self):  # keep the attributes when Prefect pickles a failed state
        return (_rebuild_busy, (type(self), str(self), self.service, self.holder, self.since))


def _rebuild_busy(cls, message, service, holder, since):
    return cls(message, service=service, holder=holder, since=since)


class NotApproved(PermanentError):
    """The approval gate was rejected, bound to another plan, or timed out; nothing changed."""


class MissingConfiguration(PermanentError):
    """Something the run needs is not set up: a Prefect block, the loaded fleet, a setting."""


class NotFound(PermanentError):
    """The named service, server, copy or snapshot does not exist."""


def is_transient(error: BaseException) -> bool:
    """True when a retry could help; unknown errors count as permanent."""
    return isinstance(error, HotspareError) and not error.permanent
