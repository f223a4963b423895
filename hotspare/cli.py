"""The ``hotspare`` command: thin argparse front-end over the fleet, inventory and flows.

Each subcommand module exposes ``register(subparsers)``; handlers return an exit code or
raise. A raised error prints as one message on stderr (what, where, what to do) with the exit
code of its kind (``hotspare/commands/errors.py``, the README's "Exit codes"); ``--debug``,
anywhere on the command line, adds the traceback.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotspare", description="Disaster-recovery orchestration for a hosting fleet.",
                                     epilog="Exit codes: see the README's \"Exit codes\" table.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (may come anywhere on the command line)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from hotspare.commands import fleet_commands, status_commands

    fleet_commands.register(subparsers)
    status_commands.register(subparsers)
    _register_optional(subparsers)
    return parser


def _register_optional(subparsers) -> None:
    """Subcommand groups that live beside their subsystem: the lab's, and every
    ``hotspare/commands/*_commands.py`` module (each exposes ``register``), in name order."""
    import pkgutil
    from importlib import import_module

    import hotspare.commands

    names = ["hotspare.lab.commands"] + sorted(
        f"hotspare.commands.{module.name}" for module in pkgutil.iter_modules(hotspare.commands.__path__)
        if module.name.endswith("_commands") and module.name not in ("fleet_commands", "status_commands"))
    for module_name in names:
        try:
            module = import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(subparsers)


def main(argv: list[str] | None = None) -> int:
    from hotspare.commands.errors import report
    from hotspare.commands.terminal import guard_stdout

    guard_stdout()  # nothing a customer server wrote steers the operator's terminal

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv
    argv = [word for word in argv if word != "--debug"] if debug else argv
    args = build_parser().parse_args(argv)  # bad usage: argparse prints it and exits 2
    args.debug = debug
    try:
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as error:
        return report(error, _where(args), debug)


def _where(args: argparse.Namespace) -> str:
    """The command as the operator would name it: ``hotspare failover app1``."""
    words = ["hotspare", args.command, getattr(args, "action", None), getattr(args, "lab_command", None),
             getattr(args, "service", None) or ("--all" if getattr(args, "all", False) else None)]
    return " ".join(str(word) for word in words if word)


if __name__ == "__main__":
    sys.exit(main())
