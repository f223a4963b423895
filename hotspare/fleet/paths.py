"""Which paths a service may declare: never a system tree, never hotspare's own folders.

hotspare copies a service's paths onto its mirror with ``rsync --delete`` when a failover makes
a copy live, and restores them onto a standby when it rebuilds one. A path such as ``/etc`` or
``/var/lib`` there would replace the mirror's own system with production's, and a path that
contains hotspare's working folders would delete its copies. So each declared path must be
absolute, written in its one normal form, and lie *inside* the system trees rather than be one
of them (``/etc/nginx/sites-available/app1`` and ``/srv/app1/data`` are fine, ``/etc`` and
``/srv`` are not).

Pure functions, no file system access: the fleet rules (``rules.py``) and the failover planner's
guard (``planning/failover.py``) apply the same rule.
"""

from __future__ import annotations

import posixpath

# hotspare's own working folders on the servers. Equal to the constants of the planners that
# use them (``planning/replication.py``, ``planning/shell_programs.py``, ``planning/restic.py``,
# ``planning/rebuild.py``; a unit test keeps them equal):
# they are repeated here so that checking a fleet file imports no SSH code.
COPIES_ROOT = "/srv/hotspare"  # the mirror's point-in-time copies
RUN_DIR = "/run/hotspare"  # per-run key material
BACKUP_ROOT = "/srv/backup"  # the storage host's default repository base
RESTORE_BASE = "/var/tmp/hotspare-restore"  # scratch space of a standby being rebuilt
PROGRAM_DIR = "/usr/local/lib/hotspare"  # the transfer view and its rsync daemon configuration
STATE_DIR = "/var/lib/hotspare"  # drills' scratch folders
CONFIG_DIR = "/etc/hotspare"
DRILL_DIR = "/opt/hotspare"
OWN_FOLDERS = (COPIES_ROOT, RUN_DIR, BACKUP_ROOT, RESTORE_BASE, PROGRAM_DIR, STATE_DIR, CONFIG_DIR, DRILL_DIR)

# A declared path travels as one word of forced commands and rsync daemon requests: letters,
# digits and these only (no whitespace, quotes or shell characters).
PATH_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+@,:=%~")

# Trees that belong to the operating system or are shared by every service: a service may
# declare a path inside them, never one of them as a whole.
SYSTEM_TREES = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/lost+found",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/var",
        "/usr/bin",
        "/usr/include",
        "/usr/lib",
        "/usr/lib32",
        "/usr/lib64",
        "/usr/libexec",
        "/usr/local",
        "/usr/local/bin",
        "/usr/local/lib",
        "/usr/local/sbin",
        "/usr/local/share",
        "/usr/sbin",
        "/usr/share",
        "/usr/src",
        "/var/backups",
        "/var/cache",
        "/var/lib",
        "/var/local",
        "/var/lock",
        "/var/log",
        "/var/mail",
        "/var/opt",
        "/var/run",
        "/var/spool",
        "/var/tmp",
        "/var/www",
        "/etc/network",
        "/etc/pam.d",
        "/etc/security",
        "/etc/ssl",
        "/etc/sudoers.d",
        "/etc/systemd",
    }
)

# Files that make a server itself: every server keeps its own. System accounts in a service's
# UID range are merged into the mirror's account files separately, never copied as whole files.
SERVER_FILES = frozenset(
    {
        "/etc/fstab",
        "/etc/group",
        "/etc/gshadow",
        "/etc/hostname",
        "/etc/hosts",
        "/etc/machine-id",
        "/etc/passwd",
        "/etc/resolv.conf",
        "/etc/shadow",
        "/etc/sudoers",
    }
)

# Trees where nothing may be declared, not even a path inside: kernel and device files,
# volatile run state, the boot loader, and the SSH identities hotspare pins and logs in with.
CLOSED_TREES = ("/proc", "/sys", "/dev", "/run", "/boot", "/etc/ssh", "/root/.ssh")


def overlaps(first: str, second: str) -> bool:
    """True when the normal absolute paths are equal or one contains the other."""
    return first == second or inside(first, second) or inside(second, first)


def inside(path: str, tree: str) -> bool:
    """True when ``path`` lies strictly below ``tree`` (both normal and absolute)."""
    return path.startswith(tree.rstrip("/") + "/")


def relation(path: str, other: str) -> str:
    """How two overlapping paths relate, for messages: 'the same path as', 'inside', …"""
    if path == other:
        return "the same path as"
    return "inside" if inside(path, other) else "a parent of"


def form_problem(path: str) -> str | None:
    """Why ``path`` is not an absolute path in its one normal form, or None."""
    if not path.startswith("/"):
        return f"{path!r} is relative; write it absolute, starting with /"
    if any(ord(character) < 32 or ord(character) == 127 for character in path):
        return f"{path!r} contains a control character"
    odd = sorted({character for character in path if character not in PATH_CHARACTERS})
    if odd:
        return (
            f"{path!r} contains {' '.join(repr(character) for character in odd)}: a declared path is one word of "
            "letters, digits and / . _ - + @ , : = % ~ (rename the folder, or declare its parent)"
        )
    normal = posixpath.normpath(path)
    if "//" in path or path != normal:
        # normpath keeps a leading "//" (POSIX leaves its meaning open): name it ourselves.
        written = "/" + normal.lstrip("/")
        return f"{path!r} is not in normal form (no '.', '..', '//' or trailing slash); write {written!r}"
    return None


def path_problem(path: str) -> str | None:
    """Why a service must not declare ``path`` on any server, or None when it may.

    Covers the form, the system trees and hotspare's fixed working folders; what depends on
    the rest of the fleet (another service's paths, declared backup repositories) is checked
    by ``rules.py``.
    """
    problem = form_problem(path)
    if problem:
        return problem
    if path in SYSTEM_TREES:
        return f"{path} is a system tree as a whole; declare the service's own folder or file inside it"
    if path in SERVER_FILES:
        return f"{path} belongs to the server itself (system accounts in the service's UID range are merged separately)"
    for folder in OWN_FOLDERS:
        if overlaps(path, folder):
            return f"{path} overlaps hotspare's own working folder {folder}"
    for tree in CLOSED_TREES:
        if path == tree or inside(path, tree):
            return f"{path} is inside {tree}, which belongs to the server itself and is never replicated"
    return None
