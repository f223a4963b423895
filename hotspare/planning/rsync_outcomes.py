"""What an rsync exit means: one pure function, so copy, verification and repair agree.

- **ok**: 0, and 24 (files vanished during the transfer: production is live);
- **partial** (23): some files could not be transferred or read; the rest arrived. The files
  are named (from rsync's own messages) so verification can fail exactly those — or accept
  them where the fleet file says a path may be fuzzy;
- **permanent**: retrying cannot help (usage or protocol error, full disk, permission or
  host-key refusal): the run stops at once with the reason;
- **transient**: the connection dropped or timed out; a retry may succeed.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

EXIT_MEANINGS = {
    1: "syntax or usage error",
    2: "protocol incompatibility",
    3: "errors selecting input/output files",
    4: "requested action not supported",
    5: "error starting the client-server protocol",
    6: "daemon unable to log",
    10: "error in socket I/O",
    11: "error in file I/O",
    12: "error in the rsync protocol data stream",
    13: "errors with program diagnostics",
    14: "error in IPC code",
    20: "received SIGUSR1 or SIGINT",
    21: "error returned by waitpid()",
    22: "error allocating memory",
    23: "partial transfer due to error",
    24: "source files vanished",
    25: "--max-delete stopped deletions",
    30: "timeout in data send/receive",
    35: "timeout waiting for a daemon connection",
    255: "ssh could not connect or was refused",
}
PERMANENT_EXITS = {1, 2, 3, 4, 6, 13, 14, 22, 25}
TRANSIENT_EXITS = {5, 10, 12, 20, 21, 30, 35, 255}
# rsync or ssh said why: these outrank the exit status
PERMANENT_SIGNS = (
    ("No space left on device", "the mirror's disk is full"),
    ("Disk quota exceeded", "a disk quota is exhausted"),
    ("Host key verification failed", "the peer's host key does not match the pinned one"),
    ("Permission denied (publickey", "the transfer key was refused"),
    ("The server is configured to refuse", "production's transfer module refused an rsync option"),
    ("hotspare transfer view", "production could not prepare the transfer's view of the service's paths"),
    ("protocol version mismatch", "the rsync versions cannot talk to each other"),
    ("Read-only file system", "the target file system is read-only"),
)
TRANSIENT_SIGNS = (
    "Connection timed out",
    "Connection refused",
    "No route to host",
    "Connection reset",
    "Broken pipe",
    "connection unexpectedly closed",
    "timeout",
)
# rsync messages naming a file it could not read or place; the path is the quoted part
# (read through the transfer module, rsync adds the module's name after the path: "(in hotspare)")
FILE_ERROR = re.compile(
    r'^rsync: (?:\[\w+\] )?(?P<what>[\w ()-]+?) "(?P<path>[^"]+)"(?: \(in [\w.-]+\))?(?: failed)?:? (?P<why>.*)$'
)
UPDATE_DISCARDED = re.compile(r"^(?:ERROR|WARNING): (?P<path>.+?) failed verification -- update (?:discarded|retained)")


@dataclass(frozen=True)
class RsyncOutcome:
    exit_status: int
    kind: str  # ok | partial | permanent | transient
    reason: str
    failed_files: tuple[tuple[str, str], ...] = ()  # (absolute path, why)

    @property
    def failed_paths(self) -> list[str]:
        return [path for path, _ in self.failed_files]


def classify_rsync(exit_status: int, stderr: str) -> RsyncOutcome:
    """The outcome of one rsync run from its exit status and stderr."""
    meaning = EXIT_MEANINGS.get(exit_status, f"exit status {exit_status}")
    if exit_status in (0, 24):
        return RsyncOutcome(
            exit_status, "ok", "complete" if exit_status == 0 else "complete; some source files vanished during the transfer"
        )
    for sign, why in PERMANENT_SIGNS:
        if sign in stderr:
            return RsyncOutcome(exit_status, "permanent", f"{why} (rsync: {meaning}): {_tail(stderr)}")
    if exit_status == 23:
        failed = failed_files(stderr)
        return RsyncOutcome(
            exit_status,
            "partial",
            f"{len(failed)} file(s) could not be transferred: " + ", ".join(f"{path} ({why})" for path, why in failed[:10]),
            tuple(failed),
        )
    if exit_status in PERMANENT_EXITS:
        return RsyncOutcome(exit_status, "permanent", f"rsync: {meaning}: {_tail(stderr)}")
    if exit_status in TRANSIENT_EXITS or any(sign in stderr for sign in TRANSIENT_SIGNS):
        return RsyncOutcome(exit_status, "transient", f"rsync: {meaning}: {_tail(stderr)}")
    if exit_status == 11:  # file I/O: a full or failing disk more often than not
        return RsyncOutcome(exit_status, "permanent", f"rsync: {meaning}: {_tail(stderr)}")
    return RsyncOutcome(exit_status, "transient", f"rsync: {meaning}: {_tail(stderr)}")


def failed_files(stderr: str) -> list[tuple[str, str]]:
    """(path, why) for each file rsync names in an error message, in order, once each."""
    found: dict[str, str] = {}
    for line in stderr.splitlines():
        line = line.strip()
        match = FILE_ERROR.match(line)
        if match and match.group("what").strip() not in ("connection unexpectedly closed",):
            found.setdefault(_absolute(match.group("path")), match.group("why").strip() or match.group("what"))
            continue
        match = UPDATE_DISCARDED.match(line)
        if match:
            found.setdefault(_absolute(match.group("path")), "changed while it was read")
    return list(found.items())


def _absolute(path: str) -> str:
    """rsync with ``--relative`` names sender files from the root: make them absolute again."""
    return path if path.startswith("/") else "/" + path


def _tail(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return " | ".join(lines[-3:])[-400:] or "(no message)"


def matches_any(path: str, patterns: list[str]) -> bool:
    """``path`` (absolute) matches a fleet-file pattern: an absolute folder (itself or anything
    under it) or a glob (``*.sock``, ``/srv/app/cache/*``) on the full path or the file name."""
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        folder = pattern.rstrip("/")
        if pattern.startswith("/") and (path == folder or path.startswith(folder + "/")):
            return True
        if fnmatch.fnmatchcase(path, pattern) or (not pattern.startswith("/") and fnmatch.fnmatchcase(name, pattern)):
            return True
    return False


def rsync_exclude_args(patterns: list[str]) -> list[str]:
    """The fleet file's ``exclude`` patterns as rsync arguments (one ``--exclude=`` each).

    With ``--relative`` an absolute pattern is anchored at the transfer root, which is ``/``:
    the same path as on production.
    """
    return [f"--exclude={pattern}" for pattern in patterns]
