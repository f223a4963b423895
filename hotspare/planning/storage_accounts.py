"""Append-only access of one service to its own repository on the storage host: pure planning.

The host that runs restic against the storage host (production for a backup, a standby for a
rebuild) never gets a login that opens the storage host. It gets, for one run:

- the service's own storage account (``hsb-<service>``), which sshd chroots into the
  repository (``ChrootDirectory %h``) and lets speak SFTP only, with the requests restic does
  not need refused (``ForceCommand internal-sftp -P ...``, see ``sshd_match_block``);
- a key made for this run, accepted only from that host's address, with no forwarding, no
  PTY, an expiry time, and a marker comment by which the next run removes it should this run
  be killed before it removes it itself.

What makes the repository append-only is file ownership, not restic's goodwill: everything
already in it belongs to root (group: the account's group, files 0440), and the folders new
files go to are group-writable with the sticky bit, so the account can add files but can
neither change nor remove nor rename one it does not own. ``LAY_OUT`` hands each run's new
files to root when the run ends (and before the next one). Measured with restic 0.14 over
OpenSSH 9.2's internal-sftp: a backup needs open/read/write, ``fsetstat`` (restic chmods the
file it writes), ``rename`` (temporary file -> final name) and ``remove`` (its own lock; with
remove refused restic retries for ~35 s and leaves the lock behind); it works with setstat,
lsetstat, symlink, hardlink, mkdir, rmdir and posix-rename refused.

Retention (forget/prune), checks and restore proofs run on the storage host itself as root, with
credentials that never leave the orchestrator and the storage host.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass

from hotspare.adapters.ssh import command_line
from hotspare.errors import Refused

STORAGE_GROUP = "hotspare-backup"
ACCOUNT_PREFIX = "hsb-"
KEYS_DIRECTORY = "/etc/hotspare/backup-keys"  # root-owned, outside every chroot
RUN_MARKER = "hotspare-run="  # comment of every per-run key line: "hotspare-run=<service>/<run>"
CLIENT_FOLDER = "/run/hotspare/storage"  # + /<service>@<storage address>/<run>: the key on the client (tmpfs)
NOLOGIN = "/usr/sbin/nologin"
# Requests restic 0.14 does not need for backup or restore (measured, see module docstring).
DENIED_SFTP_REQUESTS = ("setstat", "lsetstat", "symlink", "hardlink", "mkdir", "rmdir", "posix-rename")
# Locks and temporary files of the account untouched for this long belong to a dead run: restic
# renews a live lock every 5 minutes and calls older than 30 minutes stale itself.
STALE_MINUTES = 30
MAX_ACCOUNT_NAME = 32

# Constant shell programs; their arguments always arrive as "$@" (never spliced into text).
ENSURE_ACCOUNT = (
    "group=$1 account=$2 home=$3 shell=$4; "
    'getent group "$group" >/dev/null || groupadd --system "$group" || exit 1; '
    'current=$(getent passwd "$account" | cut -d: -f6); '
    'if [ -z "$current" ]; then '
    # "*", not useradd's "!": sshd refuses keys of a locked ("!") account.
    'useradd --system --user-group --groups "$group" --home-dir "$home" --no-create-home '
    '--shell "$shell" --password \'*\' "$account"; '
    'elif [ "$current" != "$home" ]; then usermod --home "$home" "$account"; fi'
)
LAY_OUT = (
    'repository=$1 account=$2 stale=$3; set -e; cd -- "$repository"; '
    "chown root:root . && chmod 0755 .; "
    # what a dead run left behind: its locks and temporary files
    'if [ -d locks ]; then find locks -type f -user "$account" -mmin +"$stale" -delete; fi; '
    'find . -type f -name "*-restic-temp-*" -mmin +"$stale" -delete; '
    # a repository holds files and folders only (no symlink may lead root elsewhere)
    "find . ! -type f ! -type d -delete; "
    # everything written so far becomes root's: readable by the account, never changeable
    'find . -type f ! -path "./locks/*" ! -name "*-restic-temp-*" '
    '\\( ! -user root -o ! -group "$account" -o ! -perm 0440 \\) '
    '-exec chown root:"$account" {} + -exec chmod 0440 {} +; '
    'find . -mindepth 1 -type d \\( ! -user root -o ! -group "$account" \\) -exec chown root:"$account" {} +; '
    'for folder in data keys; do if [ -d "$folder" ]; then chmod 0750 "$folder"; fi; done; '
    "if [ -d data ]; then find data -mindepth 1 -maxdepth 1 -type d ! -perm 1770 -exec chmod 1770 {} +; fi; "
    'for folder in index snapshots locks; do if [ -d "$folder" ]; then chmod 1770 "$folder"; fi; done'
)
AUTHORIZE = (
    'file=$1 line=$2 marker=$3; umask 022; mkdir -p -- "$(dirname -- "$file")" && '
    '{ if [ -f "$file" ]; then grep -v -F -e "$marker" -- "$file" || true; fi; printf "%s\\n" "$line"; } > "$file.new" '
    '&& chmod 0644 "$file.new" && mv -f -- "$file.new" "$file"'
)
REVOKE = (
    'file=$1 marker=$2; [ -f "$file" ] || exit 0; '
    '{ grep -v -F -e "$marker" -- "$file" || true; } > "$file.new" && chmod 0644 "$file.new" && mv -f -- "$file.new" "$file"'
)
CLEAR_OTHER_RUNS = (
    'folder=$1 keep=$2; [ -d "$folder" ] || exit 0; find "$folder" -mindepth 1 -maxdepth 1 ! -name "$keep" -exec rm -rf -- {} +'
)


class GrantRefused(Refused):
    """The fleet does not allow an append-only grant for this service; the message says why."""


def account_name(service_name: str) -> str:
    """The service's storage account: ``hsb-<service>``, shortened with a hash past 32 characters."""
    name = ACCOUNT_PREFIX + service_name.replace(".", "-")
    if len(name) <= MAX_ACCOUNT_NAME:
        return name
    digest = hashlib.sha256(service_name.encode()).hexdigest()[:8]
    return name[: MAX_ACCOUNT_NAME - 9] + "-" + digest


