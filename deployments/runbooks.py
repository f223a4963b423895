"""Deployments of the mirror runbooks: replicate (scheduled), verify, failover, reprotect.

Replication is scheduled per group of services with the same interval, derived from each
service's RPO (``planning/replication_schedule.py``): ``replicate-all`` runs at the fleet's
``replication_schedule`` (default 01:00 and 13:00) in its explicit time zone for every service
those crons already cover (all of them in a fleet of default RPOs), and each shorter interval
is a deployment of its own, ``replicate-every-5m``, ``replicate-every-2h``…, whose runs work its
services in parallel within the fleet's bounds. The others are on demand, from the Prefect UI's
run button or the API. At most one replication per service runs at a time (inventory lock); runs
of one group may overlap, so a slow service never holds back the next run of the others.
"""

from __future__ import annotations

# Marks the deployments whose runs may overlap: each service's own lock keeps it exclusive, so
# ``hotspare deploy`` puts no one-run-at-a-time limit on them (a run stuck on one slow service
# would otherwise hold back every other service of its group).
OVERLAPPING_RUNS_TAG = "overlapping-runs"


def runbook_deployments(fleet) -> list:
    """``flow.to_deployment`` objects for the mirror runbooks of ``fleet``."""
    from flows.failback import failback
    from flows.failover import failover
    from flows.reprotect import reprotect
    from flows.verify import verify

    return [
        *replication_deployments(fleet),
        verify.to_deployment(name="verify", description="Re-verify the current copy of services against production."),
        failover.to_deployment(name="failover", description="Fail a service over to its mirror; pauses for approval."),
        reprotect.to_deployment(name="reprotect", description="Make the old production the new mirror of a failed-over service."),
        failback.to_deployment(
            name="failback",
            description="Move a reprotected service back to its planned production "
            "(planned switchover, no data loss); pauses for approval.",
        ),
    ]


def replication_deployments(fleet) -> list:
    """One ``replicate`` deployment per schedule group, ``replicate-all`` first.

    ``replicate-all`` keeps no default services, so its run button replicates every service;
    when some services have an interval of their own, its cron schedules carry the services
    that stay on the crons (a schedule's parameters). Each interval group's deployment names its
    services as default parameters, on one clock-aligned cron line in UTC."""
    from prefect.schedules import Cron

    from flows.replicate import replicate
    from hotspare.planning.replication_schedule import duration_text, plan_replication_schedule

    plan = plan_replication_schedule(fleet)
    made = []
    for group in plan.groups:
        if group.on_fleet_crons:
            everyone = len(plan.groups) == 1
            parameters = None if everyone else {"services": list(group.services)}
            schedules = (
                [Cron(line, timezone=group.timezone, parameters=parameters) for line in group.cron_lines]
                if group.services
                else []
            )
            scheduled = (
                "every service" if everyone else _names(group.services)
            ) + f" at {', '.join(group.cron_lines)} ({group.timezone})"
            made.append(
                replicate.to_deployment(
                    name=group.name,
                    schedules=schedules,
                    tags=[OVERLAPPING_RUNS_TAG],
                    description=(
                        "Replicate every service to its mirror and verify the copy (run button). Scheduled: "
                        + (scheduled if group.services else "none, every service has a shorter interval of its own")
                        + "."
                    ),
                )
            )
        else:
            made.append(
                replicate.to_deployment(
                    name=group.name,
                    schedules=[Cron(group.cron_lines[0], timezone=group.timezone)],
                    parameters={"services": list(group.services)},
                    tags=[OVERLAPPING_RUNS_TAG],
                    description=(
                        f"Replicate {_names(group.services)} every {duration_text(group.interval_minutes)} and verify "
                        "the copy; a service the previous run still replicates is skipped."
                    ),
                )
            )
    return made


def _names(services: tuple[str, ...], shown: int = 8) -> str:
    """Service names for a description: the first few and how many more."""
    more = f" and {len(services) - shown} more" if len(services) > shown else ""
    return ", ".join(services[:shown]) + more


def deployments_for(fleet) -> list:
    """This module's deployments for ``fleet`` (gathered by ``deployments/serve.py``)."""
    return runbook_deployments(fleet)
