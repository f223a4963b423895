"""Scoped, short-lived transfer keys served by rsync's own daemon: pure planning (no network, no clock).

Replication pulls: the **mirror** runs rsync and reads from production with a key made for one
transfer. Production receives only the key's *public* half, installed in its own file
(``TRANSFER_KEYS_FILE``, listed in sshd's ``AuthorizedKeysFile``) as::

    restrict,from="MIRROR",expiry-time="UTC+15min",command="VIEW SERVICE PATHS…" ssh-ed25519 … hotspare-transfer:SERVICE:TAG:EXPIRES

- ``restrict``: no shell, pty, forwarding or agent;
- ``from``: only the mirror's address may use it;
- ``expiry-time``: sshd refuses it after a few minutes even if nobody removes it (a transfer
  needs the key only to log in; the running connection outlives it). sshd checks it on
  production's clock, so ``now`` is production's time (``planning/host_clocks.py``), not ours;
- ``command``: ``VIEW_SCRIPT``, which never reads what the client asked for. In a mount
  namespace of its own it mounts an empty tmpfs, binds the service's declared paths into it
  (read-only, each at its own absolute path), and hands the connection to **rsync's daemon**
  (``rsync --server --daemon``, ``RSYNCD_CONFIG``): one module, ``MODULE``, whose ``path`` is
  that view, with ``use chroot``, ``read only``, and every option refused but the few a pull
  sends. The client's whole request (module, paths, options, filter rules) is read by rsync
  itself, inside the chroot: nothing but the declared paths exists there, so no option can name
  anything else and no symbolic link can lead anywhere else.

So a compromised production receives nothing that opens another host, and a compromised
mirror holding the private half can, for a few minutes, only read that service's declared
paths on that service's production. The line is removed when the transfer ends; a killed run's
line expires by itself and the next install for the service removes it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hotspare.planning.host_clocks import CLOCK_COMMAND

TRANSFER_KEYS_FILE = "/etc/ssh/hotspare_transfer_keys"
VIEW_PATH = "/usr/local/lib/hotspare/transfer-view"
CONFIG_PATH = "/usr/local/lib/hotspare/transfer-rsyncd.conf"
# an empty folder on production; each transfer mounts its own view over it in its own namespace
VIEW_MOUNT = "/run/hotspare-transfer-view"
MODULE = "hotspare"
KEY_MARKER = "hotspare-transfer"
KEY_LIFETIME = timedelta(minutes=15)

# The only options a pull sends to production's rsync (``planning/replication.py`` builds
# them): -a's parts, -H -A -X, --numeric-ids, -R, -c, -n and --timeout. Everything else
# (--files-from, --iconv, --log-file, link following, …) is refused by the daemon.
ALLOWED_OPTIONS = ("a", "H", "A", "X", "numeric-ids", "R", "timeout", "c", "n")

RSYNCD_CONFIG = f"""# hotspare transfer daemon: started over SSH by {VIEW_PATH} (the forced command of a
# per-transfer key), never listening on a port. Installed and replaced by hotspare.
use chroot = yes
read only = yes
list = no
uid = 0
gid = 0
numeric ids = yes
# the chroot already keeps every link inside the view; munging only changes links a module receives
munge symlinks = no
reverse lookup = no
forward lookup = no
timeout = 300
refuse options = * {" ".join("!" + option for option in ALLOWED_OPTIONS)}