def sshd_match_block(group: str = STORAGE_GROUP, keys_directory: str = KEYS_DIRECTORY) -> str:
    """The lines a storage host's sshd_config needs (once) for the service accounts."""
    return "\n".join(
        [
            f"Match Group {group}",
            "    ChrootDirectory %h",
            f"    ForceCommand internal-sftp -P {','.join(DENIED_SFTP_REQUESTS)}",
            f"    AuthorizedKeysFile {keys_directory}/%u",
            "    AllowTcpForwarding no",
            "    AllowAgentForwarding no",
            "    AllowStreamLocalForwarding no",
            "    PermitTunnel no",
            "    PermitTTY no",
            "    X11Forwarding no",
            "",
        ]
    )


@dataclass(frozen=True)
class StorageGrant:
    """One run's append-only access of ``client_server`` to ``service``'s repository."""

    service: str
    run_name: str
    storage_server: str
    storage_address: str
    storage_port: int
    known_hosts_line: str
    repository_path: str  # on the storage host: the account's home and chroot
    client_server: str
    client_address: str
    expires_at: str  # authorized_keys expiry-time, UTC: "YYYYMMDDHHMMSSZ"

    @property
    def account(self) -> str:
        return account_name(self.service)

    @property
    def marker(self) -> str:
        return f"{RUN_MARKER}{self.service}/{self.run_name}"

    @property
    def keys_file(self) -> str:
        return posixpath.join(KEYS_DIRECTORY, self.account)

    @property
    def service_folder(self) -> str:
        """Per service and storage host: a client may hold runs of several fleets' storage hosts."""
        return posixpath.join(CLIENT_FOLDER, f"{self.service}@{self.storage_address}")

    @property
    def folder(self) -> str:
        return posixpath.join(self.service_folder, self.run_name)

    @property
    def key_path(self) -> str:
        return posixpath.join(self.folder, "storage_key")

    @property
    def known_hosts_path(self) -> str:
        return posixpath.join(self.folder, "known_hosts")

    def authorized_line(self, public_key: str) -> str:
        """The key line: this host only, nothing but the account's forced SFTP, until expiry."""
        key_type, blob = public_key.split()[:2]
        return f'restrict,from="{self.client_address}",expiry-time="{self.expires_at}" {key_type} {blob} {self.marker}'

    # ----- on the storage host (as root, from the orchestrator) -----

    def ensure_account(self) -> list[str]:
        return ["sh", "-c", ENSURE_ACCOUNT, "sh", STORAGE_GROUP, self.account, self.repository_path, NOLOGIN]

    def repository_exists(self) -> list[str]:
        return ["test", "-f", posixpath.join(self.repository_path, "config")]

    def make_repository_folder(self) -> list[str]:
        return ["install", "-d", "-m", "0755", "-o", "root", "-g", "root", "--", self.repository_path]

    def lay_out(self) -> list[str]:
        return ["sh", "-c", LAY_OUT, "sh", self.repository_path, self.account, str(STALE_MINUTES)]

    def authorize(self, public_key: str) -> list[str]:
        """Install this run's key, removing every per-run key an earlier (killed) run left."""
        return ["sh", "-c", AUTHORIZE, "sh", self.keys_file, self.authorized_line(public_key), RUN_MARKER]

    def revoke(self) -> list[str]:
        return ["sh", "-c", REVOKE, "sh", self.keys_file, self.marker]

    # ----- on the client host (the one that runs restic) -----

    def clear_other_runs(self) -> list[str]:
        """Key folders of this service's earlier runs on the client (a killed run's leftovers)."""
        return ["sh", "-c", CLEAR_OTHER_RUNS, "sh", self.service_folder, self.run_name]

    def sftp_command(self) -> str:
        """restic's ``sftp.command``: pinned host key, this run's key only, never a prompt."""
        return command_line(
            [
                "ssh",
                "-F",
                "/dev/null",
                "-i",
                self.key_path,
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                f"UserKnownHostsFile={self.known_hosts_path}",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-p",
                str(self.storage_port),
                f"{self.account}@{self.storage_address}",
                "-s",
                "sftp",
            ]
        )

    def restic(self, *arguments: str) -> list[str]:
        """``restic`` against the repository, which is ``/`` inside the account's chroot."""
        return [
            "restic",
            "-r",
            f"sftp:{self.account}@{self.storage_address}:/",
            "-o",
            f"sftp.command={self.sftp_command()}",
            *arguments,
        ]


