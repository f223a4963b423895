"""One program per host per step of a replication: the commands a step sends to one host,
joined into one argument list that runs them in order (``containment.each_argv``).

A replication used to send 22–23 commands per service (the mirror alone 15: the store closed,
the quota group, the working subvolume, four account files one by one, the snapshot, the link,
the host lock, an SFTP session, the merged files, each pruned copy). Each is a round trip; at
a hundred services they cost more than the copies. Now each host hears once per step:

- production: the preflight's facts with its account files; the transfer key with the
  snapshots (shipping); the key's removal with the old snapshots; the verification;
- the mirror: the preflight's facts; the preparation (store closed, quota group, working
  subvolume, the service's account lines staged, the mirror's own account files read back);
  the transfer with the copy's snapshot; the verification; the finish (the ``current`` link,
  the account merge under the host lock, the pruned copies).

Safety is the programs' order: a step that failed stops its program (``each_argv``), each
marker line says what was done, and the orchestrator records only what a marker confirms.

Pure: argument lists, constant programs and parsers, no network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hotspare.planning import host_lock as host_lock_plan
from hotspare.planning import shell_programs as shell
from hotspare.planning.accounts import ACCOUNT_FILES
from hotspare.planning.containment import each_argv

ACCOUNTS_MARK = "hotspare-accounts"  # the account files follow this line (NUL-terminated each)
QUOTA_MARK = "hotspare-quota-exit="  # the quota program's exit status, after its own lines
PROMOTED_MARK = "hotspare-promoted"
ACCOUNTS_EXIT_MARK = "hotspare-accounts-exit="
PRUNED_MARK = "hotspare-pruned="

# A command of a joined program that must not read the step's stdin (only the last one does).
QUIET = 'exec "$@" </dev/null'

# A command whose failure is said (its exit status on a line of its own) but stops nothing.
TOLERATED = 'mark=$1; shift; "$@" </dev/null; echo "$mark$?"'

# A command whose exit status is said, then returned (a failure stops the program after it).
SAID = 'mark=$1; shift; "$@"; status=$?; echo "$mark$status"; exit "$status"'

# Each named path gets the next NUL-terminated part of stdin: written as a new file (0600, its
# folder made 0700 if missing), renamed over the old one, so a hard-linked or earlier file of
# the same name is never written through. ``$1`` is the new files' suffix ("" renames them in).
WRITE_FILES = (
    "import os, sys\n"
    "suffix = sys.argv[1]\n"
    "paths = sys.argv[2:]\n"
    "parts = sys.stdin.buffer.read().split(b'\\0')\n"
    "if len(parts) != len(paths) + 1 or parts[-1]:\n"
    "    sys.exit('expected %d NUL-terminated files on stdin' % len(paths))\n"
    "os.umask(0o077)\n"
    "for path, data in zip(paths, parts):\n"
    "    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)\n"
    "    new = path + (suffix or '.hotspare-new')\n"
    "    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)\n"
    "    with os.fdopen(fd, 'wb') as handle:\n"
    "        handle.write(data)\n"
    "    if not suffix:\n"
    "        os.replace(new, path)\n"
)

# $1 the wait, $2 the lock file, $3 the holder's note, then the command to run with the host lock
# held (``planning/host_lock.py``: the same lock, file mode and note as its held form).
UNDER_HOST_LOCK = (
    "wait=$1 file=$2 note=$3; shift 3; umask 077; "
    'if [ -e "$file" ]; then chmod 0600 -- "$file" || exit 1; fi; '
    'exec flock -w "$wait" -E ' + str(host_lock_plan.BUSY_EXIT) + ' "$file" '
    'sh -c \'printf "%s, since %s\\n" "$1" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$2" && shift 2 && exec "$@"\' '
    'sh "$note" "$file" "$@"'
)

# $@: files beside the account files that killed runs of ours left (only ever run under the lock).
REMOVE_LEFTOVERS = (
    'for path do for left in "$path.hotspare-new" "$path.hotspare-new-"*; do '
    '[ -e "$left" ] && { rm -f -- "$left" || exit 1; }; done; done; exit 0'
)


def quiet(argv: Sequence[str]) -> list[str]:
    return ["sh", "-c", QUIET, "sh", *argv]


def write_files_argv(paths: Sequence[str], suffix: str = "") -> list[str]:
    """Write stdin's NUL-terminated parts to ``paths`` (see ``WRITE_FILES``)."""
    return ["python3", "-IS", "-c", WRITE_FILES, suffix, *paths]


def nul_terminated(files: Mapping[str, str], paths: Sequence[str]) -> bytes:
    return b"".join(files.get(path, "").encode(errors="surrogateescape") + b"\0" for path in paths)


# ---------------------------------------------------------------------------------------
# Production's preflight: its facts, then its account files


def with_account_files(facts_argv: list[str]) -> list[str]:
    """Production's preflight program followed by its four account files (one round trip)."""
    return each_argv([facts_argv, ["echo", ACCOUNTS_MARK], shell.read_files(ACCOUNT_FILES)])


def split_account_files(output: bytes) -> tuple[str, dict[str, str] | None]:
    """(the facts' text, the account files) from ``with_account_files``'s output; None for the
    files when they did not arrive whole (a NUL inside one: staged by their own command then)."""
    facts, mark, files = output.partition(b"\n" + ACCOUNTS_MARK.encode() + b"\n")
    if not mark:
        return output.decode(errors="replace"), None
    try:
        return facts.decode(errors="replace") + "\n", shell.split_files(ACCOUNT_FILES, files)
    except ValueError:
        return facts.decode(errors="replace") + "\n", None


