"""Verifying a shipped copy without listing it: the chain of UUIDs plus a rolling slice by a time budget.

Pure: a program text, its argument lists and parsers. A shipped copy's data is, by construction,
production's read-only snapshot: btrfs checksums every block on both ends (a bad block is a read
error, which scrub and the slice both surface), and the received UUID ties the received subvolume
to production's snapshot (``snapshot_shipping.judge_chain``). What the chain cannot prove is that
the bytes landed as sent (a bug, a hostile mirror-side process, a disk that lies), so each
verification also compares a **slice** of files by SHA-256 and metadata. Both hosts walk the same
tree (production its snapshot, the mirror the copy) in the same fixed order (path components
compared in turn, so a subtree before the cursor is skipped without being read) from the pass's
cursor, each hashing until the same time budget is spent, **at the same time**: the slice's files
are known from the cursor, not from production's answer, so the mirror need not wait for it. The
orchestrator compares the files up to the shorter walk's last one (``compare_slices``); the next
slice starts there. No listing of either tree leaves a host; the orchestrator holds only the slice.
The pass restarts at the beginning once both walks reach the end; ``verify --full`` still compares
everything with ``rsync -anc``.

Because the snapshot does not change, a difference is never "changed during the copy": it is
damage, or a stream that did not write what production sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hotspare.planning.file_digests import compare, parse_digests

# Each verification of a shipped copy hashes files for this long on both hosts at once: the
# rolling pass's share of a run, whatever the tree's size. A quarter second, not more: the
# shipped data is already covered every run by btrfs itself (every block checksummed on both
# ends and read back by the rolling scrub, the received UUID tying the copy to production's
# snapshot, the listing compared in full), so the slice is the last line of defence against a
# receive that wrote other bytes than were sent, and a pass over 1.6 GB at ~100 MB per slice
# still ends within twenty runs (twenty minutes at a one-minute RPO).
SLICE_SECONDS = 0.25

# argv: BUDGET_SECONDS CURSOR, then pairs PATH TREE (production: its snapshot; the mirror: the
# copy's data path). One JSON line per hashed file in the format of ``file_digests.PROGRAM``
# (path = the data path's own absolute name), then one line {"slice": {"complete": bool,
# "cursor": last path}}. A file the budget interrupts is not named, but the first file after the
# cursor is always hashed whole: a file larger than the budget can hash still gets its turn, and
# the pass never stalls on it.
PROGRAM = r"""
import hashlib, json, os, stat, sys, time
budget, cursor = float(sys.argv[1]), sys.argv[2]
pairs = list(zip(sys.argv[3::2], sys.argv[4::2]))
deadline = time.monotonic() + budget
key = lambda path: tuple(path.split("/"))
after = key(cursor) if cursor else None
last, complete = cursor, True
def emit(answer):
    sys.stdout.write(json.dumps(answer, ensure_ascii=True) + "\n")
def walk(logical, real):
    global last, complete
    try:
        names = sorted(os.listdir(real))
    except OSError:
        return True
    for name in names:
        path, full = logical + "/" + name, real + "/" + name
        k = key(path)
        if after is not None and k <= after and k != after[:len(k)]:
            continue
        info = os.lstat(full)
        if stat.S_ISDIR(info.st_mode):
            if not walk(path, full):
                return False
            continue
        if not stat.S_ISREG(info.st_mode) or (after is not None and k <= after):
            continue
        first = last == cursor
        if time.monotonic() >= deadline and not first:
            complete = False
            return False
        digest, answer = hashlib.sha256(), {"path": path}
        try:
            with open(full, "rb", buffering=0) as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                    if time.monotonic() >= deadline and not first:
                        complete = False
                        return False
            answer.update(sha256=digest.hexdigest(), mode=info.st_mode, uid=info.st_uid, gid=info.st_gid,
                          size=info.st_size, mtime=info.st_mtime)
        except OSError as error:
            answer["error"] = error.strerror or "unreadable"
        emit(answer)
        last = path
    return True
