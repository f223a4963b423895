"""``hotspare health``: a one-off health check from every checker site; ``hotspare hardware``:
open replacement requests for disks, power supplies and fans.

``health`` exits 9 when a component is failed (after this run's rounds), so scripts and
monitoring can branch on it.
"""

from __future__ import annotations

import argparse

from hotspare.commands.output import (
    add_json_flag,
    print_json,
    print_table,
    progress,
    say,
)

FAILED_EXIT = 9


def register(subparsers) -> None:
    check = subparsers.add_parser("health", help="check servers and services from every checker site now")
    add_json_flag(check, "the sites, components and changes")
    check.add_argument("--rounds", type=int, default=1, help="rounds to run, one interval apart (default 1)")
    check.add_argument("--interval", type=float, help="seconds between rounds (default: the fleet's)")
    check.set_defaults(func=health_command)

    hardware = subparsers.add_parser("hardware", help="open replacement requests for failed parts")
    add_json_flag(hardware, "the replacement requests")
    hardware.add_argument("--all", action="store_true", help="closed requests too")
    hardware.set_defaults(func=hardware_command)


def health_command(args: argparse.Namespace) -> int:
    from hotspare.commands.errors import UsageError
    from hotspare.commands.running import run_flow

    if args.rounds < 1:
        raise UsageError("--rounds must be at least 1")
    with progress(f"checking every server and service from every site ({args.rounds} round(s))"):
        from flows.health import health

        summary = run_flow(health, args.debug, rounds=args.rounds, interval_seconds=args.interval)
    if args.json:
        print_json(summary)
    else:
        print_findings(summary)
    return FAILED_EXIT if summary["failed"] else 0


def findings_rows(summary: dict) -> list[tuple[str, str, str, str, str]]:
    """Every component that is not ok: subject, component, state, the sites that saw it, and
    its whole evidence (the table wraps it; nothing is cut)."""
    return [(c["subject"], c["component"], c["state"], ", ".join(c["sites"]), c["evidence"]) for c in summary["components"]]


def print_findings(summary: dict) -> None:
    """Sites, then every component that is not ok, then this run's changes."""
    say(
        f"{summary['rounds']} round(s); sites: "
        + ", ".join(f"{site} {'CUT OFF (' + reason + ')' if reason else 'ok'}" for site, reason in summary["sites"].items())
    )
    print_table(("SUBJECT", "COMPONENT", "STATE", "SITES", "EVIDENCE"), findings_rows(summary), empty="every component is ok")
    for change in summary["changes"]:
        say(f"changed: {change['subject']} {change['component']} {change['previous']} -> {change['state']}")
    for failover in summary["failovers"]:
        say(failover["reason"])


def hardware_command(args: argparse.Namespace) -> int:
    from hotspare.inventory import health as health_inventory
    from hotspare.planning.ages import moment_text

    requests = health_inventory.replacement_requests(open_only=not args.all)
    records = [row.model_dump() for row in requests]
    if args.json:
        print_json({"replacement_requests": records})
        return 0
    rows = [
        (
            str(r["id"]),
            f"{r['server']} ({r['facility']})",
            r["location"] or "-",
            f"{r['part_kind']} {r['slot'] or ''}".strip(),
            r["serial"] or "-",
            r["status"],
            moment_text(r["opened_at"]),
            r["mailed_to"] or r["mail_outcome"],
        )
        for r in records
    ]
    print_table(
        ("ID", "SERVER", "LOCATION", "PART", "SERIAL", "STATUS", "OPENED", "MAILED TO"),
        rows,
        empty="no open replacement requests" if not args.all else "no replacement requests",
    )
    return 0
