"""Pure planning of how a verified copy becomes the live tree on the failover target.

No network, no Prefect, no clock. Two ways, chosen per live path on the target itself:

- **snapshot and swap** (btrfs): a snapshot copy holds each data path as a read-only
  subvolume of its own (``planning/copy_backends.py``). A writable snapshot of it is made
  next to the live path (one step, whatever the data's size or file count), then the live path
  is renamed aside and the snapshot renamed into its place. Nothing live is overwritten: what
  stood there is kept as ``.hotspare-replaced-<copy id>-<name>`` beside it (writes that existed
  only there, e.g. on a returning old production, stay readable), and the read-only copy stays
  intact and promotable.
- **rsync** for everything else (application code, configuration, account files, a copy made
  with hard links, a live path on another filesystem): the local ``rsync --delete`` of
  ``planning/failover.py:activation_argv``, as before.

The snapshot is tried first; where it is impossible the script changes nothing and says so
(exit status 3), and the path goes to rsync.

Future work: application code and configuration could be staged the same way (their own
subvolumes); they are small, so rsync costs little there.
"""

from __future__ import annotations

from dataclasses import dataclass

# $1 the copy's folder for this path, $2 the live path, $3 the copy id (names the kept tree).
CLONE_SWAP_SCRIPT = (
    'src=$1; live=$2; tag=$3; parent=$(dirname -- "$live"); name=$(basename -- "$live"); '
    'staged="$parent/.hotspare-incoming-$name"; aside="$parent/.hotspare-replaced-$tag-$name"; '
    '[ -e "$src" ] || exit 4; mkdir -p -- "$parent" || exit 1; rm -rf -- "$staged"; '
    'btrfs subvolume show "$src" >/dev/null 2>&1 || exit 3; '
    'if ! btrfs -q subvolume snapshot "$src" "$staged" >/dev/null 2>&1; then rm -rf -- "$staged"; exit 3; fi; '
    'if [ -e "$live" ] || [ -L "$live" ]; then n=0; kept=$aside; '
    'while [ -e "$kept" ] || [ -L "$kept" ]; do n=$((n+1)); kept="$aside.$n"; done; '
    'mv -T -- "$live" "$kept" || exit 1; echo "kept $kept"; fi; '
    'mv -T -- "$staged" "$live" || exit 1; echo "cloned $live"'
)

CLONED, NOT_CLONABLE, NOT_IN_COPY = 0, 3, 4

# The quota group the copy's subvolume $src belongs to (``planning/space.py``), as "-i <group>"
# in $qi, or nothing: the clone joins the same group, which keeps the kernel's accounting exact.
SOURCE_GROUP = (
    'qi=; sid=$(btrfs subvolume show "$src" 2>/dev/null | sed -n "s/^[[:space:]]*Subvolume ID:[[:space:]]*//p"); '
    'if [ -n "$sid" ]; then qg=$(btrfs qgroup show -p --raw "$src" 2>/dev/null '
    '| awk -v q="0/$sid" \'$1 == q && $4 ~ /^1\\/[0-9]+$/ { print $4 }\'); [ -n "$qg" ] && qi="-i $qg"; fi; '
)
# The same in two halves, so the staged clone is cleaned (``planning/live_data.py``) before it
# is swapped in: $1 the copy's folder, $2 the live path; prints "staged <folder>".
STAGE_SCRIPT = (
    'src=$1; live=$2; parent=$(dirname -- "$live"); name=$(basename -- "$live"); '
    'staged="$parent/.hotspare-incoming-$name"; '
    '[ -e "$src" ] || exit 4; mkdir -p -- "$parent" || exit 1; rm -rf -- "$staged"; '
    'btrfs subvolume show "$src" >/dev/null 2>&1 || exit 3; '
    + SOURCE_GROUP
    + 'if ! btrfs -q subvolume snapshot $qi "$src" "$staged" >/dev/null 2>&1; then rm -rf -- "$staged"; exit 3; fi; '
    'echo "staged $staged"'
)
# $1 the live path, $2 the copy id (names the kept tree): the live tree aside, the staged one in.
SWAP_SCRIPT = (
    'live=$1; tag=$2; parent=$(dirname -- "$live"); name=$(basename -- "$live"); '
    'staged="$parent/.hotspare-incoming-$name"; aside="$parent/.hotspare-replaced-$tag-$name"; '
    '[ -e "$staged" ] || exit 4; '
    'if [ -e "$live" ] || [ -L "$live" ]; then n=0; kept=$aside; '
    'while [ -e "$kept" ] || [ -L "$kept" ]; do n=$((n+1)); kept="$aside.$n"; done; '
    'mv -T -- "$live" "$kept" || exit 1; echo "kept $kept"; fi; '
    'mv -T -- "$staged" "$live" || exit 1; echo "cloned $live"'
)


