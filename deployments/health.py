"""Deployment of the health runbook, gathered by ``deployments/serve.py``.

Runs on the fleet's ``health.schedule`` (every minute by default); each run checks for
``health.run_seconds`` (default 60), so consecutive runs cover the time between them.
"""

from __future__ import annotations


def deployments_for(fleet) -> list:
    """The ``health`` deployment for ``fleet``."""
    from prefect.schedules import Cron

    from flows.health import health

    return [health.to_deployment(
        name="health", schedule=Cron(fleet.health.schedule, timezone=fleet.defaults.timezone),
        description="Health checks from every checker site; events on state changes; replacement requests.")]
