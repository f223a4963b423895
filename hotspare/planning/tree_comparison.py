"""Comparing production's tree with a copy on the mirror without the listings passing through us.

Pure: the requests, their headers and a parser of the mirror's answer; the two programs' texts
are in ``planning/tree_programs.py``. No network.

A replication's verification needs, for every regular file of the service's paths, whether the
copy holds it with the same size and mtime, plus checksums of what changed and of a rolling
slice (``planning/verification_scope.py``). Listing both whole trees into the orchestrator made
its memory grow with the number of files (~1.5 KiB a file: 1.5 GiB for a million). Instead, one
program runs on each host:

- **production** (``LISTER``) lists its paths with ``find | sed | sort`` (C) in one fixed order
  (the names' components compared one by one, by their bytes) into a temporary file, reads it
  once to size the rolling slice and once more to write one NUL-separated record per regular
  file: ``L path size mtime_ns``, followed by ``D`` (checksum and metadata) or ``X`` (why it
  could not read it) for each file it hashes: the files the copy step itemized, those modified
  since the previous verified copy began, and the rolling slice (the next files after the pass's
  cursor, sized as before: what the pass has left divided by the runs left before its deadline).
  An ``E`` ends the answer.
- **the mirror** (``COMPARER``) lists the copy the same way while production lists its tree,
  reads production's stream on stdin and merges the two, hashes its own side of every file
  production hashed, and answers with the differences only (JSON lines) and one summary line.

The orchestrator pipes production's output into the mirror's input through a bounded buffer
(``adapters/ssh.pipe``): it never parses, or holds, the listing. Its memory follows the
differences (capped at ``MAX_DIFFERENCES`` lines), not the number of files.

Production may be hostile: the mirror treats every byte of the stream as untrusted. A field is at
most ``MAX_FIELD`` bytes, names are NUL-separated (any other byte may be in a name, a newline too),
paths must be absolute, below one of the service's roots, without ``.``/``..``/empty parts and in
strictly increasing order, numbers are bounded digit strings (an mtime may have a minus sign), a checksum is 64 hex digits, the
record count is bounded, and the answer must end with ``E``. Anything else ends the program with a
one-line reason (exit ``MALFORMED``): the verification fails, nothing is marked verified (a host
that cannot list its own side exits ``UNLISTED``). The
mirror opens its side of a named file one folder at a time without following any link
(``O_NOFOLLOW`` at every level), so a name production makes up can never make the mirror read
outside the copy. What production says about its own files (their checksums, which files it
hashed) is production's word, as its data is: a production that lies can only spoil the
verification of its own copy, never another's, and never the mirror.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hotspare.planning.tree_programs import COMPARER, LISTER

MAX_FIELD = 4096  # PATH_MAX on Linux: no legitimate name is longer
MAX_DIFFERENCES = 20_000  # lines of differences the mirror sends back; past it only counted
MALFORMED = 3  # the mirror's exit status when production's answer breaks the format
UNLISTED = 4  # a host's exit status when its own listing failed (find, sed or sort)
LIMIT_SLACK_FILES = 100_000  # records allowed beyond 4 x the files production had at the copy


@dataclass(frozen=True)
class Request:
    """What one comparison asks of both hosts (plain values: they travel as JSON headers)."""

    roots: tuple[str, ...]
    excludes: tuple[str, ...] = ()
    since: float | None = None  # production's clock: files modified at or after it are hashed
    itemized: tuple[str, ...] = ()  # files the copy step changed: hashed
    cursor: str = ""  # the rolling pass's last compared path ("": from the start)
    runs: int = 0  # runs left before the pass's deadline (0: no slice)
    probes: tuple[str, ...] = ()  # paths whose production mtime the answer reports
    max_records: int = 10_000_000
    # (root, folder on production it is read from): a shipped root's own snapshot, which cannot
    # change after the copy, so a difference there is never explained by a change on production
    sources: tuple[tuple[str, str], ...] = ()


def disjoint_roots(roots: list[str]) -> list[str]:
    """The roots in walking order, without those inside another (each file listed once)."""
    ordered = sorted(
        {root.rstrip("/") or "/" for root in roots}, key=lambda root: root.encode("utf-8", "surrogateescape").split(b"/")
    )
    kept: list[str] = []
    for root in ordered:
        if not any(root == outer or root.startswith(outer.rstrip("/") + "/") for outer in kept):
            kept.append(root)
    return kept


def record_limit(known_files: int) -> int:
    """How many records production's answer may hold: four times what it had at the copy, plus slack."""
    return 4 * max(known_files, 0) + LIMIT_SLACK_FILES


