"""Running runbooks from the command line: check the names first, run the flow in this
process, hand back its result or raise the exception that made it fail (never a Prefect
wrapper), so ``hotspare.commands.errors`` can say what kind of failure it was."""

from __future__ import annotations

import sys

from hotspare.adapters.errors import MissingConfiguration, NotFound
from hotspare.commands.errors import hide_console_tracebacks


def require_service(name: str) -> None:
    """Fail with NotFound (naming the known services) unless ``name`` is in the inventory."""
    from sqlmodel import select

    from hotspare.inventory import session
    from hotspare.inventory.models import ServiceRow

    with session() as db:
        if db.get(ServiceRow, name) is not None:
            return
        known = sorted(row.name for row in db.exec(select(ServiceRow)))
    if not known:
        raise MissingConfiguration("the inventory holds no services: load the fleet file with `hotspare fleet load FLEET.yaml`")
    raise NotFound(f"no service {name!r} in the inventory (known: {', '.join(known)})")


def run_flow(flow_function, debug: bool, several: bool = False, **parameters):
    """Run ``flow_function`` here as a Prefect flow run and return its result.

    A failed run raises the exception the run failed with; a runbook over several services
    raises SeveralFailed naming the ones that failed (hotspare/errors.py), which the exit-code
    table maps by class. ``several`` is kept for callers; nothing depends on it any more.
    """
    if not debug:
        hide_console_tracebacks()
    state = flow_function(**parameters, return_state=True)
    if state.is_cancelled():  # the gate ended it: rejected, or its approval expired (the message says which)
        from hotspare.planning.approval import PlanRejected

        raise PlanRejected(state.message or "the run was cancelled before any step")
    return state.result()


def print_result(result, as_json: bool = False) -> None:
    """A run's result: JSON with ``--json``, else an indented outline a person reads."""
    from hotspare.commands.output import print_json, say

    if as_json:
        print_json(result)
        return
    for line in outline(result):
        say(line)


def outline(value, indent: str = "") -> list[str]:
    """``value`` (dicts, lists, scalars) as indented ``key: value`` lines: a run's result as
    text. A markdown summary or plan inside it stays as it is, under its key."""
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{indent}{key}:")
                lines += outline(item, indent + "  ")
            elif isinstance(item, str) and "\n" in item:
                lines.append(f"{indent}{key}:")
                lines += [f"{indent}  {line}" for line in item.splitlines()]
            else:
                lines.append(f"{indent}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested = outline(item, indent + "  ")
                lines.append(f"{indent}- {nested[0].lstrip()}")
                lines += nested[1:]
            else:
                lines.append(f"{indent}- {_scalar(item)}")
    else:
        lines.append(f"{indent}{_scalar(value)}")
    return lines


def _scalar(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return "none"
    return str(value)


def add_approval_arguments(parser, what: str) -> None:
    """The one flag set of every gated runbook (failover, failback, reprotect, facility failover
    and return, rebuild)."""
    parser.add_argument(
        "--dry-run", "--plan", dest="dry_run", action="store_true", help=f"show the {what} plan and its digest; change nothing"
    )
    parser.add_argument("--approve", metavar="DIGEST", help="run without pausing if the plan's digest is DIGEST")
    parser.add_argument("--yes", action="store_true", help="approve up front, without showing the plan first")


def run_gated(flow_function, args, command: str, action: str, several: bool = False, after=None, **options):
    """The one gate of every gated command: ``--yes`` runs approved up front; ``--approve
    DIGEST`` runs bound to that plan; otherwise the flow's dry run shows the plan and the
    operator types its digest (``--dry-run`` stops after the plan). Returns the run's result,
    or None when nothing ran. ``command`` is the command line to repeat in advice
    ("hotspare failback app1"); ``action`` ends the question ("to fail back app1"); ``after`` is
    called once the approved run ended, however it ended (the topology after a failover).
    """
    if args.yes:
        approval: dict = dict(yes=True)
    elif args.approve and not args.dry_run:
        approval = dict(approved_plan_digest=args.approve)
    else:
        from hotspare.commands.output import print_json, print_markdown, progress

        with progress("gathering the facts and planning"):
            preview = run_flow(flow_function, args.debug, **options, dry_run=True)
        as_json = bool(getattr(args, "json", False))
        if as_json and (args.dry_run or preview.get("outcome") != "dry-run"):
            print_json(preview)  # the plan's markdown and its digest as fields
            return None
        if as_json:  # the plan for the person who types the digest; stdout stays the result's JSON
            print(preview.get("plan") or preview.get("detail"), file=sys.stderr)
        else:
            print_markdown(preview.get("plan") or preview.get("detail") or "")
        if args.dry_run or preview.get("outcome") != "dry-run":
            return None
        digest = preview["plan_digest"]
        typed = ask_to_confirm(
            f"Type the plan digest ({digest}) {action}, anything else to stop: ",
            digest,
            f"Run `{command} --approve {digest}` after reviewing the plan above (or --yes), or start "
            "its deployment and approve it in the Prefect UI",
        )
        approval = dict(approved_plan_digest=typed)
    from hotspare.commands.output import progress

    try:
        with progress(f"running {command}"):
            return run_flow(flow_function, args.debug, several=several, **options, **approval)
    finally:
        if after is not None:
            after()


def ask_to_confirm(question: str, expected: str, instead: str) -> str:
    """What the operator typed at the terminal, if it is ``expected``; NotApproved otherwise,
    or when there is no terminal to ask on (``instead`` says what to run then)."""
    from hotspare.adapters.errors import NotApproved

    if not sys.stdin.isatty():
        raise NotApproved(f"not approved: no terminal to ask on; nothing changed. {instead}")
    answer = input(question).strip()
    if answer != expected:
        raise NotApproved(f"not approved: {answer!r} is not {expected}; nothing changed. {instead}")
    return answer
