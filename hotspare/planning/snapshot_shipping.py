"""Snapshot shipping: pure planning of ``btrfs send | btrfs receive`` from production to its mirror.

No network, no Prefect, no clock. Where a service's data path is a btrfs subvolume on production
and the mirror keeps snapshot copies, a replication does not walk or list the data at all:

1. after the pre-sync hooks production takes a read-only snapshot of each data path
   (``<folder>/.hotspare-snapshots/<name>@<copy id>``, beside the path, on its filesystem);
2. the mirror pulls ``btrfs send -p <last shipped>`` of it through a per-transfer key whose
   forced command (``SEND_SCRIPT``) sends exactly those snapshots and reads nothing the client
   asks; the stream goes into ``btrfs receive`` confined to the service's *received area*
   (``/srv/hotspare/<service>/received``, a subvolume of its own);
3. the copy's data path is a read-only snapshot of the received subvolume, whose received UUID
   must equal the UUID production gave its snapshot.

The parent is the newest snapshot both ends hold: production's by UUID, the mirror's by received
UUID, matched by name. The other declared paths (code, configuration, account files: small, and
rarely subvolumes) still travel by rsync into the working subvolume, in the same mirror command.

**The stream is hostile input.** A compromised production writes whatever stream it likes.
``btrfs receive --chroot`` confines the paths a stream names, but not the subvolumes it may
name by UUID as the parent of a snapshot or the source of a clone: receive resolves those from
the filesystem's root (measured here: a stream naming another area's received UUID as its
parent made a snapshot of that area's data in ours). receive refuses such a parent or clone
source only when the mount it writes to is itself a subvolume mount ("parent subvol is not
reachable from inside the root subvol"). So the receive runs in a mount namespace of its own
where the received area (a subvolume) is bind-mounted on ``RECEIVE_VIEW``: the kernel gives
receive that subvolume as its root, receive refuses every parent and clone source outside it,
and ``--chroot`` keeps every path inside. ``-E 1`` stops at the first failed command. What a
stream may still do: write its own new subvolume (as rsync could), create extra subvolumes in
the area (named and removed by ``SHIP_SCRIPT``, and the copy refused), fill the disk.

Where it cannot ship (either end not btrfs, the data path not a subvolume, the parent gone from
one end) the copy goes by rsync as before, and the reason is a logged sentence.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from hotspare.planning.copy_backends import QGROUP_OPTION
from hotspare.planning.replication import SSH_OPTIONS, service_root

SHIPPING = "btrfs-send"
SNAPSHOT_FOLDER = ".hotspare-snapshots"
SEND_PATH = "/usr/local/lib/hotspare/transfer-send"
# an empty folder on the mirror; each receive binds the service's received area over it, in
# a mount namespace of its own
RECEIVE_VIEW = "/run/hotspare-receive"


def received_area(service: str) -> str:
    """The mirror's subvolume that receives the service's streams (and nothing else)."""
    return f"{service_root(service)}/received"


def snapshot_name(path: str, copy_id: str) -> str:
    return f"{posixpath.basename(path)}@{copy_id}"


def production_snapshot(path: str, copy_id: str) -> str:
    """Where production keeps the read-only snapshot of ``path`` for copy ``copy_id``."""
    return posixpath.join(posixpath.dirname(path), SNAPSHOT_FOLDER, snapshot_name(path, copy_id))


# ---------------------------------------------------------------------------------------
# Facts (asked inside the preflight's one command per host: ``planning/preflight_facts.py``)

# $@: the data paths. A path ships when it is a btrfs subvolume on the same mount as its folder
# (its snapshots live there); then every snapshot hotspare keeps of it, with its UUID and whether
# it is still as taken: a snapshot's generation moves with every change to its files (made
# writable, changed, made read-only again: measured on btrfs-progs 6.2), never with a send.
PRODUCTION_FACTS_SCRIPT = (
    "for p do "
    'if command -v btrfs >/dev/null 2>&1 && [ "$(stat -f -c %T "$p" 2>/dev/null)" = btrfs ] && '
    'btrfs subvolume show "$p" >/dev/null 2>&1 && '
    '[ "$(findmnt -n -o TARGET --target "$p")" = "$(findmnt -n -o TARGET --target "${p%/*}/")" ]; '
    'then echo "ship_subvolume=$p"; fi; '
    "d=${p%/*}/" + SNAPSHOT_FOLDER + "; b=${p##*/}; "
    'for s in "$d/$b@"*; do [ -d "$s" ] || continue; '
    'btrfs subvolume show "$s" 2>/dev/null | awk -v p="$p" -v n="${s##*/}" \'$1 == "UUID:" {u=$2} '
    '$1 == "Generation:" {g=$2} $1 == "Gen" && $2 == "at" {c=$4} '
    'END {print "ship_snapshot=" p, n, (u == "" ? "-" : u), (g != "" && g == c ? "kept" : "changed")}\'; done; done'
)

# $1: the received area. Whether it is a subvolume, and each received subvolume's received UUID
# ("-" for one whose receive never finished: receive sets it last).
MIRROR_FACTS_SCRIPT = (
    'a=$1; if [ ! -e "$a" ]; then echo received_area=absent; '
    'elif command -v btrfs >/dev/null 2>&1 && btrfs subvolume show "$a" >/dev/null 2>&1; then echo received_area=subvolume; '
    'for s in "$a"/*; do [ -e "$s" ] || continue; '
    'r=$(btrfs subvolume show "$s" 2>/dev/null | awk \'$1 == "Received" && $2 == "UUID:" {print $3}\'); '
    'echo "received=${s##*/} ${r:--}"; done; '
    "else echo received_area=folder; fi"
)


@dataclass(frozen=True)
class ShippingFacts:
    subvolumes: frozenset[str] = frozenset()  # production: data paths that are subvolumes
    snapshots: tuple[tuple[str, str, str], ...] = ()  # production: (data path, name, uuid)
    changed: frozenset[tuple[str, str]] = frozenset()  # production: (data path, name) changed since taken
    area: str = "absent"  # mirror: absent | subvolume | folder
    received: tuple[tuple[str, str], ...] = ()  # mirror: (name, received uuid or "-")


def parse_production_facts(output: str) -> ShippingFacts:
    subvolumes, snapshots, changed = set(), [], set()
    for line in output.splitlines():
        key, _, value = line.partition("=")
        words = value.split(" ")
        if key == "ship_subvolume":
            subvolumes.add(value)
        elif key == "ship_snapshot" and len(words) == 4:
            snapshots.append(tuple(words[:3]))
            if words[3] != "kept":
                changed.add((words[0], words[1]))
    return ShippingFacts(frozenset(subvolumes), tuple(snapshots), frozenset(changed))


def parse_mirror_facts(output: str) -> ShippingFacts:
    area, received = "absent", []
    for line in output.splitlines():
        key, _, value = line.partition("=")
        if key == "received_area":
            area = value.strip()
        elif key == "received" and len(value.split(" ")) == 2:
            received.append(tuple(value.split(" ")))
    return ShippingFacts(area=area, received=tuple(received))


# ---------------------------------------------------------------------------------------
# The decision


@dataclass(frozen=True)
class Shipment:
    """One data path's snapshot on its way: production's new snapshot and its parent."""

    path: str
    snapshot: str  # production's path of the new snapshot
    name: str  # its name, which is the received subvolume's name in the mirror's area
    parent: str | None = None  # production's path of the parent snapshot; None: a full send
    parent_name: str | None = None


@dataclass(frozen=True)
class ShippingPlan:
    ship: bool
    reason: str  # one sentence, logged
    shipments: tuple[Shipment, ...] = ()
    rest: tuple[str, ...] = ()  # declared roots that still travel by rsync
    stale: tuple[str, ...] = ()  # received subvolumes no longer any use (removed before an rsync copy)


SHIPPING_PREFERENCE = "btrfs-send"  # the fleet's replication.copy_backend that ships snapshots


def plan_shipping(
    copy_id: str,
    data_paths: list[str],
    roots: list[str],
    production: ShippingFacts,
    mirror: ShippingFacts,
    snapshot_copies: bool,
    preference: str = SHIPPING_PREFERENCE,
    refusal: str | None = None,
) -> ShippingPlan:
    """Ship each data path's snapshot when both ends allow it; otherwise say why not.
    ``preference`` is the fleet's ``replication.copy_backend``: only ``btrfs-send`` ships (what a
    stream writes lands in the received area, outside the service's quota group: the space bound
    of a shared mirror does not hold it back yet)."""

    def no(reason: str, stale: tuple[str, ...] = ()) -> ShippingPlan:
        return ShippingPlan(False, f"rsync copy, no snapshot shipping: {reason}", stale=stale)

    if not snapshot_copies:
        return no("the mirror does not keep snapshot copies")
    if preference != SHIPPING_PREFERENCE:
        return no(refusal or f"the fleet file asks for {preference}, not {SHIPPING_PREFERENCE} (snapshots filled by rsync)")
    if mirror.area == "folder":
        return no("the received area on the mirror is a folder, not a subvolume (remove it to let hotspare make one)")
    names = [posixpath.basename(path) for path in data_paths]
    if len(set(names)) != len(names) or any("@" in name or not name for name in names):
        return no("the data paths' last names are not distinct words without '@'")
    for path in data_paths:
        if path not in production.subvolumes:
            return no(f"{path} is not a btrfs subvolume on production (with its folder on the same mount)")
        for root in roots:
            if root != path and (root.startswith(path.rstrip("/") + "/") or path.startswith(root.rstrip("/") + "/")):
                return no(f"the declared path {root} overlaps the data path {path}")
    on_production = {(path, name): uuid for path, name, uuid in production.snapshots if uuid != "-"}
    received = {name: uuid for name, uuid in mirror.received if uuid != "-"}
    shipments, first = [], []
    for path in data_paths:
        prefix = posixpath.basename(path) + "@"
        # a parent changed on production after it was taken: a stream computed from it leaves out
        # what the change undid (a deletion, say), and the copy would keep a file production no
        # longer has. Never a parent: the copy goes by rsync, whose listing follows production.
        changed = sorted(
            name
            for (owner, name), uuid in on_production.items()
            if owner == path and (owner, name) in production.changed and received.get(name) == uuid
        )
        if changed:
            stale = tuple(name for name, _ in mirror.received if name.startswith(prefix))
            return no(
                f"production's snapshot {changed[-1]} of {path} changed after it was taken (its btrfs generation "
                "moved), so it cannot be the parent of a stream; this copy goes by rsync and the next one starts a "
                "new chain with a full send",
                stale,
            )
        common = sorted(
            name
            for (owner, name), uuid in on_production.items()
            if owner == path and received.get(name) == uuid and name != snapshot_name(path, copy_id)
        )
        new = Shipment(path, production_snapshot(path, copy_id), snapshot_name(path, copy_id))
        if common:
            parent = common[-1]
            shipments.append(
                Shipment(new.path, new.snapshot, new.name, production_snapshot(path, parent.split("@", 1)[1]), parent)
            )
        elif any(name.startswith(prefix) for name in received):
            stale = tuple(name for name, _ in mirror.received if name.startswith(prefix))
            return no(
                f"the last shipped snapshot of {path} is missing on production or on the mirror; this copy goes "
                "by rsync and the next one starts a new chain with a full send",
                stale,
            )
        else:
            shipments.append(new)
            first.append(path)
    rest = tuple(root for root in roots if root not in data_paths)
    how = ", ".join(
        f"{s.path} incremental from {s.parent_name}" if s.parent else f"{s.path} in full (first shipment)" for s in shipments
    )
    return ShippingPlan(True, f"snapshot shipping (btrfs send | receive): {how}", tuple(shipments), rest)


# ---------------------------------------------------------------------------------------
# Production: take the snapshots, send them, prune them


# Run inside the key install's command (``transfer_keys.KEYS_SCRIPT``'s HOTSPARE_ALSO): pairs
# PATH SNAPSHOT. A snapshot already there (a retried copy step) is kept: its moment is the copy's.
TAKE_SCRIPT = (
    'while [ $# -ge 2 ]; do p=$1 s=$2; shift 2; mkdir -p -m 0700 "${s%/*}" || exit 1; '
    '[ -e "$s" ] || btrfs -q subvolume snapshot -r "$p" "$s" || exit 1; '
    'u=$(btrfs subvolume show "$s" | awk \'$1 == "UUID:" {print $2}\'); echo "hotspare-snapshot=$p ${u:--}"; done'
)

# Run inside the key removal's command: every hotspare snapshot beside the named ones (same
# folder, same data path's name) is deleted; the named ones (this copy's, its parent) stay.
PRUNE_SCRIPT = (
    "for keep do d=${keep%/*}; n=${keep##*/}; b=${n%%@*}; "
    'for s in "$d/$b@"*; do [ -e "$s" ] || continue; case " $* " in *" $s "*) continue;; esac; '
    'btrfs -q subvolume delete "$s" >/dev/null || exit 1; done; done'
)

SEND_SCRIPT = f"""#!/bin/sh
# hotspare transfer send: the forced command of a per-transfer key. argv: SERVICE, then pairs
# SNAPSHOT PARENT ("-" for none), written into the key line by the orchestrator. It never reads
# the client's command: it sends exactly those read-only snapshots, one stream after the other.
# Installed and replaced by hotspare.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
service=$1; shift
[ $# -ge 2 ] || {{ echo "hotspare transfer send ($service): nothing to send" >&2; exit 1; }}
while [ $# -ge 2 ]; do
  snapshot=$1 parent=$2; shift 2
  case $snapshot in */{SNAPSHOT_FOLDER}/*@*) ;; *) echo "hotspare transfer send ($service): not a hotspare snapshot: $snapshot" >&2; exit 1;; esac
  if [ "$parent" = - ]; then btrfs send -q "$snapshot" || exit 1
  else btrfs send -q -p "$parent" "$snapshot" || exit 1; fi
done
"""


def take_words(shipments: tuple[Shipment, ...]) -> list[str]:
    return [word for shipment in shipments for word in (shipment.path, shipment.snapshot)]


def send_words(shipments: tuple[Shipment, ...]) -> list[str]:
    """The forced command's arguments after the service: snapshot, parent (or "-")."""
    return [word for shipment in shipments for word in (shipment.snapshot, shipment.parent or "-")]


def kept_snapshots(shipments: tuple[Shipment, ...]) -> list[str]:
    return [path for shipment in shipments for path in (shipment.snapshot, shipment.parent) if path]


def parse_taken(output: str) -> dict[str, str]:
    """{data path: UUID of its new snapshot} from ``TAKE_SCRIPT``'s lines."""
    taken = {}
    for line in output.splitlines():
        if line.startswith("hotspare-snapshot="):
            path, _, uuid = line.split("=", 1)[1].partition(" ")
            taken[path] = uuid.strip()
    return taken


# ---------------------------------------------------------------------------------------
# The mirror: receive (confined) beside rsync for the rest, then the copy

RECEIVE_SCRIPT = 'mount --bind -- "$1" "$2" && exec btrfs receive -q --chroot -E 1 "$2"'

# A stream that stops coming ends the shipment: production's sender is production's (a hostile one
# may open the stream and send nothing, which no SSH keepalive notices: its end answers them), and
# a shipment waiting for ever would hold the service's lock and a slot of the shared mirror. btrfs
# send writes while it walks the changed extents; this many seconds without a byte is a sender
# that stopped. Generous on purpose: a slow link slows the bytes, it does not stop them.
STREAM_IDLE_SECONDS = 300
STALLED = "stalled"  # what the relay writes in place of the byte count when the stream stopped
# Relays the sender's stream (the command after its two arguments: idle seconds, count file) to its
# standard output, counting the bytes (for ``stream_bytes``); when no byte came for the idle
# seconds it stops the sender, says so on standard error and writes STALLED in the count file.
# perl-base is essential in Debian; 4-argument select and sysread need no module.
STREAM_RELAY = r"""
my ($idle, $count) = (shift, shift);
$SIG{PIPE} = "IGNORE";  # a receive that stopped: the write fails, the sender is stopped below
my $pid = open(my $in, "-|", @ARGV) or die "hotspare: the stream could not be started: $!
";
binmode $in; binmode STDOUT;
my ($total, $stalled, $buffer, $wanted) = (0, 0, "", "");
vec($wanted, fileno($in), 1) = 1;
while (1) {
  my $ready = select(my $ready_set = $wanted, undef, undef, $idle);
  next if $ready < 0;
  if ($ready == 0) {
    kill "TERM", $pid; $stalled = 1;
    print STDERR "hotspare: no byte of the stream came for $idle s; the sender was stopped
";
    last;
  }
  my $got = sysread($in, $buffer, 1048576);
  last unless $got;
  for (my $at = 0; $at < $got;) {
    my $put = syswrite(STDOUT, $buffer, $got - $at, $at);
    defined $put or do { kill "TERM", $pid; exit 1 };
    $at += $put;
  }
  $total += $got;
}
if (open(my $out, ">", $count)) { print $out ($stalled ? "STALLED
" : "$total bytes
"); close $out }
close $in;
exit($stalled ? 124 : $? >> 8);
""".replace("STALLED", STALLED)

# One mirror command per shipment: $1 run folder, $2 received area, $3 receive view, $4
# production's login, $5 its port, $6 how many words the copy's command has, that command (the
# copy made from the received subvolumes, run only when the receive, the area and rsync all went
# well; its exit status on a ``hotspare-copy-exit=`` line), then rsync's argv for the other paths
# (none: no rsync).
# stdin: production's known_hosts line, the rsync key, the send key (each key ends with its
# END line). HOTSPARE_NAMES: the subvolume names this stream must create. The receive runs in a
# mount namespace of its own with the area bound on the view (see the module's docstring);
# whatever else appeared in the area during the receive is named and removed. The stream passes
# through ``STREAM_RELAY``, which stops a sender silent for ``STREAM_IDLE_SECONDS``.
SHIP_SCRIPT = r"""
dir=$1 area=$2 view=$3 login=$4 port=$5 count=$6; shift 6
umask 077; mkdir -p "$dir" || exit 1; trap 'rm -rf "$dir"' EXIT
IFS= read -r line && printf '%s\n' "$line" > "$dir/known_hosts" || exit 1
awk -v first="$dir/key" -v second="$dir/send_key" 'BEGIN { out = first } { print > out } /^-----END / { if (out == first) out = second; else exit }' || exit 1
[ -s "$dir/send_key" ] || { echo "hotspare: no send key on stdin" >&2; exit 1; }
if [ ! -e "$area" ]; then btrfs -q subvolume create "$area" || exit 1; fi
mkdir -p "$view" || exit 1
for name in $HOTSPARE_NAMES; do if [ -e "$area/$name" ]; then btrfs -q subvolume delete "$area/$name" >/dev/null 2>&1 || rm -rf -- "$area/$name"; fi; done
ls -A "$area" > "$dir/before" || exit 1
(perl -e "$RELAY" "$STREAM_IDLE" "$dir/count" ssh -i "$dir/send_key" -p "$port" SSH_OPTIONS -o UserKnownHostsFile="$dir/known_hosts" "$login" 2>"$dir/send.err" |
  unshare --mount --propagation private -- sh -c "$RECEIVE" sh "$area" "$view" >/dev/null 2>"$dir/receive.err"
 status=$?; if grep -qx stalled "$dir/count" 2>/dev/null; then status=124; fi; echo "$status" > "$dir/receive.exit") &
receiving=$!
rc=0
if [ $# -gt "$count" ]; then ( shift "$count"; exec "$@" ) & echo $! > "$dir/transfer.pid"; wait $!; rc=$?; fi
wait $receiving
# the stream is in: lift the service's quota limit until the end (deleting a subvolume reserves metadata in its folder's group, refused at the limit; only metadata changes follow)
if [ -n "${QLIMIT:-}" ] && btrfs qgroup limit none "$QGROUP" "$area" 2>/dev/null; then trap 'btrfs qgroup limit "$QLIMIT" "$QGROUP" "$area"; rm -rf "$dir"' EXIT; trap 'exit 1' HUP INT TERM; fi
received=$(cat "$dir/receive.exit" 2>/dev/null || echo 255)
[ "$received" = 0 ] || for name in $HOTSPARE_NAMES; do [ ! -e "$area/$name" ] || btrfs -q subvolume delete "$area/$name" >/dev/null 2>&1; done
printf 'hotspare-receive-exit=%s\n' "$received"
printf 'hotspare-stream-bytes=%s\n' "$(sed -n 's/^\([0-9]*\) bytes.*/\1/p' "$dir/count" 2>/dev/null)"
ls -A "$area" | while IFS= read -r name; do
  grep -qxF -- "$name" "$dir/before" && continue
  case " $HOTSPARE_NAMES " in *" $name "*) continue;; esac
  printf 'hotspare-unexpected=%s\n' "$name"
  echo "$name" >> "$dir/unexpected"
  btrfs -q subvolume delete "$area/$name" >/dev/null 2>&1 || rm -rf -- "$area/$name"
done
# a stream that made anything else is refused whole: what it received under the expected names goes
# too, or it would be the next shipment's parent with whatever the stream put in it
if [ -e "$dir/unexpected" ]; then for name in $HOTSPARE_NAMES; do [ ! -e "$area/$name" ] || btrfs -q subvolume delete "$area/$name" >/dev/null 2>&1; done; fi
cat "$dir/send.err" "$dir/receive.err" 2>/dev/null | tail -n 5 | sed 's/^/hotspare-receive: /'
index=0; for word do shift; if [ "$index" -lt "$count" ]; then set -- "$@" "$word"; fi; index=$((index + 1)); done
if [ "$count" -gt 0 ] && [ "$received" = 0 ] && [ ! -e "$dir/unexpected" ]; then
  case $rc in 0|23|24) "$@" </dev/null; echo "hotspare-copy-exit=$?";; esac
