"""Pure planning for backups, restore proofs, repository checks and standby rebuilds.

No network, no Prefect, no clock: facts go in (which paths exist, what a snapshot holds, which
standbys answer), immutable plans and argument lists come out. Tasks in ``tasks/backup.py`` and
``tasks/rebuild.py`` run them through the SSH adapter, the only place a command becomes text.

Layout of a snapshot. restic runs with ``/`` as its working folder and relative paths
(``srv/app1/data``, ``etc/app1``, …), so a restore into SCRATCH yields ``SCRATCH/srv/app1/data``:
every live path P maps to ``SCRATCH + P`` (restic 0.14 has no ``snapshot:subdir``, see
lab-facts.md). Next to the data the snapshot carries ``META_DIR/<service>``: the service's
account entries and ``.hotspare-manifest``, the sha256 of every file taken at backup time.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

from hotspare.planning.rsync_outcomes import matches_any
from hotspare.planning.storage_accounts import StorageGrant
from hotspare.planning.accounts import TEMPORARY_PREFIX, Account, Group, parse_group, parse_passwd  # noqa: F401

RUN_DIR = "/run/hotspare"  # per-run key material on the hosts (tmpfs, root only)
META_DIR = "/run/hotspare/backup-meta"  # + /<service>: staged next to the data, inside the snapshot
MANIFEST_NAME = ".hotspare-manifest"
DEFAULT_REPOSITORY_BASE = "/srv/backup"
SCRATCH_FOLDER = ".hotspare-scratch"  # beside the repositories on the storage host
RESTORE_BASE = "/var/tmp/hotspare-restore"  # scratch space on a standby being rebuilt

# Constant shell programs; their arguments always arrive as "$@" (never spliced into text).
IN_FOLDER = 'cd -- "$1" && shift && exec "$@"'
TO_FILE = 'out=$1; shift; umask 077; "$@" > "$out"'
WRITE_SECRET_FILE = 'umask 077 && mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'
EXISTING = 'for path; do if [ -e "$path" ]; then printf "%s\\0" "$path"; fi; done'
HASH_TREE = 'cd -- "$1" && shift && find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum -z'
SHADOW_OF = 'awk -F: "NR==FNR { keep[\\$1] = 1; next } (\\$1 in keep)" "$1" "$2"'
IN_UID_RANGE = 'awk -F: -v low="$1" -v high="$2" "\\$3 + 0 >= low && \\$3 + 0 <= high" "$3"'
# Hashes of the named accounts only, from a shadow file on the host itself, into chpasswd -e.
SET_HASHES = 'file=$1; shift; awk -F: -v names=" $* " "index(names, \\" \\" \\$1 \\" \\")" "$file" | cut -d: -f1,2 | chpasswd -e'
PLACE = (
    'if [ -d "$1" ]; then mkdir -p -- "$2" && exec rsync -a --delete --numeric-ids -- "$1/" "$2/"; '
    'else mkdir -p -- "$(dirname -- "$2")" && exec rsync -a --numeric-ids -- "$1" "$2"; fi'
)


class PlanRefused(Exception):
    """The facts do not allow the requested plan; ``reasons`` lists every one."""

    def __init__(self, reasons: Sequence[str]):
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons))


# ----- small argv makers -----------------------------------------------------------------------


def in_folder(folder: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run with ``folder`` as working folder."""
    return ["sh", "-c", IN_FOLDER, "sh", folder, *argv]


def to_file(path: str, argv: Sequence[str]) -> list[str]:
    """``argv`` with its standard output written to ``path`` (created 0600) on the same host."""
    return ["sh", "-c", TO_FILE, "sh", path, *argv]


def write_secret_file(path: str) -> list[str]:
    """Write stdin to ``path`` readable by root only (its folder created 0700 if missing)."""
    return ["sh", "-c", WRITE_SECRET_FILE, "sh", path]


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


# ----- repositories -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repository:
    """A service's restic repository and how to name its snapshots."""

    service: str
    storage_server: str
    path: str  # on the storage host
    password_block: str

    @property
    def host_tag(self) -> list[str]:
        """Selects this service's snapshots: all lab hosts share one hostname (lab-facts.md)."""
        return ["--host", self.service, "--tag", f"service:{self.service}"]


