"""Pure planning for backups, restore proofs, repository checks and standby rebuilds.

No network, no Prefect, no clock: facts go in (which paths exist, what a snapshot holds, which
standbys answer), immutable plans and argument lists come out. Tasks in ``tasks/backup.py`` and
``tasks/rebuild.py`` run them through the SSH adapter, the only place a command becomes text.

Layout of a snapshot. restic runs with ``/`` as its working folder and relative paths
(``srv/app1/data``, ``etc/app1``, …), so a restore into SCRATCH yields ``SCRATCH/srv/app1/data``:
every live path P maps to ``SCRATCH + P`` (restic 0.14 has no ``snapshot:subdir``, see
lab-facts.md). Next to the data the snapshot carries ``META_DIR/<service>``: the service's
account entries and ``.hotspare-manifest``, the sha256 of every file taken at backup time.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from hotspare.planning.manifests import MANIFEST_NAME, META_DIR
from hotspare.planning.restic import Repository, repository_of
from hotspare.planning.shell_programs import (
    IN_UID_RANGE,
    SHADOW_OF,
    PlanRefused,
    existing_paths,
    hash_tree,
    in_folder,
    relative,
    to_file,
)
from hotspare.planning.storage_accounts import StorageGrant


@dataclass(frozen=True)
class BackupPlan:
    """Everything a backup of one service does, as argument lists, from its fleet entry."""

    service: str
    source_server: str
    repository: Repository
    live_paths: tuple[str, ...]  # data, app, config, account files, as in the fleet
    uid_min: int
    uid_max: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    excludes: tuple[str, ...] = ()  # the fleet file's exclude patterns, as in replication

    @property
    def meta_dir(self) -> str:
        return posixpath.join(META_DIR, self.service)

    @property
    def manifest_path(self) -> str:
        return posixpath.join(self.meta_dir, MANIFEST_NAME)

    def probe_paths(self) -> list[str]:
        return existing_paths(list(self.live_paths))

    def account_commands(self) -> list[list[str]]:
        """Copy the service's UID range of passwd/group and the matching shadow/gshadow lines.

        Filtering runs on production so password hashes never pass through the orchestrator.
        """
        accounts = posixpath.join(self.meta_dir, "accounts")
        low, high = str(self.uid_min), str(self.uid_max)
        return [
            ["rm", "-rf", "--", self.meta_dir],
            ["install", "-d", "-m", "0700", accounts],
            to_file(f"{accounts}/passwd", ["sh", "-c", IN_UID_RANGE, "sh", low, high, "/etc/passwd"]),
            to_file(f"{accounts}/group", ["sh", "-c", IN_UID_RANGE, "sh", low, high, "/etc/group"]),
            to_file(f"{accounts}/shadow", ["sh", "-c", SHADOW_OF, "sh", f"{accounts}/passwd", "/etc/shadow"]),
            to_file(f"{accounts}/gshadow", ["sh", "-c", SHADOW_OF, "sh", f"{accounts}/group", "/etc/gshadow"]),
        ]

    def snapshot_paths(self, existing: Iterable[str]) -> list[str]:
        """Relative paths restic backs up: the existing live paths plus the meta folder."""
        return [relative(path) for path in existing] + [relative(self.meta_dir)]

    def manifest_command(self, existing: Iterable[str]) -> list[str]:
        """Write the sha256 manifest on production (it never crosses the network by itself)."""
        return to_file(self.manifest_path, hash_tree("/", self.snapshot_paths(existing)))

    def backup_command(self, existing: Iterable[str], grant: StorageGrant) -> list[str]:
        """``restic backup`` on the source host through this run's append-only grant."""
        return in_folder(
            "/",
            grant.restic(
                "backup",
                "--json",
                "--quiet",
                *self.repository.host_tag,
                *[f"--exclude={pattern}" for pattern in self.excludes],
                *self.snapshot_paths(existing),
            ),
        )

    def forget_arguments(self) -> list[str]:
        """Retention, for restic on the storage host itself (never on the host that backs up)."""
        return [
            "forget",
            "--prune",
            *self.repository.host_tag,
            "--group-by",
            "host",
            "--keep-daily",
            str(self.keep_daily),
            "--keep-weekly",
            str(self.keep_weekly),
            "--keep-monthly",
            str(self.keep_monthly),
        ]


def plan_backup(fleet, service_name: str) -> BackupPlan:
    """What a backup of ``service_name`` holds and how long its snapshots are kept.

    Access to the storage host is a separate, per-run ``StorageGrant`` (planning/storage_accounts).
    """
    service = fleet.service(service_name)
    if service.backup is None:
        raise PlanRefused([f"service {service_name} has no backup section in the fleet file"])
    storage = fleet.server(service.storage)
    repository = repository_of(service.name, storage.name, service.backup)
    live = tuple(dict.fromkeys([*service.data_paths, *service.app_paths, *service.config_paths, *service.accounts.files]))
    return BackupPlan(
        service=service.name,
        source_server=service.production,
        repository=repository,
        live_paths=live,
        uid_min=service.accounts.uid_min,
        uid_max=service.accounts.uid_max,
        keep_daily=service.backup.keep_daily,
        keep_weekly=service.backup.keep_weekly,
        keep_monthly=service.backup.keep_monthly,
        excludes=tuple(service.exclude),
    )


def parse_existing(output: bytes) -> list[str]:
    return [part.decode(errors="surrogateescape") for part in output.split(b"\0") if part]


def parse_backup_summary(output: str) -> dict:
    """The ``summary`` message of ``restic backup --json``."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("message_type") == "summary":
                return message
    raise ValueError("restic printed no backup summary")
