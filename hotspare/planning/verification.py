"""Pure planning for content verification: what differs between production and a copy, and
whether it is corruption or just production moving on. No network, no Prefect, no clock.

``rsync -anc`` (full checksums) lists differences (``parse_itemized``); production's mtimes tell
a change made after the copy began from corruption (``classify_differences``); and because
``rsync -c`` passes over a file it cannot read without a word, the two file listings are
compared as well (``not_compared``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hotspare.planning.rsync_outcomes import matches_any


@dataclass(frozen=True)
class Difference:
    path: str  # absolute path on production
    kind: str  # content | missing | extra | metadata | unreadable
    changed_on_source: bool = False  # production modified it after the copy started
    fuzzy: bool = False  # the fleet file allows this path to differ (rewritten all the time)


@dataclass(frozen=True)
class ContentReport:
    differences: tuple[Difference, ...] = ()

    @property
    def corrupt(self) -> tuple[Difference, ...]:
        """Differences production's own changes cannot explain (an unreadable file always counts,
        unless fuzzy: nothing was compared)."""
        return tuple(d for d in self.differences if not d.changed_on_source and not d.fuzzy)

    @property
    def changed_during_copy(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.changed_on_source and not d.fuzzy)

    @property
    def tolerated(self) -> tuple[Difference, ...]:
        """Differences in paths the fleet file declares fuzzy."""
        return tuple(d for d in self.differences if d.fuzzy)


def parse_itemized(output: str) -> list[tuple[str, str]]:
    """(kind, absolute path) for each file-level difference in ``rsync -i`` output.

    Directory timestamp noise (``.d..t......``) is ignored: directories change time whenever
    their content changes, and their content is compared file by file.
    """
    found = []
    for line in output.splitlines():
        if line.startswith("*deleting"):
            path = line.split(None, 1)[1]
            found.append(("extra", "/" + path.rstrip("/")))
            continue
        if len(line) < 13 or line[11] != " ":
            continue
        flags, path = line[:11], line[12:]
        update_type, file_type, attributes = flags[0], flags[1], flags[2:]
        # -i prints "%i %n%L": a symlink's target after " -> ", a hard link's after " => "
        if file_type == "L":
            path = path.split(" -> ", 1)[0]
        elif update_type == "h":
            path = path.split(" => ", 1)[0]
        if file_type == "d" and "+" not in attributes:
            continue
        if "+" in attributes:
            kind = "missing"
        elif "c" in attributes or "s" in attributes:
            kind = "content"
        elif update_type in ".>ch" and any(flag in attributes for flag in "tpoga"):
            kind = "metadata"
        else:
            continue
        found.append((kind, "/" + path.rstrip("/")))
    return found


def classify_differences(
    itemized: list[tuple[str, str]], source_mtimes: dict[str, float], copy_started: float, fuzzy: list[str] = ()
) -> ContentReport:
    """Mark each difference whose production file changed after ``copy_started`` as expected.

    ``source_mtimes`` holds production's current mtime for listed paths (absent: the file no
    longer exists on production, which is also a change on the source's side). An
    ``unreadable`` entry (rsync could not read or compare the file) is never explained by a
    change. Paths matching ``fuzzy`` are marked as tolerated.
    """
    differences = []
    for kind, path in itemized:
        mtime = source_mtimes.get(path)
        if kind == "unreadable":
            changed = False
        elif kind == "extra":
            changed = mtime is None  # deleted on production after the copy
        else:
            changed = mtime is None or mtime >= copy_started
        differences.append(Difference(path, kind, changed, matches_any(path, list(fuzzy))))
    return ContentReport(tuple(differences))


def file_listing_argv(paths: list[str]) -> list[str]:
    """Every regular file under ``paths`` with its mtime, one ``MTIME<TAB>PATH`` line each."""
    return ["find", *paths, "-type", "f", "-printf", "%T@\t%p\n"]


def not_compared(
    production_listing: str, copy_listing: str, tree: str, itemized: list[tuple[str, str]], excludes: list[str] = ()
) -> dict[str, float]:
    """Production files that neither the copy holds nor rsync's comparison named, with their mtimes.

    ``rsync -c`` drops a file it cannot read from its file list without a word (measured with
    rsync 3.5: exit 0, nothing itemized), so "no difference" is not proof for such a file; the
    two listings are.
    """
    in_copy = {path[len(tree) :] for path in parse_stat_mtimes(copy_listing) if path.startswith(tree)}
    named = {path for _, path in itemized}
    return {
        path: mtime
        for path, mtime in parse_stat_mtimes(production_listing).items()
        if path not in in_copy and path not in named and not matches_any(path, list(excludes))
    }


def parse_stat_mtimes(output: str) -> dict[str, float]:
    """``stat --printf '%Y.%y\\t%n\\n'``-style lines → {path: mtime}; we use ``%.Y\\t%n``."""
    mtimes = {}
    for line in output.splitlines():
        if "\t" not in line:
            continue
        stamp, path = line.split("\t", 1)
        try:
            mtimes[path] = float(stamp)
        except ValueError:
            continue
    return mtimes
