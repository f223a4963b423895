"""Imports every inventory module that defines tables, so ``SQLModel.metadata`` knows them all.

A subsystem with tables of its own (health, incidents, drills, …) adds its module's import here;
``db.migrate`` creates tables that are missing on every start, so a new table needs no
numbered migration (a change to an existing table does).
"""

from hotspare.inventory import backup_models  # noqa: F401
from hotspare.inventory import incidents  # noqa: F401
from hotspare.inventory import incident_scope  # noqa: F401
from hotspare.inventory import drills  # noqa: F401
from hotspare.inventory import health  # noqa: F401
from hotspare.inventory import copy_stores  # noqa: F401
from hotspare.inventory import notices  # noqa: F401
from hotspare.inventory import pages  # noqa: F401
from hotspare.inventory import orchestrator  # noqa: F401
from hotspare.inventory import approvals  # noqa: F401
from hotspare.inventory import watch  # noqa: F401
from hotspare.inventory import subscriptions  # noqa: F401
