"""``hotspare readiness [--json] [--days N]``: is the team ready? Per procedure who performed it
(for real or in a drill) in the window, flagged under three people; per service the last drill
against its RTO/RPO targets and the last restore proof. Reads the inventory only."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("readiness", help="who can perform each procedure; overdue drills and restore proofs")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--days", type=int, default=90, help="window for drills and runs (default 90)")
    parser.add_argument("--minimum-people", type=int, default=3, help="people each procedure needs (default 3)")
    parser.set_defaults(func=readiness_command)


def readiness_command(args: argparse.Namespace) -> int:
    from tasks.readiness import gather_readiness

    report = gather_readiness(args.days, args.minimum_people)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print(report.markdown())
        if report.flags:
            print("\nNot ready:")
            print("\n".join(f"- {flag}" for flag in report.flags))
    return 0
