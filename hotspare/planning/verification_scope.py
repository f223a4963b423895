"""Pure planning of what one verification compares: what changed plus a rolling slice of the rest.

No network, no Prefect, no clock (the caller passes the time as a number). Comparing every byte
of a copy at every replication makes a replication of a 1 TB service with 1 % changed cost as
much as reading 1 TB twice. Instead each replication compares by checksum, on both hosts:

- **what changed**: every file the copy step itemized (``rsync -i``), every file production
  modified since the previous verified copy began (a retried or resumed copy step itemizes only
  its own last attempt), and every file whose size or mtime differs between the two listings;
- **a rolling slice of the rest**: the next files in path order after the pass's cursor, sized
  so the pass reaches the end within ``full_verification_days`` at ``replications_per_day``.
  The budget is what is left of the pass divided by the runs left before its deadline, so
  missed runs make later slices bigger and the deadline still holds.

Every file's size and mtime (no content read) are still compared at every run, so a file
missing from the copy, or one rsync cannot read, is found at once; the listing is compared on the
mirror, never held by the orchestrator (``planning/tree_comparison.py``, which also applies the
slice's rule on production: ``plan_scope`` states it here). A complete pass
is recorded (when it began and ended, how many files) for ``hotspare status``; ``hotspare verify
--full`` compares everything at once and counts as a complete pass.

The files of a partial comparison are named one by one (``planning/file_digests.py`` reads them
on each host from a list on stdin, so no command-line limit applies); a whole-tree comparison
names the service's roots to ``rsync -anc``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hotspare.planning.rsync_outcomes import matches_any

DAY_SECONDS = 86_400.0
# At least this much, and half the data, to compare: the whole tree by ``rsync -anc`` (xxh128,
# ~0.4 s to start) beats SHA-256 of the named files (~1 GB/s per host, measured on the lab).
WHOLE_TREE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class FileEntry:
    mtime: float
    size: int


def sized_listing_argv(paths: list[str]) -> list[str]:
    """Every regular file under ``paths``: ``MTIME<TAB>SIZE<TAB>PATH`` (metadata only, no content read)."""
    return ["find", *paths, "-type", "f", "-printf", "%T@\t%s\t%p\n"]


def parse_sized_listing(output: str, strip_prefix: str = "") -> dict[str, FileEntry]:
    """{path: FileEntry} from ``sized_listing_argv`` output; ``strip_prefix`` (a copy's tree)
    is removed so both hosts' listings use production's absolute paths."""
    entries = {}
    for line in output.splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3 or not parts[2].startswith(strip_prefix):
            continue
        try:
            entries[parts[2][len(strip_prefix) :]] = FileEntry(float(parts[0]), int(parts[1]))
        except ValueError:
            continue
    return entries


def mtime_listing(entries: dict[str, FileEntry], prefix: str = "") -> str:
    """The ``MTIME<TAB>PATH`` lines of ``planning/verification.py``'s listings from ``entries``."""
    return "".join(f"{entry.mtime:.9f}\t{prefix}{path}\n" for path, entry in entries.items())


def itemized_files(output: str) -> list[str]:
    """Absolute paths of the files and links the copy step created or updated, from ``rsync -i``
    lines (``>f.st......``, ``cf+++++++++``, ``hf``, ``cL``…) mixed with ``--stats`` output."""
    found = []
    for line in output.splitlines():
        if len(line) < 13 or line[11] != " " or line[0] not in "<>ch." or line[1] not in "fL":
            continue
        path = line[12:]
        if line[1] == "L":
            path = path.split(" -> ", 1)[0]
        elif line[0] == "h":
            path = path.split(" => ", 1)[0]
        found.append("/" + path.lstrip("/"))
    return found


@dataclass(frozen=True)
class PassState:
    """Where the rolling pass stands: the last path compared ("" and no start: a new pass)."""

    cursor: str = ""
    started_at: float | None = None  # epoch seconds
    files_done: int = 0


@dataclass(frozen=True)
class Scope:
    """One verification's comparison: the paths rsync names and what they cover."""

    whole_tree: bool  # the service's roots are named: everything is compared
    paths: tuple[str, ...]  # the roots (whole tree), else every file compared, sorted
    changed_files: int
    slice_files: int
    compared_files: int
    compared_bytes: int
    total_files: int
    total_bytes: int
    next_state: PassState  # to record once the verification passed
    pass_complete: bool  # a whole pass ends with this comparison
    pass_started_at: float | None  # when the pass that ends (or continues) began
    pass_files: int  # files the pass has compared, this run included
    reason: str  # one sentence for the run log


def runs_left(period_days: float, runs_per_day: float, pass_started_at: float | None, now: float) -> int:
    """Replications left before the pass's deadline (at least one: this run)."""
    interval = DAY_SECONDS / runs_per_day
    deadline = (pass_started_at if pass_started_at is not None else now) + period_days * DAY_SECONDS
    return max(1, int((deadline - now) // interval))


def plan_scope(
    files: dict[str, FileEntry],
    changed: set[str],
    state: PassState,
    roots: list[str],
    *,
    period_days: float,
    runs_per_day: float,
    now: float,
    full: bool = False,
) -> Scope:
    """What this run compares, given production's files (excludes already left out), the changed
    paths, the rolling pass's state and the schedule. ``full`` compares everything."""
    total_bytes = sum(entry.size for entry in files.values())
    started = state.started_at if state.started_at is not None else now
    if full:
        return _whole(files, roots, len(changed), total_bytes, started, "a full comparison was asked for")
    ordered = sorted(files)
    remaining = [path for path in ordered if path > state.cursor] if state.started_at is not None else ordered
    runs = runs_left(period_days, runs_per_day, state.started_at, now)
    byte_budget = math.ceil(sum(files[path].size for path in remaining) / runs)
    file_budget = math.ceil(len(remaining) / runs)
    chosen, chosen_bytes = [], 0
    for path in remaining:
        if chosen_bytes >= byte_budget and len(chosen) >= file_budget:
            break
        chosen.append(path)
        chosen_bytes += files[path].size
    complete = len(chosen) == len(remaining)
    changed_here = {path for path in changed if path in files}
    compare = changed_here | set(chosen)
    done = state.files_done + len(chosen)
    if len(compare) == len(files):
        return _whole(
            files, roots, len(changed_here), total_bytes, started, "what changed and the rolling slice together cover every file"
        )
    compared_bytes = sum(files[path].size for path in compare)
    if compared_bytes >= max(WHOLE_TREE_BYTES, total_bytes / 2):
        return _whole(
            files,
            roots,
            len(changed_here),
            total_bytes,
            started,
            f"what changed and the rolling slice are {compared_bytes} of {total_bytes} bytes: rsync reads "
            "the rest faster than naming the files",
        )
    next_state = PassState() if complete else PassState(chosen[-1] if chosen else state.cursor, started, done)
    reason = (
        f"comparing {len(changed_here)} changed file(s) and a rolling slice of {len(chosen)} file(s) "
        f"({chosen_bytes} bytes, 1/{runs} of what the pass has left): {len(compare)} of {len(files)} files, "
        f"{compared_bytes} of {total_bytes} bytes" + ("; the rolling pass completes" if complete else "")
    )
    return Scope(
        False,
        tuple(sorted(compare)),
        len(changed_here),
        len(chosen),
        len(compare),
        compared_bytes,
        len(files),
        total_bytes,
        next_state,
        complete,
        started,
        done,
        reason,
    )


def _whole(files: dict[str, FileEntry], roots: list[str], changed: int, total_bytes: int, started: float, why: str) -> Scope:
    return Scope(
        True,
        tuple(roots),
        changed,
        len(files),
        len(files),
        total_bytes,
        len(files),
        total_bytes,
        PassState(),
        True,
        started,
        len(files),
        f"comparing the whole tree: {why} ({len(files)} files, {total_bytes} bytes)",
    )


def changed_paths(
    itemized: list[str], production: dict[str, FileEntry], copy: dict[str, FileEntry], since: float | None
) -> set[str]:
    """Files to compare as changed: itemized by the copy step, modified on production at or after
    ``since`` (the previous verified copy's start; None: no baseline), or differing in size or
    mtime between the two listings (the copy step left them different, or something touched them)."""
    changed = {path for path in itemized if path in production}
    for path, entry in production.items():
        held = copy.get(path)
        if (since is not None and entry.mtime >= since) or (
            held is not None and (held.size != entry.size or abs(held.mtime - entry.mtime) > 1e-6)
        ):
            changed.add(path)
    return changed


def without_excluded(entries: dict[str, FileEntry], excludes: list[str]) -> dict[str, FileEntry]:
    return {path: entry for path, entry in entries.items() if not matches_any(path, list(excludes))}


def extra_in_copy(production: dict[str, FileEntry], copy: dict[str, FileEntry], excludes: list[str]) -> list[str]:
    """Files the copy holds that production does not (the ``--delete`` report of a whole-tree run)."""
    return sorted(path for path in copy if path not in production and not matches_any(path, list(excludes)))


# --- The tree comparison's answer (planning/tree_comparison.py) in the verification's terms ---


def answer_differences(answer) -> tuple[list[tuple[str, str]], dict[str, float], set[str]]:
    """``(kind, path)`` differences for ``planning/verification.classify_differences``, production's
    mtimes of them, and the files that could not be read (production's side or the copy's).
    A file gone from production since its listing is "missing" without an mtime: a change on
    production's side."""
    itemized, mtimes, unreadable = [], {}, set()
    for difference in answer.differences:
        if difference.kind in ("unreadable", "unreadable-copy"):
            unreadable.add(difference.path)
            continue
        itemized.append(("missing" if difference.kind == "vanished" else difference.kind, difference.path))
        if difference.production_mtime is not None:
            mtimes[difference.path] = difference.production_mtime
    return itemized, mtimes, unreadable


def merge_whole_tree(rsync_found: list[tuple[str, str]], answer) -> tuple[list[tuple[str, str]], dict[str, float]]:
    """``rsync -anc``'s differences plus those only the listings show (a file ``rsync -c`` could
    not read is left out of its list without a word), with production's mtimes. An "extra" that
    production still lists was left out of rsync's list: it could not be read."""
    listed, mtimes, unreadable = answer_differences(answer)
    named = {path for _, path in rsync_found}
    found = [("unreadable" if kind == "extra" and path in answer.probes else kind, path) for kind, path in rsync_found]
    found += [(kind, path) for kind, path in listed if path not in named]
    found += [("unreadable", path) for path in sorted(unreadable - named)]
    known = {path: mtime for path, mtime in answer.probes.items() if mtime is not None}
    return found, known | mtimes


def scope_record(answer, state: PassState, whole_tree: bool, runs: int, now: float) -> dict:
    """What ``record_pass`` needs and the run's summary shows (plain values: a task result)."""
    started = state.started_at if state.started_at is not None else now
    if whole_tree:
        return {
            "whole_tree": True,
            "named_paths": 0,
            "changed_files": 0,
            "slice_files": answer.files,
            "compared_files": answer.files,
            "compared_bytes": answer.bytes,
            "total_files": answer.files,
            "total_bytes": answer.bytes,
            "pass_complete": True,
            "pass_started_at": started,
            "pass_files": answer.files,
            "next_cursor": "",
            "next_started_at": None,
            "next_files_done": 0,
            "reason": f"comparing the whole tree by checksum ({answer.files} files, {answer.bytes} bytes)",
        }
    done = (state.files_done if state.started_at is not None else 0) + answer.slice_files
    complete = answer.complete
    cursor = "" if complete else (answer.next_cursor if answer.next_cursor is not None else state.cursor)
    changed = max(answer.hashed_files - answer.slice_files, 0)
    reason = (
        f"comparing {changed} changed file(s) and a rolling slice of {answer.slice_files} file(s) "
        f"({answer.slice_bytes} bytes, 1/{runs} of what the pass has left) by checksum: "
        f"{answer.hashed_files} of {answer.files} files, {answer.hashed_bytes} of {answer.bytes} bytes; "
        "every file's size and mtime compared on the mirror" + ("; the rolling pass completes" if complete else "")
    )
    return {
        "whole_tree": False,
        "named_paths": answer.hashed_files,
        "changed_files": changed,
        "slice_files": answer.slice_files,
        "compared_files": answer.hashed_files,
        "compared_bytes": answer.hashed_bytes,
        "total_files": answer.files,
        "total_bytes": answer.bytes,
        "pass_complete": complete,
        "pass_started_at": started,
        "pass_files": done,
        "next_cursor": cursor,
        "next_started_at": None if complete else started,
        "next_files_done": 0 if complete else done,
        "reason": reason,
    }
