"""``hotspare readiness [--json] [--days N]``: is the team ready? Per procedure who performed it
(for real or in a drill) in the window, flagged under three people; per service the last drill
against its RTO/RPO targets and the last restore proof. Reads the inventory only.

Exits 9 (the "failed" row of the exit-code table in docs/runbooks.md, as ``health`` does for a failed
component) when it finds a problem, so a weekly script or CI notices; training is a drill
watched by the people who need it (``hotspare drill SERVICE --watched-by NAME``), never a real
failover as an exercise."""

from __future__ import annotations

import argparse
import sys

from hotspare.commands.output import add_json_flag, print_json, print_table, say

NOT_READY_EXIT = 9


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "readiness", help="who can perform each procedure; overdue drills and restore proofs (exit 9 when not ready)"
    )
    add_json_flag(parser, "the report")
    parser.add_argument("--days", type=int, default=90, help="window for drills and runs (default 90)")
    parser.add_argument("--minimum-people", type=int, default=3, help="people each procedure needs (default 3)")
    parser.set_defaults(func=readiness_command)


def readiness_command(args: argparse.Namespace) -> int:
    from tasks.readiness import gather_readiness

    report = gather_readiness(args.days, args.minimum_people)
    if args.json:
        print_json(report.as_dict())
    else:
        print_report(report)
    if not report.flags:
        return 0
    print(
        f"readiness: not ready, {len(report.flags)} problem(s). Train people in a drill, which moves no users: "
        "`hotspare drill SERVICE --watched-by NAME` (exit 9)",
        file=sys.stderr,
    )
    return NOT_READY_EXIT


def print_report(report) -> None:
    """The report as the command line's tables: procedures, services, then what is not ready.
    (The weekly deployment publishes the same report as markdown, ``Readiness.markdown``.)"""
    from hotspare.planning.ages import age_text, moment_text

    def day(moment) -> str:
        return "-" if moment is None else f"{moment:%Y-%m-%d}"

    say(
        f"Readiness: {'READY' if report.ready else f'{len(report.flags)} problem(s)'} (the last {report.days} days; "
        f"at least {report.minimum_people} people per procedure; {moment_text(report.now)})"
    )
    print_table(
        ("PROCEDURE", "PEOPLE", "FOR REAL", "IN A DRILL", "LAST", "FLAG"),
        [
            (
                item.procedure,
                len(item.people),
                ", ".join(item.real) or "-",
                ", ".join(item.drilled) or "-",
                day(item.last),
                "listed below" if item.flag else "ok",
            )
            for item in report.procedures
        ],
    )
    print_table(
        ("SERVICE", "LAST DRILL", "DRILL RTO / TARGET", "DRILL RPO / TARGET", "LAST FAILOVER RTO", "LAST RESTORE PROOF", "FLAGS"),
        [
            (
                item.service,
                f"{day(item.last_drill)} {item.last_drill_outcome or ''}".strip(),
                f"{age_text(item.drill_rto_seconds, '-')} / {age_text(item.rto_target_seconds, '-')}",
                f"{age_text(item.drill_rpo_seconds, '-')} / {age_text(item.rpo_target_seconds, '-')}",
                age_text(item.last_failover_rto_seconds, "-"),
                day(item.last_restore_proof),
                "listed below" if item.flags else "ok",
            )
            for item in report.services
        ],
    )
    if report.flags:
        say("Not ready:")
        for flag in report.flags:
            say(f"- {flag}")