def repository_of(service_name: str, storage_server: str, backup) -> Repository:
    """The repository the fleet's ``backup`` section describes (``backup`` must not be None)."""
    path = backup.repository or posixpath.join(DEFAULT_REPOSITORY_BASE, service_name)
    return Repository(service_name, storage_server, path, backup.password_block)


def scratch_base(repository: Repository) -> str:
    """Scratch space on the storage host: beside the repositories, on the same disk."""
    return posixpath.join(posixpath.dirname(repository.path.rstrip("/")), SCRATCH_FOLDER)


def local_restic(repository: Repository, *arguments: str) -> list[str]:
    """``restic`` on the storage host itself, against the repository folder (no SFTP hop)."""
    return ["restic", "-r", repository.path, *arguments]


def repository_missing(stderr: str) -> bool:
    """restic 0.14 exits 1 for every error; only stderr says the repository is not there yet."""
    text = stderr.lower()
    return "unable to open config file" in text or "repository does not exist" in text or (
        "is there a repository at the following location" in text
    )


def restic_error_is_transient(stderr: str) -> bool:
    """Errors worth a retry: a locked repository, a lost or refused connection."""
    text = stderr.lower()
    return any(
        marker in text
        for marker in ("repository is already locked", "connection refused", "connection timed out",
                       "no route to host", "connection reset", "unable to start the sftp session", "eof")
    )


# ----- backup ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupPlan:
    """Everything a backup of one service does, as argument lists, from its fleet entry."""

    service: str
    source_server: str
    repository: Repository
    live_paths: tuple[str, ...]  # data, app, config, account files, as in the fleet
    uid_min: int
    uid_max: int
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    excludes: tuple[str, ...] = ()  # the fleet file's exclude patterns, as in replication

    @property
    def meta_dir(self) -> str:
        return posixpath.join(META_DIR, self.service)

    @property
    def manifest_path(self) -> str:
        return posixpath.join(self.meta_dir, MANIFEST_NAME)

    def probe_paths(self) -> list[str]:
        return existing_paths(list(self.live_paths))

    def account_commands(self) -> list[list[str]]:
        """Copy the service's UID range of passwd/group and the matching shadow/gshadow lines.

        Filtering runs on production so password hashes never pass through the orchestrator.
        """
        accounts = posixpath.join(self.meta_dir, "accounts")
        low, high = str(self.uid_min), str(self.uid_max)
        return [
            ["rm", "-rf", "--", self.meta_dir],
            ["install", "-d", "-m", "0700", accounts],
            to_file(f"{accounts}/passwd", ["sh", "-c", IN_UID_RANGE, "sh", low, high, "/etc/passwd"]),
            to_file(f"{accounts}/group", ["sh", "-c", IN_UID_RANGE, "sh", low, high, "/etc/group"]),
            to_file(f"{accounts}/shadow", ["sh", "-c", SHADOW_OF, "sh", f"{accounts}/passwd", "/etc/shadow"]),
            to_file(f"{accounts}/gshadow", ["sh", "-c", SHADOW_OF, "sh", f"{accounts}/group", "/etc/gshadow"]),
        ]

    def snapshot_paths(self, existing: Iterable[str]) -> list[str]:
        """Relative paths restic backs up: the existing live paths plus the meta folder."""
        return [relative(path) for path in existing] + [relative(self.meta_dir)]

    def manifest_command(self, existing: Iterable[str]) -> list[str]:
        """Write the sha256 manifest on production (it never crosses the network by itself)."""
        return to_file(self.manifest_path, hash_tree("/", self.snapshot_paths(existing)))

    def backup_command(self, existing: Iterable[str], grant: StorageGrant) -> list[str]:
        """``restic backup`` on the source host through this run's append-only grant."""
        return in_folder(
            "/", grant.restic("backup", "--json", "--quiet", *self.repository.host_tag,
                              *[f"--exclude={pattern}" for pattern in self.excludes], *self.snapshot_paths(existing)),
        )

    def forget_arguments(self) -> list[str]:
        """Retention, for restic on the storage host itself (never on the host that backs up)."""
        return [
            "forget", "--prune", *self.repository.host_tag, "--group-by", "host",
            "--keep-daily", str(self.keep_daily), "--keep-weekly", str(self.keep_weekly),
            "--keep-monthly", str(self.keep_monthly),
        ]


