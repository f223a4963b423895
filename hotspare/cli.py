"""The ``hotspare`` command: thin argparse front-end over the fleet, inventory and flows.

Each subcommand module exposes ``register(subparsers)``; handlers return an exit code or
raise. A raised error prints as one message on stderr (what, where, what to do) with the exit
code of its kind (``hotspare/commands/errors.py``, docs/runbooks.md, "Exit codes"); ``--debug``,
anywhere on the command line, adds the traceback.
"""

from __future__ import annotations

import argparse
import sys

# The top-level help lists commands by what an operator is doing. A command another module adds
# and this table does not name is listed under "other": new groups plug in without editing it.
GROUPS: dict[str, tuple[str, ...]] = {
    "protect": ("replicate", "verify", "backup", "restore-proof", "backup-check", "schedule"),
    "recover": ("failover", "failback", "reprotect", "rebuild", "facility", "drill", "accounts", "unlock"),
    "watch": ("status", "health", "hardware", "readiness", "incident"),
    "tell": ("notice", "status-page", "automations"),
    "admin": ("fleet", "deploy", "run", "serve", "plan", "lab"),
}


class HotspareParser(argparse.ArgumentParser):
    """argparse with the command line's conventions: a wrong word gets one line naming the
    command it was given to and, for a mistyped command, the closest ones ("did you mean");
    the usage shown is that command's own; the top-level help lists the commands in groups."""

    def error(self, message: str):
        import difflib

        from hotspare.commands.terminal import safe

        choices = _invalid_choice(message)
        if choices is not None:
            word, known = choices
            close = difflib.get_close_matches(word, known, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(f'`{self.prog} {name}`' for name in close)}? " if close else ""
            message = f"unknown command {word!r}; {hint}`{self.prog} --help` lists them"
        sys.stderr.write(safe(f"{self.prog}: bad input: {message} (exit 2)\n{self.format_usage()}"))
        sys.exit(2)

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        parsed.__dict__.setdefault("_parser", self)  # the innermost (sub)command's parser, for its usage
        return parsed, extras

    def format_help(self) -> str:
        if self.prog != "hotspare":
            return super().format_help()
        return _grouped_help(self)


def _invalid_choice(message: str) -> tuple[str, list[str]] | None:
    """(the word, the known commands) from argparse's "invalid choice" message, else None."""
    import re

    found = re.match(r"argument \S+: invalid choice: '(.*)' \(choose from (.*)\)$", message)
    if not found:
        return None
    return found.group(1), re.findall(r"'([^']*)'", found.group(2))


def _grouped_help(parser: argparse.ArgumentParser) -> str:
    """The top-level help: usage, then every command with its one line, in GROUPS, then options."""
    import shutil
    import textwrap

    actions = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    helps = {choice.dest: choice.help or "" for choice in actions._choices_actions}
    width = min(shutil.get_terminal_size((100, 24)).columns, 120)
    name_width = max(len(name) for name in helps) + 2
    lines = [parser.format_usage().rstrip(), "", parser.description or "", ""]
    listed: set[str] = set()
    for group, names in list(GROUPS.items()) + [("other", tuple(sorted(helps)))]:
        present = [name for name in names if name in helps and name not in listed]
        if not present:
            continue
        lines.append(f"{group}:")
        for name in present:
            listed.add(name)
            wrapped = textwrap.wrap(helps[name], max(width - name_width - 4, 30)) or [""]
            lines.append(f"  {name.ljust(name_width)}{wrapped[0]}")
            lines += [f"  {' ' * name_width}{rest}" for rest in wrapped[1:]]
        lines.append("")
    lines += [
        "options:",
        "  -h, --help      show this help; `hotspare COMMAND --help` for a command's own",
        "  --version       print hotspare's version",
        "  --debug         show tracebacks (may come anywhere on the command line)",
        "",
        parser.epilog or "",
    ]
    return "\n".join(lines).rstrip() + "\n"