[{MODULE}]
path = {VIEW_MOUNT}
comment = the declared paths of one service, read-only
"""

VIEW_SCRIPT = f"""#!/bin/sh
# hotspare transfer view: the forced command of a per-transfer key. argv: SERVICE PATH...
# It never reads the client's command. In a mount namespace of its own (gone with this
# connection) it mounts an empty tmpfs on {VIEW_MOUNT}, binds each declared PATH into it
# read-only at its own absolute path (a path under another one comes with it; a missing one
# stays missing; a symbolic link is copied as a link), gives the folders on the way
# production's owners, modes and times, and hands the connection to rsync's daemon, which
# chroots into the view ({CONFIG_PATH}, module {MODULE}). Installed and replaced by hotspare.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
exec unshare --mount --propagation private -- /bin/sh -c '
service=$1; shift
view={VIEW_MOUNT}
fail() {{ echo "hotspare transfer view ($service): $1" >&2; exit 1; }}
mount -t tmpfs -o mode=0755,size=4m,nosuid,nodev,noexec hotspare-transfer "$view" || fail "cannot mount the view"
shown= files= links= folders= room=
for root do
  case $root in /*) ;; *) fail "not an absolute path: $root";; esac
  for other do [ "$other" != "$root" ] && case $root in "${{other%/}}"/*) continue 2;; esac; done
  folder=${{root%/*}}
  while [ -n "$folder" ]; do case " $folders " in *" $folder "*) ;; *) folders="$folders $folder";; esac; folder=${{folder%/*}}; done
  if [ -L "$root" ]; then links="$links $root" room="$room $view${{root%/*}}"
  elif [ -d "$root" ]; then shown="$shown $root" room="$room $view$root"
  elif [ -e "$root" ]; then shown="$shown $root" files="$files $root" room="$room $view${{root%/*}}"
  fi
done
if [ -n "$room" ]; then mkdir -p $room || fail "cannot make room for the paths"; fi
for root in $files; do : > "$view$root" || fail "cannot make room for $root"; done
for root in $links; do cp -a "$root" "$view$root" || fail "cannot show the link $root"; done
for root in $shown; do mount --rbind -o ro "$root" "$view$root" || fail "cannot show $root"; done
if [ -n "$folders" ]; then
  rsync -dR --perms --owner --group --times --numeric-ids $folders "$view/" 2>/dev/null
fi
mount -o remount,ro "$view" || fail "cannot make the view read-only"
exec rsync --server --daemon --config={CONFIG_PATH} .
' hotspare-transfer-view "$@"
"""

# One command installs (mode "add") or removes (mode "remove") lines under a lock, keeping every
# other line: removes expired hotspare lines of any service and, on "add", any older line of the
# same service (a dead run's), then appends the new line; it prints production's clock last
# (``host_clocks.CLOCK_COMMAND``), so the install measures the skew at no extra round trip. On "add" it also (re)writes the view
# script and the daemon's configuration and makes the view's mount point, each file through a
# temporary name of its own: the lock is the keys file's, and hosts that share one /usr/local
# (the lab's hosts do) must not move each other's half-written file.
# Arguments: MODE FILE SERVICE TAG NOW LINE VIEW_PATH VIEW_TEXT CONFIG_PATH CONFIG_TEXT MOUNT
KEYS_SCRIPT = (
    r"""
mode=$1 file=$2 service=$3 tag=$4 now=$5 line=$6
umask 077
# work production does in the same round trip (snapshot shipping: take or prune the snapshots);
# its arguments are words the orchestrator checked (declared paths, hotspare's own names)
if [ -n "${HOTSPARE_ALSO:-}" ]; then sh -c "$HOTSPARE_ALSO" sh $HOTSPARE_ALSO_ARGS || exit 1; fi
mkdir -p "${file%/*}" || exit 1
touch "$file" || exit 1
exec 9>>"$file.lock" && flock -w 30 9 || { echo "could not lock $file" >&2; exit 75; }
if [ "$mode" = add ]; then
  place() {
    new="$1.new.$$"
    mkdir -p "${1%/*}" && printf '%s' "$2" > "$new" && chmod "$3" "$new" && mv -f "$new" "$1" || { rm -f "$new"; exit 1; }
  }
  place "$7" "$8" 0755
  place "$9" "${10}" 0644
  mkdir -p "${11}" || exit 1
  if [ -n "${12:-}" ]; then place "${12}" "${13}" 0755; fi
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
chmod 0600 "$file.new" && mv -f "$file.new" "$file" || exit 1
""".replace("MARKER", KEY_MARKER)
    + CLOCK_COMMAND
)


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


def transfer_key_line(
    public_key: str, *, service: str, tag: str, source_address: str, paths: list[str], now: datetime, program: str = VIEW_PATH
) -> TransferKey:
    """The restricted authorized_keys line for one transfer (``now``: production's clock, UTC).
    ``program`` is the forced command: the view (``paths`` are the declared paths) or snapshot
    shipping's sender (``paths`` are snapshots and parents, "-" for none: ``planning/snapshot_shipping.py``)."""
    for word in [service, tag, source_address, *paths]:
        if unsafe_command_word(word):
            raise ValueError(
                f"cannot put {word!r} into a transfer key's forced command (spaces, quotes or "
                "backslashes are not allowed in service names, addresses or data paths)"
            )
    for path in paths:
        if program != VIEW_PATH and path == "-":
            continue
        if not path.startswith("/") or posixpath.normpath(path) != path or path.startswith("//"):
            raise ValueError(
                f"cannot serve {path!r} to a transfer: declared paths are absolute and normalised "
                "(no '..', '.', doubled or trailing slashes)"
            )
    if service.startswith("-"):
        raise ValueError(f"cannot put {service!r} into a transfer key's forced command (it starts with '-')")
    expires = now + KEY_LIFETIME
    expires_epoch = int(expires.timestamp())
    key_type, key_body = public_key.split()[:2]
    command = " ".join([program, service, *paths])
    options = f'restrict,from="{source_address}",expiry-time="{expires.strftime("%Y%m%d%H%M%S")}Z",command="{command}"'
    comment = f"{KEY_MARKER}:{service}:{tag}:{expires_epoch}"
    return TransferKey(service, tag, f"{options} {key_type} {key_body} {comment}", expires_epoch)


def install_key_argv(
    key: TransferKey, now_epoch: int, *, also: tuple[str, list[str]] | None = None, programs: tuple[str, str] | None = None
) -> list[str]:
    """Production command: install the view script, the daemon's configuration and the key line
    (and drop stale lines). ``key.line`` may hold several lines of one tag (snapshot shipping
    adds its sender's); ``programs`` (path, text) places one more fixed program; ``also`` (a
    fixed program, its words) runs first in the same round trip."""
    return [
        *_also(also),
        "sh",
        "-c",
        KEYS_SCRIPT,
        "sh",
        "add",
        TRANSFER_KEYS_FILE,
        key.service,
        key.tag,
        str(now_epoch),
        key.line,
        VIEW_PATH,
        VIEW_SCRIPT,
        CONFIG_PATH,
        RSYNCD_CONFIG,
        VIEW_MOUNT,
        *(programs or ()),
    ]


def remove_key_argv(service: str, tag: str, now_epoch: int, *, also: tuple[str, list[str]] | None = None) -> list[str]:
    """Production command: remove the transfer's key line (and any expired ones)."""
    return [*_also(also), "sh", "-c", KEYS_SCRIPT, "sh", "remove", TRANSFER_KEYS_FILE, service, tag, str(now_epoch), ""]


def _also(also: tuple[str, list[str]] | None) -> list[str]:
    if also is None:
        return []
    program, words = also
    for word in words:
        if unsafe_command_word(word):
            raise ValueError(f"cannot hand {word!r} to a program on production (one word without spaces or quotes)")
    return ["env", f"HOTSPARE_ALSO={program}", f"HOTSPARE_ALSO_ARGS={' '.join(words)}"]


def key_lines(text: str) -> list[dict[str, Any]]:
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
