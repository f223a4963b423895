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


def is_transient(error: BaseException) -> bool:
    """True when a retry could help; unknown errors count as permanent."""
    return isinstance(error, HotspareError) and not error.permanent
