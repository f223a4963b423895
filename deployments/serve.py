"""Serve every hotspare deployment from one process: ``hotspare serve`` (or ``python -m deployments.serve``).

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


def serve_forever() -> None:
    from prefect import serve

    from hotspare.access import loaded_fleet

    serve(*all_deployments(loaded_fleet()))


if __name__ == "__main__":
    serve_forever()
