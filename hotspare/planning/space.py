"""Pure planning of space per service on a shared host: each service's bound, the btrfs quota
group that enforces it, and the room a failover's activation needs on its target.

No network, no Prefect, no clock. A mirror keeps several services' copies on one disk, and a
failover makes one of them production there. One service filling that disk must not stop the
others' replication, nor — worse — their emergency failovers.

- **The bound**: ``space_gib`` of the service (fleet file), else ``defaults.space_gib``, else an
  equal share of 90 % of the mirror's filesystem among the services it keeps copies of; the
  last 10 % stays free for what activations write outside the services' areas (code,
  configuration, account files copied with rsync; the app's first writes).
- **Where copies are btrfs snapshots** the kernel enforces it: one level-1 quota group per service
  (``qgroup_id``), holding the service's working subvolume, every copy's subvolumes and, after
  a failover, its live clones (made with ``-i``: a snapshot into the same group as its source
  keeps the accounting exact, a snapshot outside it makes every group's numbers inconsistent
  until a rescan). A write past the limit fails with EDQUOT ("Disk quota exceeded") for that
  service alone; the rest of the disk stays free for the others.
- **Simple quotas** (squota, Linux >= 6.7) where the kernel has them and quotas are still off:
  exact numbers without rescans, a snapshot costs nothing, and a subvolume created inside a
  member of exactly one level-1 group joins it at creation, which is what bounds a received
  snapshot stream (``btrfs receive`` has no ``-i``). A filesystem already counting full quotas
  stays so (switching drops every group and leaves existing data uncounted).
- **Elsewhere** (hard-linked copies on any filesystem) the replication's preflight refuses a
  copy that would pass the bound or leave less than the reserve free.

A failover's preflight asks the target, in one command (``ROOM_SCRIPT``), what the activation
will write: nothing but metadata for a data path cloned from a snapshot copy, the copy's size
for a path made live with rsync, and what stood at an rsync path when the folder that keeps
replaced files lies on another filesystem; plus a margin per filesystem (``ACTIVATION_MARGIN``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from hotspare.planning.replication import Decision

GIB = 2**30
MIB = 2**20
RESERVE_FRACTION = 0.10
# What an activation writes besides the paths it copies: snapshot metadata of the clones, the
# marker, neutralised items, kept-aside bookkeeping, and the app's first writes at its start.
# Measured on the lab (docs/architecture/replication.md, "Space per service"): a few MiB; 32 MiB of margin.
ACTIVATION_MARGIN = 32 * MIB
QUOTA_EXCEEDED = "Disk quota exceeded"  # strerror(EDQUOT): a write past a quota group's limit


def qgroup_id(service: str) -> str:
    """The service's level-1 quota group, the same on every host: ``1/<48-bit number>`` from
    its name (no state to keep, no race between two services creating theirs at once)."""
    number = int.from_bytes(hashlib.sha256(service.encode()).digest()[:6], "big") % (2**48 - 2) + 1
    return f"1/{number}"


def bound_of(fleet, service: str, host: str, filesystem_bytes: int) -> tuple[int, str]:
    """(bytes, why) the service's area on ``host`` may hold."""
    spec = fleet.service(service)
    gib = spec.space_gib or fleet.defaults.space_gib
    if gib:
        where = f"services.{service}.space_gib" if spec.space_gib else "defaults.space_gib"
        return int(gib * GIB), f"{where} {gib:g} GiB"
    sharing = sorted({s.name for s in fleet.services if s.mirror == host} | {service})
    share = int(filesystem_bytes * (1 - RESERVE_FRACTION) / len(sharing))
    return share, (
        f"an equal share of 90 % of {host}'s {size_text(filesystem_bytes)} among "
        f"{len(sharing)} service(s): {', '.join(sharing)}; set space_gib to choose"
    )


def size_text(count: int) -> str:
    """Bytes as an operator reads them: 1.5 GiB, 230.0 MiB, 12.0 KiB."""
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if abs(count) >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


