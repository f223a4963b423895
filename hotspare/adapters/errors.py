"""The adapters' own error classes; the kinds every layer raises live in hotspare/errors.py and
are importable from here too, as they were before that module existed."""

from __future__ import annotations

from hotspare.errors import (
    Busy,
    HotspareError,
    MissingConfiguration,
    NotApproved,
    NotFound,
    PermanentError,
    Refused,
    TransientError,
    is_transient,
)

__all__ = [
    "Busy",
    "ChannelRefused",
    "DnsPrerequisiteFailed",
    "HotspareError",
    "MissingConfiguration",
    "NotApproved",
    "NotFound",
    "PermanentError",
    "Refused",
    "RemoteCommandError",
    "TransientError",
    "is_transient",
]


class ChannelRefused(TransientError):
    """The server refused one new channel on a connection that is still up (too many sessions at
    once, say): that command may be tried again, and the connection stays good for the others."""


class RemoteCommandError(HotspareError):
    """A remote command exited non-zero. Permanent: the same command would fail again."""

    def __init__(self, host: str, command: str, exit_status: int, stderr_tail: str):
        self.host = host
        self.command = command
        self.exit_status = exit_status
        self.stderr_tail = stderr_tail
        super().__init__(f"on {host}: `{command}` exited {exit_status}: {stderr_tail.strip() or '(no stderr)'}")


class DnsPrerequisiteFailed(Refused):
    """A compare-and-swap update found the record changed: somebody else moved it first."""
