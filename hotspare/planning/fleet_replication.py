"""Pure planning of a fleet-wide replication run: which services may start now.

No network, no Prefect, no clock. ``replicate --all`` works through services in parallel,
bounded overall, per production server (its disk and uplink serve every transfer from it)
and per mirror (its disk receives them); the fleet file's ``replication`` section sets the
bounds. Services start in the order given (tier first), skipping over one whose source or
target is busy, so one slow server never holds up services on other servers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    service: str
    source: str
    target: str


@dataclass(frozen=True)
class Bounds:
    overall: int = 2
    per_source: int = 1
    per_target: int = 2


def startable(pending: list[Job], running: list[Job], bounds: Bounds) -> list[Job]:
    """The pending jobs (in order) that may start now without passing any bound."""
    sources = Counter(job.source for job in running)
    targets = Counter(job.target for job in running)
    room = bounds.overall - len(running)
    chosen = []
    for job in pending:
        if room <= 0:
            break
        if sources[job.source] >= bounds.per_source or targets[job.target] >= bounds.per_target:
            continue
        chosen.append(job)
        sources[job.source] += 1
        targets[job.target] += 1
        room -= 1
    return chosen
