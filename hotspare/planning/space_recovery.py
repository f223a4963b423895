"""Pure planning of how a service at its space bound still finishes, prunes and recovers its copies
(btrfs snapshot copies filled by rsync, held by the service's quota group: ``planning/space.py``).

No network, no Prefect, no clock. Under btrfs quotas the kernel refuses more than data writes at a
group's limit: making a subvolume read-only or writable again (a copy's last step, and the first
step of removing a copy that holds nested subvolumes) reserves metadata in the group, refused at or
past the limit ("Could not set subvolume flags: Disk quota exceeded", measured on Linux 6.18 under
simple quotas, on a group filled by a refused write too), and so can a snapshot past it. A service
at its bound could then neither make its copy read-only, nor prune an old copy, nor make room for
its next one: every run refused, its copies ageing while the operator thinks the tool prunes. So:

- **Metadata-only steps run with the limit lifted** (``under_lifted_limit``): the copy's read-only
  snapshot once rsync let it go on, and every removal of copies. The program reads the group's
  limit from the kernel, lifts it, runs the step and sets the same limit again on exit (also on
  HUP, INT, TERM, PIPE). Nothing from production is written meanwhile. A program killed outright
  leaves the limit lifted until the next run's quota step, which sets it every run.
- **A copy the kernel refused mid-transfer** (EDQUOT) left an unfinished working tree that holds
  the group at its bound: it is removed at once (``make_room_argv``), so the service's own group
  has room again (a failover's live clones join it), and the next run starts the working tree from
  the newest verified copy (a snapshot: it costs nothing), sending the changes again.
- **A run that finds the group at or over its bound** (a killed run's working tree, a bound lowered
  in the fleet file) makes room once before the transfer: the copies beyond ``copies_to_keep``
  (never the current copy nor the one a failover uses) and the working tree, then judges the bound
  again. Copies the fleet file asks to keep are never removed to fit a bound: if they alone hold
  too much, the copy is refused with the bound's sentence, and lowering ``copies_to_keep`` takes
  effect on the next run, refused or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hotspare.planning.copy_backends import REMOVE_SCRIPT, work_root
from hotspare.planning.replication import copy_root, service_root
from hotspare.planning.space import qgroup_id, size_text

# $1 the service's root in the store, $2 its quota group, then the command. The limit is read from
# the kernel (``max referenced``); none (or no group, no btrfs: a hard-linked mirror) runs the
# command as it is. Else the limit is lifted, the command runs, the same limit is set again.
LIFTED_LIMIT_SCRIPT = (
    "root=$1; group=$2; shift 2; "
    'limit=$(btrfs qgroup show -re --raw "$root" 2>/dev/null | awk -v g="$group" \'$1 == g { print $4 }\'); '
    'case $limit in ""|none) exec "$@";; esac; '
    'btrfs qgroup limit none "$group" "$root" >/dev/null || exit 3; '
    'trap \'btrfs qgroup limit "$limit" "$group" "$root"\' EXIT; trap "exit 1" HUP INT TERM PIPE; '
    'echo "hotspare-limit-lifted=$limit" >&2; '
    '"$@"; status=$?; trap - EXIT; '
    'btrfs qgroup limit "$limit" "$group" "$root" || '
    'echo "hotspare: the limit of $group could not be set again; the next run sets it" >&2; '
    'exit "$status"'
)


def under_lifted_limit(service: str, argv: Sequence[str]) -> list[str]:
    """``argv`` (metadata only: snapshots, removals) with the service's group limit lifted, then set again."""
    return ["sh", "-c", LIFTED_LIMIT_SCRIPT, "sh", service_root(service), qgroup_id(service), *argv]


ROOM_MARK = "hotspare-room-removed="  # a copy (or the working tree) the program removed
WORK = "work"  # what the marker names for the working tree

# $1 the service's root, $2 its working subvolume ("" to keep it), then the copies to remove.
# Each removal says itself; then the cleaner is awaited (bounded), since a deleted subvolume's bytes
# leave its group only once the cleaner dropped it: the numbers read afterwards are true.
MAKE_ROOM_SCRIPT = (
    "root=$1; work=$2; shift 2; "
    'for c do sh -c "$REMOVE" sh "$c" || exit 1; echo "' + ROOM_MARK + '${c##*/}"; done; '
    'if [ -n "$work" ] && [ -e "$work" ]; then sh -c "$REMOVE" sh "$work" || exit 1; echo "' + ROOM_MARK + WORK + '"; fi; '
    'timeout 300 btrfs subvolume sync "$root" >/dev/null 2>&1 || echo "hotspare-room-unsynced" >&2; exit 0'
)


def make_room_argv(service: str, copy_ids: Sequence[str], reset_work: bool) -> list[str]:
    """Remove ``copy_ids`` (copies beyond retention) and, with ``reset_work``, the working tree,
    with the group's limit lifted; one command."""
    return under_lifted_limit(
        service,
        [
            "env",
            f"REMOVE={REMOVE_SCRIPT}",
            "sh",
            "-c",
            MAKE_ROOM_SCRIPT,
            "sh",
            service_root(service),
            work_root(service) if reset_work else "",
            *(copy_root(service, copy_id) for copy_id in copy_ids),
        ],
    )


@dataclass(frozen=True)
class RoomMade:
    copies: tuple[str, ...]  # copy ids removed
    work: bool  # the working tree was removed


def parse_room_made(output: str) -> RoomMade:
    removed = [line[len(ROOM_MARK) :] for line in output.splitlines() if line.startswith(ROOM_MARK)]
    return RoomMade(tuple(name for name in removed if name != WORK), WORK in removed)


def room_sentence(service: str, host: str, made: RoomMade, keep: int) -> str:
    """What making room did, logged by the replication."""
    parts = []
    if made.copies:
        parts.append(
            f"removed {len(made.copies)} cop{'y' if len(made.copies) == 1 else 'ies'} beyond copies_to_keep ({keep}): {', '.join(made.copies)}"
        )
    if made.work:
        parts.append(
            "removed the working tree (an unfinished transfer's data goes with it; the next copy starts it from the newest verified copy)"
        )
    if not parts:
        return f"{service}'s area on {host} is at its bound and held nothing to remove but copies it keeps"
    return f"{service}'s area on {host} was at its bound: " + "; ".join(parts)


def should_make_room(prunable: Sequence[str], reset_work: bool) -> bool:
    """Is there anything to remove before judging the bound again? Copies beyond retention, or the
    working tree of snapshots filled by rsync (what it holds beyond the newest copy is an unfinished
    transfer's; a shipped copy's working tree holds no data paths)."""
    return bool(prunable) or reset_work


def still_over_detail(used: int, needed: int, made: RoomMade, keep: int) -> str:
    """The refusal's detail once room was made and the copies it keeps still hold too much."""
    removed = [
        part
        for part in (
            f"{len(made.copies)} cop{'y' if len(made.copies) == 1 else 'ies'} beyond copies_to_keep" if made.copies else "",
            "the working tree" if made.work else "",
        )
        if part
    ]
    return (
        f"it holds {size_text(used)}{' after removing ' + ' and '.join(removed) if removed else ''} and this copy needs "
        f"about {size_text(needed)} more; copies_to_keep is {keep}, and lowering it takes effect on the next run, which "
        "removes the oldest copies beyond it before it copies (never the current one)"
    )
