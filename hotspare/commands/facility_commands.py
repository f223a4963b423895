"""``hotspare facility failover|return|status F``: lose a whole facility, take it back, and see
where every service that touches it stands.

``failover`` shows the facility plan (every service's own plan digest, the order, who keeps
running unprotected, who needs a rebuild) and asks for its one digest (``--yes`` approves up
front, ``--dry-run`` only shows it). ``return`` reprotects everything that ran in the facility and
prints the failback offer per tier, behind the same gate (``running.run_gated``).
"""

from __future__ import annotations

import argparse

from hotspare.commands.output import add_json_flag, print_json
from hotspare.commands.running import add_approval_arguments, run_gated


def register(subparsers) -> None:
    parser = subparsers.add_parser("facility", help="fail a whole facility over, bring it back, show its services")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    failover = actions.add_parser("failover", help="move every service whose production is in FACILITY to its mirror")
    failover.add_argument("facility")
    add_approval_arguments(failover, "facility")
    failover.add_argument("--max-copy-age-hours", type=float, default=24.0)
    failover.add_argument(
        "--live-run-wait-seconds",
        type=float,
        default=600.0,
        help="how long to wait for a run already acting on a service (never taken over; "
        "still at work after this, the service is reported as handled by it)",
    )
    add_json_flag(failover, "the plan (with --dry-run: its markdown and digest as fields) or the run's result")
    failover.set_defaults(func=failover_command)

    back = actions.add_parser("return", help="the facility is back: its former productions become mirrors (verified)")
    back.add_argument("facility")
    add_approval_arguments(back, "facility return")
    add_json_flag(back, "the plan (with --dry-run: its markdown and digest as fields) or the run's result")
    back.set_defaults(func=return_command)

    status = actions.add_parser("status", help="every service with its production or mirror in FACILITY")
    status.add_argument("facility")
    add_json_flag(status, "the facility, its servers and services")
    status.set_defaults(func=status_command)


def failover_command(args: argparse.Namespace) -> int:
    from flows.facility import facility_failover
    from hotspare.planning.facility import HANDLED_ELSEWHERE

    result = run_gated(
        facility_failover,
        args,
        f"hotspare facility failover {args.facility}",
        "to fail over every service listed",
        several=True,
        facility=args.facility,
        max_copy_age_hours=args.max_copy_age_hours,
        live_run_wait_seconds=args.live_run_wait_seconds,
    )
    if result is not None and args.json:
        print_json(result)
    elif result is not None:
        still = sorted(name for name, moved in result["results"].items() if moved["outcome"] == HANDLED_ELSEWHERE)
        print(
            f"facility {args.facility}: {len(result['results']) - len(still)} of {len(result['results'])} service(s) on "
            f"their mirrors {result['total_seconds']} s after approval"
            + (f"; still being moved by the runs already at work on them: {', '.join(still)}" if still else "")
        )
    return 0


def return_command(args: argparse.Namespace) -> int:
    from flows.facility import facility_return

    result = run_gated(
        facility_return,
        args,
        f"hotspare facility return {args.facility}",
        "to stop the app on each new mirror listed and reprotect",
        several=True,
        facility=args.facility,
    )
    if result is not None and args.json:
        print_json(result)
    elif result is not None:
        print(f"facility {args.facility}: {len(result['results'])} service(s) protected again in {result['total_seconds']} s")
    return 0


def status_command(args: argparse.Namespace) -> int:
    records = facility_status(args.facility)
    if args.json:
        print_json(records)
        return 0
    print(format_status(records))
    return 0


def facility_status(facility: str) -> dict:
    """The facility's state, its servers, and every service with production or mirror there."""
    from sqlmodel import select

    from flows.facility import service_standings
    from hotspare import access
    from hotspare.adapters.errors import NotFound
    from hotspare.inventory import session
    from hotspare.inventory.models import FacilityRow, ServerRow

    fleet = access.loaded_fleet()
    if facility not in {item.name for item in fleet.facilities}:
        raise NotFound(f"no facility {facility!r} in the fleet (known: {', '.join(f.name for f in fleet.facilities)})")
    with session() as db:
        row = db.get(FacilityRow, facility)
        servers = list(db.exec(select(ServerRow).where(ServerRow.facility == facility).order_by(ServerRow.name)))
    status = row.status if row else "up"
    services = []
    for standing in service_standings(fleet):
        in_production = standing.production_facility == facility
        in_mirror = standing.mirror_facility == facility
        was_here = standing.previous_production_facility == facility
        if not (in_production or in_mirror or was_here):
            continue
        services.append(
            {
                "service": standing.service,
                "tier": standing.tier,
                "state": standing.state,
                "production": standing.production,
                "mirror": standing.mirror,
                "protection": protection_sentence(standing, facility, status),
            }
        )
    return {
        "facility": facility,
        "status": status,
        "servers": [{"name": s.name, "role": s.planned_role, "state": s.state, "reason": s.state_reason} for s in servers],
        "services": services,
    }


def protection_sentence(standing, facility: str, facility_status: str) -> str:
    """One clear sentence on whether the service is protected, seen from ``facility``. It names
    what failed: a production in the facility is said to be lost (or being left by a failover),
    and only a service whose production stands elsewhere is "unprotected" by a mirror here."""
    lost = facility_status == "lost"
    if standing.state == "failed-over" and standing.previous_production_facility == facility:
        return (
            f"runs on its mirror {standing.production}, unprotected: former production {standing.previous_production} "
            f"in facility {facility} {'lost' if lost else 'needs reprotect'} (`hotspare facility return {facility}`)"
        )
    if standing.production_facility == facility:
        if standing.state == "failing-over":
            return (
                f"failing over: production {standing.production} in facility {facility} "
                f"{'lost' if lost else 'is being left'}; a failover run is moving it (`hotspare status`)"
            )
        if lost:
            return f"production {standing.production} lost with facility {facility}: `hotspare facility failover {facility}`"
        return standing.state
    if standing.mirror_facility == facility and lost:
        return f"unprotected: mirror facility {facility} lost ({standing.mirror}); runs on {standing.production}"
    if standing.mirror_facility == facility and standing.state == "unprotected":
        return (
            f"unprotected: mirror {standing.mirror} holds no verified copy (a reprotect failed); runs on "
            f"{standing.production} (`hotspare reprotect {standing.service} --mirror {standing.mirror}`)"
        )
    return standing.state


def format_status(records: dict) -> str:
    lines = [f"facility {records['facility']}: {records['status'].upper()}", "", "servers:"]
    lines += [
        f"  {s['name']:<16} {s['role']:<11} {s['state']}{' (' + s['reason'] + ')' if s['reason'] else ''}"
        for s in records["servers"]
    ]
    lines += ["", "services:"]
    if not records["services"]:
        lines.append("  none")
    for item in records["services"]:
        lines.append(
            f"  {item['service']:<12} tier {item['tier']}  production {item['production']:<14} "
            f"mirror {item['mirror'] or '-':<14} {item['protection']}"
        )
    return "\n".join(lines)
