"""Pure planning of how a drill contains the customer's code: the identity its commands run as,
the filesystem they see, the argument lists that build that view and run a command in it, and the
audit that proves the view has no writable mount of the mirror's own.

No network, no Prefect, no clock: facts in (account files, a mount table), argument lists and
sentences out. ``hotspare/planning/drill.py`` places it in the drill's bubble.

The view (``<scratch>/view``), built in the bubble's mount namespace only:

- the drill's **scratch** is a ``tmpfs`` (``SCRATCH_SIZE`` at most) mounted over its folder in
  that namespace: every writable layer of the drill lives in it, so the kernel drops all of it
  when the bubble's last process ends, and nothing the drill writes ever reaches the mirror's disks;
- an **overlay of every real filesystem** of the mirror (``/`` and each mounted disk filesystem
  under it), lower layer the mirror's own, upper layer in the scratch: the app sees the mirror's
  OS and writes anywhere its user may, into the scratch;
- **fresh, empty tmpfs** over the folders where a shared mirror keeps other people's things
  (``HIDDEN``: ``/home``, ``/root``, ``/tmp``, ``/var/tmp``, ``/run``, ``/mnt``, ``/media``), a
  fresh ``/proc`` of the bubble's PID namespace, ``/sys`` read-only, a ``/dev`` holding only
  ``DEVICES`` and a fresh ``/dev/shm``;
- the service's own paths bound from the drill's writable copy, then **masks** over the copy store,
  the drill folders and every other service's declared paths (an empty read-only tmpfs, or
  ``/dev/null`` over a file).

Every mount of the view is ``nosuid`` and (but for the device nodes) ``nodev``. A command enters
the view in a new mount namespace whose root it becomes (``pivot_root``, the old root detached),
drops to the service's user (``setpriv``: real and effective IDs, no supplementary groups, no new
privileges, no capabilities) and only then enters a **user namespace** of its own (mapped to
itself) with another mount namespace, in which every mount of the view is locked by the kernel.
A service that runs as ``root`` runs as root of that user namespace only, mapped from ``nobody``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HIDDEN = ("/home", "/root", "/tmp", "/var/tmp", "/run", "/mnt", "/media")
STICKY = ("/tmp", "/var/tmp")
PSEUDO = ("/proc", "/sys", "/dev")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
# Filesystems an overlay can take as its lower layer; other mounts (pseudo, network, FUSE) are left
# out of the view: the app sees the empty folder beneath them.
OVERLAY_TYPES = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "f2fs", "zfs", "vfat", "squashfs", "jfs", "reiserfs", "bcachefs"}
)
SCRATCH_SIZE = "1g"
NOBODY = 65534
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Characters overlayfs options or the scripts below cannot carry in a path.
UNSAFE_PATH_CHARACTERS = set(",:\\\"'\n\t =")

# Fixed scripts, run as ``sh -c SCRIPT sh ARGS…`` (arguments, never text built from values).
# A layer of the view: an overlay over a folder, a read-only bind of a mounted file.
LAYER = (
    'if [ -d "$1" ]; then mkdir -p -- "$3/upper" "$3/work" && mount -t overlay "$4" '
    '-o "lowerdir=$1,upperdir=$3/upper,workdir=$3/work,nosuid,nodev" "$2"\n'
    'elif [ -e "$2" ]; then mount --bind -- "$1" "$2" && mount -o remount,bind,ro,nosuid,nodev -- "$2"\n'
    "fi"
)
# A fresh tmpfs over a folder of the view, if the mirror has that folder.
FRESH = '[ -d "$1" ] || exit 0; mount -t tmpfs -o "nosuid,nodev,size=$3,mode=$4" "$2" "$1"'
# /dev with the harmless device nodes only, a fresh /dev/shm and the usual links.
DEVICE_FOLDER = (
    "dev=$1; tag=$2; shift 2\n"
    'mount -t tmpfs -o nosuid,nodev,noexec,size=1m,mode=0755 "$tag" "$dev" || exit 1\n'
    'for name in "$@"; do : > "$dev/$name" && mount --bind "/dev/$name" "$dev/$name" '
    '&& mount -o remount,bind,nosuid,noexec -- "$dev/$name" || exit 1; done\n'
    'mkdir "$dev/shm" "$dev/pts" && mount -t tmpfs -o nosuid,nodev,size=64m,mode=1777 "$tag" "$dev/shm" || exit 1\n'
    'ln -s /proc/self/fd "$dev/fd" && ln -s /proc/self/fd/0 "$dev/stdin" && ln -s /proc/self/fd/1 "$dev/stdout" '
    '&& ln -s /proc/self/fd/2 "$dev/stderr"'
)
# The service's own path from the drill's writable copy; the copy is hostile data, so the source
# must resolve inside the copy (a symbolic link in it must not bind the mirror's own folder), and
# the place inside the view.
BIND_OWN = (
    'source=$(realpath -e -- "$1") || { echo "the copy has no $4" >&2; exit 3; }\n'
    'case "$source" in "$3"/*) ;; *) echo "$4 in the copy leads outside the copy ($source)" >&2; exit 4;; esac\n'
    'if [ -d "$source" ]; then mkdir -p -- "$2"; else mkdir -p -- "$(dirname -- "$2")"; [ -e "$2" ] || : > "$2"; fi\n'
    'target=$(realpath -e -- "$2") || exit 3\n'
    'case "$target" in "$5"/*) ;; *) echo "$4 leads outside the drill\'s view ($target)" >&2; exit 4;; esac\n'
    'mount --bind -- "$source" "$target" && mount -o remount,bind,nosuid,nodev -- "$target"'
)
# Hide what is there (a folder: an empty read-only tmpfs; a file: /dev/null); nothing there: nothing.
MASK = (
    'target=$(realpath -e -- "$1" 2>/dev/null) || exit 0\n'
    'case "$target" in "$3"/*) ;; *) exit 0;; esac\n'
    'if [ -d "$target" ]; then mount -t tmpfs -o ro,nosuid,nodev,size=4k,mode=0755 "$2" "$target"\n'
    'else mount --bind /dev/null "$target" && mount -o remount,bind,ro,nosuid,nodev -- "$target"; fi'
)
# Enter the view: it becomes the root of a new mount namespace, the old root is detached.
ENTER_VIEW = 'cd "$1" && pivot_root . . && umount -l . && cd / && shift && exec "$@"'


@dataclass(frozen=True)
class Identity:
    """Who the customer's commands run as: a name and the IDs the kernel checks."""

    name: str
    uid: int
    gid: int
    home: str
    source: str  # "copy", "mirror" or "root of a user namespace"

    @property
    def as_root(self) -> bool:
        return self.uid == 0

    def describe(self) -> str:
        if self.as_root:
            return f"root of a user namespace (uid {NOBODY} outside it)"
        return f"{self.name} (uid {self.uid}, gid {self.gid}, from the {self.source}'s accounts)"


