"""Deployment of the health runbook, gathered by ``deployments/serve.py``.

Runs on the fleet's ``health.schedule`` (every minute by default); each run checks for
``health.run_seconds`` (default 90): longer than the period, so a run that starts late (a
runner's poll, a new process) leaves no gap; the next run waits for the earlier one's turn to end
(``inventory/watch``) and takes over, so two never check at once.
"""

from __future__ import annotations


def deployments_for(fleet) -> list:
    """The ``health`` deployment for ``fleet``."""
    from prefect.schedules import Cron

    from flows.health import health

    return [
        health.to_deployment(
            name="health",
            schedule=Cron(fleet.health.schedule, timezone=fleet.defaults.timezone),
            description="Health checks from every checker site; events on state changes; replacement requests.",
        )
    ]
