"""Pure planning for replication and verification: no network, no Prefect, no clock.

Everything here takes facts (sizes, listings, command output) and returns decisions or
argument lists, so it is tested with golden inputs and outputs.

Layout on the mirror, per service::

    /srv/hotspare/<service>/copies/<copy id>/tree/<absolute source paths…>
    /srv/hotspare/<service>/current -> copies/<copy id>      (the newest verified copy)

A copy is built with ``rsync --link-dest`` against the previous copy, so unchanged files are
hard links and a copy costs only what changed. Older copies are never written to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hotspare.planning.rsync_outcomes import rsync_exclude_args
from hotspare.planning.transfer_keys import MODULE as TRANSFER_MODULE

COPIES_ROOT = "/srv/hotspare"
SSH_OPTIONS = (
    "-o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes "
    "-o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3"
)


def service_root(service: str) -> str:
    return f"{COPIES_ROOT}/{service}"


def copy_root(service: str, copy_id: str) -> str:
    return f"{service_root(service)}/copies/{copy_id}"


def copy_tree(service: str, copy_id: str) -> str:
    """Folder in a copy under which the source's absolute paths are reproduced."""
    return f"{copy_root(service, copy_id)}/tree"


def copy_data_path(service: str, copy_id: str, data_path: str) -> str:
    """Where a production data folder lives inside a copy, as seen on the mirror."""
    return copy_tree(service, copy_id) + data_path


def copy_id_for(moment: datetime) -> str:
    """Copy ids sort by time: ``20261125T130000Z``."""
    return moment.strftime("%Y%m%dT%H%M%SZ")


def source_paths(spec: dict) -> list[str]:
    """Everything a copy pulls from production: data, app code, OS config, application account
    files. Not the system account files: only the service's lines of those travel, read by the
    orchestrator and written into the copy as ``<tree>/etc/passwd`` … (``tasks/replication.py:
    stage_accounts``), so the transfer never reads /etc/shadow."""
    accounts = spec.get("accounts") or {}
    paths = [*spec["data_paths"], *spec.get("app_paths", []), *spec.get("config_paths", []), *accounts.get("files", [])]
    unique = []
    for path in paths:
        normalized = path.rstrip("/") or "/"
        if normalized not in unique:
            unique.append(normalized)
    return unique


# ---------------------------------------------------------------------------------------
# Source sanity: a wiped or unmounted disk must never reach the mirror.


@dataclass(frozen=True)
class SourceTotals:
    files: int
    bytes: int


@dataclass(frozen=True)
class Decision:
    """Go or no-go with the sentence that explains it (logged verbatim)."""

    go: bool
    reason: str


def parse_file_sizes(listing: str) -> SourceTotals:
    """Totals from ``find PATHS -type f -printf '%s\\n'`` output."""
    sizes = [int(line) for line in listing.split() if line.strip().isdigit()]
    return SourceTotals(files=len(sizes), bytes=sum(sizes))


def judge_source(
    data_totals: SourceTotals, previous: SourceTotals | None, max_shrink: float, missing_paths: list[str], force: bool
) -> Decision:
    """Refuse a sync from an empty, missing or shrunken source unless forced."""
    problems = []
    if missing_paths:
        problems.append(f"data path(s) missing on production: {', '.join(missing_paths)}")
    if data_totals.files == 0:
        problems.append("the data paths on production hold no files (wiped or unmounted disk?)")
    elif previous and previous.files:
        file_drop = 1 - data_totals.files / previous.files
        byte_drop = 1 - data_totals.bytes / previous.bytes if previous.bytes else 0.0
        # rounded: 1 - 70/100 is 0.30000000000000004, and exactly the limit is allowed
        if round(file_drop, 9) > max_shrink or round(byte_drop, 9) > max_shrink:
            problems.append(
                f"production data shrank since the last verified copy: {previous.files} -> {data_totals.files} files, "
                f"{previous.bytes} -> {data_totals.bytes} bytes (more than {max_shrink:.0%} gone)"
            )
    if not problems:
        return Decision(True, f"source looks sane: {data_totals.files} files, {data_totals.bytes} bytes")
    if force:
        return Decision(True, "forced despite: " + "; ".join(problems))
    return Decision(False, "refusing to replicate: " + "; ".join(problems) + ". Nothing was touched; use force to override.")


def room_needed(source: SourceTotals, has_previous_copy: bool) -> int:
    """A first copy needs the whole source plus 10 %; later copies a fifth of it (only changes)."""
    return int(source.bytes * (1.1 if not has_previous_copy else 0.2)) + 16 * 2**20


