"""``hotspare fleet claim [--takeover]`` and ``hotspare fleet orchestrator``: which orchestrator
holds the fleet (docs/architecture/coordination.md, "One orchestrator per fleet").

    hotspare fleet orchestrator        this orchestrator, and the holder the fleet's marker names
    hotspare fleet claim               claim a fleet nobody holds (the first run that acts does it too)
    hotspare fleet claim --takeover    take the fleet from another orchestrator that is really lost:
                                       the next epoch; the old one refuses to act from its next check
"""

from __future__ import annotations

import argparse
import sys


def register_actions(actions) -> None:
    """Add ``claim`` and ``orchestrator`` to ``hotspare fleet``."""
    claim = actions.add_parser("claim", help="make this orchestrator the fleet's (--takeover: from another one)")
    claim.add_argument(
        "--takeover",
        action="store_true",
        help="take the fleet over from the orchestrator holding it (only when that one is really lost)",
    )
    claim.set_defaults(func=claim_command)
    show = actions.add_parser("orchestrator", help="this orchestrator and the one holding the fleet")
    show.add_argument("--json", action="store_true", help="print both as JSON (for scripts) instead of text")
    show.set_defaults(func=orchestrator_command)


def claim_command(args: argparse.Namespace) -> int:
    from hotspare.access import loaded_fleet
    from tasks.orchestrator import claim_fleet

    decision = claim_fleet(loaded_fleet(), takeover=args.takeover)
    print(decision.sentence)
    return 0


def orchestrator_command(_args: argparse.Namespace) -> int:
    from hotspare.access import loaded_fleet
    from tasks.orchestrator import holder

    identity, marker = holder(loaded_fleet())
    if getattr(_args, "json", False):
        from hotspare.commands.output import print_json

        print_json(
            {
                "this": {"name": identity.name, "orchestrator_id": identity.orchestrator_id, "epoch": identity.epoch},
                "holder": None
                if marker is None
                else {
                    "orchestrator_id": marker.orchestrator_id,
                    "epoch": marker.epoch,
                    "since": marker.since,
                    "description": marker.describe(),
                    "is_this": marker.orchestrator_id == identity.orchestrator_id,
                },
            }
        )
        return 0
    print(
        f"this orchestrator: {identity.name} (orchestrator {identity.orchestrator_id[:8]}, "
        f"last held epoch {identity.epoch or 'never'})"
    )
    if marker is None:
        print("the fleet: held by nobody yet (the first run that acts claims it)")
    elif marker.orchestrator_id == identity.orchestrator_id:
        print(f"the fleet: held by this orchestrator (epoch {marker.epoch}, since {marker.since})")
    else:
        print(f"the fleet: held by {marker.describe()}; this orchestrator refuses to act and to page")
    return 0


def claim_after_load(fleet, quiet: bool = False) -> None:
    """After ``fleet load``: claim a fleet nobody holds, or say who holds it (never fails the load;
    ``quiet``: the sentence goes to stderr, stdout carries JSON)."""
    from tasks.orchestrator import NotOrchestrator, claim_fleet

    if not fleet.zones:
        return
    try:
        print(claim_fleet(fleet).sentence, file=sys.stderr if quiet else sys.stdout)
    except NotOrchestrator as error:
        print(f"warning: {str(error).removeprefix('fleet claim: refused: ')}", file=sys.stderr)
    except Exception as error:  # noqa: BLE001  (a side note of the load: blocks or DNS may not be there yet)
        print(f"the fleet's orchestrator marker was not checked ({error}); the first run that acts checks it", file=sys.stderr)
