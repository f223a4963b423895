"""Inventory tables: the fleet as loaded, plus what only hotspare knows (dynamic state).

Static columns mirror the fleet file and are overwritten by ``fleet load``; dynamic columns
(which server is active now, copies, locks, runs) are never touched by a load.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlmodel import JSON, Column, Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class FacilityRow(SQLModel, table=True):
    __tablename__ = "facility"
    name: str = Field(primary_key=True)
    description: str = ""
    status: str = "up"  # dynamic: up | lost


class ServerRow(SQLModel, table=True):
    __tablename__ = "server"
    name: str = Field(primary_key=True)
    facility: str = Field(index=True)
    address: str
    ssh_port: int = 22
    host_key: str
    planned_role: str
    ssh_user_block: str
    hardware: dict | None = Field(default=None, sa_column=Column(JSON))
    # dynamic
    state: str = "ok"  # ok | failed | needs-reprotect
    state_reason: str = ""


class ServiceRow(SQLModel, table=True):
    __tablename__ = "service"
    name: str = Field(primary_key=True)
    spec: dict = Field(sa_column=Column(JSON))  # the fleet entry, as validated
    planned_production: str
    planned_mirror: str
    retired: bool = False
    # dynamic
    active_server: str  # serves users now
    mirror_server: str | None = None  # receives copies now; None while unprotected
    state: str = "protected"  # protected | failing-over | failed-over | unprotected | reprotecting
    current_copy_id: str | None = None
    failover: dict | None = Field(default=None, sa_column=Column(JSON))  # in-flight or last failover
    lock_holder: str | None = None
    lock_expires: datetime | None = None
    lock_since: datetime | None = None  # when the current holder took the lock
    lock_token: int | None = None  # fencing token: increases with every acquisition
    updated_at: datetime = Field(default_factory=utcnow)


class CopyRow(SQLModel, table=True):
    """A point-in-time copy of a service on a server (normally its mirror)."""

    __tablename__ = "copy"
    id: str = Field(primary_key=True)
    service: str = Field(index=True)
    source_server: str
    target_server: str
    path: str  # copy root as seen on the target server
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    status: str = "in-progress"  # in-progress | copied | verified | failed | pruned
    bytes_transferred: int = 0
    files_transferred: int = 0
    total_bytes: int = 0
    total_files: int = 0
    verified_at: datetime | None = None
    source_clock_start: float | None = None  # production's clock (epoch s) when the copy began
    verification: dict | None = Field(default=None, sa_column=Column(JSON))


class RunRow(SQLModel, table=True):
    """One execution of a runbook (replicate, verify, failover, …) with its outcome."""

    __tablename__ = "run"
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    service: str = Field(index=True)
    flow_run_id: str | None = None
    operator: str = ""  # who ran it: HOTSPARE_OPERATOR, else the login name (readiness counts these)
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    outcome: str = "running"  # running | ok | failed | refused
    summary: str = ""
    details: dict | None = Field(default=None, sa_column=Column(JSON))


class StepRow(SQLModel, table=True):
    """A timed step of a run: the per-step timings that make up an RTO."""

    __tablename__ = "step"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(index=True, foreign_key="run.id")
    name: str
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    outcome: str = "running"
    detail: str = ""


class FleetDocumentRow(SQLModel, table=True):
    """The fleet file last loaded, verbatim, so every worker plans from the same text."""

    __tablename__ = "fleet_document"
    id: int = Field(default=1, primary_key=True)
    filename: str
    text: str
    loaded_at: datetime = Field(default_factory=utcnow)


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "schema_version"
    id: int = Field(default=1, primary_key=True)
    version: int


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without a zone; every stored time is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)