# ---------------------------------------------------------------------------------------
# The quota group on a btrfs mirror

# Simple quotas (squota, Linux >= 6.7) are enabled by one ioctl: btrfs-progs 6.2 (Debian 12) has no
# ``btrfs quota enable --simple``. BTRFS_IOC_QUOTA_CTL is _IOWR(0x94, 40, struct {u64 cmd; u64
# status}) = 0xC0109428, cmd BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA = 4. perl is in every Debian
# (perl-base is essential); the program is fixed and its only argument is the store's path.
SIMPLE_QUOTA_PROGRAM = (
    'open(my $d, "<", $ARGV[0]) or die "hotspare: open $ARGV[0]: $!\\n"; '
    'my $args = pack("Q2", 4, 0); '
    'ioctl($d, 0xC0109428, $args) or die "hotspare: simple quotas on $ARGV[0]: $!\\n";'
)

# The filesystem's quota mode as the kernel says it (``/sys/fs/btrfs/<uuid>/qgroups/mode``:
# squota or qgroup; no qgroups folder: off). $1 a path on it. Prints ``mode=...``.
QUOTA_MODE = (
    'u=$(findmnt -n -o UUID --target "$1" 2>/dev/null); q=/sys/fs/btrfs/$u/qgroups; '
    'if [ -z "$u" ] || [ ! -d "/sys/fs/btrfs/$u" ]; then echo mode=unknown; '
    'elif [ -r "$q/mode" ]; then echo "mode=$(cat "$q/mode")"; elif [ -d "$q" ]; then echo mode=qgroup; '
    "else echo mode=off; fi"
)

# $1 the service's root in the store, $2 its quota group, $3 the limit in bytes, $4 the service's
# received area ("" when it ships nothing). Enables quotas on the filesystem if they are off:
# simple quotas where the kernel has them (``SIMPLE``), else full accounting with a rescan (once).
# Creates the group and adopts the service's existing subvolumes into it (once; a rescan only in
# full mode: squota refuses it and needs none, its numbers are exact). Under simple quotas the
# received area is made a subvolume in the group (or adopted into it): every subvolume created
# inside a subvolume that is in exactly one level-1 group joins that group at creation, so what
# ``btrfs receive`` creates there is bounded while it is written. Sets the limit (every run: it
# follows the fleet file), then prints the mode and the group's numbers.
QUOTA_SCRIPT = (
    "root=$1; group=$2; limit=$3; area=${4:-}; "
    'if ! btrfs qgroup show "$root" >/dev/null 2>&1; then '
    'if [ -e /sys/fs/btrfs/features/simple_quota ] && command -v perl >/dev/null 2>&1 && perl -e "$SIMPLE" "$root"; '
    "then echo quota=enabled-simple; "
    'else btrfs quota enable "$root" && btrfs quota rescan -w "$root" >/dev/null || exit 3; echo quota=enabled; fi; fi; '
    'mode=$(sh -c "$MODE" sh "$root" | sed "s/^mode=//"); echo "mode=$mode"; '
    # the listing can fail for a moment under simple quotas (progs 6.2 cannot name the stale group
    # of a subvolume another run just deleted): a group it did not show is created unless it
    # exists; one that neither exists nor could be made fails the limit below (exit 3)
    'if ! btrfs qgroup show --raw "$root" 2>/dev/null | grep -q "^$group[[:space:]]" && '
    'btrfs qgroup create "$group" "$root" 2>/dev/null; then echo group=created; '
    'G=$group R=$root find "$root" -type d -inum 256 -exec sh -c \'for d do '
    'id=$(btrfs subvolume show "$d" | sed -n "s/^[[:space:]]*Subvolume ID:[[:space:]]*//p"); '
    '[ -n "$id" ] && btrfs qgroup assign --no-rescan "0/$id" "$G" "$R" >/dev/null 2>&1 && echo "adopted=$d"; '
    'done\' sh {} + ; if [ "$mode" != squota ]; then btrfs quota rescan -w "$root" >/dev/null || exit 3; fi; fi; '
    'if [ -n "$area" ] && [ "$mode" = squota ]; then '
    'if [ ! -e "$area" ]; then btrfs -q subvolume create -i "$group" "$area" || exit 3; echo area=created; fi; '
    'for d in "$area" "$area"/*; do btrfs subvolume show "$d" >/dev/null 2>&1 || continue; '
    'id=$(btrfs subvolume show "$d" | sed -n "s/^[[:space:]]*Subvolume ID:[[:space:]]*//p"); '
    'btrfs qgroup assign --no-rescan "0/$id" "$group" "$root" >/dev/null 2>&1 && echo "adopted=$d"; done; '
    "echo area=bounded; fi; "
    'btrfs qgroup limit "$limit" "$group" "$root" || exit 3; '
    'btrfs qgroup show -re --raw "$root" | awk -v g="$group" \'$1 == g { print "referenced=" $2; print "limit=" $4 }\''
)


