"""Scoped, short-lived transfer keys: pure planning (no network, no clock).

Replication pulls: the **mirror** runs rsync and reads from production with a key made for one
transfer. Production receives only the key's *public* half, installed in its own file
(``TRANSFER_KEYS_FILE``, listed in sshd's ``AuthorizedKeysFile``) as::

    restrict,from="MIRROR",expiry-time="UTC+15min",command="GUARD SERVICE PATHS…" ssh-ed25519 … hotspare-transfer:SERVICE:TAG:EXPIRES

- ``restrict``: no shell, pty, forwarding or agent;
- ``from``: only the mirror's address may use it;
- ``expiry-time``: sshd refuses it after a few minutes even if nobody removes it (a transfer
  needs the key only to log in; the running connection outlives it);
- ``command``: the transfer guard (``GUARD_SCRIPT``) lets through only ``rsync --server
  --sender`` (read) of the service's declared paths, no link following, then hands over to
  ``rrsync -ro`` (shipped with rsync), which vets rsync's options again.

So a compromised production receives nothing that opens another host, and a compromised
mirror holding the private half can, for a few minutes, only read that service's declared
paths on that service's production. The line is removed when the transfer ends; a killed run's
line expires by itself and the next install for the service removes it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import datetime, timedelta

TRANSFER_KEYS_FILE = "/etc/ssh/hotspare_transfer_keys"
GUARD_PATH = "/usr/local/lib/hotspare/transfer-guard"
KEY_MARKER = "hotspare-transfer"
KEY_LIFETIME = timedelta(minutes=15)

GUARD_SCRIPT = '''#!/usr/bin/python3 -IS
"""hotspare transfer guard: the forced command of a per-run transfer key.

Allows only a read (rsync --server --sender) of the paths named on this command line (or files
under them, also after resolving links on the way), without following links, then hands over
to rrsync -ro, which vets the options. rrsync runs in this same interpreter (one Python start
per connection instead of two); -I -S: no environment, user or site packages reach either.
Installed and replaced by hotspare; argv: SERVICE PATH...
"""
import glob
import os
import posixpath
import runpy
import shlex
import sys

LINK_FOLLOWING = ("--copy-links", "--copy-unsafe-links", "--copy-dirlinks", "--keep-dirlinks")


def refuse(reason):
    sys.stderr.write("hotspare transfer guard (" + sys.argv[1] + "): refused: " + reason + "\\n")
    sys.exit(1)


def within(path, roots):
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def allowed(path, roots):
    """Named under a root, and still under one once symbolic links in the way are resolved, for
    every name rrsync's wildcard expansion can make of it (a link to / inside the data must not
    open the rest of the server)."""
    if not path.startswith("/") or posixpath.normpath(path) != path.rstrip("/") or "/../" in path + "/":
        return False
    real_roots = [os.path.realpath(root) for root in roots]
    # the last name is sent as it is (rsync does not follow it); the folders on the way are resolved
    return within(path, roots) and all(
        within(posixpath.join(os.path.realpath(posixpath.dirname(name)), posixpath.basename(name)), real_roots + roots)
        for name in glob.glob(path) or [path])


roots = sys.argv[2:]
try:
    words = shlex.split(os.environ.get("SSH_ORIGINAL_COMMAND", ""))
except ValueError:
    refuse("unparsable command")
if words[:3] != ["rsync", "--server", "--sender"] or "." not in words:
    refuse("only a read of the service's paths is allowed")
separator = words.index(".")
for word in words[3:separator]:
    if word in LINK_FOLLOWING or word.split("=", 1)[0] in LINK_FOLLOWING:
        refuse("link following is not allowed: " + word)
    if word.startswith("-") and not word.startswith("--") and any(flag in word.split("e.", 1)[0] for flag in "LkK"):
        refuse("link following is not allowed: " + word)
paths = words[separator + 1:]
if not paths:
    refuse("no path named")
for path in paths:
    if not allowed(path, roots):
        refuse("not a path of this service: " + path)
# exactly what `rrsync -ro /` would do as its own program, without starting a second interpreter
sys.argv = ["rrsync", "-ro", "/"]
runpy.run_path("/usr/bin/rrsync", run_name="__main__")
'''

# One command installs (mode "add") or removes (mode "remove") lines under a lock, keeping every
# other line: removes expired hotspare lines of any service and, on "add", any older line of the
# same service (a dead run's), then appends the new line. On "add" it also (re)writes the guard,
# through a temporary name of its own: the lock is the keys file's, and hosts that share one
# /usr/local (the lab's hosts do) must not move each other's half-written guard.
# Arguments: MODE FILE SERVICE TAG NOW LINE GUARD_PATH GUARD_TEXT
KEYS_SCRIPT = r'''
mode=$1 file=$2 service=$3 tag=$4 now=$5 line=$6 guard=$7 guard_text=$8
umask 077
mkdir -p "${file%/*}" || exit 1
touch "$file" || exit 1
exec 9>>"$file.lock" && flock -w 30 9 || { echo "could not lock $file" >&2; exit 75; }
if [ "$mode" = add ]; then
  new="$guard.new.$$"
  mkdir -p "${guard%/*}" && printf '%s' "$guard_text" > "$new" && chmod 0755 "$new" && mv -f "$new" "$guard" || { rm -f "$new"; exit 1; }
fi
awk -v mode="$mode" -v service="$service" -v tag="$tag" -v now="$now" -v marker="MARKER" '
  { n = split($NF, part, ":") }
  n == 4 && part[1] == marker {
    if (part[4] + 0 < now + 0) next
    if (mode == "add" && part[2] == service) next
    if (mode == "remove" && part[3] == tag) next
  }
  { print }' "$file" > "$file.new" || exit 1
if [ "$mode" = add ]; then printf '%s\n' "$line" >> "$file.new" || exit 1; fi
chmod 0600 "$file.new" && mv -f "$file.new" "$file"
'''.replace("MARKER", KEY_MARKER)


@dataclass(frozen=True)
class TransferKey:
    """One transfer key's public line for production and what identifies it."""

    service: str
    tag: str
    line: str  # the authorized_keys line (public; nothing secret)
    expires_epoch: int


