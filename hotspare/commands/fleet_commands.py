"""``hotspare fleet check|load``: validate the continuity plan and import it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the schema (pydantic) loads only when a fleet file is read
    from hotspare.fleet import FleetProblem


def register(subparsers) -> None:
    fleet = subparsers.add_parser("fleet", help="check or load a fleet file")
    actions = fleet.add_subparsers(dest="action", required=True, metavar="ACTION")

    check = actions.add_parser("check", help="report every problem in a fleet file")
    check.add_argument("file", type=Path)
    check.add_argument("--blocks", action="store_true", help="also check that named Prefect blocks exist")
    check.add_argument("--json", action="store_true", help="print the counts as JSON (for scripts) instead of text")
    check.set_defaults(func=check_command)

    load = actions.add_parser("load", help="import a fleet file into the inventory (idempotent)")
    load.add_argument("file", type=Path)
    load.add_argument(
        "--dry-run",
        action="store_true",
        help="show what loading would change (inventory rows, and the diff from the fleet file loaded before); change nothing",
    )
    load.add_argument("--json", action="store_true", help="print the changes as JSON (for scripts) instead of text")
    load.set_defaults(func=load_command)

    sample = actions.add_parser("sample", help="write a complete, commented fleet file generated from the schema")
    sample.add_argument("--out", type=Path, help="write to this file instead of standard output")
    sample.set_defaults(func=sample_command)

    from hotspare.commands.fleet_orchestrator import register_actions

    register_actions(actions)  # claim, orchestrator: one orchestrator per fleet


def check_command(args: argparse.Namespace) -> int:
    from hotspare.fleet import load_fleet

    fleet = load_fleet(args.file)
    if args.blocks:
        missing = missing_blocks(fleet, str(args.file))
        if missing:
            from hotspare.adapters.errors import MissingConfiguration

            lines = "\n".join(f"  {problem}" for problem in missing)
            raise MissingConfiguration(
                f"{len(missing)} Prefect block(s) named in the fleet file do not exist:\n{lines}\n"
                "Create them in the Prefect UI (`hotspare lab blocks` in the lab)"
            )
    if args.json:
        import json

        print(
            json.dumps(
                {
                    "file": str(args.file),
                    "ok": True,
                    "servers": len(fleet.servers),
                    "services": len(fleet.services),
                    "facilities": len(fleet.facilities),
                }
            )
        )
        return 0
    print(f"{args.file}: ok — {len(fleet.servers)} servers, {len(fleet.services)} services, {len(fleet.facilities)} facilities")
    return 0


def missing_blocks(fleet, filename: str) -> list[FleetProblem]:
    """Problems for every block the fleet names that the Prefect API does not have."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from hotspare.fleet import FleetProblem
    from hotspare.fleet.rules import block_references

    problems = []
    with get_client(sync_client=True) as client:
        for path, block_type, name in block_references(fleet):
            try:
                client.read_block_document_by_name(name, block_type)
            except ObjectNotFound:
                problems.append(FleetProblem(filename, 0, path, f"no Prefect block {block_type}/{name}"))
    return problems


def load_command(args: argparse.Namespace) -> int:
    from hotspare.fleet import load_fleet
    from hotspare.inventory import database_url, session
    from hotspare.inventory.sync import load_into_inventory

    fleet = load_fleet(args.file)
    text = args.file.read_text()
    if args.dry_run:
        return load_dry_run(fleet, text, args.file, args.json)
    with session() as db:
        changes = load_into_inventory(db, fleet, text, str(args.file.absolute()))
    if args.json:
        from hotspare.commands.output import print_json

        print_json({"changes": [str(change) for change in changes], "inventory": _redacted(database_url())})
        claim_quietly = True
    else:
        claim_quietly = False
    for change in [] if claim_quietly else changes:
        print(change)
    if not claim_quietly:
        print(f"{len(changes)} change(s) loaded into {_redacted(database_url())}" if changes else "inventory already up to date")
    from hotspare.commands.fleet_orchestrator import claim_after_load

    claim_after_load(fleet, quiet=claim_quietly)
    return 0


def load_dry_run(fleet, text: str, path: Path, as_json: bool = False) -> int:
    """What ``fleet load`` would change, computed by the load itself in a transaction that is
    rolled back: the inventory changes, then the diff from the fleet file loaded last."""
    import difflib

    from sqlmodel import Session

    from hotspare.inventory import database_url
    from hotspare.inventory.db import engine
    from hotspare.inventory.models import FleetDocumentRow
    from hotspare.inventory.sync import load_into_inventory

    with Session(engine()) as db:
        try:
            loaded = db.get(FleetDocumentRow, 1)
            before, before_name = (loaded.text, loaded.filename) if loaded else ("", "(nothing loaded)")
            changes = load_into_inventory(db, fleet, text, str(path.absolute()))
        finally:
            db.rollback()
    diff = list(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"loaded: {before_name}",
            tofile=f"file: {path}",
        )
    )
    if as_json:
        from hotspare.commands.output import print_json

        print_json({"dry_run": True, "changes": [str(change) for change in changes], "diff": "".join(diff)})
        return 0
    for change in changes:
        print(change)
    if diff:
        print("".join(diff), end="" if diff[-1].endswith("\n") else "\n")
    print(
        f"dry run: {len(changes)} change(s) would be loaded into {_redacted(database_url())}; nothing was changed"
        if changes or diff
        else "dry run: the inventory already matches the file; nothing was changed"
    )
    return 0


def sample_command(args: argparse.Namespace) -> int:
    from hotspare.fleet.sample import sample_fleet_file

    text = sample_fleet_file()
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text)
        print(f"{args.out}: sample fleet file written ({len(text.splitlines())} lines)")
    return 0


def _redacted(url: str) -> str:
    """Database URL without its password, for display."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