def quota_argv(service_root: str, service: str, limit_bytes: int, received_area: str | None = None) -> list[str]:
    """The quota step's command; ``received_area``: the service ships snapshots (the area is then
    made part of its group under simple quotas)."""
    return [
        "env",
        f"SIMPLE={SIMPLE_QUOTA_PROGRAM}",
        f"MODE={QUOTA_MODE}",
        "sh",
        "-c",
        QUOTA_SCRIPT,
        "sh",
        service_root,
        qgroup_id(service),
        str(int(limit_bytes)),
        received_area or "",
    ]


@dataclass(frozen=True)
class QuotaFacts:
    referenced: int
    limit: int | None
    enabled_now: bool = False
    created: bool = False
    adopted: tuple[str, ...] = ()
    mode: str = "unknown"  # squota | qgroup (full accounting) | off | unknown
    area_bounded: bool = False  # the received area is in the service's group under simple quotas


def parse_quota(output: str) -> QuotaFacts:
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    limit = values.get("limit", "none").strip()
    return QuotaFacts(
        int(values.get("referenced", "0") or 0),
        int(limit) if limit.isdigit() else None,
        "quota" in values,
        "group" in values,
        tuple(line.split("=", 1)[1] for line in output.splitlines() if line.startswith("adopted=")),
        values.get("mode", "unknown").strip(),
        "area=bounded" in output.splitlines(),
    )


def quota_sentence(service: str, host: str, facts: QuotaFacts, why: str) -> str:
    """What the quota step did and where the service stands, logged by the replication."""
    done = [
        part
        for part in (
            (
                "simple quotas enabled on the filesystem (once)"
                if facts.mode == "squota"
                else "quotas enabled on the filesystem (once; the rescan ran)"
            )
            if facts.enabled_now
            else "",
            f"quota group {qgroup_id(service)} created, {len(facts.adopted)} existing subvolume(s) adopted"
            if facts.created
            else "",
        )
        if part
    ]
    limit = size_text(facts.limit) if facts.limit is not None else "no limit"
    return f"{service}'s area on {host} holds {size_text(facts.referenced)} of its bound {limit} ({why})" + (
        f"; {'; '.join(done)}" if done else ""
    )


def judge_bound(service: str, host: str, used: int, needed: int, bound: int, why: str) -> Decision:
    """May a copy that needs about ``needed`` more bytes start in an area holding ``used``?"""
    if used + needed <= bound:
        return Decision(
            True,
            f"{service}'s area on {host}: {size_text(used)} held, about {size_text(needed)} more "
            f"needed, bound {size_text(bound)} ({why})",
        )
    return Decision(
        False,
        over_bound_sentence(
            service, host, bound, why, f"it holds {size_text(used)} and this copy needs about {size_text(needed)} more"
        ),
    )


