"""Deployments of the drill runbook, gathered by ``deployments/serve.py``.

One scheduled deployment per service (its ``drill_schedule``, monthly by default, in the fleet's
time zone; a service whose schedule is null gets none), plus ``drill`` for the run button (any
service or facility) and ``drill-cleanup`` to remove what killed drills left.
"""

from __future__ import annotations


def deployments_for(fleet) -> list:
    """This module's deployments for ``fleet``."""
    from prefect.schedules import Cron

    from flows.drill import drill

    timezone = fleet.defaults.timezone
    deployments = [
        drill.to_deployment(
            name=f"drill-{service.name}",
            schedule=Cron(service.drill_schedule, timezone=timezone),
            parameters={"service": service.name},
            description=f"Bring {service.name} up from its newest copy in an isolated bubble on its "
            f"mirror and prove the cleanup; at {service.drill_schedule}.",
        )
        for service in fleet.services
        if service.drill_schedule
    ]
    deployments += [
        drill.to_deployment(
            name="drill", description="Drill a service or a whole facility now, in isolated bubbles on the mirrors."
        ),
        drill.to_deployment(
            name="drill-cleanup", parameters={"cleanup": True}, description="Remove what killed drills left on the mirrors."
        ),
    ]
    return deployments
