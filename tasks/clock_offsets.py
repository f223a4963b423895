"""What this process last measured of each host's clock against its own (``planning/host_clocks.py``).

A replication's preflight measures production's clock on the connection it already uses; the
transfer key made moments later in the same run computes its expiry on that clock. A pull with
no preflight before it (a verification, a repair) starts from the last measurement, or none,
and the key install's own answer corrects it (``tasks/transfer_access.py``).
"""

from __future__ import annotations

import threading
import time

from hotspare.planning import host_clocks

_offsets: dict[str, float] = {}  # server -> its clock minus ours, in seconds
_lock = threading.Lock()


def record(server: str, host_epoch: float | None, received_epoch: float | None = None) -> float | None:
    """Store and return the offset a host's reading shows (None when it printed none)."""
    if host_epoch is None:
        return None
    offset = host_clocks.offset_seconds(host_epoch, time.time() if received_epoch is None else received_epoch)
    with _lock:
        _offsets[server] = offset
    return offset


def offset_of(server: str) -> float:
    """The host's last measured offset (0 when never measured)."""
    with _lock:
        return _offsets.get(server, 0.0)


def skew_note(server: str, role: str) -> str:
    """ " (production prod-east's clock is 20 min ahead of the orchestrator's)" when it is skewed, else ""."""
    with _lock:
        offset = _offsets.get(server)
    if offset is None or not host_clocks.is_skewed(offset):
        return ""
    return f" ({host_clocks.skew_sentence(role, server, offset)})"


def forget(server: str | None = None) -> None:
    """Drop measurements (one server's, or all): the next use measures again."""
    with _lock:
        if server is None:
            _offsets.clear()
        else:
            _offsets.pop(server, None)
