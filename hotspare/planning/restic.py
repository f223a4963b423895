"""restic repositories on the storage host: where they live, how restic is called there, and
how its snapshot listings and errors are read. Pure: no network, no clock.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from hotspare.planning.shell_programs import PlanRefused, relative

DEFAULT_REPOSITORY_BASE = "/srv/backup"


SCRATCH_FOLDER = ".hotspare-scratch"  # beside the repositories on the storage host


@dataclass(frozen=True)
class Repository:
    """A service's restic repository and how to name its snapshots."""

    service: str
    storage_server: str
    path: str  # on the storage host
    password_block: str

    @property
    def host_tag(self) -> list[str]:
        """Selects this service's snapshots: all lab hosts share one hostname (lab-facts.md)."""
        return ["--host", self.service, "--tag", f"service:{self.service}"]


def repository_of(service_name: str, storage_server: str, backup) -> Repository:
    """The repository the fleet's ``backup`` section describes (``backup`` must not be None)."""
    path = backup.repository or posixpath.join(DEFAULT_REPOSITORY_BASE, service_name)
    return Repository(service_name, storage_server, path, backup.password_block)


def scratch_base(repository: Repository) -> str:
    """Scratch space on the storage host: beside the repositories, on the same disk."""
    return posixpath.join(posixpath.dirname(repository.path.rstrip("/")), SCRATCH_FOLDER)


def local_restic(repository: Repository, *arguments: str) -> list[str]:
    """``restic`` on the storage host itself, against the repository folder (no SFTP hop)."""
    return ["restic", "-r", repository.path, *arguments]


def repository_missing(stderr: str) -> bool:
    """restic 0.14 exits 1 for every error; only stderr says the repository is not there yet."""
    text = stderr.lower()
    return "unable to open config file" in text or "repository does not exist" in text or (
        "is there a repository at the following location" in text
    )


def restic_error_is_transient(stderr: str) -> bool:
    """Errors worth a retry: a locked repository, a lost or refused connection."""
    text = stderr.lower()
    return any(
        marker in text
        for marker in ("repository is already locked", "connection refused", "connection timed out",
                       "no route to host", "connection reset", "unable to start the sftp session", "eof")
    )


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    paths: tuple[str, ...]

    def relative_paths(self) -> list[str]:
        return [relative(path) for path in self.paths]


def parse_snapshots(output: str) -> list[Snapshot]:
    """``restic snapshots --json`` -> snapshots, oldest first."""
    snapshots = []
    for entry in json.loads(output or "[]") or []:
        moment = datetime.fromisoformat(_trim_nanoseconds(entry["time"]))
        snapshots.append(Snapshot(entry["id"], entry.get("short_id", entry["id"][:8]), moment, tuple(entry.get("paths", ()))))
    return sorted(snapshots, key=lambda snapshot: snapshot.time)


def _trim_nanoseconds(stamp: str) -> str:
    """restic writes nanoseconds; Python parses at most microseconds."""
    stamp = stamp.replace("Z", "+00:00")
    if "." not in stamp:
        return stamp
    head, tail = stamp.split(".", 1)
    zone_at = max(tail.find("+"), tail.find("-"))
    fraction, zone = (tail[:zone_at], tail[zone_at:]) if zone_at >= 0 else (tail, "")
    return f"{head}.{fraction[:6].ljust(6, '0')}{zone}"


def pick_snapshot(snapshots: Sequence[Snapshot], wanted: str | None) -> Snapshot:
    """The snapshot whose id starts with ``wanted``, or the newest one."""
    if not snapshots:
        raise PlanRefused(["the repository holds no snapshot of this service: run a backup first"])
    if not wanted or wanted == "latest":
        return snapshots[-1]
    matches = [snapshot for snapshot in snapshots if snapshot.id.startswith(wanted)]
    if len(matches) != 1:
        known = ", ".join(snapshot.short_id for snapshot in snapshots[-5:])
        raise PlanRefused([f"snapshot {wanted!r} matches {len(matches)} snapshots of this service (newest: {known})"])
    return matches[0]


def next_subset(last_index: int | None, count: int) -> int:
    """The 1-based subset after ``last_index``, wrapping round (``count`` may have changed)."""
    if last_index is None or last_index >= count:
        return 1
    return last_index + 1