fi
exit $rc
""".replace("SSH_OPTIONS", SSH_OPTIONS)


def ship_argv(
    service: str,
    directory: str,
    login: str,
    port: int,
    names: list[str],
    rsync_argv: list[str] | None,
    then: list[str] = (),
    bound: tuple[str, int] | None = None,
) -> list[str]:
    """The mirror's one command: receive the stream, rsync the other paths meanwhile, then (when
    all went well) ``then``: the copy from the received subvolumes (``snapshot_copy_argv``).
    ``bound``: (quota group, limit) lifted after the receive for the clean-up, then set again."""
    return [
        "env",
        *([f"QGROUP={bound[0]}", f"QLIMIT={bound[1]}"] if bound else []),
        f"RECEIVE={RECEIVE_SCRIPT}",
        f"RELAY={STREAM_RELAY}",
        f"STREAM_IDLE={STREAM_IDLE_SECONDS}",
        f"HOTSPARE_NAMES={' '.join(names)}",
        "sh",
        "-c",
        SHIP_SCRIPT,
        "sh",
        directory,
        received_area(service),
        RECEIVE_VIEW,
        login,
        str(port),
        str(len(then)),
        *then,
        *(rsync_argv or []),
    ]


def copy_exit(output: str) -> int | None:
    """The exit status of the copy ``ship_argv`` made after the receive (None: it did not run)."""
    for line in output.splitlines():
        if line.startswith("hotspare-copy-exit="):
            value = line.split("=", 1)[1].strip()
            return int(value) if value.isdigit() else 255
    return None


def receive_argv(area: str) -> list[str]:
    """The confined receive alone (stream on stdin): what ``SHIP_SCRIPT`` runs for the stream."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        'mkdir -p "$2" && ' + RECEIVE_SCRIPT,
        "sh",
        area,
        RECEIVE_VIEW,
    ]


