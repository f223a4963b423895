"""``hotspare readiness [--json] [--days N]``: is the team ready? Per procedure who performed it
(for real or in a drill) in the window, flagged under three people; per service the last drill
against its RTO/RPO targets and the last restore proof. Reads the inventory only.

Exits 9 (the "failed" row of the README's exit-code table, as ``health`` does for a failed
component) when it finds a problem, so a weekly script or CI notices; training is a drill
watched by the people who need it (``hotspare drill SERVICE --watched-by NAME``), never a real
failover as an exercise."""

from __future__ import annotations

import argparse
import json
import sys

NOT_READY_EXIT = 9


def register(subparsers) -> None:
    parser = subparsers.add_parser("readiness", help="who can perform each procedure; overdue drills and restore proofs "
                                                     "(exit 9 when not ready)")
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
    if not report.flags:
        return 0
    print(f"readiness: not ready, {len(report.flags)} problem(s). Train people in a drill, which moves no users: "
          "`hotspare drill SERVICE --watched-by NAME` (exit 9)", file=sys.stderr)
    return NOT_READY_EXIT