def _framed(document: dict[str, Any]) -> bytes:
    body = json.dumps(document, ensure_ascii=True).encode()
    return b"%d\n" % len(body) + body


def production_header(request: Request) -> bytes:
    return _framed(
        {
            "roots": disjoint_roots(list(request.roots)),
            "excludes": list(request.excludes),
            "since_ns": _ns(request.since),
            "itemized": list(request.itemized),
            "cursor": request.cursor,
            "runs": request.runs,
            "sources": [list(pair) for pair in request.sources],
        }
    )


def mirror_header(request: Request, tree: str) -> bytes:
    return _framed(
        {
            "roots": disjoint_roots(list(request.roots)),
            "tree": tree,
            "excludes": list(request.excludes),
            "since_ns": _ns(request.since),
            "itemized": list(request.itemized),
            "cursor": request.cursor,
            "runs": request.runs,
            "probes": list(request.probes),
            "max_records": request.max_records,
            "max_differences": MAX_DIFFERENCES,
            "max_field": MAX_FIELD,
        }
    )


def _ns(moment: float | None) -> int | None:
    return None if moment is None else int(moment * 1e9)


def production_argv() -> list[str]:
    """The lister, run by production's own Python (-I -S: nothing from its path or environment)."""
    return ["python3", "-IS", "-c", LISTER]


def mirror_argv() -> list[str]:
    return ["python3", "-IS", "-c", COMPARER]


@dataclass(frozen=True)
class TreeDifference:
    kind: str  # content | metadata | missing | extra | unreadable | unreadable-copy | vanished
    path: str
    production_mtime: float | None  # None: production does not have it (or it vanished)


@dataclass(frozen=True)
class Answer:
    differences: tuple[TreeDifference, ...]
    probes: dict[str, float | None] = field(default_factory=dict)  # {path: production's mtime}
    files: int = 0
    bytes: int = 0
    left_files: int = 0  # after the cursor, before this run
    left_bytes: int = 0
    slice_files: int = 0
    slice_bytes: int = 0
    hashed_files: int = 0
    hashed_bytes: int = 0
    difference_count: int = 0
    truncated: bool = False
    complete: bool = False  # the slice reached the end of the tree
    next_cursor: str | None = None


class AnswerError(ValueError):
    """The mirror's answer is not the comparer's (a broken or replaced program)."""


def parse_answer(output: str) -> Answer:
    """The mirror's JSON lines. The mirror is ours, but it relays production's names: every
    field is checked for its type, and an answer without its summary is an error."""
    differences, probes, summary = [], {}, None
    for number, line in enumerate(output.splitlines(), 1):
        try:
            item = json.loads(line)
        except ValueError:
            raise AnswerError(f"line {number} is not JSON") from None
        if not isinstance(item, dict):
            raise AnswerError(f"line {number} is not an object")
        if "summary" in item:
            summary = item["summary"]
        elif "probe" in item:
            probes[_text(item["probe"], number)] = _moment(item.get("m"), number)
        else:
            differences.append(
                TreeDifference(_text(item.get("d"), number), _text(item.get("p"), number), _moment(item.get("m"), number))
            )
    if not isinstance(summary, dict):
        raise AnswerError("no summary line")
    numbers: dict[str, Any] = {
        name: summary.get(name)
        for name in (
            "files",
            "bytes",
            "left_files",
            "left_bytes",
            "slice_files",
            "slice_bytes",
            "hashed_files",
            "hashed_bytes",
            "differences",
        )
    }
    if not all(isinstance(value, int) and value >= 0 for value in numbers.values()):
        raise AnswerError("the summary's counts are not whole numbers")
    cursor = summary.get("next_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise AnswerError("the summary's cursor is not text")
    difference_count = numbers.pop("differences")
    return Answer(
        tuple(differences),
        probes,
        **numbers,
        difference_count=difference_count,
        truncated=bool(summary.get("truncated")),
        complete=bool(summary.get("complete")),
        next_cursor=cursor,
    )


def _text(value: Any, number: int) -> str:
    if not isinstance(value, str):
        raise AnswerError(f"line {number}: a name or kind is not text")
    return value


def _moment(value: Any, number: int) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnswerError(f"line {number}: an mtime is not a number")
    return float(value)