def ship_stdin(known_hosts_line: str, rsync_key: str, send_key: str) -> bytes:
    return (known_hosts_line.strip() + "\n" + rsync_key.strip() + "\n" + send_key.strip() + "\n").encode()


def stream_bytes(output: str) -> int:
    """The size of the send stream that reached receive (0 when nothing was shipped)."""
    for line in output.splitlines():
        if line.startswith("hotspare-stream-bytes="):
            value = line.split("=", 1)[1].strip()
            return int(value) if value.isdigit() else 0
    return 0


@dataclass(frozen=True)
class Received:
    exit_status: int  # btrfs receive's (255: it never reported)
    unexpected: tuple[str, ...]  # subvolumes or files the stream made besides its snapshots
    messages: tuple[str, ...]  # the last lines ssh and receive wrote


def parse_received(output: str) -> Received:
    status, unexpected, messages = 255, [], []
    for line in output.splitlines():
        if line.startswith("hotspare-receive-exit="):
            value = line.split("=", 1)[1].strip()
            status = int(value) if value.isdigit() else 255
        elif line.startswith("hotspare-unexpected="):
            unexpected.append(line.split("=", 1)[1])
        elif line.startswith("hotspare-receive: "):
            messages.append(line.split(": ", 1)[1])
    return Received(status, tuple(unexpected), tuple(messages))