def plan_backup(fleet, service_name: str) -> BackupPlan:
    """What a backup of ``service_name`` holds and how long its snapshots are kept.

    Access to the storage host is a separate, per-run ``StorageGrant`` (planning/storage_accounts).
    """
    service = fleet.service(service_name)
    if service.backup is None:
        raise PlanRefused([f"service {service_name} has no backup section in the fleet file"])
    storage = fleet.server(service.storage)
    repository = repository_of(service.name, storage.name, service.backup)
    live = tuple(dict.fromkeys([*service.data_paths, *service.app_paths, *service.config_paths, *service.accounts.files]))
    return BackupPlan(
        service=service.name,
        source_server=service.production,
        repository=repository,
        live_paths=live,
        uid_min=service.accounts.uid_min,
        uid_max=service.accounts.uid_max,
        keep_daily=service.backup.keep_daily,
        keep_weekly=service.backup.keep_weekly,
        keep_monthly=service.backup.keep_monthly,
        excludes=tuple(service.exclude),
    )


def parse_existing(output: bytes) -> list[str]:
    return [part.decode(errors="surrogateescape") for part in output.split(b"\0") if part]


def parse_backup_summary(output: str) -> dict:
    """The ``summary`` message of ``restic backup --json``."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("message_type") == "summary":
                return message
    raise ValueError("restic printed no backup summary")


# ----- manifests -----------------------------------------------------------------------------------


def parse_manifest(data: bytes) -> dict[str, str]:
    """``sha256sum -z`` output -> {relative path: hex digest}."""
    manifest = {}
    for record in data.split(b"\0"):
        if not record:
            continue
        digest, path = record[:64].decode(), record[66:]
        manifest[path.decode(errors="surrogateescape")] = digest
    return manifest


@dataclass(frozen=True)
class ManifestComparison:
    files_checked: int
    missing: tuple[str, ...]
    changed: tuple[str, ...]
    unexpected: tuple[str, ...]

    @property
    def identical(self) -> bool:
        return not (self.missing or self.changed or self.unexpected)

    def problems(self, limit: int = 20) -> list[str]:
        listed = [f"missing {p}" for p in self.missing] + [f"content differs {p}" for p in self.changed]
        listed += [f"not in manifest {p}" for p in self.unexpected]
        return listed[:limit]

    def sentence(self) -> str:
        if self.identical:
            return f"all {self.files_checked} files match the manifest taken at backup time"
        return (
            f"{len(self.changed)} changed, {len(self.missing)} missing, {len(self.unexpected)} unexpected "
            f"of {self.files_checked} files in the manifest"
        )


def compare_manifests(expected: dict[str, str], actual: dict[str, str], ignore: Iterable[str] = (),
                      excludes: Sequence[str] = ()) -> ManifestComparison:
    """Compare the manifest taken at backup time with hashes of the restored files; files the
    fleet file excludes (never backed up) are left out of both sides."""
    ignored = set(ignore)

    def kept(path: str) -> bool:
        return path not in ignored and not matches_any("/" + path.lstrip("/"), list(excludes))

    expected = {path: digest for path, digest in expected.items() if kept(path)}
    actual = {path: digest for path, digest in actual.items() if kept(path)}
    return ManifestComparison(
        files_checked=len(expected),
        missing=tuple(sorted(set(expected) - set(actual))),
        changed=tuple(sorted(path for path in expected.keys() & actual.keys() if expected[path] != actual[path])),
        unexpected=tuple(sorted(set(actual) - set(expected))),
    )


def manifest_in_snapshot(service_name: str) -> str:
    """Relative path of the manifest inside a restore of the service's snapshot."""
    return relative(posixpath.join(META_DIR, service_name, MANIFEST_NAME))


# ----- snapshots, checks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    paths: tuple[str, ...]

    def relative_paths(self) -> list[str]:
        return [relative(path) for path in self.paths]


def parse_snapshots(output: str) -> list[Snapshot]:
    """``restic snapshots --json`` -> snapshots, oldest first."""
    snapshots = []
    for entry in json.loads(output or "[]") or []:
        moment = datetime.fromisoformat(_trim_nanoseconds(entry["time"]))
        snapshots.append(Snapshot(entry["id"], entry.get("short_id", entry["id"][:8]), moment, tuple(entry.get("paths", ()))))
    return sorted(snapshots, key=lambda snapshot: snapshot.time)


