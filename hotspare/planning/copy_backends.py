"""Pure planning of how a mirror keeps its point-in-time copies: btrfs snapshots or hard links.

No network, no Prefect, no clock. The back-end is decided per mirror and service from facts
gathered in one command (``store_facts_argv``), never assumed:

- **btrfs-snapshot** when the service's copies folder is on btrfs and ``btrfs`` is installed.
  rsync updates a *working subvolume* (``/srv/hotspare/<service>/work``, private to hotspare)
  and ``btrfs subvolume snapshot -r`` turns it into the new copy in one step. Unchanged files
  cost nothing (no tree of hard links is built), and an older copy can never be touched:
  it is a read-only snapshot, so not even a permission change on production leaks into it.
- **hard-links** everywhere else: ``rsync --link-dest`` against the previous verified copy.

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

from dataclasses import dataclass

from hotspare.planning.replication import Decision, copy_root, service_root

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
    'if command -v btrfs >/dev/null 2>&1; then echo tool=yes; else echo tool=no; fi; '
    'if [ ! -e "$2" ]; then echo work=absent; '
    'elif command -v btrfs >/dev/null 2>&1 && btrfs subvolume show "$2" >/dev/null 2>&1; then echo work=subvolume; '
    'else echo work=folder; fi'
)


def store_facts_argv(service: str) -> list[str]:
    """Facts about the mirror's copies folder (which must exist already)."""
    return ["sh", "-c", STORE_FACTS_SCRIPT, "sh", f"{service_root(service)}/copies", work_root(service)]


@dataclass(frozen=True)
class StoreFacts:
    filesystem: str  # stat -f -c %T: btrfs, ext2/ext3, xfs, tmpfs, overlayfs, ...
    btrfs_tool: bool
    work: str  # subvolume | folder | absent


def parse_store_facts(output: str) -> StoreFacts:
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    return StoreFacts(values.get("filesystem", "unknown").strip(), values.get("tool") == "yes",
                      values.get("work", "absent").strip())


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
        return BackendChoice(HARD_LINKS, "hard-linked copies: the copies folder is on btrfs but btrfs-progs is "
                                         "not installed on the mirror (install it for snapshot copies)")
    if facts.work == "folder":
        return BackendChoice(HARD_LINKS, "hard-linked copies: the working path exists but is not a btrfs subvolume "
                                         "(remove it to let hotspare make one)")
    return BackendChoice(SNAPSHOT, "btrfs snapshots: the copies folder is on btrfs")


def prepare_work_argvs(service: str, facts: StoreFacts, baseline_copy: str | None) -> list[list[str]]:
    """Commands that make sure the working subvolume exists before the copy.

    A missing working subvolume starts as a writable snapshot of the newest verified copy (in
    one step, so the next copy sends only changes), else empty (a first copy; rsync's
    ``--copy-dest=/`` then takes identical files from the mirror's own live folders).
    """
    if facts.work == "subvolume":
        return []
    if baseline_copy:
        make = ["btrfs", "-q", "subvolume", "snapshot", copy_root(service, baseline_copy), work_root(service)]
    else:
        make = ["btrfs", "-q", "subvolume", "create", work_root(service)]
    # guarded: a retried copy step finds the subvolume made by its first attempt
    return [["sh", "-c", '[ -e "$1" ] || { shift; exec "$@"; }', "sh", work_root(service), *make]]


# Replace whatever stands at the copy's place (an earlier attempt of the same copy, unverified)
# with a read-only snapshot of the working subvolume.
SNAPSHOT_SCRIPT = (
    'if [ -e "$2" ]; then if btrfs subvolume show "$2" >/dev/null 2>&1; then btrfs -q subvolume delete "$2"; '
    'else rm -rf -- "$2"; fi || exit 1; fi; btrfs -q subvolume snapshot -r "$1" "$2"'
)


def snapshot_copy_argv(service: str, copy_id: str) -> list[str]:
    """The working tree becomes copy ``copy_id``: a read-only snapshot, made in one step."""
    return ["sh", "-c", SNAPSHOT_SCRIPT, "sh", work_root(service), copy_root(service, copy_id)]


# A copy is a subvolume (snapshot back-end) or a folder (hard links); remove either.
REMOVE_SCRIPT = (
    'if [ ! -e "$1" ]; then exit 0; fi; '
    'if command -v btrfs >/dev/null 2>&1 && btrfs subvolume show "$1" >/dev/null 2>&1; '
    'then btrfs -q subvolume delete "$1"; else rm -rf -- "$1"; fi'
)


def remove_copy_argv(service: str, copy_id: str) -> list[str]:
    """Remove a copy whatever its back-end (``btrfs subvolume delete`` for a snapshot)."""
    return ["sh", "-c", REMOVE_SCRIPT, "sh", copy_root(service, copy_id)]


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
