"""``hotspare drill``: rehearse a failover of a service (or of every service running in a
facility) from its newest verified copy, in a bubble on the mirror, and prove the cleanup.

Prints the measured RTO and RPO and whether the cleanup was proven (``--json``: the whole
result). Exit 0 only when the service came up healthy and nothing was left behind.
"""

from __future__ import annotations

import argparse

from hotspare.commands.errors import UsageError
from hotspare.commands.running import print_result, require_service, run_flow


def register(subparsers) -> None:
    parser = subparsers.add_parser("drill", help="rehearse a failover in an isolated bubble on the mirror, then remove it")
    parser.add_argument("service", nargs="?", help="the service to drill")
    parser.add_argument("--facility", help="drill every service whose production stands in this facility")
    parser.add_argument("--cleanup", action="store_true",
                        help="only remove what drills killed midway left (of SERVICE, or of every service)")
    parser.add_argument("--watched-by", action="append", default=[], metavar="NAME",
                        help="someone who watched the drill, for the record (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    parser.set_defaults(func=drill_command)


def drill_command(args: argparse.Namespace) -> int:
    from flows.drill import drill

    if args.facility and (args.service or args.cleanup):
        raise UsageError("--facility drills a whole facility: name no SERVICE and no --cleanup with it")
    if not (args.service or args.facility or args.cleanup):
        raise UsageError("name a SERVICE, --facility F or --cleanup")
    if args.service:
        require_service(args.service)
    result = run_flow(drill, args.debug, several=bool(args.facility), service=args.service, facility=args.facility,
                      cleanup=args.cleanup, watched_by=args.watched_by)
    if args.json or args.cleanup:
        print_result(result)
    else:
        for line in table(result.get("drills") or [result]):
            print(line)
    return 0


def table(results: list[dict]) -> list[str]:
    """One line per drill: service, outcome, RTO, RPO, cleanup, duration."""
    lines = [f"{'SERVICE':<16} {'OUTCOME':<10} {'RTO':>8} {'RPO':>10} {'CLEANUP':<8} {'DRILL':>8}  COPY"]
    for result in results:
        rto, rpo, duration = result.get("rto_seconds"), result.get("rpo_seconds"), result.get("duration_seconds")
        lines.append(f"{result['service']:<16} {result.get('outcome', '?'):<10} "
                     f"{(f'{rto:.2f} s' if rto is not None else '-'):>8} {(f'{rpo:.0f} s' if rpo is not None else '-'):>10} "
                     f"{('proven' if result.get('cleanup_proven') else 'NO'):<8} "
                     f"{(f'{duration:.2f} s' if duration is not None else '-'):>8}  {result.get('copy_id') or '-'}")
    return lines