def _trim_nanoseconds(stamp: str) -> str:
    """restic writes nanoseconds; Python parses at most microseconds."""
    stamp = stamp.replace("Z", "+00:00")
    if "." not in stamp:
        return stamp
    head, tail = stamp.split(".", 1)
    zone_at = max(tail.find("+"), tail.find("-"))
    fraction, zone = (tail[:zone_at], tail[zone_at:]) if zone_at >= 0 else (tail, "")
    return f"{head}.{fraction[:6].ljust(6, '0')}{zone}"


def pick_snapshot(snapshots: Sequence[Snapshot], wanted: str | None) -> Snapshot:
    """The snapshot whose id starts with ``wanted``, or the newest one."""
    if not snapshots:
        raise PlanRefused(["the repository holds no snapshot of this service: run a backup first"])
    if not wanted or wanted == "latest":
        return snapshots[-1]
    matches = [snapshot for snapshot in snapshots if snapshot.id.startswith(wanted)]
    if len(matches) != 1:
        known = ", ".join(snapshot.short_id for snapshot in snapshots[-5:])
        raise PlanRefused([f"snapshot {wanted!r} matches {len(matches)} snapshots of this service (newest: {known})"])
    return matches[0]


def next_subset(last_index: int | None, count: int) -> int:
    """The 1-based subset after ``last_index``, wrapping round (``count`` may have changed)."""
    if last_index is None or last_index >= count:
        return 1
    return last_index + 1


# ----- accounts --------------------------------------------------------------------------------------


# Account, Group, parse_passwd, parse_group and TEMPORARY_PREFIX live in
# hotspare/planning/accounts.py; which accounts a rebuild may create is that module's merge rule.


def account_commands(
    wanted_groups: Sequence[Group], wanted_accounts: Sequence[Account], present_groups: Sequence[Group],
    present_accounts: Sequence[Account],
) -> tuple[list[list[str]], list[str]]:
    """Commands that recreate the snapshot's groups and accounts on a standby, and sentences.

    Idempotent: entries already there with the same id are skipped; an entry whose name or id
    is taken by something else is a conflict that refuses the whole step (PlanRefused).
    """
    commands: list[list[str]] = []
    sentences: list[str] = []
    conflicts: list[str] = []
    groups_by_name = {group.name: group for group in present_groups}
    groups_by_id = {group.gid: group for group in present_groups}
    for group in wanted_groups:
        have = groups_by_name.get(group.name)
        if have and have.gid == group.gid:
            sentences.append(f"group {group.name} ({group.gid}) already exists")
        elif have:
            conflicts.append(f"group {group.name} exists with gid {have.gid}, the snapshot has {group.gid}")
        elif group.gid in groups_by_id:
            conflicts.append(f"gid {group.gid} of group {group.name} is taken by {groups_by_id[group.gid].name}")
        else:
            commands.append(["groupadd", "--gid", str(group.gid), group.name])
            sentences.append(f"group {group.name} ({group.gid}) created")
    accounts_by_name = {account.name: account for account in present_accounts}
    accounts_by_id = {account.uid: account for account in present_accounts}
    for account in wanted_accounts:
        have = accounts_by_name.get(account.name)
        if have and have.uid == account.uid:
            sentences.append(f"account {account.name} ({account.uid}) already exists")
        elif have:
            conflicts.append(f"account {account.name} exists with uid {have.uid}, the snapshot has {account.uid}")
        elif account.uid in accounts_by_id:
            conflicts.append(f"uid {account.uid} of {account.name} is taken by {accounts_by_id[account.uid].name}")
        else:
            commands.append(
                ["useradd", "--uid", str(account.uid), "--gid", str(account.gid), "--home-dir", account.home,
                 "--create-home", "--shell", account.shell, "--comment", account.gecos, account.name]
            )
            sentences.append(f"account {account.name} ({account.uid}) created")
    for group in wanted_groups:
        if group.members:
            commands.append(["gpasswd", "--members", ",".join(group.members), group.name])
    if conflicts:
        raise PlanRefused(conflicts)
    return commands, sentences


def set_password_hashes(shadow_file: str, names: Sequence[str]) -> list[str]:
    """Give the named restored accounts (those the account merge accepted) their password
    hashes from the snapshot's shadow file, read on the host itself: hashes never travel."""
    return ["sh", "-c", SET_HASHES, "sh", shadow_file, *names]


