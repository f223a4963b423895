"""A host-level lock for state several services change on one server, and the commands that
replace such files safely under it.

Several services may share a production or a mirror (the lab's app1 and app3 share prod-east and
mirror-west). What they change there in common — the account files ``/etc/passwd``, ``shadow``,
``group``, ``gshadow``, and the storage host's accounts — is a read-merge-write: two runs at once
would each read the same old file, and the second rename would drop the first one's lines. So
each such change holds the host's lock for the whole read-merge-write.

The lock is ``flock`` on ``HOST_LOCK_FILE``, held by a command that keeps running on its own SSH
channel while the orchestrator works (``hold_argv``): it prints ``LOCKED_LINE`` once it holds the
lock and then waits for its stdin to close. The orchestrator ends it when the change is done; a
killed orchestrator's connection closes, the command ends and the kernel frees the lock, so a
dead run never leaves the host locked. The wait is bounded (``flock -w``): past it the command
exits ``BUSY_EXIT`` and the caller reads the holder's note (written into the lock file by the
holder) to name it.

The lock file lives in ``/etc``, beside the files it guards (as shadow-utils keeps
``/etc/.pwd.lock``): on a real server ``/run`` would do as well, but it is the same filesystem
and namespace as the account files everywhere, also in the lab, whose hosts share ``/run``.

Pure: argument lists and constant programs, no network.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence

HOST_LOCK_FILE = "/etc/.hotspare-host.lock"
LOCKED_LINE = b"hotspare-host-lock: locked\n"
BUSY_EXIT = 75  # EX_TEMPFAIL: the wait ran out while another run held the lock
WAIT_SECONDS = 60  # an account merge holds the lock for about a second; a minute means trouble
TEMPORARY_MARK = ".hotspare-new"  # PATH + mark + "-" + run tag: a replaced file's new version

# $1 the holder's note, $2 the lock file. Runs with the lock held (flock's child): writes the
# note into the lock file (the same inode: flock's lock stays), says so, then waits for stdin to
# close. `exec cat` keeps one process that ends on EOF or when sshd hangs the session up.
HOLD = (
    'printf "%s, since %s\\n" "$1" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$2" '
    '&& printf "' + LOCKED_LINE.decode().rstrip("\n") + '\\n" && exec cat > /dev/null'
)

# $1 the suffix of the new files; then pairs of path and the sha256 of the bytes the merge read.
# Every file must still hold those bytes (nobody outside the lock wrote it meanwhile), else
# nothing is replaced (exit BUSY_EXIT); then each new file takes its file's mode and owner, and
# all replace theirs.
REPLACE_CHECKED = (
    "suffix=$1; shift; path=; "
    'for item do if [ -z "$path" ]; then path=$item; continue; fi; '
    'now=$(sha256sum < "$path" | cut -d" " -f1) || exit 1; '
    'if [ "$now" != "$item" ]; then echo "$path changed while the merge ran (written outside the host lock): '
    'nothing replaced" >&2; exit ' + str(BUSY_EXIT) + "; fi; "
    'chmod --reference="$path" -- "$path$suffix" && chown --reference="$path" -- "$path$suffix" || exit 1; '
    "path=; done; "
    'path=; for item do if [ -z "$path" ]; then path=$item; continue; fi; '
    'mv -f -- "$path$suffix" "$path" || exit 1; path=; done'
)


# $1 the wait, $2 the lock file, $3 the note, $4 the HOLD program. The lock file is root's alone
# (0600, made under umask 077, an older one's mode corrected): flock works on any open file, so a
# service's user that could open it (a customer's app on a shared mirror) could hold every other
# service's changes back for ever.
TAKE = (
    'umask 077; if [ -e "$2" ]; then chmod 0600 -- "$2" || exit 1; fi; '
    'exec flock -w "$1" -E ' + str(BUSY_EXIT) + ' "$2" sh -c "$4" sh "$3" "$2"'
)


def hold_argv(holder: str, wait_seconds: float = WAIT_SECONDS, lock_file: str = HOST_LOCK_FILE) -> list[str]:
    """The command that takes the host lock within ``wait_seconds`` and holds it until its stdin
    closes; ``holder`` (one line: which run, for what) is what a waiting run is told."""
    note = " ".join(holder.split())  # one line, whatever the caller passed
    return ["sh", "-c", TAKE, "sh", f"{max(wait_seconds, 0):g}", _absolute([lock_file])[0], note, HOLD]


def holder_argv(lock_file: str = HOST_LOCK_FILE) -> list[str]:
    """Reads the note of whoever holds (or last held) the lock."""
    return ["sh", "-c", 'cat -- "$1" 2>/dev/null || true', "sh", lock_file]


def temporary_suffix(run_tag: str) -> str:
    """The suffix of one run's new files: unique per run, recognisably ours."""
    if not run_tag or "/" in run_tag or not run_tag.replace("-", "").isalnum():
        raise ValueError(f"a run tag is letters, digits and dashes, got {run_tag!r}")
    return f"{TEMPORARY_MARK}-{run_tag}"


def leftovers(paths: Sequence[str], listings: dict[str, Sequence[str]]) -> list[str]:
    """What killed runs of ours left beside ``paths`` (``PATH.hotspare-new``, ``PATH.hotspare-new-<tag>``),
    given the names in each path's folder (``listings``: folder -> names). Only removed with the
    lock held, when no live run of ours is writing one."""
    found = []
    for path in _absolute(paths):
        folder, name = posixpath.split(path)
        found += [
            posixpath.join(folder, entry)
            for entry in sorted(listings.get(folder, ()))
            if entry == name + TEMPORARY_MARK or entry.startswith(name + TEMPORARY_MARK + "-")
        ]
    return found


def replace_checked_argv(suffix: str, expected: dict[str, str]) -> list[str]:
    """Replaces each path of ``expected`` (path -> sha256 of the bytes read) by ``PATH+suffix``,
    only if every path still holds the bytes that were read."""
    pairs = [part for path in _absolute(expected) for part in (path, expected[path])]
    return ["sh", "-c", REPLACE_CHECKED, "sh", suffix, *pairs]


def _absolute(paths: Iterable[str]) -> list[str]:
    for path in paths:
        if not path.startswith("/") or posixpath.normpath(path) != path:
            raise ValueError(f"{path!r} is not an absolute, normal path")
    return list(paths)