# $1 the working subvolume, $2 the copy's place, $3 the received area, then triples PATH NAME
# UUID. The copy is the working tree (the other paths) with each data path a snapshot of its
# received subvolume, whose received UUID must be production's snapshot's UUID. The snapshot is
# made writable, then read-only: a read-only snapshot would inherit the received UUID, and only
# the area may hold received UUIDs (receive finds parents by them; a repair could not make the
# copy writable). Then the area keeps only these and HOTSPARE_KEEP (the parents).
SNAPSHOT_SCRIPT = (
    "work=$1; copy=$2; area=$3; shift 3; " + QGROUP_OPTION + 'if [ -e "$copy" ]; then sh -c "$REMOVE" sh "$copy" || exit 1; fi; '
    'btrfs -q subvolume snapshot $qi "$work" "$copy" || exit 1; '
    'names=; while [ $# -ge 3 ]; do p=$1 name=$2 uuid=$3; shift 3; names="$names $name"; '
    'got=$(btrfs subvolume show "$area/$name" 2>/dev/null | awk \'$1 == "Received" && $2 == "UUID:" {print $3}\'); '
    'if [ -z "$uuid" ] || [ "$got" != "$uuid" ]; then echo "hotspare-mismatch=$p ${got:-none}"; exit 4; fi; '
    'd="$copy/tree$p"; mkdir -p "${d%/*}" || exit 1; if [ -e "$d" ]; then rmdir "$d" || exit 1; fi; '
    'btrfs -q subvolume snapshot $qi "$area/$name" "$d" && btrfs property set -ts "$d" ro true || exit 1; '
    'echo "hotspare-shipped=$p $uuid"; done; '
    'btrfs property set -ts "$copy" ro true || exit 1; '
    'for s in "$area"/*; do [ -e "$s" ] || continue; case " $names $HOTSPARE_KEEP " in *" ${s##*/} "*) continue;; esac; '
    'btrfs -q subvolume delete "$s" >/dev/null 2>&1 || rm -rf -- "$s"; done'
)