for logical, real in sorted(pairs):
    if not walk(logical, real):
        break
emit({"slice": {"complete": complete, "cursor": "" if complete else last}})
"""


def slice_argv(budget_seconds: float, cursor: str, snapshots: dict[str, str]) -> list[str]:
    """One host's walk: ``snapshots`` is {data path: the tree to read it from} (production's
    snapshot, or the copy's data path on the mirror)."""
    return [
        "python3",
        "-IS",
        "-c",
        PROGRAM,
        f"{budget_seconds:g}",
        cursor,
        *[word for path, snapshot in sorted(snapshots.items()) for word in (path, snapshot)],
    ]


@dataclass(frozen=True)
class SliceEnd:
    complete: bool  # the pass reached the end of the data (the next starts again at the beginning)
    cursor: str  # where the next slice starts ("" after a complete pass)


def parse_slice_end(output: str, cursor: str) -> SliceEnd:
    """The slice's last line; none (the program died) keeps the old cursor, incomplete."""
    for line in reversed(output.splitlines()):
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        value = answer.get("slice") if isinstance(answer, dict) else None
        if isinstance(value, dict) and isinstance(value.get("complete"), bool) and isinstance(value.get("cursor"), str):
            return SliceEnd(value["complete"], value["cursor"])
    return SliceEnd(False, cursor)


def path_key(path: str) -> tuple[str, ...]:
    """The walk's order: path components compared in turn (``/a/b`` before ``/a.txt``)."""
    return tuple(path.split("/"))


@dataclass(frozen=True)
class SliceComparison:
    files: tuple[str, ...]  # the files both walks covered, compared
    itemized: tuple[tuple[str, str], ...]  # (kind, path): content, metadata, missing, extra, unreadable
    end: SliceEnd  # where the next slice starts


def compare_slices(production_output: str, mirror_output: str, cursor: str) -> SliceComparison:
    """Compare the two walks from ``cursor`` up to where the shorter one stopped.

    Each walk names every regular file it passed, in the same order, so within the part both
    covered a file named by one host only is missing from the copy (or extra in it). A file
    production could not read is "unreadable" (never a silent pass); so is one the mirror could
    not. A walk that said nothing (its program died) covers nothing: the cursor stays."""
    production, mirror = parse_digests(production_output), parse_digests(mirror_output)
    ends = [parse_slice_end(production_output, cursor), parse_slice_end(mirror_output, cursor)]
    stops = [end.cursor for end in ends if not end.complete]
    boundary = min(stops, key=path_key) if stops else None

    def covered(path: str) -> bool:
        if cursor and path_key(path) <= path_key(cursor):
            return False  # before the cursor: a host answered for what it was not asked
        return boundary is None or path_key(path) <= path_key(boundary)

    files = sorted((path for path in {*production, *mirror} if covered(path)), key=path_key)
    itemized = []
    for path in files:
        ours, theirs = production.get(path), mirror.get(path)
        if ours is None:
            itemized.append(("extra", path))
        elif ours.error:
            itemized.append(("unreadable", path))
        else:
            found = compare([path], {path: ours}, {path: theirs} if theirs else {}).itemized
            itemized.extend(found)
    if boundary is None:
        end = SliceEnd(True, "")
    else:  # a walk that covered nothing keeps the old cursor
        end = SliceEnd(False, boundary if boundary and (not cursor or path_key(boundary) > path_key(cursor)) else cursor)
    return SliceComparison(tuple(files), tuple(itemized), end)


# ---------------------------------------------------------------------------------------
# btrfs checksums on the mirror: a rolling scrub by a time budget

# A shipment lets the mirror's filesystem scrub while the run goes on: the shipment's own command
# resumes the scrub (``scrub_start_argv``, in the background, idle I/O priority) once the copy is
# made, and the verification's mirror command, after its walk of the copy, cancels it
# (``scrub_argv``) and reads how far it got: btrfs reads blocks from disk (not the page cache,
# which the freshly received data is still in) and checks them against their checksums. The scrub
# is the filesystem's, not the copy's: cancelled, it resumes where it stopped at the next shipment
# (``btrfs scrub resume``), and a finished pass starts again. Its budget is the time between the
# two (key removal and the walk: about half a second), so it adds no time to a run; a run that
# stops in between leaves it running at idle priority until the next verification cancels it.

