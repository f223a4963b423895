"""``hotspare automations apply|list``: the Prefect automations that page and tell customers.

``apply`` creates or updates every automation (paging on health and incident events, customer
notices and the status page on incident events) in one idempotent call, the same one
``hotspare serve`` makes at start; ``list`` shows each hotspare automation and the deployment
it runs. Both need the deployments registered (``hotspare serve`` registers them).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    automations = subparsers.add_parser("automations", help="Prefect automations for paging and customer notices")
    actions = automations.add_subparsers(dest="action", required=True)
    apply = actions.add_parser("apply", help="create or update every automation (idempotent)")
    apply.add_argument("--dry-run", action="store_true", help="only say what would change")
    apply.set_defaults(func=apply_command)
    listing = actions.add_parser("list", help="each hotspare automation and the deployment it runs")
    listing.add_argument("--json", action="store_true", help="print them as JSON (for scripts) instead of text")
    listing.set_defaults(func=list_command)


def apply_command(args: argparse.Namespace) -> int:
    from deployments.automations import ensure_all_automations

    for sentence in ensure_all_automations(apply=not args.dry_run):
        print(sentence)
    return 0


def list_command(_args: argparse.Namespace) -> int:
    from deployments.automations import automation_targets

    targets = automation_targets()
    if getattr(_args, "json", False):
        from hotspare.commands.output import print_json

        print_json({"automations": {name: list(deployments) for name, deployments in targets.items()}})
        return 0
    if not targets:
        print("no hotspare automations (run `hotspare automations apply`)")
    for name, deployments in targets.items():
        print(f"{name} -> {', '.join(deployments) or '(no deployment)'}")
    return 0