@dataclass(frozen=True)
class TemporaryAccount:
    """A login for the users of ``for_user``: same uid and group, own password, fixed expiry."""

    name: str
    for_user: str
    uid: int
    gid: int
    home: str
    shell: str
    expires_at: datetime

    @property
    def expire_date(self) -> str:
        """OS-level expiry (whole days): the day after ``expires_at`` so it is never early.

        The scheduled ``expire_temporary_accounts`` flow disables the account at the exact time.
        """
        return (self.expires_at + timedelta(days=1)).date().isoformat()


def temporary_accounts(accounts: Sequence[Account], created_at: datetime, hours: float, only: Sequence[str] | None = None) -> list[TemporaryAccount]:
    """One temporary login per service account (or per name in ``only``)."""
    if hours <= 0:
        raise PlanRefused([f"temporary accounts need a positive lifetime, got {hours} h"])
    chosen = [account for account in accounts if only is None or account.name in only]
    expires = created_at + timedelta(hours=hours)
    return [
        TemporaryAccount((TEMPORARY_PREFIX + account.name)[:32], account.name, account.uid, account.gid, account.home,
                         account.shell, expires)
        for account in chosen
    ]


def temporary_account_commands(account: TemporaryAccount, exists: bool) -> list[list[str]]:
    """Create (or renew) one temporary login. Non-unique uid (``-o``): it reaches exactly the
    files of ``for_user``, and disabling it never touches the real account."""
    if exists:
        return [["usermod", "--unlock", "--expiredate", account.expire_date, account.name]]
    return [
        ["useradd", "--non-unique", "--uid", str(account.uid), "--gid", str(account.gid), "--home-dir", account.home,
         "--no-create-home", "--shell", account.shell, "--expiredate", account.expire_date,
         "--comment", f"hotspare temporary login for {account.for_user}", account.name],
        ["chage", "--expiredate", account.expire_date, account.name],
    ]


def disable_account_commands(user_name: str) -> list[list[str]]:
    """Lock the password and expire the account (both, so neither alone must hold)."""
    return [["usermod", "--lock", "--expiredate", "1", user_name], ["chage", "--expiredate", "0", user_name]]


def due_for_expiry(rows: Iterable, now: datetime) -> list:
    """Temporary account rows whose time is up and that are not disabled yet."""
    return [row for row in rows if row.disabled_at is None and _utc(row.expires_at) <= now]


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# ----- rebuild ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandbyCandidate:
    name: str
    facility: str
    address: str
    state: str  # inventory: ok | failed | ...
    reachable: bool
    busy_with: tuple[str, ...] = ()  # services already active on it


@dataclass(frozen=True)
class StandbyChoice:
    name: str
    facility: str
    address: str
    reason: str


def choose_standby(candidates: Sequence[StandbyCandidate], lost_facilities: set[str], requested: str | None = None) -> StandbyChoice:
    """A standby that is healthy, reachable, preferably idle and outside the lost facilities."""
    if requested:
        match = next((c for c in candidates if c.name == requested), None)
        problems = []
        if match is None:
            problems.append(f"{requested} is not a standby server in the fleet")
        elif match.state == "failed":
            problems.append(f"standby {requested} is marked failed in the inventory")
        elif not match.reachable:
            problems.append(f"standby {requested} does not answer SSH")
        if problems:
            raise PlanRefused(problems)
        return StandbyChoice(match.name, match.facility, match.address, f"{match.name} was requested by the operator")
    usable = [c for c in candidates if c.state != "failed" and c.reachable]
    if not usable:
        reasons = [f"{c.name}: {'failed' if c.state == 'failed' else 'unreachable'}" for c in candidates]
        raise PlanRefused(["no usable standby server", *reasons] if reasons else ["the fleet has no standby server"])
    ranked = sorted(usable, key=lambda c: (bool(c.busy_with), c.facility in lost_facilities, c.name))
    best = ranked[0]
    where = (
        f"in facility {best.facility}, away from the lost servers" if best.facility not in lost_facilities
        else f"in facility {best.facility} (every usable standby shares a facility with a lost server)"
    )
    busy = f"; it already runs {', '.join(best.busy_with)}" if best.busy_with else ""
    return StandbyChoice(best.name, best.facility, best.address, f"{best.name} chosen: healthy, reachable, {where}{busy}")