def over_bound_sentence(service: str, host: str, bound: int, why: str, detail: str) -> str:
    """The refusal of a replication that reached its own bound; other services are untouched."""
    return (
        f"replication of {service} refused: its area on {host} would pass its bound of {size_text(bound)} ({why}): "
        f"{detail}. The current copy is untouched and no other service's space was used; raise space_gib of "
        f"{service} in the fleet file, keep fewer copies (copies_to_keep), or shrink its data"
    )


def unbounded_stream_refusal(service: str, host: str, mode: str) -> Decision:
    """Snapshot shipping was chosen because simple quotas would bound the stream, but the mirror's
    preparation could not put the received area in the service's group: refuse before any byte."""
    return Decision(
        False,
        f"replication of {service} refused before the transfer: snapshot shipping was chosen for its bound, but "
        f"{host} could not put the received area in {service}'s quota group under simple quotas (quotas: {mode}), so "
        f"a stream would not be bounded. Nothing was received; set replication.copy_backend to btrfs-snapshot, or "
        f"enable simple quotas on {host}'s store",
    )


def judge_reserve(host: str, available: int, filesystem_bytes: int, needed: int) -> Decision:
    """Where quotas cannot bound a service: never let one copy eat the reserve kept free."""
    reserve = int(filesystem_bytes * RESERVE_FRACTION)
    if available - needed >= reserve:
        return Decision(
            True,
            f"{host} keeps its reserve: {size_text(available)} free, about {size_text(needed)} "
            f"needed, {size_text(reserve)} kept free",
        )
    return Decision(
        False,
        f"replication refused: the copy would leave less than the reserve free on {host} "
        f"({size_text(available)} free, about {size_text(needed)} needed, {size_text(reserve)} "
        "kept free for the other services' failovers); free space on it or add disk",
    )


# ---------------------------------------------------------------------------------------
# What a failover's activation needs on its target

# $1 the copy's tree, $2 the service's root in the store, $3 its quota group, then the live
# paths. Per path: how it goes live (clone, rsync, absent), what the copy holds there, what
# stands there now, and the free bytes and mount point of the filesystem it lands on.
ROOM_SCRIPT = (
    "tree=$1; root=$2; group=$3; shift 3; "
    'place() { p=$1; while [ ! -e "$p" ] && [ "$p" != / ]; do p=$(dirname -- "$p"); done; '
    'df -B1 --output=avail,target -- "$p" | tail -n 1 | sed "s/^ *//"; }; '
    'size() { if [ -e "$1" ]; then du -s -B1 -- "$1" 2>/dev/null | cut -f1; else echo 0; fi; }; '
    "for p do src=$tree$p; "
    'if [ ! -e "$src" ]; then how=absent; need=0; '
    'elif btrfs subvolume show "$src" >/dev/null 2>&1; then how=clone; need=0; '
    'else how=rsync; need=$(size "$src"); fi; '
    'live=0; [ "$how" = rsync ] && live=$(size "$p"); '
    'printf "path\\t%s\\t%s\\t%s\\t%s\\t%s\\n" "$how" "$need" "$live" "$(place "$p")" "$p"; done; '
    'printf "root\\t%s\\n" "$(place "$root")"; '
    'btrfs qgroup show -re --raw "$root" 2>/dev/null | awk -v g="$group" \'$1 == g { print "group\\t" $2 "\\t" $4 }\''
)


def room_argv(copy_tree: str, service_root: str, service: str, live_paths: list[str]) -> list[str]:
    return ["sh", "-c", ROOM_SCRIPT, "sh", copy_tree, service_root, qgroup_id(service), *live_paths]


@dataclass(frozen=True)
class LivePath:
    path: str
    how: str  # clone | rsync | absent
    copy_bytes: int  # what rsync writes (0 for a clone)
    live_bytes: int  # what stands at the path now (rsync keeps it aside)
    mount: str
    available: int


