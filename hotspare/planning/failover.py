"""Pure failover planning: which copy, how old, which steps, and may we at all.

The plan is what the operator approves; its digest binds an approval to exactly this plan
(a different copy or target makes a different digest, and the old approval no longer fits).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime

from hotspare.planning.ages import age_text
from hotspare.planning.approval import plan_digest


@dataclass(frozen=True)
class CopyChoice:
    id: str
    status: str
    started_at: datetime
    path: str  # copy root on the target


@dataclass(frozen=True)
class FailoverPlan:
    service: str
    mode: str  # planned | emergency
    source: str  # the production we leave
    target: str  # the mirror that becomes production
    source_address: str
    target_address: str
    dns_name: str
    copy_id: str | None  # None in planned mode: the final sync makes the copy
    copy_age_seconds: float | None  # the data-loss window of an emergency failover
    steps: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    refusal: str | None = None  # set when the plan must not run
    already_done: bool = False

    @property
    def digest(self) -> str:
        """Short fingerprint of what would happen; approvals must quote it."""
        material = {k: v for k, v in asdict(self).items() if k not in ("copy_age_seconds", "warnings")}
        return plan_digest(material)

    def spoken(self) -> str:
        """The plan in one sentence a person can hear on a page call and decide on."""
        if self.copy_id and self.mode != "planned":
            loss = f"losing the writes of the last {age_text(self.copy_age_seconds)}"
        else:
            loss = "with no data lost"
        return f"fail {self.service} over from {self.source} to {self.target}, {loss}"

    def markdown(self) -> str:
        lines = [
            f"# Failover plan for {self.service} ({self.mode})",
            "",
            f"- from **{self.source}** ({self.source_address}) to **{self.target}** ({self.target_address})",
            f"- DNS record `{self.dns_name}`: {self.source_address} → {self.target_address} (compare-and-swap)",
        ]
        if self.copy_id and self.mode == "planned":
            lines.append(f"- resuming: the final sync made copy **{self.copy_id}** with the app stopped: no data loss")
        elif self.copy_id:
            lines.append(f"- copy **{self.copy_id}**, taken {age_text(self.copy_age_seconds)} ago: writes after it are lost")
        else:
            lines.append("- final sync with the app stopped on production: no data loss")
        lines += ["", "## Steps", *[f"{number}. {step}" for number, step in enumerate(self.steps, 1)]]
        if self.warnings:
            lines += ["", "## Warnings", *[f"- {warning}" for warning in self.warnings]]
        if self.refusal:
            lines += ["", f"**REFUSED:** {self.refusal}"]
        lines += ["", f"Plan digest: `{self.digest}` (approve with this digest)"]
        return "\n".join(lines)


@dataclass(frozen=True)
class ServiceFacts:
    """What the planner needs to know about the service now (gathered by the flow)."""

    service: str
    state: str
    active_server: str
    mirror_server: str | None
    dns_name: str
    addresses: dict[str, str]  # server name -> address
    dns_answer: list[str]
    copies: list[CopyChoice] = field(default_factory=list)  # on the target, newest first
    in_flight: dict | None = None  # ServiceRow.failover of a crashed run


def plan_failover(
    facts: ServiceFacts,
    *,
    planned: bool,
    now: datetime,
    copy_id: str | None = None,
    force: bool = False,
    max_copy_age_hours: float = 24.0,
) -> FailoverPlan:
    """Decide the failover; a plan with ``refusal`` set must not be executed."""
    mode = "planned" if planned else "emergency"
    in_flight = facts.in_flight
    resuming = facts.state == "failing-over" and bool(in_flight)
    if resuming:
        # A crashed failover: resume exactly what it was doing.
        source, target = in_flight["source"], in_flight["target"]
        mode = in_flight["mode"]
        copy_id = in_flight.get("copy_id") or copy_id
    else:
        source, target = facts.active_server, facts.mirror_server
    if facts.state == "failed-over" and facts.dns_answer == [facts.addresses[facts.active_server]] and not in_flight:
        # Already on the mirror and not reprotected yet: nothing to do.
        done = _refused(
            facts,
            mode,
            source,
            source,
            f"{facts.service} already runs on {facts.active_server}; reprotect it before failing over again",
        )
        return replace(done, already_done=True)
    if target is None:
        return _refused(facts, mode, source, source, f"{facts.service} has no mirror to fail over to (state {facts.state})")
    base = dict(
        service=facts.service,
        mode=mode,
        source=source,
        target=target,
        source_address=facts.addresses[source],
        target_address=facts.addresses[target],
        dns_name=facts.dns_name,
    )
    steps = _steps(mode)
    if mode == "planned":
        # A resumed switchover whose final sync finished keeps that copy: it may already be live
        # with users writing to it, and a new final sync would overwrite their writes.
        resumed_copy = in_flight.get("copy_id") if resuming else None
        return FailoverPlan(**base, copy_id=resumed_copy, copy_age_seconds=None, steps=steps)
    choice, problem = _choose_copy(facts.copies, copy_id, force, now, max_copy_age_hours)
    warnings = (problem,) if problem and force else ()
    age = (now - choice.started_at).total_seconds() if choice else None
    return FailoverPlan(
        **base,
        copy_id=choice.id if choice else None,
        copy_age_seconds=age,
        steps=steps,
        warnings=warnings,
        refusal=problem if problem and not force else (None if choice else "no copy of the service exists on the mirror"),
    )


def _choose_copy(copies: list[CopyChoice], wanted: str | None, force: bool, now: datetime, max_age_hours: float):
    """(copy, problem): the newest verified copy, or the named one, with any reason to refuse."""
    if wanted:
        choice = next((c for c in copies if c.id == wanted), None)
        if choice is None:
            return None, f"copy {wanted} does not exist on the mirror (known: {', '.join(c.id for c in copies) or 'none'})"
    else:
        choice = next((c for c in copies if c.status == "verified"), None)
        if choice is None:
            newest = copies[0] if copies else None
            problem = "no verified copy exists on the mirror" + (
                f"; the newest copy {newest.id} is {newest.status}" if newest else ""
            )
            return newest, problem + ". Use force to promote an unverified copy."
    if choice.status != "verified":
        return choice, f"copy {choice.id} is {choice.status}, not verified. Use force to promote it anyway."
    age_hours = (now - choice.started_at).total_seconds() / 3600
    if age_hours > max_age_hours:
        return (
            choice,
            f"copy {choice.id} is {age_hours:.1f} h old, beyond the {max_age_hours:g} h limit. Use force to accept the data loss.",
        )
    return choice, None


def _steps(mode: str) -> tuple[str, ...]:
    if mode == "planned":
        return (
            "lower the DNS record's TTL if it is long",
            "stop the app on production",
            "final sync and verify (no writes are lost)",
            "make that copy live on the mirror and run its activation commands",
            "health-check the app on the mirror directly",
            "DNS cutover (compare-and-swap) and confirmation",
            "check the app through the DNS name",
            "record the new layout in the inventory",
        )
    return (
        "fence production alongside the activation: stop its app over SSH, or, when it does not answer, "
        "power it off through its BMC; bounded in time (neither possible: recorded as unfenced)",
        "make the chosen copy live on the mirror and run its activation commands",
        "health-check the app on the mirror directly",
        "DNS cutover (compare-and-swap) and confirmation",
        "check the app through the DNS name",
        "record the new layout in the inventory",
    )


def _refused(facts: ServiceFacts, mode: str, source: str, target: str, reason: str) -> FailoverPlan:
    address = facts.addresses.get(source, "?")
    return FailoverPlan(
        service=facts.service,
        mode=mode,
        source=source,
        target=target,
        source_address=address,
        target_address=address,
        dns_name=facts.dns_name,
        copy_id=None,
        copy_age_seconds=None,
        steps=(),
        refusal=reason,
    )


STRIP_OPTIONS = ("--no-devices", "--no-specials", "--filter=-x security.capability")


def activation_argv(
    copy_tree: str, live_paths: list[str], backup_dir: str | None = None, strip: tuple[str, ...] = ()
) -> list[str]:
    """Local rsync on the mirror that makes a copy's paths the live ones.

    ``/./`` with ``--relative`` maps ``TREE/./srv/x`` to ``/srv/x``, for folders and files
    alike; ``--delete`` acts only inside those paths. Copy, never move: the copy stays intact
    and promotable. With ``backup_dir`` (a folder of this run inside hotspare's copies root,
    ``planning/live_data.py:backup_folder``) nothing is destroyed: every live file rsync
    replaces or deletes is moved there first (``--backup --backup-dir``, under its absolute
    path), so writes that existed only on this host (a returning production) stay readable.
    ``strip``: rsync's own options that keep hostile kinds out of the live paths
    (``planning/live_data.py:rsync_strips``: ``--no-devices``, ``--no-specials``, an xattr
    filter for file capabilities, ``--chmod`` clearing setuid/setgid on files).

    Guard: the argument list only ever names declared paths that pass the fleet's path rule
    (``fleet/paths.py``) and a copy inside hotspare's copies root, so ``--delete`` can never
    reach a system tree or hotspare's own folders, even from a fleet that skipped the check.
    """
    from hotspare.adapters.errors import PermanentError
    from hotspare.fleet.paths import COPIES_ROOT, form_problem, inside, path_problem

    reasons = [problem for path in live_paths if (problem := path_problem(path))]
    if form_problem(copy_tree) or not inside(copy_tree, COPIES_ROOT):
        reasons.append(f"copy folder {copy_tree!r} is not a normal path inside {COPIES_ROOT}")
    if backup_dir is not None and (form_problem(backup_dir) or not inside(backup_dir, COPIES_ROOT)):
        reasons.append(f"backup folder {backup_dir!r} is not a normal path inside {COPIES_ROOT}")
    if reasons or not live_paths:
        raise PermanentError(
            "refusing to make a copy live: "
            + ("; ".join(reasons) or "the service declares no paths")
            + ". Fix the service's paths in the fleet file (`hotspare fleet check`) and load it again."
        )
    unknown = [option for option in strip if option not in STRIP_OPTIONS and not option.startswith("--chmod=F")]
    if unknown:
        raise PermanentError(f"refusing to make a copy live: unknown rsync option(s) {unknown}")
    keep = ["--backup", f"--backup-dir={backup_dir}"] if backup_dir else []
    return [
        "rsync",
        "-aHAX",
        "--numeric-ids",
        "--relative",
        "--delete",
        *keep,
        *strip,
        *[f"{copy_tree}/.{path}" for path in live_paths],
        "/",
    ]
