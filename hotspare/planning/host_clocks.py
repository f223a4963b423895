"""A host's clock against the orchestrator's: the offset, and the sentence that names a skew.

Whatever a host's own software checks against a time we computed must be computed on that
host's clock: production's sshd refuses a transfer key after its ``expiry-time`` by production's
clock, so a production 20 minutes ahead would refuse a key made to last 15 minutes by ours.
The offset is measured from a time the host prints at the very end of an answer on a connection
the run already uses (the preflight's, the key install's): its reading against our clock when
the answer arrives, so the error is the answer's way back (milliseconds), whatever ran before.

Pure: numbers in, numbers and sentences out.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# Below this a skew is not worth a sentence (and round trips blur it anyway); above it every
# time the host checks is computed on its own clock, and the run says so.
NAMED_SKEW_SECONDS = 60.0

# What a host prints after its answer so the offset can be measured: "clock=<epoch seconds>".
CLOCK_COMMAND = 'printf "clock=%s\\n" "$(date +%s.%N)"'


def offset_seconds(host_epoch: float, received_epoch: float) -> float:
    """The host's clock minus ours: its last reading against our clock when the answer arrived."""
    return host_epoch - received_epoch


def parse_clock(output: str) -> float | None:
    """The last ``clock=`` reading in ``output`` (epoch seconds), or None."""
    readings = [line.split("=", 1)[1] for line in output.splitlines() if line.startswith("clock=")]
    try:
        return float(readings[-1]) if readings else None
    except ValueError:
        return None


def host_time(now: datetime, offset: float) -> datetime:
    """What the host's clock says when ours says ``now``."""
    return now + timedelta(seconds=offset)


def duration_text(seconds: float) -> str:
    """A skew as a person says it: "45 s", "20 min", "3 h 5 min", "2 days"."""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{round(hours / 24)} days"


def is_skewed(offset: float) -> bool:
    return abs(offset) >= NAMED_SKEW_SECONDS


def skew_sentence(role: str, server: str, offset: float) -> str:
    """ "production prod-east's clock is 20 min ahead of the orchestrator's" (or behind, or agrees)."""
    if not is_skewed(offset):
        return f"{role} {server}'s clock agrees with the orchestrator's (within {NAMED_SKEW_SECONDS:.0f} s)"
    direction = "ahead of" if offset > 0 else "behind"
    return f"{role} {server}'s clock is {duration_text(offset)} {direction} the orchestrator's"
