"""Deployment of the readiness report, gathered by ``deployments/serve.py``: weekly, Monday
07:00 in the fleet's time zone, so the team sees who still needs a drill before the week starts."""

from __future__ import annotations

READINESS_CRON = "0 7 * * 1"


def deployments_for(fleet) -> list:
    """This module's deployments for ``fleet``."""
    from prefect.schedules import Cron

    from flows.readiness import readiness

    return [
        readiness.to_deployment(
            name="readiness",
            schedule=Cron(READINESS_CRON, timezone=fleet.defaults.timezone),
            description="Who can perform each procedure; overdue drills and restore proofs.",
        )
    ]
