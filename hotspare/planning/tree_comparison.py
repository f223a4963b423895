"""Comparing production's tree with a copy on the mirror without the listings passing through us.

Pure: two program texts, their headers and a parser of the mirror's answer. No network.

A replication's verification needs, for every regular file of the service's paths, whether the
copy holds it with the same size and mtime, plus checksums of what changed and of a rolling
slice (``planning/verification_scope.py``). Listing both whole trees into the orchestrator made
its memory grow with the number of files (~1.5 KiB a file: 1.5 GiB for a million). Instead, one
program runs on each host:

- **production** (``LISTER``) walks its paths in one fixed order (depth first, names sorted by
  their bytes) and writes one NUL-separated record per regular file: ``L path size mtime_ns``,
  followed by ``D`` (checksum and metadata) or ``X`` (why it could not read it) for each file it
  hashes: the files the copy step itemized, those modified since the previous verified copy began,
  and the rolling slice (the next files after the pass's cursor, sized as before:
  what the pass has left divided by the runs left before its deadline). An ``E`` ends the answer.
- **the mirror** (``COMPARER``) reads that stream on stdin, walks the copy in the same order and
  merges the two, hashes its own side of every file production hashed, and answers with the
  differences only (JSON lines) and one summary line.

The orchestrator pipes production's output into the mirror's input through a bounded buffer
(``adapters/ssh.pipe``): it never parses, or holds, the listing. Its memory follows the
differences (capped at ``MAX_DIFFERENCES`` lines), not the number of files.

Production may be hostile: the mirror treats every byte of the stream as untrusted. A field is at
most ``MAX_FIELD`` bytes, names are NUL-separated (any other byte may be in a name, a newline too),
paths must be absolute, below one of the service's roots, without ``.``/``..``/empty parts and in
strictly increasing order, numbers are bounded digit strings, a checksum is 64 hex digits, the
record count is bounded, and the answer must end with ``E``. Anything else ends the program with a
one-line reason (exit ``MALFORMED``): the verification fails, nothing is marked verified. The
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

MAX_FIELD = 4096  # PATH_MAX on Linux: no legitimate name is longer
MAX_DIFFERENCES = 20_000  # lines of differences the mirror sends back; past it only counted
MALFORMED = 3  # the mirror's exit status when production's answer breaks the format
LIMIT_SLACK_FILES = 100_000  # records allowed beyond 4 x the files production had at the copy

# Shared by both programs: the order, the walk and the fleet file's exclude patterns
# (``planning/rsync_outcomes.matches_any``), over bytes names.
COMMON = r'''
import fnmatch, hashlib, json, os, stat, sys

def header():
    size = int(sys.stdin.buffer.readline())
    return json.loads(sys.stdin.buffer.read(size))

def encoded(text):
    return text.encode("utf-8", "surrogateescape")

def key(path):
    return path.split(b"/")

def excluded(path, patterns):
    if not patterns:
        return False
    text = path.decode("utf-8", "surrogateescape")
    name = text.rsplit("/", 1)[-1]
    for pattern in patterns:
        folder = pattern.rstrip("/")
        if pattern.startswith("/") and (text == folder or text.startswith(folder + "/")):
            return True
        if fnmatch.fnmatchcase(text, pattern) or (not pattern.startswith("/") and fnmatch.fnmatchcase(name, pattern)):
            return True
    return False

def real_path(path):
    """Where a listed path is read (production reads a shipped root from its snapshot)."""
    return path

def entries(folder):
    try:
        with os.scandir(folder) as found:
            return sorted(((entry.name, entry) for entry in found), key=lambda pair: pair[0])
    except OSError:
        return []

def walk(root, patterns, prefix=b"", skip=None):
    """(path below prefix, lstat) of every regular file under root, in key order; never follows
    a link. skip(path) True: a folder whose whole subtree may be left out."""
    try:
        info = os.lstat(real_path(prefix + root))
    except OSError:
        return
    if stat.S_ISREG(info.st_mode):
        if not excluded(root, patterns):
            yield root, info
        return
    if not stat.S_ISDIR(info.st_mode):
        return
    stack = [(root, iter(entries(real_path(prefix + root))))]
    while stack:
        folder, children = stack[-1]
        pair = next(children, None)
        if pair is None:
            stack.pop()
            continue
        name, entry = pair
        path = (folder if folder != b"/" else b"") + b"/" + name
        if excluded(path, patterns):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                if skip is None or not skip(path):
                    stack.append((path, iter(entries(real_path(prefix + path)))))
            elif entry.is_file(follow_symlinks=False):
                yield path, entry.stat(follow_symlinks=False)
        except OSError:
            continue

def walk_all(roots, patterns, prefix=b"", skip=None):
    for root in roots:
        yield from walk(root, patterns, prefix, skip)

def digest_of(descriptor):
    digest = hashlib.sha256()
    while True:
        block = os.read(descriptor, 1 << 20)
        if not block:
            return digest.hexdigest()
        digest.update(block)
'''

# Production: header on stdin (a decimal length line, then JSON), records on stdout.
LISTER = (
    COMMON
    + r"""
