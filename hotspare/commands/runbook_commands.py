"""``hotspare replicate|verify|failover|failback|reprotect|serve``: run the runbooks now, in this
process, as Prefect flow runs.

With ``PREFECT_API_URL`` set the runs appear in that server's UI; otherwise Prefect starts a
temporary local server for the duration of the command. Failover, failback and reprotect print
the service's topology before and after (``topology.py``). A failed run raises its own
exception; ``hotspare.cli`` turns it into one message and an exit code (``errors.py``).
"""

from __future__ import annotations

import argparse

from hotspare.commands.output import add_json_flag, progress
from hotspare.commands.running import add_approval_arguments, print_result, require_service, run_flow, run_gated
from hotspare.commands.topology import show_topology


def register(subparsers) -> None:
    for name, help_text, extra in (
        ("replicate", "copy production to the mirror into a verified point-in-time copy", _force_flag),
        ("verify", "re-verify the current mirror copy against production (the next rolling slice; --full: all)", _full_flag),
    ):
        parser = subparsers.add_parser(name, help=help_text)
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("service", nargs="?", help="service name")
        target.add_argument("--all", action="store_true", help="every service in the inventory")
        if extra:
            extra(parser)
        add_json_flag(parser, "the run's result")
        parser.set_defaults(func=_runner(name))
    register_failover(subparsers)
    serve = subparsers.add_parser("serve", help="serve all deployments (schedules and run buttons) until stopped")
    serve.add_argument(
        "--acknowledgements",
        metavar="HOST:PORT",
        default=None,
        help="where the acknowledgement webhook listens (default: the fleet's acknowledgement_url "
        "when it is an address of this machine; `off`: not at all)",
    )
    serve.set_defaults(func=serve_command)


def register_failover(subparsers) -> None:
    parser = subparsers.add_parser("failover", help="fail a service over to its mirror (plan, approve, activate, DNS)")
    parser.add_argument("service")
    parser.add_argument("--planned", action="store_true", help="planned switchover: stop the app, final sync, no data loss")
    parser.add_argument("--copy", dest="copy_id", help="make this copy live instead of the newest verified one")
    add_approval_arguments(parser, "failover")
    parser.add_argument("--force", action="store_true", help="accept an unverified or too old copy")
    parser.add_argument("--resume", action="store_true", help="continue a failover whose process died midway")
    parser.add_argument("--max-copy-age-hours", type=float, default=24.0)
    add_json_flag(parser, "the plan (with --dry-run: its markdown and digest as fields) or the run's result")
    parser.set_defaults(func=failover_command)

    back = subparsers.add_parser("failback", help="planned switchover back to the original production (after reprotect)")
    back.add_argument("service")
    add_approval_arguments(back, "failback")
    add_json_flag(back, "the plan (with --dry-run: its markdown and digest as fields) or the run's result")
    back.set_defaults(func=failback_command)

    reprotect = subparsers.add_parser("reprotect", help="make the old production the new mirror and replicate to it")
    reprotect.add_argument("service")
    reprotect.add_argument("--mirror", help="server to use as the new mirror (default: the old production)")
    add_approval_arguments(reprotect, "reprotect")
    add_json_flag(reprotect, "the plan (with --dry-run: its markdown and digest as fields) or the run's result")
    reprotect.set_defaults(func=reprotect_command)


def failover_command(args: argparse.Namespace, command: str | None = None, action: str | None = None) -> int:
    """Show the topology, the plan (unless --yes), ask for its digest, run, show the topology."""
    from flows.failover import failover

    require_service(args.service)
    options = dict(
        service=args.service,
        planned=args.planned,
        copy_id=args.copy_id,
        force=args.force,
        resume=args.resume,
        max_copy_age_hours=args.max_copy_age_hours,
    )
    as_json = bool(getattr(args, "json", False))
    show_topology(args.service, "before", to_stderr=as_json)
    result = run_gated(
        failover,
        args,
        command or f"hotspare failover {args.service}",
        action or f"to fail {args.service} over now",
        after=lambda: show_topology(args.service, "after", to_stderr=as_json),
        **options,
    )
    if result is not None:
        print_result(result, as_json)
    return 0


def failback_command(args: argparse.Namespace) -> int:
    from hotspare.inventory import copies
    from hotspare.planning.coordination import judge_failback
    from tasks.replication import Refused

    require_service(args.service)
    row = copies.service_row(args.service)
    decision = judge_failback(args.service, row.state, row.active_server, row.spec["production"], row.failover)
    if not decision.go:
        raise Refused(decision.reason)
    switchover = argparse.Namespace(
        service=args.service,
        planned=True,
        copy_id=None,
        yes=args.yes,
        dry_run=args.dry_run,
        approve=args.approve,
        force=False,
        resume=False,
        max_copy_age_hours=24.0,
        debug=args.debug,
        json=args.json,
    )
    return failover_command(
        switchover, f"hotspare failback {args.service}", f"to move {args.service} back to {row.spec['production']} now"
    )


def reprotect_command(args: argparse.Namespace) -> int:
    from flows.reprotect import reprotect

    require_service(args.service)
    show_topology(args.service, "before", to_stderr=args.json)
    command = f"hotspare reprotect {args.service}" + (f" --mirror {args.mirror}" if args.mirror else "")
    try:
        result = run_gated(
            reprotect,
            args,
            command,
            f"to make the new mirror of {args.service} and replicate to it",
            service=args.service,
            mirror=args.mirror,
        )
        if result is not None:
            print_result(result, args.json)
    finally:
        show_topology(args.service, "after", to_stderr=args.json)
    return 0


def serve_command(args: argparse.Namespace) -> int:
    from deployments.serve import serve_forever

    serve_forever(acknowledgements=args.acknowledgements)
    return 0


def _force_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="replicate even from an empty or shrunken source")


def _full_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--full", action="store_true", help="compare every file by checksum now, not the next rolling slice (a complete pass)"
    )


def _runner(name: str):
    def run(args: argparse.Namespace) -> int:
        if not args.all:
            require_service(args.service)
        target = "every service" if args.all else args.service
        with progress(f"{'replicating' if name == 'replicate' else 'verifying'} {target}"):
            if name == "replicate" and not args.all:
                from flows.replicate import replicate_service  # one service: its own flow run, its own error

                result = run_flow(replicate_service, args.debug, service=args.service, force=args.force)
            elif name == "replicate":
                from flows.replicate import replicate

                result = run_flow(replicate, args.debug, several=True, services=None, force=args.force)
            else:
                from flows.verify import verify

                result = run_flow(verify, args.debug, several=True, services=None if args.all else [args.service], full=args.full)
        print_result(result, args.json)
        return 0

    return run
