"""Pure planning of how a mirror keeps its point-in-time copies: btrfs snapshots or hard links.

No network, no Prefect, no clock. The back-end is decided per mirror and service from facts
gathered on the mirror (``STORE_FACTS_SCRIPT``, run inside the preflight's one command:
``planning/preflight_facts.py``), never assumed:

- **btrfs-snapshot** when the service's copies folder is on btrfs and ``btrfs`` is installed.
  rsync updates a *working subvolume* (``/srv/hotspare/<service>/work``, private to hotspare)
  and ``btrfs subvolume snapshot -r`` turns it into the new copy in one step. Unchanged files
  cost nothing (no tree of hard links is built), and an older copy can never be touched:
  it is a read-only snapshot, so not even a permission change on production leaks into it.
- **hard-links** everywhere else: ``rsync --link-dest`` against the previous verified copy.

Snapshot copies are *shipped* (``btrfs send | receive``, ``planning/snapshot_shipping.py``) instead
of filled by rsync where ``shipping_choice`` allows it: under ``auto`` only where the mirror's
filesystem counts simple quotas (or can turn them on), the one mode in which the kernel holds a
received stream inside the service's space bound (``planning/space.py``).

The working tree is written with rsync's ordinary "temporary file, then rename" updates, not
``--inplace``: in place, a write goes through every hard link of the file (rsync's own man
page: links are not broken, differing sources "tug of war"), and a link group that production
split would leave one name with the other's bytes under an unchanged size and mtime, which the
next quick check cannot see. Snapshots already share every unchanged file's extents; only a
changed file is written anew (its delta still travels, rsync uses the old file as its basis).

Layout (``copy_root`` is the same for both back-ends, so verification, failover and status
read a copy the same way)::

    /srv/hotspare/<service>/work/tree/...           working subvolume (btrfs only)
    /srv/hotspare/<service>/copies/<copy id>/tree/  read-only snapshot | hard-linked folder
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hotspare.planning.replication import COPIES_ROOT, Decision, copy_root, service_root

SNAPSHOT = "btrfs-snapshot"
HARD_LINKS = "hard-links"
BACKENDS = (SNAPSHOT, HARD_LINKS)


def work_root(service: str) -> str:
    """The working subvolume that rsync updates before each snapshot."""
    return f"{service_root(service)}/work"


def work_tree(service: str) -> str:
    return f"{work_root(service)}/tree"


# One round trip: the copies folder's filesystem type, whether the btrfs tool is there, what
# the working path is (a subvolume, another kind of folder, or absent). ``btrfs subvolume show``
# exits 0 only for a subvolume root.
STORE_FACTS_SCRIPT = (
    'printf "filesystem=%s\\n" "$(stat -f -c %T "$1" 2>/dev/null || echo unknown)"; '
    "if command -v btrfs >/dev/null 2>&1; then echo tool=yes; else echo tool=no; fi; "
    'if [ ! -e "$2" ]; then echo work=absent; '
    'elif command -v btrfs >/dev/null 2>&1 && btrfs subvolume show "$2" >/dev/null 2>&1; then echo work=subvolume; '
    "else echo work=folder; fi; "
    # the filesystem's quota mode (squota | qgroup | off | unknown) and whether simple quotas can be
    # turned on here (the kernel has them; perl issues the ioctl: ``space.SIMPLE_QUOTA_PROGRAM``)
    'u=$(findmnt -n -o UUID --target "$1" 2>/dev/null); q=/sys/fs/btrfs/$u/qgroups; '
    'if [ -z "$u" ] || [ ! -d "/sys/fs/btrfs/$u" ]; then echo quota=unknown; '
    'elif [ -r "$q/mode" ]; then echo "quota=$(cat "$q/mode")"; elif [ -d "$q" ]; then echo quota=qgroup; '
    "else echo quota=off; fi; "
    "if [ -e /sys/fs/btrfs/features/simple_quota ] && command -v perl >/dev/null 2>&1; "
    "then echo simple_quota=yes; else echo simple_quota=no; fi"
)
STORE_FACT_KEYS = ("filesystem", "tool", "work", "quota", "simple_quota")


@dataclass(frozen=True)
class StoreFacts:
    filesystem: str  # stat -f -c %T: btrfs, ext2/ext3, xfs, tmpfs, overlayfs, ...
    btrfs_tool: bool
    work: str  # subvolume | folder | absent
    quota: str = "unknown"  # the filesystem's quota mode: squota | qgroup | off | unknown
    simple_quota: bool = False  # simple quotas can be turned on (kernel >= 6.7, perl for the ioctl)


def parse_store_facts(output: str) -> StoreFacts:
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    return StoreFacts(
        values.get("filesystem", "unknown").strip(),
        values.get("tool") == "yes",
        values.get("work", "absent").strip(),
        values.get("quota", "unknown").strip(),
        values.get("simple_quota") == "yes",
    )


@dataclass(frozen=True)
class BackendChoice:
    backend: str
    reason: str  # one sentence, logged and shown in status


def choose_backend(facts: StoreFacts, preference: str = "auto") -> BackendChoice:
    """Snapshots where the copies folder offers them, hard links elsewhere.

    ``preference`` is the fleet's ``replication.copy_backend``: ``auto`` decides from the facts,
    ``hard-links`` keeps hard links even on btrfs; ``btrfs-snapshot`` is only honoured where
    btrfs is really there (a wish never overrides a fact).
    """
    if preference == HARD_LINKS:
        return BackendChoice(HARD_LINKS, "hard-linked copies: the fleet file asks for them")
    if facts.filesystem != "btrfs":
        return BackendChoice(HARD_LINKS, f"hard-linked copies: the copies folder is on {facts.filesystem}, not btrfs")
    if not facts.btrfs_tool:
        return BackendChoice(
            HARD_LINKS,
            "hard-linked copies: the copies folder is on btrfs but btrfs-progs is "
            "not installed on the mirror (install it for snapshot copies)",
        )
    if facts.work == "folder":
        return BackendChoice(
            HARD_LINKS,
            "hard-linked copies: the working path exists but is not a btrfs subvolume (remove it to let hotspare make one)",
        )
    return BackendChoice(SNAPSHOT, "btrfs snapshots: the copies folder is on btrfs")


SHIPPING = "btrfs-send"  # the fleet's replication.copy_backend that asks for snapshot shipping


def shipping_choice(facts: StoreFacts, preference: str = "auto") -> Decision:
    """May the mirror receive snapshot streams for this service (go), and why, as a sentence.

    A stream is hostile input that ``btrfs receive`` writes into a subvolume it creates itself
    (it has no ``-i``). Only simple quotas bound it while it is written: a subvolume created in the
    service's received area (a member of exactly one level-1 group, the service's) joins that group
    at creation, and a write or ``fallocate`` past the limit fails with EDQUOT. So ``auto`` ships
    where the mirror's filesystem counts simple quotas or can be switched on to them (quotas still
    off). ``auto`` never ships (a stream leaves in what the service's exclude patterns leave out):
    it says whether shipping would be bounded here.
    ``btrfs-send`` is honoured everywhere (asked for; unbounded under full accounting, as it
    says), the other back-ends never ship. Production's side (the data paths as subvolumes) is judged by
    ``snapshot_shipping.plan_shipping``."""
    bounded = facts.quota == "squota" or (facts.quota == "off" and facts.simple_quota)
    if preference == SHIPPING:
        if bounded:
            return Decision(True, "the fleet file asks for it; streams are received inside the service's quota group")
        return Decision(
            True,
            f"the fleet file asks for it; the mirror's quotas are {facts.quota}, not simple quotas, so a stream is "
            "received outside the service's space bound",
        )
    if preference != "auto":
        return Decision(False, f"the fleet file asks for {preference}, not {SHIPPING} (snapshots filled by rsync)")
    # auto never changes what a copy holds: a stream carries the data paths as they are on disk
    # (the service's exclude patterns left in, a file a mount hides on production sent as it lies
    # under it).
    # Shipping is the operator's choice; the facts say whether a stream would be bounded.
    if bounded:
        return Decision(
            False,
            "auto keeps snapshots filled by rsync (a stream would carry excluded files); ask for btrfs-send to ship: "
            "this mirror's simple quotas would bound a stream",
        )
    return Decision(
        False,
        f"auto keeps snapshots filled by rsync; the mirror could not bound a received stream (quotas {facts.quota}, "
        "not simple quotas: docs/architecture/replication.md)",
    )


# $1 the copies root, $2 the service. Production's data lands below it as it was (setuid files,
# device nodes: the copies keep the originals), so only root may enter: a service account
# that logs in to the mirror (accounts travel) must never reach a working tree or a copy.
CLOSE_STORE_SCRIPT = 'umask 077; mkdir -p -- "$1/$2" && chown root:root -- "$1" "$1/$2" && chmod 0700 -- "$1" "$1/$2"'


def close_store_argv(service: str) -> list[str]:
    """The command that makes the mirror's copies root and the service's folder in it root's alone."""
    return ["sh", "-c", CLOSE_STORE_SCRIPT, "sh", COPIES_ROOT, service]


# $1 the working subvolume, $2 a snapshot copy to start from ("" for none), then the data paths.
# Each data path is a subvolume of its own inside the working tree, so a copy holds it as a
# read-only snapshot of its own, and a failover makes it live as one writable snapshot.
# $QGROUP (optional): the service's quota group (``planning/space.py``); every subvolume joins it
# when it exists on the filesystem (``QGROUP_OPTION`` sets $qi to "-i <group>" or nothing).
QGROUP_OPTION = (
    'qi=; if [ -n "${QGROUP:-}" ] && btrfs qgroup show --raw "$(dirname -- "$work")" 2>/dev/null '
    '| grep -q "^$QGROUP[[:space:]]"; then qi="-i $QGROUP"; fi; '
)
MAKE_WORK_SCRIPT = (
    "work=$1; base=$2; shift 2; "
    + QGROUP_OPTION
    + 'if [ ! -e "$work" ]; then if [ -n "$base" ]; then btrfs -q subvolume snapshot $qi "$base" "$work" || exit 1; '
    'else btrfs -q subvolume create $qi "$work" || exit 1; fi; fi; '
    'for p in "$@"; do d="$work/tree$p"; '
    'btrfs subvolume show "$d" >/dev/null 2>&1 && continue; '
    'mkdir -p "$(dirname "$d")" || exit 1; '
    'if [ -n "$base" ] && btrfs subvolume show "$base/tree$p" >/dev/null 2>&1 && { [ ! -e "$d" ] || rmdir "$d" 2>/dev/null; }; '
    'then btrfs -q subvolume snapshot $qi "$base/tree$p" "$d" || exit 1; continue; fi; '
    'if [ -e "$d" ]; then rm -rf -- "$d.hotspare-new"; btrfs -q subvolume create $qi "$d.hotspare-new" && '
    'cp -a --reflink=auto "$d/." "$d.hotspare-new/" && rm -rf -- "$d" && mv -T "$d.hotspare-new" "$d" || exit 1; '
    'else btrfs -q subvolume create $qi "$d" || exit 1; fi; done'
)


def prepare_work_argvs(
    service: str,
    facts: StoreFacts,
    baseline_copy: str | None,
    data_paths: Sequence[str] = (),
    qgroup: str | None = None,
) -> list[list[str]]:
    """The command that makes sure the working subvolume, and a subvolume for each data path
    inside it, exist before the copy (idempotent: a retried copy step finds them made).

    A missing working subvolume starts as a writable snapshot of the newest verified snapshot
    copy (in one step, so the next copy sends only changes), else empty (a first copy; rsync's
    ``--copy-dest`` then takes identical files from local folders). An existing one is kept; its
    missing data-path subvolumes start as writable snapshots of the baseline copy's (the last copy
    was shipped, so the working tree holds no data paths). The baseline is always handed over: a
    working tree removed during the run (an unfinished transfer at the space bound,
    ``planning/space_recovery.py``) starts from it too, never as a full copy counted anew.
    ``facts`` is kept for callers: the program itself looks at what the working path is.
    """
    base = copy_root(service, baseline_copy) if baseline_copy else ""
    return [[*_in_group(qgroup), "sh", "-c", MAKE_WORK_SCRIPT, "sh", work_root(service), base, *data_paths]]


def _in_group(qgroup: str | None) -> list[str]:
    """The ``env`` prefix that hands the scripts the service's quota group (none: no prefix)."""
    return ["env", f"QGROUP={qgroup}"] if qgroup else []


# $1 the working subvolume, $2 the copy's place, then the data paths. Whatever stands at the
# copy's place (an earlier attempt of the same, unverified copy) is removed first. The copy is
# made writable, each data path's subvolume is snapshotted read-only into it, then it is made
# read-only itself; nothing writes to the working tree meanwhile (the service's lock).
SNAPSHOT_SCRIPT = (
    "work=$1; copy=$2; shift 2; " + QGROUP_OPTION + 'if [ -e "$copy" ]; then sh -c "$REMOVE" sh "$copy" || exit 1; fi; '
    'btrfs -q subvolume snapshot $qi "$work" "$copy" || exit 1; '
    'for p in "$@"; do if btrfs subvolume show "$work/tree$p" >/dev/null 2>&1; then '
    'rmdir "$copy/tree$p" && btrfs -q subvolume snapshot -r $qi "$work/tree$p" "$copy/tree$p" || exit 1; fi; done; '
    'btrfs property set -ts "$copy" ro true'
)

# $@: subvolumes to delete, each after the subvolumes nested in it (inode 256 is a subvolume's
# root); $0 is this program itself, for the nested ones. ``-xdev`` keeps each walk inside one
# subvolume (each has a device number of its own), so the nested roots are found without reading
# the files of the data paths' subvolumes, which hold nearly all of a copy (a walk of every file
# cost ~1 s per pruned copy at 100,000 files). ``{\\}`` is find's ``{}`` (the literal pair in
# the program's own text would be a second ``{}`` to find).
DELETE_NESTED = (
    'for s do find "$s" -mindepth 1 -xdev -type d -inum 256 -prune -exec sh -c "$0" "$0" {\\} + || exit 1; '
    'btrfs -q subvolume delete "$s" || exit 1; done'
)

# A copy is a subvolume (snapshot back-end, with a nested read-only subvolume per data path)
# or a folder (hard links); remove either.
REMOVE_SCRIPT = (
    'c=$1; [ -e "$c" ] || exit 0; '
    'if command -v btrfs >/dev/null 2>&1 && btrfs subvolume show "$c" >/dev/null 2>&1; then '
    'btrfs property set -ts "$c" ro false || exit 1; '
    "nested='" + DELETE_NESTED + '\'; exec sh -c "$nested" "$nested" "$c"; '
    'else rm -rf -- "$c"; fi'
)


def snapshot_copy_argv(service: str, copy_id: str, data_paths: Sequence[str] = (), qgroup: str | None = None) -> list[str]:
    """The working tree becomes copy ``copy_id``: read-only snapshots, made in one step each
    (into the service's quota group ``qgroup`` where it exists)."""
    return [
        "env",
        f"REMOVE={REMOVE_SCRIPT}",
        *_in_group(qgroup)[1:],
        "sh",
        "-c",
        SNAPSHOT_SCRIPT,
        "sh",
        work_root(service),
        copy_root(service, copy_id),
        *data_paths,
    ]


def remove_copy_argv(service: str, copy_id: str) -> list[str]:
    """Remove a copy whatever its back-end (``btrfs subvolume delete`` for snapshots)."""
    return ["sh", "-c", REMOVE_SCRIPT, "sh", copy_root(service, copy_id)]


def unshare_resumed_copy_argv(service: str, copy_id: str) -> list[str]:
    """Before rsync resumes into an unverified hard-linked copy: remove its files that still
    share their inode with an older copy. rsync sets a changed permission, owner or mtime in
    place, which would reach through the link into the older (maybe current) copy; removed,
    they are linked again if unchanged or copied from ``--link-dest``, and what the interrupted
    run really received (one link each) stays."""
    return ["find", copy_root(service, copy_id) + "/tree", "!", "-type", "d", "-links", "+1", "-delete"]


def remove_paths_argv() -> list[str]:
    """Remove the NUL-separated paths on stdin (files of an unverified hard-linked copy about to
    be fetched again: a repair must write new files, never change shared ones in place)."""
    return ["xargs", "-0", "-r", "rm", "-f", "--"]


def is_snapshot_argv(service: str, copy_id: str) -> list[str]:
    """Exit 0 when the copy is a btrfs subvolume (a snapshot copy)."""
    return ["btrfs", "subvolume", "show", copy_root(service, copy_id)]


def copy_target_tree(service: str, copy_id: str, backend: str) -> str:
    """Where rsync writes: the working tree for snapshots, the copy's own tree for hard links."""
    from hotspare.planning.replication import copy_tree

    return work_tree(service) if backend == SNAPSHOT else copy_tree(service, copy_id)


def judge_backend_switch(previous: str | None, chosen: BackendChoice) -> Decision:
    """Say when the back-end changed since the last copy (e.g. the mirror's disks moved to btrfs)."""
    if previous and previous != chosen.backend:
        return Decision(True, f"copy back-end changes from {previous} to {chosen.backend}: {chosen.reason}")
    return Decision(True, chosen.reason)