def snapshot_copy_argv(
    service: str,
    work: str,
    copy: str,
    shipments: tuple[Shipment, ...],
    uuids: dict[str, str],
    remove_script: str,
    qgroup: str | None = None,
) -> list[str]:
    """The copy made from the working tree and the received subvolumes, its snapshots in the
    service's quota group ``qgroup`` (a snapshot of a group member made outside the group makes
    every group's accounting inconsistent, and their limits then hold back nothing)."""
    words = [word for shipment in shipments for word in (shipment.path, shipment.name, uuids.get(shipment.path, ""))]
    keep = " ".join(shipment.parent_name for shipment in shipments if shipment.parent_name)
    group = [f"QGROUP={qgroup}"] if qgroup else []
    return [
        "env",
        f"REMOVE={remove_script}",
        f"HOTSPARE_KEEP={keep}",
        *group,
        "sh",
        "-c",
        SNAPSHOT_SCRIPT,
        "sh",
        work,
        copy,
        received_area(service),
        *words,
    ]


def restart_chain_argv(service: str) -> list[str]:
    """Remove every received subvolume of the service: the next run finds no parent on the
    mirror, copies by rsync (whose listing and ``--delete`` follow production) and starts a new
    chain. After a shipped copy failed verification: its parent cannot be trusted."""
    return [
        "sh",
        "-c",
        'for n in "$1"/*; do [ -e "$n" ] || continue; btrfs -q subvolume delete "$n" >/dev/null 2>&1 || rm -rf -- "$n"; done',
        "sh",
        received_area(service),
    ]


