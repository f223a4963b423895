"""What a lab host sees of the machine's filesystem: its own folders, a fresh /run, nothing of
the lab's or the orchestrator's files.

Each host's sshd starts in a private mount namespace (``daemons.py``) through ``BOOT_SCRIPT``,
which mounts, before sshd starts:

- the host's own folders over ``FOLDER_PATHS`` (``hosts/NAME/srv``, ``etc``, ``home``,
  ``root``, ``tmp``, ``var/tmp``, ``usr/local/lib/hotspare`` in the lab folder): files a real
  server keeps on its disks,
  which tests read and plant without SSH (``hosts/NAME/<path>`` on this machine);
- fresh tmpfs over ``TMPFS_PATHS`` (``/run``, ``/dev/shm``), as at a server's boot: the
  machine's namespace list (``/run/netns``), lab claims and other hosts' run files are not
  there, and ``/run/sshd`` (sshd's privilege separation folder) is made in it;
- an empty, root-only tmpfs over each folder of ``hidden_folders`` still in sight: the lab
  folder (client key, secrets.json, the TSIG key, every host's ssh folder, the control site's
  files) and the orchestrator's home (under /tmp or /root they are out of sight already, the
  host having its own); the host's own ssh folder (its sshd config, host key, authorized_keys,
  pid file) is then put back at its usual path, so sshd, ``lab fail`` and the BMC's power
  switch find it where the machine does.

The host's folders are first reached through one recursive bind of the host's folder into the
new /run (a "stash"), since mounting a fresh /tmp or /root may hide the lab folder itself.

This isolates views, not a root that attacks the kernel: hosts share the machine's kernel, PID
space and user namespace, so root on a host can still unmount these mounts, open
``/proc/<machine pid>/root`` or ``nsenter`` the machine. What a host reads in normal operation is
what a fleet server would read; an attack test must not count on the lab to stop those moves.
"""

from __future__ import annotations

from pathlib import Path

from hotspare.planning.drill import DRILL_ROOTS

# The host's own folders (hosts/NAME/<path> on this machine), bound over the machine's.
# /usr/local/lib/hotspare: the programs a transfer key's forced command runs (the view, the
# sender); under the machine's shared /usr, one lab's test that installs a hostile sender on its
# production would hand it to every other lab's production on the machine.
FOLDER_PATHS = ("/srv", "/etc", "/home", "/root", "/tmp", "/var/tmp", "/usr/local/lib/hotspare")
# Fresh in-memory file systems, as a server has them after boot.
TMPFS_PATHS = ("/run", "/dev/shm")
# Modes of the per-host folders (the rest are 0755).
FOLDER_MODES = {"/root": 0o700, "/tmp": 0o1777, "/var/tmp": 0o1777}
# Folders the lab folder may not be, nor lie under: a host replaces them with its own (the
# path to its ssh folder would be written into the host's data in /srv, /etc, /home) or they are
# mounted over before the host's folder is reached (/run, /dev).
FORBIDDEN_LAB_PARENTS = ("/srv", "/etc", "/home", "/run", "/dev")
# Folders a host keeps seeing: a home that is one of them or above one is not hidden whole
# (the lab folder itself still is).
SYSTEM_FOLDERS = (
    "/",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/var",
    "/var/lib",
    "/opt",
    "/tmp",
    "/var/tmp",
    "/root",
    "/home",
    "/srv",
    "/etc",
    "/run",
    "/dev",
    "/proc",
    "/sys",
    "/mnt",
    "/media",
    "/boot",
)
# hotspare's own folders on a host (drills): a home above one stays visible.
HOST_SIDE_FOLDERS = DRILL_ROOTS
STASH = "/run/.hotspare-lab-host"

