"""The orchestrator's own identity in its inventory: one row, made on first use.

An inventory is an orchestrator: whoever acts through it (the CLI, ``hotspare serve``, every
worker sharing its PostgreSQL) is the same orchestrator to the fleet. The row keeps a random id
(made once, never reused), a readable name, and the fleet id and epoch it last held, so an
orchestrator that cannot read the fleet's marker knows whether it held the fleet at its last
check (``hotspare/planning/orchestrator.py`` decides; ``tasks/orchestrator.py`` reads and writes).
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from datetime import datetime

from sqlalchemy.engine import make_url
from sqlmodel import Field, SQLModel

from hotspare.inventory import (
    db as inventory_db,  # db imports this module first: look session() up at call time
)
from hotspare.inventory.models import utcnow
from hotspare.planning.orchestrator import Identity, safe_text


class OrchestratorRow(SQLModel, table=True):
    """This inventory's orchestrator (a single row, id 1)."""

    __tablename__ = "orchestrator_identity"
    id: int = Field(default=1, primary_key=True)
    orchestrator_id: str
    name: str
    fleet_id: str | None = None
    epoch: int = 0
    lost_to: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    checked_at: datetime | None = None


def default_name() -> str:
    """``user@machine:inventory`` (the inventory's location without its password)."""
    url = make_url(inventory_db.database_url())
    where = url.database if url.drivername.startswith("sqlite") else f"{url.host}:{url.port or ''}/{url.database}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return safe_text(f"{user}@{socket.gethostname()}:{where}")


def identity() -> Identity:
    """This inventory's identity, made on first use (two processes making it at once: the
    second one's insert fails on the key and it reads the first one's)."""
    from sqlalchemy.exc import IntegrityError

    try:
        with inventory_db.session() as db:
            row = db.get(OrchestratorRow, 1)
            if row is None:
                row = OrchestratorRow(orchestrator_id=str(uuid.uuid4()), name=default_name())
                db.add(row)
                db.flush()
            return Identity(row.orchestrator_id, row.name, row.fleet_id, row.epoch, row.lost_to)
    except IntegrityError:
        with inventory_db.session() as db:
            row = db.get(OrchestratorRow, 1)
            return Identity(row.orchestrator_id, row.name, row.fleet_id, row.epoch, row.lost_to)


def record(identity_now: Identity) -> None:
    """Store what the last check found (fleet id, epoch held, who took it over)."""
    with inventory_db.session() as db:
        row = db.get(OrchestratorRow, 1)
        if row is None:
            return
        row.fleet_id, row.epoch, row.lost_to = identity_now.fleet_id, identity_now.epoch, identity_now.lost_to
        row.checked_at = utcnow()
        db.add(row)