def remove_stale_argv(service: str, names: tuple[str, ...]) -> list[str]:
    """Remove received subvolumes that can no longer be a parent (a chain broken on one end)."""
    return [
        "sh",
        "-c",
        'a=$1; shift; for n do btrfs -q subvolume delete "$a/$n" >/dev/null 2>&1 || rm -rf -- "$a/$n"; done',
        "sh",
        received_area(service),
        *names,
    ]


# Two ends of a shipped copy agree on: each data path's received subvolume is production's
# snapshot (received UUID), and the copy's data path is a snapshot of it (parent UUID). $1 the
# copy's tree, $2 the area, then pairs PATH NAME. One line per path.
CHAIN_SCRIPT = (
    "tree=$1 area=$2; shift 2; while [ $# -ge 2 ]; do p=$1 n=$2; shift 2; "
    'r=$(btrfs subvolume show "$area/$n" 2>/dev/null | awk \'$1 == "UUID:" {u=$2} $1 == "Received" && $2 == "UUID:" {r=$3} END {print u, r}\'); '
    'c=$(btrfs subvolume show "$tree$p" 2>/dev/null | awk \'$1 == "Parent" && $2 == "UUID:" {print $3}\'); '
    'echo "chain=$p $r ${c:--}"; done'
)


def chain_argv(service: str, tree: str, shipped: dict[str, str]) -> list[str]:
    """``shipped``: {data path: received subvolume name}."""
    return [
        "sh",
        "-c",
        CHAIN_SCRIPT,
        "sh",
        tree,
        received_area(service),
        *[word for path, name in shipped.items() for word in (path, name)],
    ]