def plan_grant(fleet, service_name: str, client_server: str, run_name: str, expires_at: str) -> StorageGrant:
    """The grant for ``client_server`` to reach ``service_name``'s repository for one run."""
    from hotspare.planning.restic import DEFAULT_REPOSITORY_BASE

    service = fleet.service(service_name)
    if service.backup is None:
        raise GrantRefused(f"service {service_name} has no backup section in the fleet file")
    path = posixpath.normpath(service.backup.repository or posixpath.join(DEFAULT_REPOSITORY_BASE, service.name))
    if not path.startswith("/") or path == "/" or "\n" in path:
        raise GrantRefused(f"repository path {path!r} of {service_name} must be an absolute folder below /")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", run_name):
        raise GrantRefused(f"run name {run_name!r} may hold letters, digits, '.', '_' and '-' only")
    if not re.fullmatch(r"\d{14}Z", expires_at):
        raise GrantRefused(f"expiry {expires_at!r} is not YYYYMMDDHHMMSSZ")
    storage = fleet.server(service.storage)
    client = fleet.server(client_server)
    host = storage.address if storage.ssh_port == 22 else f"[{storage.address}]:{storage.ssh_port}"
    return StorageGrant(
        service=service.name,
        run_name=run_name,
        storage_server=storage.name,
        storage_address=storage.address,
        storage_port=storage.ssh_port,
        known_hosts_line=f"{host} {storage.host_key}\n",
        repository_path=path,
        client_server=client.name,
        client_address=client.address,
        expires_at=expires_at,
    )


def shared_password_blocks(fleet) -> list[str]:
    """Sentences for password blocks that several services share (one leak opens them all)."""
    users: dict[str, list[str]] = {}
    for service in fleet.services:
        if service.backup is not None:
            users.setdefault(service.backup.password_block, []).append(service.name)
    return [
        f"services {', '.join(names)} share the repository password block {block!r}: a compromised production of one "
        "learns the password of the others; give each service its own block"
        for block, names in sorted(users.items())
        if len(names) > 1
    ]
