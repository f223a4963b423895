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
    return (
        "unable to open config file" in text
        or "repository does not exist" in text
        or ("is there a repository at the following location" in text)
    )


def restic_error_is_transient(stderr: str) -> bool:
    """Errors worth a retry: a locked repository, a lost or refused connection."""
    text = stderr.lower()
    return any(
        marker in text
        for marker in (
            "repository is already locked",
            "connection refused",
            "connection timed out",
            "no route to host",
            "connection reset",
            "unable to start the sftp session",
            "eof",
        )
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


@dataclass(frozen=True)
class RecordedBackup:
    """The newest backup the inventory recorded as done: its snapshot and when it ended."""

    snapshot_id: str  # as the backup reported it (restic 0.14: the short id)
    ended_at: datetime  # the inventory's time of the backup's end (UTC)


@dataclass(frozen=True)
class RecordCheck:
    """Which snapshot a restore proof restores, and whether the repository still holds what the
    inventory recorded (``rollback``: the sentence naming both snapshots, else None)."""

    snapshot: Snapshot | None
    rollback: str | None
    note: str  # what was decided, as a logged sentence


def check_against_record(snapshots: Sequence[Snapshot], recorded: RecordedBackup | None) -> RecordCheck:
    """The snapshot the inventory recorded for the service's newest backup, never merely the
    newest in the repository: a repository rolled back to an older copy of its files (or whose
    newest snapshot was forgotten) still restores fine, so only the record shows it; a snapshot
    newer than the record was never recorded by a backup (a run killed before recording it, or
    one added by a key holder) and proves nothing about the backups."""
    newest = snapshots[-1] if snapshots else None
    newest_text = f"{newest.short_id} of {newest.time:%Y-%m-%d %H:%M:%S} UTC" if newest else "none"
    if recorded is None:
        if newest is None:
            raise PlanRefused(["the repository holds no snapshot of this service: run a backup first"])
        return RecordCheck(
            newest,
            None,
            f"no backup of this service is recorded in the inventory: proving the repository's newest snapshot {newest_text}",
        )
    recorded_text = f"{recorded.snapshot_id[:8]} (backup ended {recorded.ended_at:%Y-%m-%d %H:%M:%S} UTC)"
    # restic 0.14's backup summary names the snapshot by its short id: a prefix of the full one
    matches = [snapshot for snapshot in snapshots if snapshot.id.startswith(recorded.snapshot_id)]
    if not matches:
        how = "older than" if newest and newest.time < recorded.ended_at else "not"
        return RecordCheck(
            None,
            (
                f"rolled back: the repository no longer holds snapshot {recorded_text}, the newest backup the inventory "
                f"recorded; its newest snapshot is {newest_text}, {how} the recorded one. The repository was restored "
                f"from an older copy or its newest snapshots were forgotten: find out who changed the storage host, "
                f"then back up now"
            ),
            f"recorded snapshot {recorded.snapshot_id[:8]} is missing",
        )
    snapshot = matches[0]
    newer = [other.short_id for other in snapshots if other.time > snapshot.time]
    note = f"proving snapshot {snapshot.short_id}, the one the inventory recorded for the newest backup"
    if newer:
        note += (
            f"; newer snapshot(s) {', '.join(newer[-5:])} were never recorded by a backup (a run killed before "
            f"recording, or added by someone else) and are not proven"
        )
    return RecordCheck(snapshot, None, note)