def judge_chain(output: str, expected: dict[str, str]) -> list[str]:
    """Problems (sentences) from ``CHAIN_SCRIPT``'s lines; ``expected``: {path: production's UUID}."""
    seen = {}
    for line in output.splitlines():
        if line.startswith("chain="):
            words = line.split("=", 1)[1].split(" ")
            if len(words) == 4:
                seen[words[0]] = words[1:]
    problems = []
    for path, uuid in expected.items():
        own, received, parent = seen.get(path, ["-", "-", "-"])
        if received != uuid:
            problems.append(
                f"{path}: the received snapshot's received UUID is {received or 'none'}, production's snapshot is {uuid}"
            )
        elif parent != own:
            problems.append(f"{path}: the copy is not a snapshot of the received subvolume")
    return problems


# $1 a copy's root, $2 true|false: the copy and every subvolume in it read-only or writable
# (a repair of a shipped copy writes into the copy itself; its snapshots own their blocks).
WRITABLE_SCRIPT = (
    'c=$1 v=$2; btrfs property set -ts "$c" ro "$v" || exit 1; '
    'find "$c" -mindepth 1 -xdev -type d -inum 256 -exec btrfs property set -ts {} ro "$v" ";"'
)


def writable_argv(copy_root: str, writable: bool) -> list[str]:
    return ["sh", "-c", WRITABLE_SCRIPT, "sh", copy_root, "false" if writable else "true"]