def version() -> str:
    """hotspare's installed version (the package's metadata), without importing anything heavy."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("hotspare")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """``--version``: read the package's metadata only when asked (importlib.metadata is slow to load)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"hotspare {version()}")
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``command`` (the first word typed), groups that live in
    heavier packages (the lab's) are listed by name and one line only, unless it is theirs."""
    parser = HotspareParser(
        prog="hotspare",
        description="Disaster-recovery orchestration for a hosting fleet.",
        epilog='Exit codes: docs/runbooks.md, "Exit codes".',
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="print hotspare's version")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (may come anywhere on the command line)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from hotspare.commands import fleet_commands, status_commands

    fleet_commands.register(subparsers)
    status_commands.register(subparsers)
    _register_optional(subparsers, command)
    return parser


# Groups registered by a package the CLI should not import unless the group is used:
# module -> (command, its one line in the help).
_OUTSIDE_GROUPS = {"hotspare.lab.commands": ("lab", "the built-in lab of real hosts on this machine")}


def _register_optional(subparsers, command: str | None = None) -> None:
    """Subcommand groups that live beside their subsystem: the lab's, and every
    ``hotspare/commands/*_commands.py`` module (each exposes ``register``), in name order.
    The lab's module is imported only when the command is ``lab`` (or ``command`` is None)."""
    import pkgutil
    from importlib import import_module

    import hotspare.commands

    for _module_name, (name, help_text) in _OUTSIDE_GROUPS.items():
        if command is not None and command != name:
            subparsers.add_parser(name, help=help_text, add_help=False)  # listed; never run from here
    names = [name for name, (word, _help) in _OUTSIDE_GROUPS.items() if command is None or command == word] + sorted(
        f"hotspare.commands.{module.name}"
        for module in pkgutil.iter_modules(hotspare.commands.__path__)
        if module.name.endswith("_commands") and module.name not in ("fleet_commands", "status_commands")
    )
    for module_name in names:
        try:
            module = import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(subparsers)


def main(argv: list[str] | None = None) -> int:
    """Run one command; ``argv`` None means this process's own command line, which the process
    then ends as soon as the command's output and Prefect's pending logs are out (``_end_process``)."""
    if argv is not None:
        return _command(argv)
    _fewer_collections()
    code = _command(None)
    _end_process(code)
    return code


def _fewer_collections() -> None:
    """Let the collector of reference cycles run less often in a command's process.

    A runbook's command imports ~1,800 modules (Prefect, pydantic, SQLAlchemy) that allocate
    millions of objects and almost no garbage; with the default threshold (700) the collector
    walks them again and again while they load, about a tenth of the import's CPU. A command is
    short and keeps little garbage, so a higher threshold costs it no memory worth counting."""
    import gc

    gc.set_threshold(50_000, 20, 20)


def _end_process(code: int) -> None:
    """End the command's process without tearing down its modules one by one.

    After the command returned, everything the interpreter's exit does first still happens in
    its order — ``threading._shutdown`` (Prefect's log and event workers drain there, then
    threads that are not daemons are joined), the ``atexit`` handlers (logging's shutdown) — the
    output is flushed, and the process ends: the teardown of ~1,800 modules that would follow
    costs 0.3 s on an idle machine and several seconds on a busy one, for nothing anyone sees.
    Where that private hook is missing (another Python), the ordinary exit stays."""
    import atexit
    import os
    import threading

    shutdown_threads = getattr(threading, "_shutdown", None)
    if shutdown_threads is None:
        return
    shutdown_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or a closed stream: nothing more to say there
            pass
    os._exit(code)


def _command(argv: list[str] | None) -> int:
    from hotspare.commands.errors import report
    from hotspare.commands.terminal import guard_stdout

    guard_stdout()  # nothing a customer server wrote steers the operator's terminal

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv
    argv = [word for word in argv if word != "--debug"] if debug else argv
    command = next((word for word in argv if not word.startswith("-")), "")  # "": --help or --version alone
    args, extras = build_parser(command).parse_known_args(argv)  # bad usage: one line, the command's usage, exit 2
    if extras:
        args._parser.error(f"unrecognized arguments: {' '.join(extras)}")
    args.debug = debug
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as error:
        return report(error, _where(args), debug)


def _where(args: argparse.Namespace) -> str:
    """The command as the operator would name it: ``hotspare failover app1``."""
    words = [
        "hotspare",
        args.command,
        getattr(args, "action", None),
        getattr(args, "lab_command", None),
        getattr(args, "service", None) or ("--all" if getattr(args, "all", False) else None),
    ]
    return " ".join(str(word) for word in words if word)


if __name__ == "__main__":
    sys.exit(main())