# $1 a path on the filesystem. Never fails: a scrub that cannot start is said by the check.
SCRUB_START_SCRIPT = (
    "p=$1; command -v btrfs >/dev/null 2>&1 || exit 0; "
    'btrfs scrub status "$p" 2>/dev/null | grep -q "Status: *running" && exit 0; '
    'btrfs scrub resume -c 3 "$p" >/dev/null 2>&1 || btrfs scrub start -c 3 "$p" >/dev/null 2>&1; exit 0'
)

# $1 a path on the filesystem. Prints ``scrub=`` (ran, idle: none was running, unavailable) and
# then ``btrfs scrub status -R``'s counters, prefixed ``scrub-``.
SCRUB_SCRIPT = r"""
p=$1
command -v btrfs >/dev/null 2>&1 && [ "$(stat -f -c %T "$p" 2>/dev/null)" = btrfs ] || { echo scrub=unavailable; exit 0; }
if btrfs scrub status "$p" 2>/dev/null | grep -q 'Status: *running'; then btrfs scrub cancel "$p" >/dev/null 2>&1; echo scrub=ran
else echo scrub=idle; fi
btrfs scrub status -R "$p" 2>/dev/null | sed -n 's/^[[:space:]]*\([a-z_]*\): *\([0-9][0-9]*\)$/scrub-\1=\2/p; s/^Status: *\(.*\)$/scrub-status=\1/p'
exit 0
"""


def scrub_start_argv(area: str) -> list[str]:
    return ["sh", "-c", SCRUB_START_SCRIPT, "sh", area]


def scrub_argv(area: str) -> list[str]:
    return ["sh", "-c", SCRUB_SCRIPT, "sh", area]


@dataclass(frozen=True)
class ScrubSlice:
    state: str  # ran (cancelled now) | idle (none was running: the pass as it stands) | unavailable | absent
    counters: dict  # btrfs scrub status -R: data_bytes_scrubbed, csum_errors, uncorrectable_errors, ...
    status: str = ""  # the scrub's own status after the slice: finished, aborted (cancelled at the budget), ...

    @property
    def problems(self) -> list[str]:
        """Sentences for damage the scrub found that it could not correct (a corrected error is
        the filesystem's redundancy at work: said in the summary, not a failure)."""
        bad = {name: self.counters.get(name, 0) for name in ("uncorrectable_errors", "unverified_errors")}
        if not any(bad.values()):
            return []
        found = ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in bad.items() if count)
        return [
            f"btrfs scrub of the mirror's filesystem found damage it could not correct ({found}; "
            f"csum errors {self.counters.get('csum_errors', 0)}): check `btrfs device stats` and replace the disk"
        ]

    @property
    def sentence(self) -> str:
        if self.state not in ("ran", "idle"):
            return "no btrfs scrub on the mirror" if self.state == "unavailable" else "no scrub answer"
        done = "finished its pass" if self.status.startswith("finished") else "resumes at the next shipment"
        return (
            f"btrfs scrub: {self.counters.get('data_bytes_scrubbed', 0)} bytes of data checked by checksum in "
            f"this pass so far, {self.counters.get('csum_errors', 0)} csum error(s), "
            f"{self.counters.get('corrected_errors', 0)} corrected; {done}"
        )


def parse_scrub(output: str) -> ScrubSlice:
    state, counters, status = "absent", {}, ""
    for line in output.splitlines():
        if line.startswith("scrub="):
            state = line[6:].strip()
        elif line.startswith("scrub-status="):
            status = line.split("=", 1)[1].strip()
        elif line.startswith("scrub-"):
            name, _, value = line[6:].partition("=")
            if value.strip().isdigit():
                counters[name] = int(value)
    return ScrubSlice(state, counters, status)
