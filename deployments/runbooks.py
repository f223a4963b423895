"""Deployments of the mirror runbooks: replicate (scheduled), verify, failover, reprotect.

Replication runs for every service at the fleet's ``replication_schedule`` (default 01:00 and
13:00) in its explicit time zone; the others are on demand, from the Prefect UI's run button
or the API. At most one replication per service runs at a time (inventory lock).
"""

from __future__ import annotations


def runbook_deployments(fleet) -> list:
    """``flow.to_deployment`` objects for the mirror runbooks of ``fleet``."""
    from prefect.schedules import Cron

    from flows.failover import failover
    from flows.replicate import replicate
    from flows.reprotect import reprotect
    from flows.verify import verify

    timezone = fleet.defaults.timezone
    schedules = [Cron(cron, timezone=timezone) for cron in fleet.defaults.replication_schedule]
    return [
        replicate.to_deployment(name="replicate-all", schedules=schedules,
                                description="Replicate every service to its mirror and verify the copy."),
        verify.to_deployment(name="verify", description="Re-verify the current copy of services against production."),
        failover.to_deployment(name="failover", description="Fail a service over to its mirror; pauses for approval."),
        reprotect.to_deployment(name="reprotect", description="Make the old production the new mirror of a failed-over service."),
    ]


def deployments_for(fleet) -> list:
    """This module's deployments for ``fleet`` (gathered by ``deployments/serve.py``)."""
    return runbook_deployments(fleet)
