"""Imports every inventory module that defines tables, so ``SQLModel.metadata`` knows them all.

A subsystem with tables of its own (health, incidents, drills, …) adds its module's import here;
``db.migrate`` creates tables that are missing on every start, so a new table needs no
numbered migration (a change to an existing table does).
"""

from hotspare.inventory import backup_models
from hotspare.inventory import incidents
from hotspare.inventory import incident_scope
from hotspare.inventory import drills
from hotspare.inventory import health
from hotspare.inventory import copy_stores
from hotspare.inventory import notices
from hotspare.inventory import pages
from hotspare.inventory import orchestrator
from hotspare.inventory import approvals
from hotspare.inventory import watch
from hotspare.inventory import subscriptions
