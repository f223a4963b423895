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
    parser.add_argument(
        "--cleanup", action="store_true", help="only remove what drills killed midway left (of SERVICE, or of every service)"
    )
    parser.add_argument(
        "--watched-by",
        action="append",
        default=[],
        metavar="NAME",
        help="someone who watched the drill, for the record (repeatable)",
    )
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
    from hotspare.commands.output import progress

    with progress(f"drilling {args.service or args.facility or 'cleanup'}"):
        result = run_flow(
            drill,
            args.debug,
            several=bool(args.facility),
            service=args.service,
            facility=args.facility,
            cleanup=args.cleanup,
            watched_by=args.watched_by,
        )
    if args.json or args.cleanup:
        print_result(result, args.json)
    else:
        from hotspare.commands.output import print_table

        print_table(("SERVICE", "OUTCOME", "RTO", "RPO", "CLEANUP", "DRILL", "COPY"), rows(result.get("drills") or [result]))
    return 0


def rows(results: list[dict]) -> list[tuple]:
    """One row per drill: service, outcome, RTO, RPO, cleanup, duration, the copy it ran from."""
    from hotspare.planning.ages import age_text

    return [
        (
            result["service"],
            result.get("outcome", "?"),
            age_text(result.get("rto_seconds"), "-"),
            age_text(result.get("rpo_seconds"), "-"),
            "proven" if result.get("cleanup_proven") else "NO",
            age_text(result.get("duration_seconds"), "-"),
            result.get("copy_id") or "-",
        )
        for result in results
    ]
