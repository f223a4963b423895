"""``hotspare health``: a one-off health check from every checker site; ``hotspare hardware``:
open replacement requests for disks, power supplies and fans.

``health`` exits 9 when a component is failed (after this run's rounds), so scripts and
monitoring can branch on it.
"""

from __future__ import annotations

import argparse
import json

FAILED_EXIT = 9


def register(subparsers) -> None:
    check = subparsers.add_parser("health", help="check servers and services from every checker site now")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--rounds", type=int, default=1, help="rounds to run, one interval apart (default 1)")
    check.add_argument("--interval", type=float, help="seconds between rounds (default: the fleet's)")
    check.set_defaults(func=health_command)

    hardware = subparsers.add_parser("hardware", help="open replacement requests for failed parts")
    hardware.add_argument("--json", action="store_true", help="machine-readable output")
    hardware.add_argument("--all", action="store_true", help="closed requests too")
    hardware.set_defaults(func=hardware_command)


def health_command(args: argparse.Namespace) -> int:
    from flows.health import health
    from hotspare.commands.errors import UsageError
    from hotspare.commands.running import run_flow

    if args.rounds < 1:
        raise UsageError("--rounds must be at least 1")
    summary = run_flow(health, args.debug, rounds=args.rounds, interval_seconds=args.interval)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_findings(summary))
    return FAILED_EXIT if summary["failed"] else 0


def format_findings(summary: dict) -> str:
    """Sites, then every component that is not ok, then this run's changes."""
    lines = [f"{summary['rounds']} round(s); sites: " + ", ".join(
        f"{site} {'CUT OFF (' + reason + ')' if reason else 'ok'}" for site, reason in summary["sites"].items())]
    rows = [("SUBJECT", "COMPONENT", "STATE", "SITES", "EVIDENCE")]
    rows += [(c["subject"], c["component"], c["state"], ",".join(c["sites"]), c["evidence"][:100]) for c in summary["components"]]
    if len(rows) == 1:
        lines.append("every component is ok")
    else:
        lines.append(_table(rows))
    for change in summary["changes"]:
        lines.append(f"changed: {change['subject']} {change['component']} {change['previous']} -> {change['state']}")
    for failover in summary["failovers"]:
        lines.append(failover["reason"])
    return "\n".join(lines)


def hardware_command(args: argparse.Namespace) -> int:
    from hotspare.inventory import health as health_inventory

    requests = health_inventory.replacement_requests(open_only=not args.all)
    records = [row.model_dump() for row in requests]
    if args.json:
        print(json.dumps({"replacement_requests": records}, indent=2, default=str))
        return 0
    if not records:
        print("no open replacement requests")
        return 0
    rows = [("ID", "SERVER", "FACILITY", "LOCATION", "PART", "SLOT", "SERIAL", "STATUS", "OPENED", "MAILED TO")]
    rows += [(str(r["id"]), r["server"], r["facility"], r["location"] or "-", r["part_kind"], r["slot"] or "-",
              r["serial"] or "-", r["status"], f"{r['opened_at']:%Y-%m-%d %H:%M}", r["mailed_to"] or r["mail_outcome"])
             for r in records]
    print(_table(rows))
    return 0


def _table(rows: list[tuple]) -> str:
    widths = [max(len(str(row[column])) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
