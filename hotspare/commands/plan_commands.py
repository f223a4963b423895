"""``hotspare plan render [--out DIR] [--no-pdf]``: the continuity plan as HTML and PDF, generated
from the loaded fleet and the live inventory (``hotspare/continuity_plan.py``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("plan", help="the continuity plan as a document")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    render = actions.add_parser("render", help="write continuity-plan.html and .pdf from live data")
    render.add_argument("--out", default=".", help="folder to write into (default: the current one)")
    render.add_argument("--days", type=int, default=90, help="readiness window in days (default 90)")
    render.add_argument("--no-pdf", action="store_true", help="write the HTML only")
    render.add_argument("--json", action="store_true", help="print the files written as JSON (for scripts)")
    render.set_defaults(func=render_command)


def render_command(args: argparse.Namespace) -> int:
    from hotspare import access
    from hotspare.continuity_plan import render
    from tasks.readiness import gather_readiness

    fleet = access.loaded_fleet()
    from hotspare.commands.output import progress

    with progress("writing the continuity plan" + ("" if args.no_pdf else " and printing it as PDF")):
        written = render(Path(args.out), fleet=fleet, readiness=gather_readiness(args.days, fleet=fleet), pdf=not args.no_pdf)
    if args.json:
        from hotspare.commands.output import print_json

        print_json({kind: str(path) for kind, path in written.items()})
        return 0
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0