def judge_room(available_bytes: int, source: SourceTotals, has_previous_copy: bool) -> Decision:
    """Room on the mirror's disk for ``room_needed``."""
    needed = room_needed(source, has_previous_copy)
    if available_bytes >= needed:
        return Decision(True, f"mirror has room: {available_bytes} bytes free, {needed} needed")
    return Decision(
        False, f"mirror is short of space: {available_bytes} bytes free, at least {needed} needed; free space or add disk"
    )


# ---------------------------------------------------------------------------------------
# Commands (argument lists; the SSH adapter quotes them).


@dataclass(frozen=True)
class PeerAccess:
    """How the mirror reaches production for a host-to-host rsync (a pull): files it writes
    first, from the transfer's stdin, and production's login for the scoped transfer key."""

    directory: str
    key_path: str
    known_hosts_path: str
    user: str
    address: str
    port: int

    def ssh_command(self) -> str:
        """The value of rsync's ``-e`` (rsync splits it on spaces; our paths have none)."""
        return f"ssh -i {self.key_path} -p {self.port} {SSH_OPTIONS} -o UserKnownHostsFile={self.known_hosts_path}"

    @property
    def pid_file(self) -> str:
        return f"{self.directory}/transfer.pid"

    def remote(self, path: str) -> str:
        return f"{self.user}@{self.address}:{path}"

    def remotes(self, paths: list[str]) -> list[str]:
        return [self.remote(path) for path in paths]

    def sources(self, paths: list[str]) -> list[str]:
        """``paths`` (absolute) as read through a transfer key: rsync's daemon protocol over the
        key's SSH channel, from the module that holds the service's declared paths at their own
        absolute paths (``planning/transfer_keys.py``), so ``--relative`` lays them out as before."""
        return [f"{self.user}@{self.address}::{TRANSFER_MODULE}{path}" for path in paths]


def peer_access(run_tag: str, user: str, address: str, port: int) -> PeerAccess:
    directory = f"/run/hotspare/{run_tag}"
    return PeerAccess(directory, f"{directory}/key", f"{directory}/known_hosts", user, address, port)


# One mirror command per transfer: make the run's key folder, take the known_hosts line and the
# private transfer key from stdin, run the transfer recording its PID, and remove the folder
# whatever happens. A fixed script; everything variable arrives as positional arguments.
PEER_SCRIPT = (
    'dir=$1; shift; umask 077; mkdir -p "$dir" || exit 1; trap \'rm -rf "$dir"\' EXIT; '
    'IFS= read -r line && printf "%s\\n" "$line" > "$dir/known_hosts" && cat > "$dir/key" || exit 1; '
    '"$@" & echo $! > "$dir/transfer.pid"; wait $!'
)


def with_peer_access(peer: PeerAccess, argv: list[str]) -> list[str]:
    """``argv`` wrapped so the mirror holds the transfer key only for its duration."""
    return ["sh", "-c", PEER_SCRIPT, "sh", peer.directory, *argv]


SNAPSHOT_MARK = "hotspare-snapshot-made"

# PEER_SCRIPT, then (in the same command) $2 words after the folder: the copy's snapshot, run
# only when rsync let the copy go on (0, 23 partial, 24 vanished: verification decides). The
# transfer keeps its PID file (the subshell becomes rsync), the program returns rsync's own
# status, and a marker line says the snapshot was made.
PEER_THEN_SCRIPT = (
    'dir=$1; count=$2; shift 2; umask 077; mkdir -p "$dir" || exit 1; trap \'rm -rf "$dir"\' EXIT; '
    'IFS= read -r line && printf "%s\\n" "$line" > "$dir/known_hosts" && cat > "$dir/key" || exit 1; '
    '( shift "$count"; exec "$@" ) & echo $! > "$dir/transfer.pid"; wait $!; status=$?; '
    'index=0; for word do shift; if [ "$index" -lt "$count" ]; then set -- "$@" "$word"; fi; '
    "index=$((index + 1)); done; "
    'case $status in 0|23|24) "$@" </dev/null >/dev/null && echo ' + SNAPSHOT_MARK + ';; esac; exit "$status"'
)


def with_peer_access_then(peer: PeerAccess, argv: list[str], then: list[str]) -> list[str]:
    """``with_peer_access``, then ``then`` on the mirror once the transfer let the copy go on."""
    return ["sh", "-c", PEER_THEN_SCRIPT, "sh", peer.directory, str(len(then)), *then, *argv]


def snapshot_made(output: str) -> bool:
    return SNAPSHOT_MARK in output.splitlines()


