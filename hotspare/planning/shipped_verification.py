"""Verifying a shipped copy without listing it: the chain of UUIDs plus a rolling slice by a time budget.

Pure: a program text, its argument list and parsers. A shipped copy's data is, by construction,
production's read-only snapshot: btrfs checksums every block on both ends (a bad block is a read
error, which scrub and the slice both surface), and the received UUID ties the received subvolume
to production's snapshot (``snapshot_shipping.judge_chain``). What the chain cannot prove is that
the bytes landed as sent (a bug, a hostile mirror-side process, a disk that lies), so each
verification also compares a **slice** of files by SHA-256 and metadata: production walks its
snapshot in a fixed order (path components compared in turn, so a subtree before the cursor is
skipped without being read) from the pass's cursor, hashing until its time budget is spent; the
mirror hashes the same files in the copy (``file_digests``). No listing of either tree leaves a
host; the orchestrator holds only the slice. The pass restarts at the beginning once it reaches
the end; ``verify --full`` still compares everything with ``rsync -anc``.

Because the snapshot does not change, a difference is never "changed during the copy": it is
damage, or a stream that did not write what production sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Each verification of a shipped copy hashes files on production's snapshot for this long (and
# the mirror the same files): the rolling pass's share of a run, whatever the tree's size.
SLICE_SECONDS = 1.0

# argv: BUDGET_SECONDS CURSOR, then pairs PATH SNAPSHOT. One JSON line per hashed file in the
# format of ``file_digests.PROGRAM`` (path = the data path's own absolute name), then one line
# {"slice": {"complete": bool, "cursor": last path}}. A file the budget interrupts is not named.
PROGRAM = r'''
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
        if time.monotonic() >= deadline:
            complete = False
            return False
        digest, answer = hashlib.sha256(), {"path": path}
        try:
            with open(full, "rb", buffering=0) as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                    if time.monotonic() >= deadline:
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
'''


def slice_argv(budget_seconds: float, cursor: str, snapshots: dict[str, str]) -> list[str]:
    """Production's command: ``snapshots`` is {data path: production snapshot}."""
    return ["python3", "-IS", "-c", PROGRAM, f"{budget_seconds:g}", cursor,
            *[word for path, snapshot in sorted(snapshots.items()) for word in (path, snapshot)]]


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
