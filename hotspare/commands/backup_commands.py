"""``hotspare backup|restore-proof|backup-check|rebuild|accounts``: the backup runbooks from a terminal.

Each command runs its Prefect flow in this process (against the configured Prefect API) and
prints the flow's result. A rebuild without ``--yes`` or ``--approve DIGEST`` pauses at its
approval gate; ``--plan`` only prints the plan and its digest.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone


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
    rebuild.add_argument("--plan", action="store_true", help="print the plan and its digest; change nothing")
    rebuild.add_argument("--approve", metavar="DIGEST", help="run without pausing if the plan's digest is DIGEST")
    rebuild.add_argument("--yes", action="store_true", help="run without the approval gate")
    rebuild.add_argument("--hours", type=float, default=72.0, help="lifetime of the temporary logins (default 72)")
    rebuild.add_argument("--force", action="store_true", help="rebuild even if production or mirror still answer SSH")
    rebuild.set_defaults(func=rebuild_command)

    accounts = subparsers.add_parser("accounts", help="temporary logins issued by rebuilds")
    actions = accounts.add_subparsers(dest="action", required=True, metavar="ACTION")
    expire = actions.add_parser("expire", help="disable temporary logins whose time is up")
    expire.add_argument("--now", help="ISO time to judge expiry by (default: now)")
    expire.set_defaults(func=expire_command)


def _service_or_all(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", nargs="?", help="one service")
    parser.add_argument("--all", action="store_true", help="every service with a backup section")


def _one_or_all(args: argparse.Namespace) -> str | None:
    if bool(args.service) == bool(args.all):
        raise SystemExit("name one SERVICE or pass --all")
    return args.service


def _run(flow_function, **parameters) -> int:
    """Run a flow here and print its result; a failed run prints its reason and exits 1."""
    try:
        result = flow_function(**parameters)
    except Exception as error:  # the flow's own failure, already logged and recorded
        print(f"hotspare: {error}")
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


def backup_command(args: argparse.Namespace) -> int:
    from flows.backup import backup

    return _run(backup, service=_one_or_all(args), prune=not args.no_prune)


def restore_proof_command(args: argparse.Namespace) -> int:
    from flows.restore_proof import restore_proof

    return _run(restore_proof, service=_one_or_all(args))


def backup_check_command(args: argparse.Namespace) -> int:
    from flows.backup import backup_check

    return _run(backup_check, service=_one_or_all(args), subset=args.subset)


def rebuild_command(args: argparse.Namespace) -> int:
    from flows.rebuild import rebuild

    return _run(
        rebuild, service=args.service, standby=args.standby, snapshot=args.snapshot, approved_plan_digest=args.approve,
        yes=args.yes, temporary_account_hours=args.hours, force=args.force, plan_only=args.plan,
    )


def expire_command(args: argparse.Namespace) -> int:
    from flows.rebuild import expire_temporary_accounts

    now = datetime.fromisoformat(args.now) if args.now else datetime.now(timezone.utc)
    return _run(expire_temporary_accounts, now=now)
