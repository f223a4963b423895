"""Serve every hotspare deployment from one process: ``hotspare serve`` (or ``python -m deployments.serve``).
At start it also creates or updates every automation (``deployments/automations.py``).

The fleet is read from the inventory (``hotspare fleet load``), so schedules follow the fleet
file. In a fleet with several facilities, run one such process per facility (or use work pools
with ``prefect deploy``); the inventory lock keeps runs of one service exclusive across them.
"""

from __future__ import annotations


def all_deployments(fleet) -> list:
    """Every deployment: each module of this package (but this one) that has a
    ``deployments_for(fleet)`` function contributes its list, in module-name order."""
    import pkgutil
    from importlib import import_module

    import deployments

    gathered = []
    for module in sorted(pkgutil.iter_modules(deployments.__path__), key=lambda module: module.name):
        if module.name == "serve":
            continue
        builder = getattr(import_module(f"deployments.{module.name}"), "deployments_for", None)
        if builder is not None:
            gathered += builder(fleet)
    return gathered


def make_automations(deployments: list) -> list[str]:
    """Register the deployments automations run, then make every automation (paging, notices).

    Never raises: what could not be made is the last sentence, and serving goes on, because
    the schedules and run buttons (failover first of all) never wait for paging or notices."""
    from deployments.automations import ensure_all_automations, register_automation_targets

    try:
        register_automation_targets(deployments)
        return ensure_all_automations(apply=True)
    except Exception as error:  # a side channel: serving the runbooks comes first
        return [f"automations not made (`hotspare automations apply` retries): {error}"]


def serve_forever() -> None:
    """Make every automation, then serve every deployment until stopped."""
    import logging

    from prefect import serve

    from hotspare.access import loaded_fleet

    log = logging.getLogger("hotspare.serve")
    deployments = all_deployments(loaded_fleet())
    for sentence in make_automations(deployments):
        (log.error if sentence.startswith("automations not made") else log.info)("%s", sentence)
    serve(*deployments)

if __name__ == "__main__":
    serve_forever()
