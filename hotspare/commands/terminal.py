"""Text for the operator's terminal: nothing a customer server wrote may steer it.

Messages and timelines carry text production produced (a hook's output, a probe's evidence,
an incident title). An escape sequence in it could retitle, clear or overwrite the operator's
terminal, so every control character but newline and tab is shown as a space: in the error
message (``errors.report``) and in everything the command prints on standard output
(``guard_stdout``, set up once by ``hotspare.cli``). JSON output is unaffected: ``json.dumps``
escapes control characters itself.
"""

from __future__ import annotations

import sys

from hotspare.planning.customer_text import published


def safe(text: str) -> str:
    """``text`` with every control character but newline and tab replaced by a space."""
    return published(text)


class SafeStream:
    """A text stream that writes ``safe`` text to the one it wraps."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(safe(text))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def guard_stdout() -> None:
    """Make standard output terminal-safe for the rest of the process (idempotent)."""
    if not isinstance(sys.stdout, SafeStream):
        sys.stdout = SafeStream(sys.stdout)