def peer_stdin(known_hosts_line: str, private_key: str) -> bytes:
    """What ``with_peer_access`` reads: the pinned host key line, then the private key."""
    return (known_hosts_line.strip() + "\n" + private_key.strip() + "\n").encode()


def rsync_copy_argv(
    access: PeerAccess,
    paths: list[str],
    target_tree: str,
    link_dest: str | None,
    excludes: list[str] = (),
    copy_dest: str | None = None,
) -> list[str]:
    """Pull ``paths`` from production into ``target_tree`` on the mirror, preserving absolute paths.

    ``--delete`` only ever acts inside the new copy's own folder (resuming a partial copy),
    never on a previous copy: those are only hard-link sources. Without a previous copy (a new
    or reinstalled mirror, the old production being reprotected) ``--copy-dest=/`` lets the
    mirror copy locally whatever its own live folders already hold identically, instead of
    receiving it again; copied, never linked, so the live files and the copy stay apart. ``copy_dest`` names another
    local folder to copy identical files from (a btrfs working tree started beside hard-linked
    copies: linking would let a permission change in the working tree reach the old copy).
    ``--itemize-changes`` names what the copy changed: verification compares those files.
    """
    argv = [
        "rsync",
        "-aHAX",
        "--numeric-ids",
        "--relative",
        "--delete",
        "--partial",
        "--mkpath",
        "--stats",
        "--itemize-changes",
        "--timeout=60",
        "-e",
        access.ssh_command(),
    ]
    argv.append(f"--link-dest={link_dest}" if link_dest else f"--copy-dest={copy_dest or '/'}")
    return [*argv, *rsync_exclude_args(excludes), *access.sources(paths), target_tree + "/"]


def rsync_verify_argv(access: PeerAccess, paths: list[str], target_tree: str, excludes: list[str] = ()) -> list[str]:
    """Dry-run content comparison (``-c``: full checksums) listing every difference; excluded
    files are neither compared nor reported as extra."""
    return [
        "rsync",
        "-aHAX",
        "--numeric-ids",
        "--relative",
        "--delete",
        "--dry-run",
        "--checksum",
        "--itemize-changes",
        "--timeout=60",
        "-e",
        access.ssh_command(),
        *rsync_exclude_args(excludes),
        *access.sources(paths),
        target_tree + "/",
    ]


def rsync_repair_argv(access: PeerAccess, paths: list[str], target_tree: str, excludes: list[str] = ()) -> list[str]:
    """Fetch ``paths`` (absolute) again with full checksums into the copy; rsync replaces each
    file by a new one, so an older copy sharing its inode keeps its own."""
    return [
        "rsync",
        "-aHAX",
        "--numeric-ids",
        "--relative",
        "--checksum",
        "--timeout=60",
        "-e",
        access.ssh_command(),
        *rsync_exclude_args(excludes),
        *access.sources(paths),
        target_tree + "/",
    ]


@dataclass(frozen=True)
class TransferStats:
    files_transferred: int
    bytes_transferred: int
    total_files: int
    total_bytes: int


def parse_rsync_stats(output: str) -> TransferStats:
    """Numbers from ``rsync --stats`` (thousands separators allowed)."""

    def number(label: str) -> int:
        for line in output.splitlines():
            if line.strip().startswith(label):
                digits = line.split(":", 1)[1].strip().split()[0].replace(",", "").replace(".", "")
                return int(digits) if digits.isdigit() else 0
        return 0

    return TransferStats(
        files_transferred=number("Number of regular files transferred"),
        bytes_transferred=number("Total transferred file size"),
        total_files=number("Number of files"),
        total_bytes=number("Total file size"),
    )


# ---------------------------------------------------------------------------------------
# Retention


def copies_to_prune(copy_ids: list[str], keep: int, protected: set[str]) -> list[str]:
    """Oldest copies beyond ``keep``, never one in ``protected`` (current, in use)."""
    ordered = sorted(copy_ids, reverse=True)
    kept = [copy_id for copy_id in ordered if copy_id in protected]
    for copy_id in ordered:
        if len(kept) >= keep:
            break
        if copy_id not in kept:
            kept.append(copy_id)
    return sorted(copy_id for copy_id in copy_ids if copy_id not in kept)


