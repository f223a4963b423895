"""How the deployments are organised for an outage: each runbook's group and where it may run.

The Prefect UI lists deployments flat; a tag per group lets an operator filter the page down to
what an outage needs (``recovery``), and every deployment carries a one-sentence description.

- **recovery**: failover, failback, reprotect, facility failover and return, rebuild;
- **protection**: replication and backups, the schedules that make recovery possible;
- **checks**: verification, repository checks, restore proofs, drills, health;
- **communication**: paging, incidents, customer notices, the status page;
- **administration**: expiring temporary logins, readiness reports.

``hotspare deploy`` puts every deployment on the control site's pool, and on each facility's
pool only the runbooks that must work while the control site is lost (``FACILITY_FLOWS``):
moving services, replicating and verifying need only SSH, the DNS update key and the BMCs, which
a facility's worker holds. Backups, restore proofs and rebuilds need backup passwords, paging
needs the phone providers: those stay with the control site (``lab/proxy.py: facility_blocks``),
so a copy on a facility pool could only fail.
"""

from __future__ import annotations

RECOVERY, PROTECTION, CHECKS, COMMUNICATION, ADMINISTRATION = (
    "recovery",
    "protection",
    "checks",
    "communication",
    "administration",
)
GROUPS = (RECOVERY, PROTECTION, CHECKS, COMMUNICATION, ADMINISTRATION)

GROUP_OF_FLOW = {
    "failover": RECOVERY,
    "failback": RECOVERY,
    "reprotect": RECOVERY,
    "facility-failover": RECOVERY,
    "facility-return": RECOVERY,
    "rebuild": RECOVERY,
    "replicate": PROTECTION,
    "backup": PROTECTION,
    "verify": CHECKS,
    "backup-check": CHECKS,
    "restore-proof": CHECKS,
    "drill": CHECKS,
    "health": CHECKS,
    "incident-page": COMMUNICATION,
    "incident-open": COMMUNICATION,
    "incident-acknowledge": COMMUNICATION,
    "incident-resolve": COMMUNICATION,
    "customer-notice": COMMUNICATION,
    "status-page-publish": COMMUNICATION,
    "expire-temporary-accounts": ADMINISTRATION,
    "readiness": ADMINISTRATION,
}

# Runbooks a facility's pool carries: what must work while the control site is lost.
FACILITY_FLOWS = frozenset({"failover", "failback", "reprotect", "facility-failover", "facility-return", "replicate", "verify"})


class UnorganisedDeployment(ValueError):
    """A deployment without a group or a description: the UI would show it unexplained."""


def organise(deployments: list) -> list:
    """Tag each deployment with its group (first tag), ordered by group then name; raises
    ``UnorganisedDeployment`` naming every deployment whose flow has no group or that has no
    description (a new runbook must say where it belongs)."""
    problems = []
    for deployment in deployments:
        group = GROUP_OF_FLOW.get(deployment.flow_name)
        if group is None:
            problems.append(f"{deployment.flow_name}/{deployment.name}: add its flow to GROUP_OF_FLOW")
            continue
        if not (deployment.description or "").strip():
            problems.append(f"{deployment.flow_name}/{deployment.name}: give it a description")
        deployment.tags = [group, *(tag for tag in deployment.tags if tag != group)]
    if problems:
        raise UnorganisedDeployment("deployments/catalog.py: " + "; ".join(problems))
    return sorted(
        deployments,
        key=lambda deployment: (GROUPS.index(GROUP_OF_FLOW[deployment.flow_name]), deployment.flow_name, deployment.name),
    )


def runs_in_facility_pools(deployment) -> bool:
    """Whether a facility's pool gets a copy of ``deployment`` (the control site's gets all)."""
    return deployment.flow_name in FACILITY_FLOWS


def where_it_runs(flow_name: str) -> str:
    """The sentence for a runbook asked for on a pool that does not carry it."""
    if flow_name in FACILITY_FLOWS:
        return f"{flow_name} is deployed to the control site's pool and every facility's (hotspare deploy)"
    return (
        f"{flow_name} runs at the control site only: it needs credentials facility workers do not hold "
        "(backup passwords, phone providers); submit it with --facility control or without --facility"
    )