@dataclass(frozen=True)
class Mount:
    """One line of /proc/PID/mountinfo, with the fields the view needs."""

    point: str
    root: str
    fstype: str
    source: str
    options: frozenset[str]  # the mount's own flags (rw/ro, nosuid, nodev…), not the filesystem's


def passwd_entries(text: str) -> dict[str, tuple[int, int, str]]:
    """``name -> (uid, gid, home)`` from an /etc/passwd text (malformed lines skipped)."""
    entries: dict[str, tuple[int, int, str]] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) == 7 and fields[2].isdigit() and fields[3].isdigit() and fields[0] not in entries:
            entries[fields[0]] = (int(fields[2]), int(fields[3]), fields[5])
    return entries


def default_run_as(spec: dict[str, Any], copy_passwd: str) -> str | None:
    """The service's first declared account, else the copy's first account in its UID range."""
    accounts = spec.get("accounts") or {}
    if accounts.get("users"):
        return str(accounts["users"][0])
    low, high = accounts.get("uid_min", 1000), accounts.get("uid_max", 59999)
    for name, (uid, _gid, _home) in passwd_entries(copy_passwd).items():
        if low <= uid <= high:
            return name
    return None


def choose_identity(service: str, spec: dict[str, Any], copy_passwd: str, mirror_passwd: str) -> Identity | str:
    """The identity of the drill's commands, or the sentence of a refusal.

    ``run_as`` from the fleet, else the default above. The copy's accounts are production's, so a
    hostile production could give that name UID 0 or another customer's UID: an identity read from
    the copy must lie, UID and GID, in the service's declared UID range. One read from the mirror
    (the name is not in the copy) is the mirror's own. Root only when the fleet says ``run_as: root``.
    """
    accounts = spec.get("accounts") or {}
    low, high = accounts.get("uid_min", 1000), accounts.get("uid_max", 59999)
    explicit = spec.get("run_as")
    if explicit == "root":
        return Identity("root", 0, 0, "/root", "root of a user namespace")
    name = explicit or default_run_as(spec, copy_passwd)
    if name is None:
        return (
            f"its commands would run as root: it has no run_as, no declared account and the copy no account in "
            f"UID {low}..{high}; set run_as to the service's account (or run_as: root to run them as root of a "
            f"user namespace)"
        )
    copy_entries, mirror_entries = passwd_entries(copy_passwd), passwd_entries(mirror_passwd)
    if name in copy_entries:
        uid, gid, home = copy_entries[name]
        outside = [f"{kind} {value}" for kind, value in (("UID", uid), ("GID", gid)) if not low <= value <= high]
        if outside:
            return (
                f"the copy gives {name} {' and '.join(outside)}, outside the service's UID range {low}..{high} "
                f"(production's account files may be hostile); fix the account on production or the range in "
                f"the fleet"
            )
        return Identity(name, uid, gid, home, "copy")
    if name in mirror_entries:
        uid, gid, home = mirror_entries[name]
        if uid == 0 or gid == 0:
            return f"run_as {name} is root on the mirror; name run_as: root to accept that"
        return Identity(name, uid, gid, home, "mirror")
    return (
        f"run_as {name} is no account of the copy or of the mirror; declare it in accounts.users "
        f"and replicate, or name an account that exists"
    )


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a /proc/PID/mountinfo text (octal escapes decoded, malformed lines skipped)."""
    mounts = []
    for line in text.splitlines():
        left, separator, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not separator or len(fields) < 6 or len(tail) < 2:
            continue
        mounts.append(
            Mount(
                point=_unescape(fields[4]),
                root=_unescape(fields[3]),
                fstype=tail[0],
                source=_unescape(tail[1]),
                options=frozenset(fields[5].split(",")),
            )
        )
    return mounts


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as ``\\ooo``."""
    if "\\" not in text:
        return text
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def under(path: str, folders: tuple[str, ...] | list[str]) -> bool:
    """``path`` is one of ``folders`` or lies below one of them."""
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in folders)


