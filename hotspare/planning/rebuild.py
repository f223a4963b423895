"""Planning a standby rebuild from backup: which standby, which snapshot, where the restore
goes and how it is put in place. Pure: facts in, a plan out.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from hotspare.planning.accounts import TEMPORARY_PREFIX, Account
from hotspare.planning.approval import plan_digest
from hotspare.planning.restic import Repository, Snapshot
from hotspare.planning.shell_programs import PLACE, PlanRefused, relative

RESTORE_BASE = "/var/tmp/hotspare-restore"  # scratch space on a standby being rebuilt


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


def choose_standby(
    candidates: Sequence[StandbyCandidate], lost_facilities: set[str], requested: str | None = None
) -> StandbyChoice:
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
        f"in facility {best.facility}, away from the lost servers"
        if best.facility not in lost_facilities
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

    @property
    def digest(self) -> str:
        """Fingerprint of the plan's content; what an approver signs off."""
        return plan_digest(asdict(self))

    def markdown(self) -> str:
        lines = [
            f"# Rebuild plan for {self.service}",
            "",
            f"Plan digest: `{self.digest}` (approve with this digest)",
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
    *,
    service,
    lost_servers: Sequence[str],
    choice: StandbyChoice,
    repository: Repository,
    snapshot: Snapshot,
    accounts: Sequence[Account],
    temporary_hours: float,
    dns_from: str,
    temporary_for: Sequence[str] | None = None,
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


def place_command(scratch: str, live_path: str, backup_root: str) -> list[str]:
    """Copy one restored path to its live place on the same host (rsync, local); every live
    file it replaces or deletes is kept under ``backup_root + live_path`` (a folder of this run,
    ``planning/live_data.py:backup_folder``): a rebuild never destroys a write.

    Guard: ``--delete`` acts inside ``live_path`` only, so the path must pass the fleet's path
    rule (``fleet/paths.py``) even from a fleet that skipped the check; the backup folder lies
    inside hotspare's copies root.
    """
    from hotspare.fleet.paths import COPIES_ROOT, form_problem, inside, path_problem

    problem = path_problem(live_path)
    if problem is None and (form_problem(backup_root) or not inside(backup_root, COPIES_ROOT)):
        problem = f"the backup folder {backup_root!r} is not a normal path inside {COPIES_ROOT}"
    if problem:
        raise PlanRefused(
            [
                f"refusing to place restored files at {live_path!r}: {problem}. Fix the service's paths "
                "in the fleet file (`hotspare fleet check`) and load it again"
            ]
        )
    return ["sh", "-c", PLACE, "sh", posixpath.join(scratch, relative(live_path)), live_path, backup_root]
