"""Comparing named files of production and a copy by checksum, each host reading its own files.

A replication's verification compares what changed plus a rolling slice
(``planning/verification_scope.py``): usually a handful of files. Comparing them with
``rsync -anc`` pulled through a transfer key costs a key installed and removed on production and
a new SSH connection from the mirror with the transfer view and rsync's daemon started behind it
(0.5–0.9 s measured on the lab) — more than reading the files. Here instead the orchestrator
sends the same small program to both hosts at once over the connections it already holds; each
reads the named files and answers with a SHA-256, mode, owner and mtime per file. Nothing but
checksums and metadata leaves either host, and no key is made. The whole-tree comparison
(``verify --full``, a first copy) stays with ``rsync -anc``, which also compares links, ACLs
and extended attributes.

Pure: the program is text, the rest parses and compares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Reads NUL-separated absolute paths on stdin; one JSON object per line, per path, in order.
# -I (isolated) and -S (no site): nothing from the host's Python path or environment is loaded.
PROGRAM = r"""
import hashlib, json, os, stat, sys
prefix = sys.argv[1]
for name in sys.stdin.buffer.read().decode("utf-8", "surrogateescape").split("\0"):
    if not name:
        continue
    answer = {"path": name}
    try:
        # no blocking on a FIFO, no following a link put where the listing saw a file
        descriptor = os.open(prefix + name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        with open(descriptor, "rb", buffering=0) as handle:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                answer["error"] = "not a regular file"
            else:
                digest = hashlib.sha256()
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                answer.update(sha256=digest.hexdigest(), mode=info.st_mode, uid=info.st_uid, gid=info.st_gid,
                              size=info.st_size, mtime=info.st_mtime)
    except FileNotFoundError:
        answer["error"] = "vanished"
    except OSError as error:
        answer["error"] = error.strerror or "unreadable"
    sys.stdout.write(json.dumps(answer, ensure_ascii=True) + "\n")
"""


@dataclass(frozen=True)
class Digest:
    """What one host said about one file: its checksum and metadata, or why it could not say."""

    sha256: str = ""
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: float = 0.0
    error: str = ""  # "vanished", "not a regular file", or the read error


@dataclass(frozen=True)
class Comparison:
    """Differences in ``planning/verification.py``'s ``(kind, path)`` form, plus the files that
    could not be judged: unreadable on production, or gone from production since the listing."""

    itemized: tuple[tuple[str, str], ...]
    unreadable: frozenset[str]
    vanished: frozenset[str]
    production_mtimes: dict  # {path: mtime} read on production while hashing


def digest_argv(prefix: str = "") -> list[str]:
    """The program, run by the host's own Python; ``prefix`` (a copy's tree) goes before every path."""
    return ["python3", "-IS", "-c", PROGRAM, prefix]


def nul_separated(paths: list[str]) -> bytes:
    """The program's stdin: the paths, NUL-separated (any byte but NUL may be in a name)."""
    return b"".join(path.encode("utf-8", "surrogateescape") + b"\0" for path in paths)


FIELD_TYPES = {"sha256": str, "mode": int, "uid": int, "gid": int, "size": int, "mtime": float, "error": str}


def parse_digests(output: str) -> dict[str, Digest]:
    """{path: Digest} from the program's output. A line that is not the program's (or a value of
    the wrong type: the host may be compromised) is ignored, so its file counts as unread."""
    digests = {}
    for line in output.splitlines():
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        values = _typed(answer) if isinstance(answer, dict) and isinstance(answer.get("path"), str) else None
        if values is not None:
            digests[answer["path"]] = Digest(**values)
    return digests


def _typed(answer: dict) -> dict | None:
    """The answer's fields, each of its type (a whole number where a float is due is fine), or None."""
    values = {}
    for key, kind in FIELD_TYPES.items():
        if key not in answer:
            continue
        value = answer[key]
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind):
            return None
        values[key] = value
    return values


def compare(files: list[str], production: dict[str, Digest], copy: dict[str, Digest]) -> Comparison:
    """Judge every named file. A file production did not answer for is unreadable (never a
    silent pass); one production no longer has is vanished (a change on production's side)."""
    itemized, unreadable, vanished, mtimes = [], set(), set(), {}
    for path in files:
        ours, theirs = production.get(path), copy.get(path)
        if ours is None or (ours.error and ours.error != "vanished"):
            unreadable.add(path)
            continue
        if ours.error == "vanished":
            vanished.add(path)
            continue
        mtimes[path] = ours.mtime
        if theirs is None or theirs.error == "vanished":
            itemized.append(("missing", path))
        elif theirs.error:
            itemized.append(("unreadable", path))
        elif theirs.sha256 != ours.sha256:
            itemized.append(("content", path))
        elif (theirs.mode, theirs.uid, theirs.gid) != (ours.mode, ours.uid, ours.gid) or abs(theirs.mtime - ours.mtime) > 1e-6:
            itemized.append(("metadata", path))
    return Comparison(tuple(itemized), frozenset(unreadable), frozenset(vanished), mtimes)
