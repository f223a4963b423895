"""Inventory tables of the backup subsystem: backups, repository checks, restore proofs and
the temporary accounts a rebuild hands out.

Only facts that are safe to show anyone who can read the inventory live here: a temporary
account row holds a user name and an expiry, never its password.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import JSON, Column, Field, SQLModel

from hotspare.inventory.models import utcnow


class BackupRow(SQLModel, table=True):
    """One backup of a service into its restic repository on the storage host."""

    __tablename__ = "backup"
    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(index=True)
    flow_run_id: str | None = None
    source_server: str
    storage_server: str
    repository: str
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    outcome: str = "running"  # running | ok | failed
    snapshot_id: str | None = None
    files: int = 0
    bytes: int = 0
    bytes_added: int = 0
    manifest_files: int = 0
    duration_s: float | None = None
    detail: str = ""


class RepositoryCheckRow(SQLModel, table=True):
    """One ``restic check --read-data-subset=N/M``; the next check reads subset N+1."""

    __tablename__ = "backup_check"
    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(index=True)
    subset_index: int  # 1-based, as restic counts
    subset_count: int
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    duration_s: float | None = None
    outcome: str = "running"  # running | ok | failed
    detail: str = ""


class RestoreProofRow(SQLModel, table=True):
    """A restore of the newest snapshot into scratch space, compared with its manifest."""

    __tablename__ = "restore_proof"
    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(index=True)
    flow_run_id: str | None = None
    server: str  # where the restore ran
    snapshot_id: str | None = None
    snapshot_time: datetime | None = None
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    duration_s: float | None = None
    restore_seconds: float | None = None
    outcome: str = "running"  # running | passed | failed
    files_checked: int = 0
    problems: list | None = Field(default=None, sa_column=Column(JSON))  # first differences, paths only
    detail: str = ""


class TemporaryAccountRow(SQLModel, table=True):
    """A login issued during a rebuild; expires at ``expires_at`` and is then disabled."""

    __tablename__ = "temporary_account"
    id: int | None = Field(default=None, primary_key=True)
    service: str = Field(index=True)
    server: str
    user_name: str
    for_user: str  # the service account whose files it reaches
    flow_run_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str = ""