def filesystems_to_overlay(mounts: list[Mount], private: tuple[str, ...]) -> list[str]:
    """Mount points the view overlays, parents first: ``/`` and every disk filesystem under it,
    except those below the pseudo and hidden folders and the drill's own ``private`` folders."""
    points = []
    for mount in mounts:
        point = mount.point
        if point in points or mount.fstype not in OVERLAY_TYPES or UNSAFE_PATH_CHARACTERS & set(point):
            continue
        if point != "/" and (under(point, PSEUDO + HIDDEN) or under(point, private)):
            continue
        points.append(point)
    if "/" not in points:
        points.append("/")
    return sorted(points, key=lambda point: (point.count("/") if point != "/" else 0, point))


def view_argvs(
    enter_mount: list[str],
    enter_mount_pid: list[str],
    scratch: str,
    tag: str,
    mounts: list[Mount],
    private: tuple[str, ...],
    identity: Identity,
) -> list[list[str]]:
    """Build the view under ``<scratch>/view`` (after the scratch tmpfs exists): the overlays,
    then /proc, /sys, /dev and the hidden folders, then the service user's home if it is hidden."""
    view = f"{scratch}/view"
    argvs = [[*enter_mount, "mkdir", "-p", "-m", "0755", "--", view]]
    for number, point in enumerate(filesystems_to_overlay(mounts, private)):
        target = view if point == "/" else view + point
        argvs.append([*enter_mount, "sh", "-c", LAYER, "sh", point, target, f"{scratch}/layers/{number}", tag])
    argvs.append([*enter_mount_pid, "mount", "-t", "proc", "-o", "nosuid,nodev,noexec", tag, f"{view}/proc"])
    argvs.append([*enter_mount, "mount", "-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", tag, f"{view}/sys"])
    argvs.append([*enter_mount, "sh", "-c", DEVICE_FOLDER, "sh", f"{view}/dev", tag, *DEVICES])
    for folder in HIDDEN:
        mode = "1777" if folder in STICKY else "0755"
        argvs.append([*enter_mount, "sh", "-c", FRESH, "sh", view + folder, tag, "64m", mode])
    home = identity.home.rstrip("/")
    if (
        not identity.as_root
        and home
        and under(home, HIDDEN)
        and home not in HIDDEN
        and not UNSAFE_PATH_CHARACTERS & set(home)
        and ".." not in home.split("/")
    ):
        argvs.append(
            [*enter_mount, "install", "-d", "-o", str(identity.uid), "-g", str(identity.gid), "-m", "0700", "--", view + home]
        )
    return argvs


def bind_own_argvs(enter_mount: list[str], workspace: str, view: str, paths: tuple[str, ...]) -> list[list[str]]:
    """Each declared path of the service, from the writable copy into the view."""
    return [[*enter_mount, "sh", "-c", BIND_OWN, "sh", workspace + path, view + path, workspace, path, view] for path in paths]


