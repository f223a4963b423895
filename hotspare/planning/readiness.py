"""Pure readiness judgement: is the team ready to carry out the continuity plan?

Facts in (services with their targets, drills, runs with their operators, restore proofs, the
time now), a report out: per service its last drill with RTO and RPO against the targets,
its last restore proof, and per procedure the people who performed it for real or in a drill
in the last ``days`` days. The plan asks that at least ``minimum_people`` (three) know each
procedure; every shortfall becomes a flag sentence that says what to do. Only identities count:
a run recorded as ``root``, a shared login or a worker's login names no person (``is_person``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

PROCEDURES = ("failover", "facility failover", "rebuild", "reprotect/failback", "restore")
COMMANDS = {
    "failover": "hotspare failover SERVICE",
    "facility failover": "hotspare facility failover FACILITY",
    "rebuild": "hotspare rebuild SERVICE",
    "reprotect/failback": "hotspare reprotect SERVICE; hotspare failback SERVICE",
    "restore": "hotspare rebuild SERVICE (restores the newest backup)",
}
# How to train someone in a procedure without moving users: a drill in its bubble, watched by the
# people who need the practice (they are counted), never a real failover as an exercise.
TRAINING = {
    "failover": "hotspare drill SERVICE --watched-by NAME",
    "facility failover": "hotspare drill --facility FACILITY --watched-by NAME",
    "rebuild": "hotspare drill SERVICE --watched-by NAME, and `hotspare restore-proof SERVICE` for the restore",
    "reprotect/failback": "hotspare drill SERVICE --watched-by NAME; a real reprotect/failback only when one is due",
    "restore": "hotspare restore-proof SERVICE, then a drill watched by them (--watched-by NAME)",
}


@dataclass(frozen=True)
class ServiceTargets:
    service: str
    rto_seconds: float
    rpo_seconds: float
    has_backup: bool = True


@dataclass(frozen=True)
class DrillFact:
    service: str
    started: datetime
    outcome: str
    operators: tuple[str, ...]
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    cleanup_proven: bool = False
    procedure: str = "failover"  # drills bring a service up from its copy: the failover procedure


@dataclass(frozen=True)
class RunFact:
    kind: str  # failover | facility-failover | rebuild | reprotect | facility-return | …
    service: str
    started: datetime
    outcome: str
    operator: str
    mode: str | None = None  # failover: planned | emergency
    rto_seconds: float | None = None


@dataclass(frozen=True)
class ProofFact:
    service: str
    started: datetime
    outcome: str  # passed | failed | running


def procedures_of_run(run: RunFact) -> tuple[str, ...]:
    """Which procedures a run exercised. A planned failover is a switchover that ends with a
    reprotect (failback is one); a rebuild restores the newest backup."""
    return {
        "failover": ("failover", "reprotect/failback") if run.mode == "planned" else ("failover",),
        "facility-failover": ("facility failover",),
        "rebuild": ("rebuild", "restore"),
        "reprotect": ("reprotect/failback",),
        "facility-return": ("reprotect/failback",),
        "restore": ("restore",),
    }.get(run.kind, ())


@dataclass(frozen=True)
class ProcedureReadiness:
    procedure: str
    people: tuple[str, ...]  # sorted names
    real: tuple[str, ...]  # of them, those who did it for real
    drilled: tuple[str, ...]  # of them, those who did it in a drill
    last: datetime | None
    flag: str | None


@dataclass(frozen=True)
class ServiceReadiness:
    service: str
    rto_target_seconds: float
    rpo_target_seconds: float
    last_drill: datetime | None
    last_drill_outcome: str | None
    drill_rto_seconds: float | None
    drill_rpo_seconds: float | None
    last_failover_rto_seconds: float | None
    last_restore_proof: datetime | None
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Readiness:
    now: datetime
    days: int
    minimum_people: int
    services: tuple[ServiceReadiness, ...]
    procedures: tuple[ProcedureReadiness, ...]
    flags: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        return not self.flags

    def as_dict(self) -> dict:
        return {**asdict(self), "ready": self.ready}

    def markdown(self) -> str:
        lines = [
            f"# Readiness: {'READY' if self.ready else f'{len(self.flags)} problem(s)'}",
            "",
            f"Window: the last {self.days} days; at least {self.minimum_people} people per procedure.",
            "",
            "## Procedures",
            "",
            "| procedure | people | for real | in a drill | last | flag |",
            "|---|---|---|---|---|---|",
        ]
        for item in self.procedures:
            lines.append(
                f"| {item.procedure} | {len(item.people)} | {', '.join(item.real) or '-'} | "
                f"{', '.join(item.drilled) or '-'} | {_day(item.last)} | {item.flag or 'ok'} |"
            )
        lines += [
            "",
            "## Services",
            "",
            "| service | last drill | drill RTO / target | drill RPO / target | last failover RTO | last restore proof | flags |",
            "|---|---|---|---|---|---|---|",
        ]
        for item in self.services:
            lines.append(
                f"| {item.service} | {_day(item.last_drill)} {item.last_drill_outcome or ''} | "
                f"{_seconds(item.drill_rto_seconds)} / {_seconds(item.rto_target_seconds)} | "
                f"{_seconds(item.drill_rpo_seconds)} / {_seconds(item.rpo_target_seconds)} | "
                f"{_seconds(item.last_failover_rto_seconds)} | {_day(item.last_restore_proof)} | "
                f"{'; '.join(item.flags) or 'ok'} |"
            )
        return "\n".join(lines)


def judge_readiness(
    services: list[ServiceTargets],
    drills: list[DrillFact],
    runs: list[RunFact],
    proofs: list[ProofFact],
    now: datetime,
    days: int = 90,
    minimum_people: int = 3,
    restore_proof_days: int = 8,
) -> Readiness:
    """The readiness report; see the module docstring."""
    since = now - timedelta(days=days)
    procedures = tuple(_procedure(name, drills, runs, since, minimum_people, days) for name in PROCEDURES)
    judged = tuple(_service(target, drills, runs, proofs, now, since, days, restore_proof_days) for target in services)
    flags = [f"{item.procedure}: {item.flag}" for item in procedures if item.flag]
    flags += [f"{item.service}: {flag}" for item in judged for flag in item.flags]
    return Readiness(now, days, minimum_people, judged, procedures, tuple(flags))


# Accounts that name a machine or a shared login, not a person: a run recorded under one of them
# proves nobody in particular knows the procedure (the API proxy's worker and control logins
# included: ``planning/api_access.py``).
SHARED_ACCOUNTS = frozenset({"root", "hotspare", "control", "postgres", "nobody", "admin", "administrator"})
SHARED_PREFIXES = ("worker-", "prefect")


def is_person(name: str) -> bool:
    """Whether ``name`` can count as a person who performed a procedure."""
    plain = name.strip().lower()
    return bool(plain) and plain not in SHARED_ACCOUNTS and not plain.startswith(SHARED_PREFIXES)


def _procedure(name: str, drills, runs, since: datetime, minimum: int, days: int) -> ProcedureReadiness:
    real = {
        run.operator: run.started
        for run in sorted(runs, key=lambda r: r.started)
        if is_person(run.operator) and run.outcome == "ok" and run.started >= since and name in procedures_of_run(run)
    }
    drilled: dict[str, datetime] = {}
    for drill in sorted(drills, key=lambda d: d.started):
        if drill.procedure == name and drill.outcome == "ok" and drill.started >= since:
            for person in drill.operators:
                if is_person(person):
                    drilled[person] = drill.started
    people = tuple(sorted(set(real) | set(drilled)))
    last = max([*real.values(), *drilled.values()], default=None)
    flag = None
    if len(people) < minimum:
        who = f" ({', '.join(people)})" if people else ""
        flag = (
            f"only {len(people)} {'person' if len(people) == 1 else 'people'}{who} performed it in the last {days} days; "
            f"at least {minimum} must know it: train {minimum - len(people)} more in a drill (`{TRAINING[name]}`)"
        )
    return ProcedureReadiness(name, people, tuple(sorted(real)), tuple(sorted(drilled)), last, flag)


def _service(target: ServiceTargets, drills, runs, proofs, now, since, days: int, proof_days: int) -> ServiceReadiness:
    own = sorted((d for d in drills if d.service == target.service), key=lambda d: d.started, reverse=True)
    last = own[0] if own else None
    flags = []
    if last is None:
        flags.append(f"never drilled: run a drill (target RTO {_seconds(target.rto_seconds)})")
    else:
        if last.started < since:
            flags.append(f"drill overdue: the last was {(now - last.started).days} days ago (every {days} days)")
        if last.outcome != "ok":
            flags.append(f"last drill {last.outcome}: find the cause and drill again")
        if last.rto_seconds is not None and last.rto_seconds > target.rto_seconds:
            flags.append(f"drill RTO {_seconds(last.rto_seconds)} over the target {_seconds(target.rto_seconds)}")
        if last.rpo_seconds is not None and last.rpo_seconds > target.rpo_seconds:
            flags.append(f"drill RPO {_seconds(last.rpo_seconds)} over the target {_seconds(target.rpo_seconds)}")
        if last.outcome == "ok" and not last.cleanup_proven:
            flags.append("last drill's cleanup was not proven")
    failovers = sorted(
        (
            r
            for r in runs
            if r.service == target.service and r.kind == "failover" and r.outcome == "ok" and r.rto_seconds is not None
        ),
        key=lambda r: r.started,
        reverse=True,
    )
    passed = sorted((p.started for p in proofs if p.service == target.service and p.outcome == "passed"), reverse=True)
    last_proof = passed[0] if passed else None
    if target.has_backup:
        if last_proof is None:
            flags.append(f"no restore proof has passed: `hotspare restore-proof {target.service}`")
        elif now - last_proof > timedelta(days=proof_days):
            flags.append(f"restore proof overdue: the last passed {(now - last_proof).days} days ago")
    return ServiceReadiness(
        service=target.service,
        rto_target_seconds=target.rto_seconds,
        rpo_target_seconds=target.rpo_seconds,
        last_drill=last.started if last else None,
        last_drill_outcome=last.outcome if last else None,
        drill_rto_seconds=last.rto_seconds if last else None,
        drill_rpo_seconds=last.rpo_seconds if last else None,
        last_failover_rto_seconds=failovers[0].rto_seconds if failovers else None,
        last_restore_proof=last_proof,
        flags=tuple(flags),
    )


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.0f} min"
    return f"{value:.1f} s"


def _day(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d}"
