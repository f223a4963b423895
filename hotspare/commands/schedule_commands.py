"""``hotspare schedule [FLEET_FILE] [--json]``: when each service is replicated, and why.

The schedule groups ``hotspare serve`` and ``hotspare deploy`` make into ``replicate``
deployments, computed from the fleet (``planning/replication_schedule.py``): a file given on
the command line (check a change before loading it), else the fleet loaded in the inventory.
Nothing is contacted but the inventory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    schedule = subparsers.add_parser("schedule", help="when each service is replicated (from its RPO), and why")
    schedule.add_argument("file", type=Path, nargs="?", help="fleet file to plan for (default: the loaded fleet)")
    schedule.add_argument("--json", action="store_true", help="the groups as JSON")
    schedule.set_defaults(func=schedule_command)


def schedule_command(args: argparse.Namespace) -> int:
    from hotspare.commands.errors import UsageError
    from hotspare.planning.replication_schedule import duration_text, plan_replication_schedule

    if args.file:
        from hotspare.fleet import load_fleet

        fleet = load_fleet(args.file)
    else:
        from hotspare.access import loaded_fleet

        fleet = loaded_fleet()
    try:
        plan = plan_replication_schedule(fleet)
    except ValueError as error:
        raise UsageError(str(error)) from error
    if args.json:
        print(
            json.dumps(
                {
                    "cron_cadence_minutes": plan.cadence_minutes,
                    "groups": [
                        {
                            "deployment": group.name,
                            "interval_minutes": group.interval_minutes,
                            "cron": list(group.cron_lines),
                            "timezone": group.timezone,
                            "services": list(group.services),
                            "replications_per_day": group.replications_per_day,
                            "sentences": list(group.sentences),
                        }
                        for group in plan.groups
                    ],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return 0
    print(
        f"The fleet's crons fire at most {duration_text(plan.cadence_minutes)} apart; a shorter RPO gets an "
        "interval of its own (half the RPO, 5 min at least)."
    )
    for group in plan.groups:
        print(group.reason)
        for sentence in group.sentences:
            print(f"  {sentence}")
    return 0
