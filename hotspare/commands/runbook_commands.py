"""``hotspare replicate|verify``: run the runbooks now, in this process, as Prefect flow runs.

With ``PREFECT_API_URL`` set the runs appear in that server's UI; otherwise Prefect starts a
temporary local server for the duration of the command.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    for name, help_text, extra in (
        ("replicate", "copy production to the mirror into a verified point-in-time copy", _force_flag),
        ("verify", "re-verify the current mirror copy against production", None),
    ):
        parser = subparsers.add_parser(name, help=help_text)
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("service", nargs="?", help="service name")
        target.add_argument("--all", action="store_true", help="every service in the inventory")
        if extra:
            extra(parser)
        parser.set_defaults(func=_runner(name))
    register_failover(subparsers)
    serve = subparsers.add_parser("serve", help="serve all deployments (schedules and run buttons) until stopped")
    serve.set_defaults(func=serve_command)


def register_failover(subparsers) -> None:
    parser = subparsers.add_parser("failover", help="fail a service over to its mirror (plan, approve, activate, DNS)")
    parser.add_argument("service")
    parser.add_argument("--planned", action="store_true", help="planned switchover: stop the app, final sync, no data loss")
    parser.add_argument("--copy", dest="copy_id", help="make this copy live instead of the newest verified one")
    parser.add_argument("--yes", action="store_true", help="approve up front, without showing the plan first")
    parser.add_argument("--dry-run", action="store_true", help="show the plan and stop")
    parser.add_argument("--force", action="store_true", help="accept an unverified or too old copy")
    parser.add_argument("--resume", action="store_true", help="continue a failover whose process died midway")
    parser.add_argument("--max-copy-age-hours", type=float, default=24.0)
    parser.set_defaults(func=failover_command)

    back = subparsers.add_parser("failback", help="planned switchover back to the original production (after reprotect)")
    back.add_argument("service")
    back.add_argument("--yes", action="store_true")
    back.set_defaults(func=failback_command)

    reprotect = subparsers.add_parser("reprotect", help="make the old production the new mirror and replicate to it")
    reprotect.add_argument("service")
    reprotect.add_argument("--mirror", help="server to use as the new mirror (default: the old production)")
    reprotect.set_defaults(func=reprotect_command)


def failover_command(args: argparse.Namespace) -> int:
    from flows.failover import failover

    options = dict(service=args.service, planned=args.planned, copy_id=args.copy_id, force=args.force,
                   resume=args.resume, max_copy_age_hours=args.max_copy_age_hours)
    if args.yes:
        return _report(failover(**options, yes=True, return_state=True))
    preview = failover(**options, dry_run=True, return_state=True)
    if not preview.is_completed():
        return _report(preview)
    result = preview.result()
    print(result.get("plan") or result.get("detail"))
    if args.dry_run or result["outcome"] != "dry-run":
        return 0
    digest = _ask_for_digest(result["plan_digest"])
    if digest is None:
        return 1
    return _report(failover(**options, approved_plan_digest=digest, return_state=True))


def _ask_for_digest(digest: str) -> str | None:
    import sys

    if not sys.stdin.isatty():
        print("not approved: no terminal to ask on. Re-run with --yes, or start the failover deployment and approve it in the Prefect UI.")
        return None
    answer = input(f"Type the plan digest ({digest}) to fail over now, anything else to stop: ").strip()
    if answer != digest:
        print("not approved; nothing changed")
        return None
    return answer


def failback_command(args: argparse.Namespace) -> int:
    from hotspare.inventory import copies

    row = copies.service_row(args.service)
    if row.state != "protected" or row.active_server == row.spec["production"]:
        print(f"{args.service} is {row.state} on {row.active_server}: failback needs a reprotected service running away from "
              f"its planned production {row.spec['production']}")
        return 1
    return failover_command(argparse.Namespace(service=args.service, planned=True, copy_id=None, yes=args.yes, dry_run=False,
                                               force=False, resume=False, max_copy_age_hours=24.0))


def reprotect_command(args: argparse.Namespace) -> int:
    from flows.reprotect import reprotect

    return _report(reprotect(service=args.service, mirror=args.mirror, return_state=True))


def serve_command(_args: argparse.Namespace) -> int:
    from deployments.serve import serve_forever

    serve_forever()
    return 0


def _force_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="replicate even from an empty or shrunken source")


def _runner(name: str):
    def run(args: argparse.Namespace) -> int:
        services = None if args.all else [args.service]
        if name == "replicate":
            from flows.replicate import replicate

            state = replicate(services=services, force=args.force, return_state=True)
        else:
            from flows.verify import verify

            state = verify(services=services, return_state=True)
        return _report(state)

    return run


def _report(state) -> int:
    try:
        result = state.result()
    except Exception as error:
        print(f"{state.name}: {error}")
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0
