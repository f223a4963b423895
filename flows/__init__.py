"""The runbooks as Prefect flows.

Importing this package turns off Prefect's flow-run heartbeats unless the operator set
``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``: hotspare notices a dead run by its inventory lease
(``hotspare/inventory/locks.py``), and the heartbeat thread of a synchronous flow is joined at
the run's end in one-second sleeps, which cost every run up to a second (half on average) —
more than a replication with nothing to copy spends on its data.
"""

from __future__ import annotations

import os


def _without_flow_heartbeats() -> None:
    if "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in os.environ:
        return
    from prefect.context import GLOBAL_SETTINGS_CONTEXT
    from prefect.settings import get_current_settings

    # the process-wide settings and the ones in force now (a worker's run may have entered its own)
    for settings in {id(s): s for s in (GLOBAL_SETTINGS_CONTEXT.settings, get_current_settings())}.values():
        settings.flows.heartbeat_frequency = None


_without_flow_heartbeats()
