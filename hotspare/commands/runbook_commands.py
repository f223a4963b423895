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