def copies_to_prune_of(copies: list[tuple[str, bool]], keep: int, protected: set[str], promoting: str | None = None) -> list[str]:
    """Retention over (copy id, ever verified) pairs: the oldest restore points beyond ``keep``
    (``copies_to_prune``). An attempt never verified (a copy refused at its space bound, a transfer
    that failed) takes no place among them: a service refused several runs in a row would otherwise
    push its verified copies out with ghosts. Once a newer copy is promoted (``promoting``), older
    attempts go too (nothing resumes them any more)."""
    points = [copy_id for copy_id, verified in copies if verified or copy_id in protected]
    doomed = copies_to_prune(points, keep, protected)
    if promoting:
        doomed += [copy_id for copy_id, _ in copies if copy_id not in points and copy_id < promoting]
    return sorted(doomed)


# ---------------------------------------------------------------------------------------
# RPO


def rpo_state(verified_at: datetime | None, now: datetime, rpo_hours: float) -> str:
    """``ok`` under 75 % of the RPO, ``at risk`` beyond, ``violated`` past it or with no copy."""
    if verified_at is None:
        return "violated"
    age = now - verified_at
    if age > timedelta(hours=rpo_hours):
        return "violated"
    if age > timedelta(hours=rpo_hours * 0.75):
        return "at risk"
    return "ok"


@dataclass(frozen=True)
class HardwareFacts:
    cpus: int
    memory_mb: int
    disk_bytes: int
    available_bytes: int
    os_release: str = ""
    packages: dict[str, str] = field(default_factory=dict)


def compare_hardware(
    production: HardwareFacts, mirror: HardwareFacts, declared_production: dict | None, declared_mirror: dict | None
) -> list[str]:
    """Every way the mirror is not "exact or better" than production (empty: fine)."""
    problems = []
    if mirror.cpus < production.cpus:
        problems.append(f"mirror has {mirror.cpus} CPUs, production {production.cpus}")
    if mirror.memory_mb < production.memory_mb:
        problems.append(f"mirror has {mirror.memory_mb} MiB memory, production {production.memory_mb}")
    if mirror.disk_bytes < production.disk_bytes:
        problems.append(f"mirror disk is {mirror.disk_bytes} bytes, production {production.disk_bytes}")
    if declared_production and declared_mirror:
        for key, label in (("cpus", "CPUs"), ("memory_mb", "MiB memory"), ("disk_gb", "GiB disk")):
            if declared_mirror[key] < declared_production[key]:
                problems.append(
                    f"fleet file declares {declared_mirror[key]} {label} on the mirror, {declared_production[key]} on production"
                )
    if production.os_release and mirror.os_release != production.os_release:
        problems.append(
            "OS release differs: " + _os_name(mirror.os_release) + " on the mirror vs " + _os_name(production.os_release)
        )
    missing = sorted(name for name in production.packages if name not in mirror.packages)
    different = sorted(
        name for name, version in production.packages.items() if name in mirror.packages and mirror.packages[name] != version
    )
    if missing:
        problems.append(f"{len(missing)} package(s) missing on the mirror: {', '.join(missing[:10])}")
    if different:
        problems.append(
            f"{len(different)} package(s) at another version on the mirror: "
            + ", ".join(f"{n} {mirror.packages[n]} vs {production.packages[n]}" for n in different[:10])
        )
    return problems


def _os_name(os_release: str) -> str:
    for line in os_release.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "unknown"


# Every host fact in one round trip; sections separated by a line "---".
FACTS_SCRIPT = (
    'nproc; echo ---; cat /proc/meminfo; echo ---; df -B1 --output=size,avail "$1"; echo ---; '
    "cat /etc/os-release; echo ---; dpkg-query -W -f '${Package} ${Version}\\n' 2>/dev/null; true"
)


def host_facts_argv(path: str) -> list[str]:
    return ["sh", "-c", FACTS_SCRIPT, "sh", path]


def parse_host_facts(output: str) -> HardwareFacts:
    """HardwareFacts from the output of ``host_facts_argv``."""
    cpus, meminfo, df, os_release, packages = (output.split("\n---\n") + [""] * 5)[:5]
    disk, available = parse_df(df)
    return HardwareFacts(int(cpus.strip()), parse_meminfo_mb(meminfo), disk, available, os_release, parse_packages(packages))


def parse_meminfo_mb(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def parse_df(text: str) -> tuple[int, int]:
    """(size, available) bytes from ``df -B1 --output=size,avail PATH``."""
    lines = [line for line in text.splitlines() if line.strip()]
    size, available = lines[-1].split()[:2]
    return int(size), int(available)


def parse_packages(text: str) -> dict[str, str]:
    """``dpkg-query -W -f '${Package} ${Version}\\n'`` → {name: version}."""
    packages = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            packages[parts[0]] = parts[1]
    return packages