# Undo a swap: $1 the live path (the clone), $2 the tree kept aside when it went live ("" when
# nothing stood there). The clone is moved away and deleted, the kept tree renamed back.
UNSWAP_SCRIPT = (
    'live=$1; kept=$2; parent=$(dirname -- "$live"); name=$(basename -- "$live"); '
    'gone="$parent/.hotspare-undone-$name"; '
    'if [ -n "$kept" ] && [ ! -e "$kept" ] && [ ! -L "$kept" ]; then echo "missing $kept"; exit 4; fi; '
    'if [ -e "$gone" ]; then btrfs -q subvolume delete "$gone" >/dev/null 2>&1 || rm -rf -- "$gone"; fi; '
    'if [ -e "$live" ] || [ -L "$live" ]; then mv -T -- "$live" "$gone" || exit 1; fi; '
    'if [ -n "$kept" ]; then mv -T -- "$kept" "$live" || exit 1; echo "restored $live"; fi; '
    'if [ -e "$gone" ]; then btrfs -q subvolume delete "$gone" >/dev/null 2>&1 || rm -rf -- "$gone"; fi; '
    'echo "removed the clone at $live"'
)
# $1 a staged clone that was never swapped in: deleted.
DISCARD_SCRIPT = 's=$1; [ -e "$s" ] || exit 0; btrfs -q subvolume delete "$s" >/dev/null 2>&1 || rm -rf -- "$s"'


def unswap_argv(live_path: str, kept: str | None) -> list[str]:
    """Put back what stood at ``live_path`` before a swap (``kept``), removing the clone."""
    from hotspare.fleet.paths import path_problem

    if path_problem(live_path) or (kept and staged_path(live_path).rsplit("/", 1)[0] != kept.rsplit("/", 1)[0]):
        from hotspare.adapters.errors import PermanentError

        raise PermanentError(f"refusing to undo a swap at {live_path!r} from {kept!r}: not a declared path and its kept tree")
    return ["sh", "-c", UNSWAP_SCRIPT, "sh", live_path, kept or ""]


def discard_staged_argv(live_path: str) -> list[str]:
    """Remove the clone staged beside ``live_path`` that never went live."""
    return ["sh", "-c", DISCARD_SCRIPT, "sh", staged_path(live_path)]


def staged_path(live_path: str) -> str:
    """Where ``STAGE_SCRIPT`` puts the clone of ``live_path`` before the swap."""
    parent, name = live_path.rsplit("/", 1)
    return f"{parent or ''}/.hotspare-incoming-{name}"


def stage_argv(copy_tree: str, live_path: str, copy_id: str) -> list[str]:
    """Clone ``copy_tree + live_path`` beside ``live_path`` (exit 3: not clonable, 4: not in
    the copy); the same guard as ``clone_swap_argv``."""
    clone_swap_argv(copy_tree, live_path, copy_id)  # the guard
    return ["sh", "-c", STAGE_SCRIPT, "sh", copy_tree + live_path, live_path]


def swap_argv(copy_tree: str, live_path: str, copy_id: str) -> list[str]:
    """Swap the staged clone of ``live_path`` in, keeping what stood there aside."""
    clone_swap_argv(copy_tree, live_path, copy_id)  # the guard
    return ["sh", "-c", SWAP_SCRIPT, "sh", live_path, copy_id]


def clone_swap_argv(copy_tree: str, live_path: str, copy_id: str) -> list[str]:
    """Clone ``copy_tree + live_path`` beside ``live_path`` and swap it in (see module doc).

    Guard: only declared paths that pass the fleet's path rule, and a copy inside hotspare's
    copies root, ever reach this script (the same rule as ``activation_argv``).
    """
    from hotspare.adapters.errors import PermanentError
    from hotspare.fleet.paths import COPIES_ROOT, form_problem, inside, path_problem

    problem = path_problem(live_path)
    if problem or form_problem(copy_tree) or not inside(copy_tree, COPIES_ROOT) or "/" in copy_id:
        raise PermanentError(
            f"refusing to make a copy live at {live_path!r}: {problem or 'the copy folder is not inside ' + COPIES_ROOT}. "
            "Fix the service's paths in the fleet file (`hotspare fleet check`) and load it again."
        )
    return ["sh", "-c", CLONE_SWAP_SCRIPT, "sh", copy_tree + live_path, live_path, copy_id]


@dataclass(frozen=True)
class ActivationResult:
    cloned: tuple[str, ...]  # swapped in by clone (btrfs)
    kept_aside: tuple[str, ...]  # live trees renamed aside, never overwritten
    rsync_paths: tuple[str, ...]  # to make live with rsync (no clone possible)
    absent: tuple[str, ...]  # not in the copy at all
    kept_pairs: tuple[tuple[str, str], ...] = ()  # (kept-aside tree, the live path it stood at)


def judge_clone_outcomes(outcomes: dict[str, tuple[int, str]]) -> ActivationResult:
    """Sort each live path by its clone script's (exit status, output)."""
    cloned, kept, rsync, absent, pairs = [], [], [], [], []
    for path, (status, output) in outcomes.items():
        if status == CLONED:
            cloned.append(path)
            kept += [line.split(" ", 1)[1] for line in output.splitlines() if line.startswith("kept ")]
            pairs += [(line.split(" ", 1)[1], path) for line in output.splitlines() if line.startswith("kept ")]
        elif status == NOT_CLONABLE:
            rsync.append(path)
        elif status == NOT_IN_COPY:
            absent.append(path)
        else:
            from hotspare.adapters.errors import PermanentError

            raise PermanentError(f"making {path} live failed (exit {status}): {output.strip()[-300:]}")
    return ActivationResult(tuple(cloned), tuple(kept), tuple(rsync), tuple(absent), tuple(pairs))
