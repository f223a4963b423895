"""Imports every inventory module that defines tables, so ``SQLModel.metadata`` knows them all.

A subsystem with tables of its own (health, incidents, drills, …) adds its module's import here;
``db.migrate`` creates tables that are missing on every start, so a new table needs no
numbered migration (a change to an existing table does).
"""

from hotspare.inventory import (
    approvals,
    backup_models,
    copy_stores,
    drills,
    health,
    incident_scope,
    incidents,
    notices,
    orchestrator,
    pages,
    subscriptions,
    watch,
)
