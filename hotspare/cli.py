"""The ``hotspare`` command: thin argparse front-end over the fleet, inventory and flows.

Each subcommand module exposes ``register(subparsers)``; handlers return an exit code.
Errors meant for operators (HotspareError, FleetError) print as one clear message, no trace.
"""

from __future__ import annotations

import argparse
import sys

from hotspare.adapters.errors import HotspareError
from hotspare.fleet import FleetError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotspare", description="Disaster-recovery orchestration for a hosting fleet.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from hotspare.commands import fleet_commands, status_commands

    fleet_commands.register(subparsers)
    status_commands.register(subparsers)
    _register_optional(subparsers)
    return parser


def _register_optional(subparsers) -> None:
    """Subcommand groups that live beside their subsystem (lab, runbooks)."""
    from importlib import import_module

    for module_name in ("hotspare.lab.commands", "hotspare.commands.runbook_commands", "hotspare.commands.backup_commands"):
        try:
            module = import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(subparsers)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FleetError as error:
        print(error, file=sys.stderr)
        return 2
    except HotspareError as error:
        print(f"hotspare: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hotspare: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
