"""``hotspare backup|restore-proof|backup-check|rebuild|accounts``: the backup runbooks from a terminal.

Each command runs its Prefect flow in this process (against the configured Prefect API) and
prints the flow's result; a failed run raises its own exception, which ``hotspare.cli`` turns
into one message and an exit code. A rebuild prints the service's topology before and after. A rebuild without ``--yes`` or ``--approve DIGEST`` pauses at its
approval gate; ``--plan`` only prints the plan and its digest.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from hotspare.commands.errors import UsageError
from hotspare.commands.output import add_json_flag, progress
from hotspare.commands.running import add_approval_arguments, print_result, require_service, run_flow
from hotspare.commands.topology import show_topology


def register(subparsers) -> None:
    backup = subparsers.add_parser("backup", help="back services up to their storage host (restic over SFTP)")
    _service_or_all(backup)
    backup.add_argument("--no-prune", action="store_true", help="skip retention (restic forget --prune)")
    backup.set_defaults(func=backup_command)

    proof = subparsers.add_parser("restore-proof", help="restore the newest backup into scratch space and compare it")
    _service_or_all(proof)
    proof.set_defaults(func=restore_proof_command)

    check = subparsers.add_parser("backup-check", help="verify the next slice of each backup repository")
    _service_or_all(check)
    check.add_argument("--subset", help="read this subset instead of the rolling one, e.g. 1/1 for all data")
    check.set_defaults(func=backup_check_command)

    rebuild = subparsers.add_parser("rebuild", help="rebuild a service on a standby from its backup")
    rebuild.add_argument("service")
    rebuild.add_argument("--standby", help="standby server to use (default: chosen by health and facility)")
    rebuild.add_argument("--snapshot", help="snapshot id or prefix (default: the newest of the service)")
    add_approval_arguments(rebuild, "rebuild")
    rebuild.add_argument("--hours", type=float, default=72.0, help="lifetime of the temporary logins (default 72)")
    rebuild.add_argument("--force", action="store_true", help="rebuild even if production or mirror still answer SSH")
    add_json_flag(rebuild, "the plan (with --dry-run: its markdown and digest as fields) or the run's result")
    rebuild.set_defaults(func=rebuild_command)

    accounts = subparsers.add_parser("accounts", help="temporary logins issued by rebuilds")
    actions = accounts.add_subparsers(dest="action", required=True, metavar="ACTION")
    expire = actions.add_parser("expire", help="disable temporary logins whose time is up")
    expire.add_argument("--now", help="ISO time to judge expiry by (default: now)")
    add_json_flag(expire, "the logins disabled")
    expire.set_defaults(func=expire_command)


def _service_or_all(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", nargs="?", help="one service")
    parser.add_argument("--all", action="store_true", help="every service with a backup section")
    add_json_flag(parser, "the run's result")


def _one_or_all(args: argparse.Namespace) -> str | None:
    if bool(args.service) == bool(args.all):
        raise UsageError("name one SERVICE or pass --all")
    if args.service:
        require_service(args.service)
    return args.service


def _run(args: argparse.Namespace, flow_function, **parameters) -> int:
    """Run a runbook over one or all services here and print its result."""
    with progress(f"running {flow_function.name} of {parameters.get('service') or 'every service'}"):
        result = run_flow(flow_function, args.debug, several=True, **parameters)
    print_result(result, args.json)
    return 0


def backup_command(args: argparse.Namespace) -> int:
    from flows.backup import backup

    return _run(args, backup, service=_one_or_all(args), prune=not args.no_prune)


def restore_proof_command(args: argparse.Namespace) -> int:
    from flows.restore_proof import restore_proof

    return _run(args, restore_proof, service=_one_or_all(args))


def backup_check_command(args: argparse.Namespace) -> int:
    from flows.backup import backup_check

    return _run(args, backup_check, service=_one_or_all(args), subset=args.subset)


def rebuild_command(args: argparse.Namespace) -> int:
    """Rebuild on a standby, with the service's topology before and after (not for --dry-run)."""
    from flows.rebuild import rebuild

    require_service(args.service)
    parameters = dict(
        service=args.service,
        standby=args.standby,
        snapshot=args.snapshot,
        approved_plan_digest=args.approve,
        yes=args.yes,
        temporary_account_hours=args.hours,
        force=args.force,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        with progress(f"planning the rebuild of {args.service}"):
            preview = run_flow(rebuild, args.debug, **parameters)
        if args.json:
            print_result(preview, True)
        else:
            from hotspare.commands.output import print_markdown

            plan = preview.get("plan") if isinstance(preview, dict) else None
            print_markdown(plan) if isinstance(plan, str) else print_result(preview)
        return 0
    show_topology(args.service, "before", to_stderr=args.json)
    try:
        with progress(f"rebuilding {args.service}"):
            result = run_flow(rebuild, args.debug, **parameters)
        print_result(result, args.json)
    finally:
        show_topology(args.service, "after", to_stderr=args.json)
    return 0


def expire_command(args: argparse.Namespace) -> int:
    from flows.rebuild import expire_temporary_accounts

    try:
        now = datetime.fromisoformat(args.now) if args.now else datetime.now(timezone.utc)
    except ValueError:
        raise UsageError(f"--now {args.now!r} is not an ISO time such as 2025-01-31T12:00:00+00:00") from None
    return _run(args, expire_temporary_accounts, now=now)