settings = header()
roots = [encoded(root) for root in settings["roots"]]
patterns = settings["excludes"]
since = settings["since_ns"]
itemized = {encoded(path) for path in settings["itemized"]}
cursor = key(encoded(settings["cursor"])) if settings["cursor"] else None
runs = settings["runs"]
sources = [(encoded(root), encoded(where)) for root, where in settings.get("sources", [])]
out = sys.stdout.buffer

def real_path(path):  # a root with a source (its snapshot) is read there, listed under its own name
    for root, where in sources:
        if path == root or path.startswith(root.rstrip(b"/") + b"/"):
            return where + path[len(root):]
    return path

def after(path):
    return cursor is None or key(path) > cursor

def before_cursor(folder):
    folder_key = key(folder)
    return cursor is not None and folder_key < cursor and cursor[:len(folder_key)] != folder_key

file_budget = byte_budget = 0
if runs > 0:  # the pass's remaining files and bytes: the slice is their share of this run
    left_files = left_bytes = 0
    for path, info in walk_all(roots, patterns, skip=before_cursor):
        if after(path):
            left_files += 1
            left_bytes += info.st_size
    file_budget, byte_budget = -(-left_files // runs), -(-left_bytes // runs)

chosen_files = chosen_bytes = 0
slicing = runs > 0
for path, info in walk_all(roots, patterns):
    out.write(b"L\0%s\0%d\0%d\0" % (path, info.st_size, info.st_mtime_ns))
    in_slice = False
    if slicing and after(path):
        if chosen_files >= file_budget and chosen_bytes >= byte_budget:
            slicing = False
        else:
            in_slice = True
            chosen_files += 1
            chosen_bytes += info.st_size
    if not (in_slice or path in itemized or (since is not None and info.st_mtime_ns >= since)):
        continue
    flag = b"s" if in_slice else b"c"
    try:
        descriptor = os.open(real_path(path), os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except FileNotFoundError:
        out.write(b"X\0%s\0vanished\0" % flag)
        continue
    except OSError as error:
        out.write(b"X\0%s\0%s\0" % (flag, encoded(error.strerror or "unreadable")[:200]))
        continue
    try:
        held = os.fstat(descriptor)
        if not stat.S_ISREG(held.st_mode):
            out.write(b"X\0%s\0not a regular file\0" % flag)
            continue
        sha = digest_of(descriptor)
        out.write(b"D\0%s\0%s\0%d\0%d\0%d\0%d\0%d\0" % (flag, sha.encode(), held.st_mode, held.st_uid, held.st_gid,
                                                       held.st_size, held.st_mtime_ns))
    except OSError as error:
        out.write(b"X\0%s\0%s\0" % (flag, encoded(error.strerror or "unreadable")[:200]))
    finally:
        os.close(descriptor)
out.write(b"E\0")
out.flush()
"""
)

# The mirror: header on stdin, then production's records; differences and a summary on stdout.
COMPARER = (
    COMMON
    + r'''
class Malformed(Exception):
    pass

settings = header()
roots = [encoded(root) for root in settings["roots"]]
tree = encoded(settings["tree"])
patterns = settings["excludes"]
since = settings["since_ns"]
itemized = {encoded(path) for path in settings["itemized"]}
probes = {encoded(path) for path in settings["probes"]}
cursor = key(encoded(settings["cursor"])) if settings["cursor"] else None
runs = settings["runs"]
max_records, max_differences, max_field = settings["max_records"], settings["max_differences"], settings["max_field"]
out = sys.stdout
counts = {"files": 0, "bytes": 0, "left_files": 0, "left_bytes": 0, "slice_files": 0, "slice_bytes": 0,
          "hashed_files": 0, "hashed_bytes": 0, "differences": 0, "records": 0}
last_slice = None

def fields(stream):
    rest = b""
    while True:
        chunk = stream.read1(1 << 20)
        if not chunk:
            if rest:
                raise Malformed("it ended inside a record")
            return
        parts = (rest + chunk).split(b"\0")
        rest = parts.pop()
        if len(rest) > max_field:
            raise Malformed(f"a field is longer than {max_field} bytes")
        for part in parts:
            if len(part) > max_field:
                raise Malformed(f"a field is longer than {max_field} bytes")
            yield part

def number(value, what, digits=20):
    if not value or len(value) > digits or not value.isdigit():
        raise Malformed(f"{what} is not a number")
    return int(value)

def valid_path(path):
    if not path.startswith(b"/") or any(part in (b"", b".", b"..") for part in path.split(b"/")[1:]):
        raise Malformed("a name is not a plain absolute path")
    if not any(path == root or path.startswith(root.rstrip(b"/") + b"/") for root in roots):
        raise Malformed("a name is outside the service's paths")
    return path

def seconds(mtime_ns):
    return None if mtime_ns is None else mtime_ns / 1e9

def difference(kind, path, mtime_ns):
    counts["differences"] += 1
    if counts["differences"] <= max_differences:
        out.write(json.dumps({"d": kind, "p": path.decode("utf-8", "surrogateescape"), "m": seconds(mtime_ns)},
                             ensure_ascii=True) + "\n")

def open_beneath(path):
    """The copy's file for production's path, opened one folder at a time, never through a link."""
    parts = path.split(b"/")[1:]
    descriptor = os.open(tree or b"/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = inner
        return os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW, dir_fd=descriptor)
    finally:
        os.close(descriptor)

def judge(listed, answer, held):
    """One production file: its listing (path, size, mtime), its D/X answer or None, the copy's."""
    path, size, mtime = listed
    if answer is not None and answer[0] == b"X":
        difference("vanished" if answer[2] == b"vanished" else "unreadable", path, None if answer[2] == b"vanished" else mtime)
        return
    if held is None:
        difference("missing", path, mtime)
        return
    if answer is None:
        if held.st_size != size:
            difference("content", path, mtime)
        elif abs(held.st_mtime_ns - mtime) > 1000:
            difference("metadata", path, mtime)
        return
    _, _, sha, mode, uid, gid, _, theirs = answer
    try:
        descriptor = open_beneath(path)
    except FileNotFoundError:
        difference("missing", path, mtime)
        return
    except OSError:
        difference("unreadable-copy", path, mtime)
        return
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            difference("content", path, mtime)
            return
        ours = digest_of(descriptor)
        counts["hashed_files"] += 1
        counts["hashed_bytes"] += info.st_size
    except OSError:
        difference("unreadable-copy", path, mtime)
        return
    finally:
        os.close(descriptor)
    if ours != sha:
        difference("content", path, mtime)
    elif (info.st_mode, info.st_uid, info.st_gid) != (mode, uid, gid) or abs(info.st_mtime_ns - theirs) > 1000:
        difference("metadata", path, mtime)

def compare():
    global last_slice
    mine = walk_all(roots, patterns, prefix=tree)
    held = next(mine, None)
    stream = fields(sys.stdin.buffer)
    previous = None
    slice_open = runs > 0
    pending = None  # the last listed file, until we know whether an answer follows it
    found = {}
    while True:
        kind = next(stream, None)
        if kind is None:
            raise Malformed("it ended before its end mark")
        counts["records"] += 1
        if counts["records"] > max_records:
            raise Malformed(f"it holds more than {max_records} records")
        if kind in (b"D", b"X"):
            if pending is None:
                raise Malformed("a checksum follows no listed file")
            flag = next(stream, b"")
            if flag not in (b"s", b"c"):
                raise Malformed("a checksum's mark is neither s nor c")
            if kind == b"D":
                answer = [kind, flag, next(stream, b"")] + [number(next(stream, b""), "a checksum's field") for _ in range(5)]
                if len(answer[2]) != 64 or answer[2].strip(b"0123456789abcdef"):
                    raise Malformed("a checksum is not 64 hex digits")
                answer[2] = answer[2].decode()
            else:
                answer = [kind, flag, next(stream, b"")]
            listed, own = pending
            path = listed[0]
            after = cursor is None or key(path) > cursor
            if flag == b"s":
                if not (slice_open and after):
                    raise Malformed("its rolling slice is not one run of files after the cursor")
                counts["slice_files"] += 1
                counts["slice_bytes"] += listed[1]
                last_slice = path
            elif after and slice_open:
                slice_open = False
            judge(listed, answer, own)
            pending = None
            continue
        if pending is not None:
            listed, own = pending
            if (since is not None and listed[2] >= since) or listed[0] in itemized:
                raise Malformed("a changed file was listed without its checksum")
            if slice_open and (cursor is None or key(listed[0]) > cursor):
                slice_open = False
            judge(listed, None, own)
            pending = None
        if kind == b"E":
            break
        if kind != b"L":
            raise Malformed("a record of an unknown kind")
        path = valid_path(next(stream, b""))
        size = number(next(stream, b""), "a size")
        mtime = number(next(stream, b""), "an mtime")
        path_key = key(path)
        if previous is not None and path_key <= previous:
            raise Malformed("its names are not in order")
        previous = path_key
        if path in probes:
            found[path] = mtime
        if excluded(path, patterns):
            continue
        while held is not None and key(held[0]) < path_key:
            difference("extra", held[0], None)
            held = next(mine, None)
        own = None
        if held is not None and held[0] == path:
            own = held[1]
            held = next(mine, None)
        counts["files"] += 1
        counts["bytes"] += size
        if cursor is None or path_key > cursor:
            counts["left_files"] += 1
            counts["left_bytes"] += size
        pending = ((path, size, mtime), own)
    if next(stream, None) is not None:
        raise Malformed("it goes on after its end mark")
    while held is not None:
        difference("extra", held[0], None)
        held = next(mine, None)
    for path, mtime in found.items():
        out.write(json.dumps({"probe": path.decode("utf-8", "surrogateescape"), "m": seconds(mtime)},
                             ensure_ascii=True) + "\n")
    return runs > 0 and slice_open

try:
    complete = compare()
except (Malformed, StopIteration) as error:
    reason = str(error) if isinstance(error, Malformed) else "it ended inside a record"
    sys.stderr.write(f"production's answer is malformed after {counts['records']} record(s): {reason}\n")
    sys.exit(3)
summary = dict(counts, complete=complete, truncated=counts["differences"] > max_differences,
               next_cursor=last_slice.decode("utf-8", "surrogateescape") if last_slice is not None else None)
out.write(json.dumps({"summary": summary}, ensure_ascii=True) + "\n")
'''
)


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
