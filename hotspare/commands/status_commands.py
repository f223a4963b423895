"""``hotspare status``: the fleet's services at a glance, or as JSON for programs; ``hotspare
unlock``: clear a lock whose holder the operator knows is gone."""

from __future__ import annotations

import argparse

from hotspare.commands.output import add_json_flag, print_json, print_table


def register(subparsers) -> None:
    status = subparsers.add_parser("status", help="services, where they run, and whether they are protected")
    add_json_flag(status, "every service's record")
    status.add_argument("--timeout", type=float, default=2.0, help="seconds per reachability probe")
    status.set_defaults(func=status_command)

    unlock = subparsers.add_parser("unlock", help="clear a service's lock held by a run that is gone")
    unlock.add_argument("service")
    unlock.add_argument("--holder", required=True, help="the holder the busy message names (e.g. replicate:<flow run id>)")
    unlock.add_argument("--yes", action="store_true", help="confirm up front (no question asked)")
    unlock.set_defaults(func=unlock_command)


def unlock_command(args: argparse.Namespace) -> int:
    """Clear the lock only if the named holder still has it, so a new run's lock is never cleared."""
    from hotspare.adapters.errors import NotFound
    from hotspare.commands.running import require_service
    from hotspare.inventory import locks

    require_service(args.service)
    _confirm_unlock(args)
    if not locks.unlock(args.service, args.holder):
        now = locks.holder_of(args.service)
        raise NotFound(
            f"{args.holder} does not hold the lock of {args.service} "
            f"({f'{now} holds it now' if now else 'nobody holds it'}); nothing changed"
        )
    print(f"cleared the lock of {args.service} held by {args.holder}")
    return 0


def _confirm_unlock(args: argparse.Namespace) -> None:
    """Clearing a live run's lock lets a second run act beside it: ask, naming the consequence."""
    import sys

    from hotspare.adapters.errors import NotApproved

    if args.yes:
        return
    question = (
        f"Clear the lock of {args.service} held by {args.holder}? If that run is still alive, another run "
        f"can then act on {args.service} beside it. Type the service name to confirm: "
    )
    if not sys.stdin.isatty():
        raise NotApproved(f"not unlocking {args.service}: no terminal to ask on; pass --yes to confirm")
    if input(question).strip() != args.service:
        raise NotApproved(f"not unlocking {args.service}: not confirmed; nothing changed")


def status_command(args: argparse.Namespace) -> int:
    from sqlmodel import select

    from hotspare.inventory import session
    from hotspare.inventory.models import ServerRow, ServiceRow
    from hotspare.probes import reachability
    from hotspare.status import STATUS_HEADERS, service_status, status_rows

    with session() as db:
        services = list(db.exec(select(ServiceRow).where(ServiceRow.retired == False).order_by(ServiceRow.name)))  # noqa: E712
        servers = {server.name: server for server in db.exec(select(ServerRow))}
    if not services:
        from hotspare.adapters.errors import MissingConfiguration

        raise MissingConfiguration("no services in the inventory: run `hotspare fleet load FLEET.yaml`")
    from hotspare.commands.output import progress

    with progress(f"probing {len(servers)} servers"):
        reachable = reachability({name: (s.address, s.ssh_port) for name, s in servers.items()}, args.timeout)
        records = service_status(services, servers, reachable, _copy_facts(services))
    if args.json:
        print_json({"services": records})
    else:
        print_table(STATUS_HEADERS, status_rows(records))
    _warn_when_another_orchestrator_holds_the_fleet()
    return 0


def _warn_when_another_orchestrator_holds_the_fleet() -> None:
    """A read-only look: say so (stderr) when this inventory is not the fleet's orchestrator."""
    import sys

    from tasks.orchestrator import require_orchestrator

    try:
        decision = require_orchestrator(None, "status", read_only=True)
    except Exception as error:  # noqa: BLE001  (status never fails for this side note)
        print(f"warning: the fleet's orchestrator was not checked: {error}", file=sys.stderr)
        return
    if decision.kind == "warn":
        print(f"warning: {decision.sentence}", file=sys.stderr)


def _copy_facts(services) -> dict:
    from hotspare.access import loaded_fleet
    from hotspare.inventory import copies, copy_stores
    from hotspare.inventory.models import utcnow
    from hotspare.status import copy_facts, failover_facts

    fleet = loaded_fleet()
    in_fleet = {service.name: service for service in fleet.services}
    now = utcnow()
    facts = {}
    for service in services:
        rpo_hours = fleet.rpo_hours_of(in_fleet[service.name]) if service.name in in_fleet else fleet.defaults.rpo_hours
        facts[service.name] = copy_facts(
            service, copies.current_copy(service.name), copies.newest_verified(service.name), rpo_hours, now
        )
        facts[service.name] |= failover_facts(_last_run(service.name, "failover"))
        facts[service.name] |= copy_stores.status_fields(service.name, service.mirror_server)
    return facts


def _last_run(service: str, kind: str):
    from sqlmodel import select

    from hotspare.inventory import session
    from hotspare.inventory.models import RunRow

    with session() as db:
        return db.exec(select(RunRow).where(RunRow.service == service, RunRow.kind == kind).order_by(RunRow.id.desc())).first()