@dataclass(frozen=True)
class RebuildPlan:
    """What a rebuild will do; its digest binds an approval to exactly this plan."""

    service: str
    lost_servers: tuple[str, ...]
    standby: str
    standby_address: str
    standby_reason: str
    storage: str
    repository: str
    snapshot_id: str
    snapshot_time: str
    snapshot_paths: tuple[str, ...]
    live_paths: tuple[str, ...]
    accounts: tuple[str, ...]
    temporary_logins: tuple[str, ...]
    temporary_hours: float
    dns_name: str
    dns_from: str
    dns_to: str
    activate: tuple[tuple[str, ...], ...]
    health_url: str | None
    warnings: tuple[str, ...] = field(default=())

    def digest(self) -> str:
        """sha256 of the plan's content; what an approver signs off."""
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def markdown(self) -> str:
        lines = [
            f"# Rebuild plan for {self.service}",
            "",
            f"Plan digest: `{self.digest()}` (approve with this digest)",
            "",
            f"- Lost servers: {', '.join(self.lost_servers)}",
            f"- Standby: **{self.standby}** ({self.standby_address}) — {self.standby_reason}",
            f"- Snapshot: `{self.snapshot_id[:12]}` of {self.snapshot_time} from {self.storage}:{self.repository}",
            f"- Restored to their live paths: {', '.join(self.live_paths)}",
            f"- System accounts recreated: {', '.join(self.accounts) or 'none'}",
            f"- Temporary logins ({self.temporary_hours:g} h): {', '.join(self.temporary_logins) or 'none'}",
            f"- Start: {'; '.join(' '.join(command) for command in self.activate) or 'nothing'}",
            f"- Health check: {self.health_url or 'none (TCP port only)'}",
            f"- DNS: {self.dns_name} {self.dns_from} → {self.dns_to} (compare-and-swap)",
            "- Afterwards the service is **unprotected** (no mirror) until it is re-protected.",
        ]
        lines += [f"- Warning: {warning}" for warning in self.warnings]
        return "\n".join(lines) + "\n"


def plan_rebuild(
    *, service, lost_servers: Sequence[str], choice: StandbyChoice, repository: Repository, snapshot: Snapshot,
    accounts: Sequence[Account], temporary_hours: float, dns_from: str, temporary_for: Sequence[str] | None = None,
    warnings: Sequence[str] = (),
) -> RebuildPlan:
    live = tuple(dict.fromkeys([*service.data_paths, *service.app_paths, *service.config_paths, *service.accounts.files]))
    chosen = [a.name for a in accounts if temporary_for is None or a.name in temporary_for]
    return RebuildPlan(
        service=service.name,
        lost_servers=tuple(lost_servers),
        standby=choice.name,
        standby_address=choice.address,
        standby_reason=choice.reason,
        storage=repository.storage_server,
        repository=repository.path,
        snapshot_id=snapshot.id,
        snapshot_time=snapshot.time.isoformat(timespec="seconds"),
        snapshot_paths=snapshot.paths,
        live_paths=live,
        accounts=tuple(account.name for account in accounts),
        temporary_logins=tuple((TEMPORARY_PREFIX + name)[:32] for name in chosen),
        temporary_hours=temporary_hours,
        dns_name=service.dns_name,
        dns_from=dns_from,
        dns_to=choice.address,
        activate=tuple(tuple(command) for command in service.activate),
        health_url=service.health_url,
        warnings=tuple(warnings),
    )


def restore_folder(service_name: str, run_name: str) -> str:
    return posixpath.join(RESTORE_BASE, f"{service_name}-{run_name}")


def place_command(scratch: str, live_path: str) -> list[str]:
    """Copy one restored path to its live place on the same host (rsync, local).

    Guard: ``--delete`` acts inside ``live_path`` only, so the path must pass the fleet's path
    rule (``fleet/paths.py``) even from a fleet that skipped the check.
    """
    from hotspare.fleet.paths import path_problem

    problem = path_problem(live_path)
    if problem:
        raise PlanRefused([f"refusing to place restored files at {live_path!r}: {problem}. Fix the service's paths "
                           "in the fleet file (`hotspare fleet check`) and load it again"])
    return ["sh", "-c", PLACE, "sh", posixpath.join(scratch, relative(live_path)), live_path]


def expire_day_count(moment: datetime) -> int:
    """Days since 1970 of ``moment``, rounded up (shadow's expiry unit)."""
    return math.ceil(moment.timestamp() / 86400)