# ---------------------------------------------------------------------------------------
# Production's pre-sync hooks, with the transfer key's install

# A hook of the fleet file: no stdin, its output dropped (as when it ran on its own), its errors kept.
HOOK = '"$@" </dev/null >/dev/null'


def after_hooks(hooks: Sequence[Sequence[str]], install: list[str]) -> list[str]:
    """The fleet file's pre-sync hooks, in order, then ``install`` (the transfer key, and for
    snapshot shipping the snapshots): one round trip; a failed hook stops it before the key."""
    if not hooks:
        return install
    return each_argv([*(["sh", "-c", HOOK, "sh", *hook] for hook in hooks), install])


def hooks_timeout(hooks: Sequence[Sequence[str]]) -> float:
    return 600.0 + 1800.0 * len(hooks)  # each hook as long as when it ran on its own


# ---------------------------------------------------------------------------------------
# The mirror's preparation, beside the key install


def prepare_argv(
    close_store: list[str], quota: list[str] | None, prepare: Sequence[Sequence[str]], tree: str, stage_accounts: bool
) -> list[str]:
    """Close the store, set up the quota group (said, tolerated), make the working subvolume,
    stage the service's account lines (stdin) into ``tree``, read the mirror's own account files."""
    argvs = [quiet(close_store)]
    if quota is not None:
        argvs.append(["sh", "-c", TOLERATED, "sh", QUOTA_MARK, *quota])
    argvs += [quiet(argv) for argv in prepare]
    if stage_accounts:
        argvs.append(write_files_argv([tree + path for path in ACCOUNT_FILES]))
    argvs += [["echo", ACCOUNTS_MARK], shell.read_files(ACCOUNT_FILES)]
    return each_argv(argvs)


@dataclass(frozen=True)
class Prepared:
    quota_output: str  # the quota program's lines (``space.parse_quota``)
    quota_status: int | None  # its exit status; None when it did not run
    mirror_accounts: dict[str, str] | None  # the mirror's four account files as read


def parse_prepared(output: bytes) -> Prepared:
    head, mark, files = output.partition(ACCOUNTS_MARK.encode() + b"\n")
    text = head.decode(errors="replace")
    quota, said, rest = text.partition(QUOTA_MARK)
    status = int(rest.split()[0]) if said and rest.split() and rest.split()[0].isdigit() else None
    try:
        accounts = shell.split_files(ACCOUNT_FILES, files) if mark else None
    except ValueError:
        accounts = None
    return Prepared(quota if said else "", status, accounts)


# ---------------------------------------------------------------------------------------
# The finish: the current link, the account merge under the host lock, the pruned copies


def digest(text: str) -> str:
    return hashlib.sha256(text.encode(errors="surrogateescape")).hexdigest()


def finish_argv(
    link: str,
    target: str,
    merged: Mapping[str, str],
    read: Mapping[str, str],
    run_tag: str,
    holder: str,
    prune: Sequence[tuple[str, list[str]]],
) -> list[str]:
    """The mirror's last step of a replication, in this order, each only if the one before held:

    1. ``link`` -> ``target`` (a new link renamed over the old: atomic);
    2. the changed account files (``merged``: path -> text) replaced under the host lock, only if
       each still holds the bytes ``read`` (their sha256), else nothing (exit ``BUSY_EXIT``);
    3. each copy of ``prune`` (copy id, its removal argv) removed, with a marker line each.

    stdin: the changed files, NUL-terminated, in ``ACCOUNT_FILES`` order."""
    argvs = [["ln", "-sfn", target, link + ".new"], ["mv", "-T", link + ".new", link], ["echo", PROMOTED_MARK]]
    changed = [path for path in ACCOUNT_FILES if path in merged]
    if changed:
        suffix = host_lock_plan.temporary_suffix(run_tag)
        locked = each_argv(
            [
                ["sh", "-c", REMOVE_LEFTOVERS, "sh", *ACCOUNT_FILES],
                write_files_argv(changed, suffix),
                host_lock_plan.replace_checked_argv(suffix, {path: digest(read.get(path, "")) for path in changed}),
            ]
        )
        argvs.append(
            [
                "sh",
                "-c",
                SAID,
                "sh",
                ACCOUNTS_EXIT_MARK,
                "sh",
                "-c",
                UNDER_HOST_LOCK,
                "sh",
                f"{host_lock_plan.WAIT_SECONDS:g}",
                host_lock_plan.HOST_LOCK_FILE,
                " ".join(holder.split()),
                *locked,
            ]
        )
    for copy_id, removal in prune:
        argvs += [quiet(removal), ["echo", PRUNED_MARK + copy_id]]
    return each_argv(argvs)


def finish_stdin(merged: Mapping[str, str]) -> bytes:
    return nul_terminated(merged, [path for path in ACCOUNT_FILES if path in merged])


@dataclass(frozen=True)
class Finished:
    promoted: bool
    accounts_status: int | None  # None: no account file changed (nothing ran under the lock)
    pruned: tuple[str, ...]


def parse_finished(output: str) -> Finished:
    lines = output.splitlines()
    status = next((line[len(ACCOUNTS_EXIT_MARK) :] for line in lines if line.startswith(ACCOUNTS_EXIT_MARK)), None)
    return Finished(
        PROMOTED_MARK in lines,
        int(status) if status and status.isdigit() else None,
        tuple(line[len(PRUNED_MARK) :] for line in lines if line.startswith(PRUNED_MARK)),
    )
