"""Serve every hotspare deployment from one process: ``hotspare serve`` (or ``python -m deployments.serve``).

The fleet is read from the inventory (``hotspare fleet load``), so schedules follow the fleet
file. In a fleet with several facilities, run one such process per facility (or use work pools
with ``prefect deploy``); the inventory lock keeps runs of one service exclusive across them.
"""

from __future__ import annotations


def all_deployments(fleet) -> list:
    from deployments.backup import backup_deployments
    from deployments.runbooks import runbook_deployments

    return [*runbook_deployments(fleet), *backup_deployments(fleet.defaults, fleet)]


def serve_forever() -> None:
    from prefect import serve

    from hotspare.access import loaded_fleet

    serve(*all_deployments(loaded_fleet()))


if __name__ == "__main__":
    serve_forever()