@dataclass(frozen=True)
class RoomFacts:
    paths: tuple[LivePath, ...]
    root_mount: str
    root_available: int
    group_referenced: int | None = None
    group_limit: int | None = None
    mounts: dict = field(default_factory=dict)


def _df(text: str) -> tuple[int, str]:
    available, _, mount = text.strip().partition(" ")
    return int(available or 0), mount.strip() or "/"


def parse_room(output: str) -> RoomFacts:
    paths, root, group = [], ("/", 0), (None, None)
    for line in output.splitlines():
        parts = line.split("\t")
        if parts[0] == "path" and len(parts) >= 6:
            available, mount = _df(parts[4])
            paths.append(LivePath("\t".join(parts[5:]), parts[1], int(parts[2] or 0), int(parts[3] or 0), mount, available))
        elif parts[0] == "root" and len(parts) >= 2:
            available, mount = _df(parts[1])
            root = (mount, available)
        elif parts[0] == "group" and len(parts) >= 3:
            group = (int(parts[1]), int(parts[2]) if parts[2].isdigit() else None)
    return RoomFacts(tuple(paths), root[0], root[1], group[0], group[1])


@dataclass(frozen=True)
class RoomNeed:
    mount: str
    available: int
    needed: int
    parts: tuple[str, ...]


def activation_needs(facts: RoomFacts, margin: int = ACTIVATION_MARGIN) -> list[RoomNeed]:
    """Bytes each filesystem must have free for the activation, and what they are for."""
    available = {facts.root_mount: facts.root_available}
    needed: dict[str, int] = {facts.root_mount: margin}
    parts: dict[str, list[str]] = {facts.root_mount: [f"{size_text(margin)} margin (clones, marker, the app's start)"]}
    for path in facts.paths:
        available.setdefault(path.mount, path.available)
        if path.how != "rsync":
            continue
        if path.mount not in needed:
            needed[path.mount], parts[path.mount] = margin, [f"{size_text(margin)} margin"]
        needed[path.mount] += path.copy_bytes
        parts[path.mount].append(f"{size_text(path.copy_bytes)} for {path.path} (rsync)")
        if path.live_bytes and path.mount != facts.root_mount:  # replaced files are copied, not renamed, there
            needed[facts.root_mount] += path.live_bytes
            parts[facts.root_mount].append(f"{size_text(path.live_bytes)} to keep what stands at {path.path}")
    return [RoomNeed(mount, available[mount], needed[mount], tuple(parts[mount])) for mount in needed]


def judge_activation_room(service: str, host: str, copy_id: str, facts: RoomFacts, margin: int = ACTIVATION_MARGIN) -> Decision:
    """Go when every filesystem the activation writes to has room, and the service's quota group
    (which its live clones join) has at least the margin left; else the refusal sentence."""
    needs = activation_needs(facts, margin)
    short = [need for need in needs if need.available < need.needed]
    problems = [
        f"{need.mount} has {size_text(need.available)} free and the activation needs "
        f"{size_text(need.needed)} ({', '.join(need.parts)})"
        for need in short
    ]
    if (
        facts.group_limit is not None
        and facts.group_referenced is not None
        and facts.group_limit - facts.group_referenced < margin
    ):
        problems.append(
            f"{service}'s own area holds {size_text(facts.group_referenced)} of its bound "
            f"{size_text(facts.group_limit)}, less than {size_text(margin)} left for its live data"
        )
    summary = "; ".join(f"{need.mount}: {size_text(need.available)} free, {size_text(need.needed)} needed" for need in needs)
    if not problems:
        return Decision(True, f"{host} has room to make copy {copy_id} of {service} live ({summary})")
    return Decision(
        False,
        (
            f"failover of {service} to {host} refused before any change: "
            + "; ".join(problems)
            + f". Free space on {host} (another service's copies: lower its space_gib or copies_to_keep and replicate it"
            f", or remove files that are no service's), or raise space_gib of {service}; then run the failover again. "
            "Nothing was changed"
        ),
    )
