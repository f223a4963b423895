"""Constant shell programs and the small argument-list makers that use them.

Each program is a fixed string; its arguments always arrive as "$@", never spliced into text,
so a path or a name from the fleet file can never become shell syntax. Pure: no network.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from hotspare.errors import Refused

RUN_DIR = "/run/hotspare"  # per-run key material on the hosts (tmpfs, root only)


# Constant shell programs; their arguments always arrive as "$@" (never spliced into text).
IN_FOLDER = 'cd -- "$1" && shift && exec "$@"'


TO_FILE = 'out=$1; shift; umask 077; "$@" > "$out"'


WRITE_SECRET_FILE = 'umask 077 && mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'


# Like WRITE_SECRET_FILE, but a new file renamed over the old one: a hard-linked or earlier
# file of the same name is never written through.
REPLACE_SECRET_FILE = (
    'umask 077 && mkdir -p -- "$(dirname -- "$1")" && cat > "$1.hotspare-new" && mv -f -- "$1.hotspare-new" "$1"'
)


EXISTING = 'for path; do if [ -e "$path" ]; then printf "%s\\0" "$path"; fi; done'


HASH_TREE = 'cd -- "$1" && shift && find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum -z'


# Each named file's bytes followed by a NUL (a missing file reads as empty): one round trip for
# the account files, which hold no NUL.
READ_FILES = 'for path; do if [ -e "$path" ]; then cat -- "$path" || exit 1; fi; printf "\\0"; done'


SHADOW_OF = 'awk -F: "NR==FNR { keep[\\$1] = 1; next } (\\$1 in keep)" "$1" "$2"'


IN_UID_RANGE = 'awk -F: -v low="$1" -v high="$2" "\\$3 + 0 >= low && \\$3 + 0 <= high" "$3"'


# Hashes of the named accounts only, from a shadow file on the host itself, into chpasswd -e.
SET_HASHES = 'file=$1; shift; awk -F: -v names=" $* " "index(names, \\" \\" \\$1 \\" \\")" "$file" | cut -d: -f1,2 | chpasswd -e'


# $1 the restored path, $2 its live path, $3 this run's folder for what rsync replaces or
# deletes (kept under the live path's own absolute name: ``$3$2``).
PLACE = (
    'if [ -d "$1" ]; then mkdir -p -- "$2" && exec rsync -a --delete --numeric-ids --backup --backup-dir="$3$2" '
    '-- "$1/" "$2/"; '
    'else mkdir -p -- "$(dirname -- "$2")" && exec rsync -a --numeric-ids --backup --backup-dir="$3$(dirname -- "$2")" '
    '-- "$1" "$2"; fi'
)


class PlanRefused(Refused):
    """The facts do not allow the requested plan; ``reasons`` lists every one."""

    def __init__(self, reasons: Sequence[str]):
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons))


def in_folder(folder: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run with ``folder`` as working folder."""
    return ["sh", "-c", IN_FOLDER, "sh", folder, *argv]


def to_file(path: str, argv: Sequence[str]) -> list[str]:
    """``argv`` with its standard output written to ``path`` (created 0600) on the same host."""
    return ["sh", "-c", TO_FILE, "sh", path, *argv]


def write_secret_file(path: str) -> list[str]:
    """Write stdin to ``path`` readable by root only (its folder created 0700 if missing)."""
    return ["sh", "-c", WRITE_SECRET_FILE, "sh", path]


def replace_secret_file(path: str) -> list[str]:
    """Write stdin to a new ``path`` readable by root only (renamed over any old one)."""
    return ["sh", "-c", REPLACE_SECRET_FILE, "sh", path]


def read_files(paths: Sequence[str]) -> list[str]:
    """Prints each of ``paths`` followed by a NUL (empty when missing); see ``split_files``."""
    return ["sh", "-c", READ_FILES, "sh", *paths]


def split_files(paths: Sequence[str], output: bytes) -> dict[str, str]:
    """``read_files`` output back into path -> text (bytes kept as surrogate escapes)."""
    parts = output.split(b"\0")
    if len(parts) != len(paths) + 1 or parts[-1]:
        raise ValueError(f"expected {len(paths)} NUL-terminated files, got {len(parts) - 1}")
    return {path: part.decode(errors="surrogateescape") for path, part in zip(paths, parts)}


def existing_paths(paths: Sequence[str]) -> list[str]:
    """Prints those of ``paths`` that exist, NUL-separated."""
    return ["sh", "-c", EXISTING, "sh", *paths]


def hash_tree(root: str, relative_paths: Sequence[str]) -> list[str]:
    """sha256 of every file below ``relative_paths`` (relative to ``root``), NUL-separated records."""
    return ["sh", "-c", HASH_TREE, "sh", root, *relative_paths]


def remove_tree(path: str, under: str) -> list[str]:
    """``rm -rf`` of a scratch folder, refusing anything that is not strictly below ``under``."""
    normalized = posixpath.normpath(path)
    if not normalized.startswith(under.rstrip("/") + "/") or ".." in normalized.split("/"):
        raise ValueError(f"refusing to remove {path!r}: not below {under!r}")
    return ["rm", "-rf", "--one-file-system", "--", normalized]


def relative(path: str) -> str:
    """A live absolute path as restic sees it from ``/`` (``/srv/app1/data`` -> ``srv/app1/data``)."""
    return posixpath.normpath(path).lstrip("/")