def unsafe_command_word(word: str) -> bool:
    """Words that cannot be written into an authorized_keys ``command="…"`` safely."""
    return not word or any(character in word for character in '"\\\n\r\t ') or "'" in word


def transfer_key_line(public_key: str, *, service: str, tag: str, source_address: str,
                      paths: list[str], now: datetime) -> TransferKey:
    """The restricted authorized_keys line for one transfer (``now`` is UTC)."""
    for word in [service, tag, source_address, *paths]:
        if unsafe_command_word(word):
            raise ValueError(f"cannot put {word!r} into a transfer key's forced command (spaces, quotes or "
                             "backslashes are not allowed in service names, addresses or data paths)")
    expires = now + KEY_LIFETIME
    expires_epoch = int(expires.timestamp())
    key_type, key_body = public_key.split()[:2]
    command = " ".join([GUARD_PATH, service, *paths])
    options = (f'restrict,from="{source_address}",expiry-time="{expires.strftime("%Y%m%d%H%M%S")}Z",'
               f'command="{command}"')
    comment = f"{KEY_MARKER}:{service}:{tag}:{expires_epoch}"
    return TransferKey(service, tag, f"{options} {key_type} {key_body} {comment}", expires_epoch)


def install_key_argv(key: TransferKey, now_epoch: int) -> list[str]:
    """Production command: install the guard and the key line (and drop stale lines)."""
    return ["sh", "-c", KEYS_SCRIPT, "sh", "add", TRANSFER_KEYS_FILE, key.service, key.tag, str(now_epoch),
            key.line, GUARD_PATH, GUARD_SCRIPT]


def remove_key_argv(service: str, tag: str, now_epoch: int) -> list[str]:
    """Production command: remove the transfer's key line (and any expired ones)."""
    return ["sh", "-c", KEYS_SCRIPT, "sh", "remove", TRANSFER_KEYS_FILE, service, tag, str(now_epoch), "", GUARD_PATH, ""]


def key_lines(text: str) -> list[dict]:
    """hotspare transfer lines in an authorized_keys text: service, tag, expiry, options."""
    found = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        marker = parts[-1].split(":")
        if len(marker) == 4 and marker[0] == KEY_MARKER:
            found.append({"service": marker[1], "tag": marker[2], "expires": int(marker[3]), "options": parts[0]})
    return found


def is_within(path: str, roots: list[str]) -> bool:
    """The guard's rule, for planners: ``path`` is a root or lies under one."""
    normal = posixpath.normpath(path)
    return any(normal == root or normal.startswith(root.rstrip("/") + "/") for root in roots)