def mask_paths(own: tuple[str, ...], others: tuple[str, ...], always: tuple[str, ...]) -> tuple[str, ...]:
    """What the view hides: ``always`` (copy store, drill folders) and other services' paths, but
    never a folder that holds one of the service's own paths."""
    masks = []
    for path in (*always, *others):
        path = path.rstrip("/") or "/"
        if path == "/" or path in masks or UNSAFE_PATH_CHARACTERS & set(path):
            continue
        if any(mine == path or mine.startswith(path + "/") for mine in own):
            continue
        masks.append(path)
    return tuple(masks)


def mask_argvs(enter_mount: list[str], view: str, tag: str, masks: tuple[str, ...]) -> list[list[str]]:
    return [[*enter_mount, "sh", "-c", MASK, "sh", view + path, tag, view] for path in masks]


def audit_view(mounts: list[Mount], view: str, tag: str) -> list[str]:
    """Sentences for every mount of the view that could let the app write to the mirror or gain
    privileges: writable but not the drill's own, without ``nosuid``, or with device nodes that
    are not the harmless ones. Empty: the kernel holds every write the app can make in the scratch."""
    found = []
    seen = False
    for mount in mounts:
        if not under(mount.point, [view]):
            continue
        seen = True
        inside = mount.point[len(view) :] or "/"
        device = mount.fstype == "devtmpfs" and mount.root in {f"/{name}" for name in DEVICES}
        writable = "ro" not in mount.options
        if writable and mount.source != tag and not device:
            found.append(f"{inside} is writable and not the drill's own ({mount.fstype} {mount.source})")
        if "nosuid" not in mount.options:
            found.append(f"{inside} lacks nosuid ({mount.fstype})")
        if "nodev" not in mount.options and not device:
            found.append(f"{inside} allows device nodes ({mount.fstype})")
    if not seen:
        found.append(f"the view {view} is not mounted")
    return found


def contained_argv(enter_all: list[str], view: str, identity: Identity, argv: list[str] | tuple[str, ...]) -> list[str]:
    """Run ``argv`` in the view as ``identity``: new mount namespace rooted at the view, then the
    drop to the user (never a moment as that user outside the view), then its own user namespace."""
    if identity.as_root:
        drop = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY)]
        user_namespace = ["unshare", "--user", "--map-root-user", "--mount", "--"]
        environment = ["HOME=/root", "USER=root", "LOGNAME=root"]
    else:
        drop = ["setpriv", "--reuid", str(identity.uid), "--regid", str(identity.gid)]
        user_namespace = ["unshare", "--user", "--map-current-user", "--mount", "--"]
        environment = [f"HOME={identity.home or '/'}", f"USER={identity.name}", f"LOGNAME={identity.name}"]
    return [
        *enter_all,
        "unshare",
        "--mount",
        "--",
        "sh",
        "-c",
        ENTER_VIEW,
        "sh",
        view,
        *drop,
        "--clear-groups",
        "--nnp",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
        *user_namespace,
        "env",
        "-i",
        *environment,
        f"PATH={PATH}",
        "SHELL=/bin/sh",
        *argv,
    ]


# Run several argument lists in one remote command, in order, stopping at the first failure:
# each is given as its length then its words; only references ("${3}") go through eval, never a word.
EACH = (
    "number=0\n"
    'while [ "$#" -gt 0 ]; do\n'
    '  count=$1; shift; number=$((number + 1)); references=""; index=1\n'
    r'  while [ "$index" -le "$count" ]; do references="$references \"\${$index}\""; index=$((index + 1)); done'
    "\n"
    '  eval "$references" || { status=$?; echo "command $number ($1) failed with exit $status" >&2; exit "$status"; }\n'
    '  shift "$count"\n'
    "done"
)


def each_argv(argvs: list[list[str]]) -> list[str]:
    """One argument list that runs ``argvs`` in order (one round trip instead of one each)."""
    words: list[str] = []
    for argv in argvs:
        words += [str(len(argv)), *argv]
    return ["sh", "-c", EACH, "sh", *words]


# ---------------------------------------------------------------------------------------
# A real failover: the app's commands as the service's user when the fleet names one.

AS_USER = (
    "user=$1; shift\n"
    'uid=$(id -u -- "$user") && gid=$(id -g -- "$user") || { echo "no account $user on this host" >&2; exit 126; }\n'
    'if [ "$uid" = 0 ] || [ "$gid" = 0 ]; then echo "$user is root on this host: refusing to run as it" >&2; exit 126; fi\n'
    'exec setpriv --reuid="$uid" --regid="$gid" --init-groups --reset-env -- "$@"'
)


def as_service_user(argv: list[str] | tuple[str, ...], run_as: str | None) -> list[str]:
    """``argv`` run as ``run_as`` (its own IDs and groups, from the host's account files), or as
    configured when the fleet names no user or ``root``."""
    if not run_as or run_as == "root":
        return list(argv)
    return ["sh", "-c", AS_USER, "sh", run_as, *argv]
