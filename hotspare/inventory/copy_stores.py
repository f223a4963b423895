"""Per service and mirror: how copies are kept there (back-end) and how far content
verification has got through the whole data set (the rolling full pass).

One row per (service, target server). The back-end is decided at every replication from facts
gathered on the mirror (``planning/copy_backends.py``) and recorded here for ``hotspare status``.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from hotspare.inventory.models import utcnow


class CopyStoreRow(SQLModel, table=True):
    __tablename__ = "copy_store"
    service: str = Field(primary_key=True)
    target_server: str = Field(primary_key=True)
    backend: str = ""  # btrfs-snapshot | hard-links
    reason: str = ""  # the planner's sentence
    decided_at: datetime = Field(default_factory=utcnow)
    # Rolling full verification: every byte compared at least once per period.
    pass_started_at: datetime | None = None  # when the current rolling pass began
    pass_cursor: str = ""  # the last path (sorted order) the rolling pass has compared
    pass_files_done: int = 0  # files compared in the current pass so far
    last_full_pass_at: datetime | None = None  # when the last complete pass (rolling or --full) ended
    last_full_pass_started_at: datetime | None = None  # when that pass began (its data is at least that fresh)
    last_full_pass_files: int = 0  # files that pass compared


def store_of(service: str, target: str) -> CopyStoreRow | None:
    from hotspare.inventory.db import session  # db imports this module for its tables

    with session() as db:
        return db.get(CopyStoreRow, (service, target))


def record(service: str, target: str, **values) -> CopyStoreRow:
    """Create or update the row of ``service`` on ``target``."""
    from hotspare.inventory.db import session

    with session() as db:
        row = db.get(CopyStoreRow, (service, target))
        if row is None:
            row = CopyStoreRow(service=service, target_server=target)
            db.add(row)
        for name, value in values.items():
            setattr(row, name, value)
        return row


def status_fields(service: str, mirror: str | None) -> dict:
    """What ``hotspare status`` shows about the copies on the service's mirror: back-end and
    the last complete content comparison (when, how many files)."""
    row = store_of(service, mirror) if mirror else None
    if row is None:
        return {"copy_backend": None, "copy_backend_reason": None, "full_verification": None}
    full = None
    if row.last_full_pass_at:
        full = {
            "completed_at": row.last_full_pass_at,
            "started_at": row.last_full_pass_started_at,
            "files": row.last_full_pass_files,
        }
    return {
        "copy_backend": row.backend,
        "copy_backend_reason": row.reason,
        "full_verification": full,
        "verification_pass": {"started_at": row.pass_started_at, "files_done": row.pass_files_done},
    }