# Runs inside the host's namespaces as ``sh -c BOOT_SCRIPT sh HOST_FOLDER NAME HIDDEN... -- COMMAND...``
# (COMMAND: the host's sshd, which it becomes). Every step must succeed (set -e): a host that
# could not hide the lab folder must not start. Before each cover, the machine's mounts under it
# leave the host's mount table (``sweep``: one lazy unmount per outermost mount, which takes the
# mounts below it along): tools that walk the table (``btrfs filesystem show``,
# a drill's view of the host's filesystems) would otherwise trip on other hosts' /srv mounts
# whose paths the host cannot reach, and the host would keep them (and the machine's network
# namespaces) pinned.
BOOT_SCRIPT = (
    "set -e\n"
    "sweep() {\n"
    "  awk 'BEGIN { for (i = 1; i < ARGC; i++) { prefix[i] = ARGV[i]; delete ARGV[i] } }\n"
    '       { for (i in prefix) if ($5 == prefix[i] || index($5, prefix[i] "/") == 1) { print $5; next } }\' "$@" \\\n'
    '    </proc/self/mountinfo | LC_ALL=C sort | awk \'kept == "" || index($0, kept "/") != 1 { print; kept = $0 }\' \\\n'
    "    | xargs -r -d '\\n' umount -l -- 2>/dev/null || true\n"
    "}\n"
    'host="$1"; hostname "$2"; shift 2\n'
    "sweep /run\n"
    "mount -t tmpfs -o mode=0755,nosuid,nodev,size=10% run /run\n"  # Debian's own size for /run
    "install -d -m 0755 /run/sshd\n"
    "install -d -m 1777 /run/lock\n"
    f"install -d -m 0700 {STASH}\n"
    f'mount --rbind "$host" {STASH}\n'
    f"sweep {' '.join(FOLDER_PATHS)} /dev/shm\n"
    f'for path in {" ".join(FOLDER_PATHS)}; do mount --bind "{STASH}$path" "$path"; done\n'
    "mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm\n"
    'while [ "$1" != -- ]; do\n'
    '  sweep "$1"\n'
    '  if [ -e "$1" ]; then\n'  # else already out of sight (under the host's own /tmp or /root)
    '    mount -t tmpfs -o mode=0700,nosuid,nodev,noexec,size=1m hidden "$1"\n'
    "  fi\n"
    "  shift\n"
    "done\n"
    "shift\n"
    'mkdir -p "$host/ssh"\n'
    f'mount --bind "{STASH}/ssh" "$host/ssh"\n'
    f"umount -R -l {STASH}\n"
    f"rmdir {STASH}\n"
    'exec "$@"'
)


def boot_argv(host_folder: Path, host_name: str, hidden: tuple[str, ...], command: list[str]) -> list[str]:
    """``sh -c BOOT_SCRIPT …``: give the host its view, then become ``command``."""
    return ["sh", "-c", BOOT_SCRIPT, "sh", str(host_folder), host_name, *hidden, "--", *command]


def hidden_folders(lab_folder: Path, orchestrator_home: Path | None) -> tuple[str, ...]:
    """The folders a host must not see: the lab folder always; the orchestrator's home too when
    it is a folder of its own (not a system folder nor above one, and not inside the lab folder).

    Pure: paths in, paths out (already absolute and resolved by the caller).
    """
    home = orchestrator_home
    if home is None or _is_system_or_above(home) or home == lab_folder or lab_folder in home.parents:
        return (str(lab_folder),)
    if home in lab_folder.parents:
        return (str(home), str(lab_folder))  # the outer one first (the inner one is then out of sight)
    return (str(lab_folder), str(home))


def lab_folder_problem(lab_folder: Path) -> str | None:
    """Why the lab folder cannot hold a lab whose hosts hide it, or None."""
    if lab_folder == Path("/"):
        return "the lab folder cannot be /"
    for parent in FORBIDDEN_LAB_PARENTS:
        if lab_folder == Path(parent) or Path(parent) in lab_folder.parents:
            return (
                f"lab folder {lab_folder} is under {parent}, which every lab host replaces with its "
                f"own; choose another with --dir or $HOTSPARE_LAB_DIR (e.g. /var/lib/hotspare/lab)"
            )
    return None


def _is_system_or_above(path: Path) -> bool:
    return any(path == Path(folder) or path in Path(folder).parents for folder in SYSTEM_FOLDERS + HOST_SIDE_FOLDERS)
