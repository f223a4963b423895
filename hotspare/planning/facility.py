"""Pure planning of a facility failover and of the facility's return.

When a whole facility is lost, every service whose production (active server) stands in it
moves to its mirror: tier 1 first, a service's dependencies before it, at most ``parallelism``
services of one wave at a time. Each move is the ordinary failover plan of that service
(``planning/failover.py``); the facility plan lists them with their own digests and has one
digest over everything, so one approval covers the whole facility and binds every service's
plan. Services whose mirror stands in the facility keep running, unprotected; services with no
usable mirror are offered the rebuild path (never run by the facility failover).

When the facility returns, its former productions become the mirrors (the existing reprotect),
services that lost their mirror get it back, and failback is offered per tier.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hotspare.planning.ages import age_text
from hotspare.planning.approval import plan_digest
from hotspare.planning.failover import FailoverPlan

HANDLED_ELSEWHERE = "handled by a live run"  # another run holds the service's lock and is at work: never taken over
NOT_FAILED = ("ok", "already-done", HANDLED_ELSEWHERE)  # outcomes of a service that need nothing from the operator now


@dataclass(frozen=True)
class ServiceStanding:
    """One service as the facility planner sees it (gathered by the flow)."""

    service: str
    tier: int
    depends_on: tuple[str, ...]
    state: str
    production: str  # active server now
    production_facility: str
    mirror: str | None
    mirror_facility: str | None
    planned_production: str = ""
    planned_production_facility: str = ""
    previous_production: str | None = None  # set while failed over: where it ran before
    previous_production_facility: str | None = None
    failover_plan: FailoverPlan | None = None  # for services whose production is in the facility


@dataclass(frozen=True)
class ServiceMove:
    """One service's failover inside the facility plan."""

    service: str
    tier: int  # effective tier (a dependency of a tier 1 service moves with tier 1)
    source: str
    target: str
    plan_digest: str  # the service's own failover plan digest, approved with the facility plan
    copy_id: str | None
    copy_age_seconds: float | None
    depends_on: tuple[str, ...] = ()
    resume: bool = False  # a failover of it was interrupted: continue that one


@dataclass(frozen=True)
class Wave:
    """Services that move together: same tier, their dependencies done in earlier waves."""

    tier: int
    moves: tuple[ServiceMove, ...]


@dataclass(frozen=True)
class Unprotected:
    service: str
    production: str
    mirror: str

    def sentence(self, facility: str) -> str:
        return f"keeps running on {self.production}, unprotected: mirror facility {facility} lost ({self.mirror})"


@dataclass(frozen=True)
class RebuildOffer:
    """A service whose mirror cannot take over: the rebuild runbook, offered, not run."""

    service: str
    reason: str
    standbys: tuple[str, ...]
    force_possible: bool = False  # the mirror has a copy that only force would accept

    def commands(self) -> tuple[str, ...]:
        standby = f" --standby {self.standbys[0]}" if self.standbys else ""
        commands = [f"hotspare rebuild {self.service}{standby}"]
        if self.force_possible:
            commands.append(f"hotspare failover {self.service} --force   # accepts the copy the plan refused")
        return tuple(commands)


@dataclass(frozen=True)
class FacilityPlan:
    facility: str
    parallelism: int
    waves: tuple[Wave, ...]
    unprotected: tuple[Unprotected, ...] = ()
    rebuild: tuple[RebuildOffer, ...] = ()
    warnings: tuple[str, ...] = ()
    refusal: str | None = None

    @property
    def service(self) -> str:
        """How approvals and messages name this plan (the failover approval gate reads it)."""
        return f"facility {self.facility}"

    @property
    def moves(self) -> tuple[ServiceMove, ...]:
        return tuple(move for wave in self.waves for move in wave.moves)

    @property
    def digest(self) -> str:
        """One fingerprint over every service's plan digest, the order, the rest of the plan."""
        material = {
            "facility": self.facility,
            "parallelism": self.parallelism,
            "waves": [
                [wave.tier, [[m.service, m.source, m.target, m.plan_digest, m.resume] for m in wave.moves]] for wave in self.waves
            ],
            "unprotected": [[u.service, u.production, u.mirror] for u in self.unprotected],
            "rebuild": [offer.service for offer in self.rebuild],
            "refusal": self.refusal,
        }
        return plan_digest(material)

    def markdown(self) -> str:
        lines = [f"# Facility failover plan: {self.facility}", ""]
        lines.append(
            f"{len(self.moves)} service(s) move to their mirrors, {len(self.unprotected)} keep running unprotected, "
            f"{len(self.rebuild)} need a rebuild. At most {self.parallelism} services of one wave move at a time."
        )
        if self.waves:
            lines += [
                "",
                "## Failovers, in order",
                "",
                "| wave | tier | service | from → to | copy (age = data-loss window) | depends on | service plan |",
                "|---|---|---|---|---|---|---|",
            ]
            for number, wave in enumerate(self.waves, 1):
                for move in wave.moves:
                    copy = f"{move.copy_id} ({age_text(move.copy_age_seconds)})" if move.copy_id else "final sync"
                    copy += " — resuming its interrupted failover once that run's lease has expired" if move.resume else ""
                    lines.append(
                        f"| {number} | {wave.tier} | {move.service} | {move.source} → {move.target} | {copy} | "
                        f"{', '.join(move.depends_on) or '-'} | `{move.plan_digest}` |"
                    )
        if self.unprotected:
            lines += ["", "## Keep running, unprotected", ""]
            lines += [f"- **{item.service}** {item.sentence(self.facility)}" for item in self.unprotected]
        if self.rebuild:
            lines += ["", "## Rebuild path (offered, not run)", ""]
            for offer in self.rebuild:
                lines.append(f"- **{offer.service}**: {offer.reason}")
                lines += [f"  - `{command}`" for command in offer.commands()]
        if self.warnings:
            lines += ["", "## Warnings", *[f"- {warning}" for warning in self.warnings]]
        if self.refusal:
            lines += ["", f"**REFUSED:** {self.refusal}"]
        lines += ["", f"Plan digest: `{self.digest}` (approve with this digest)"]
        return "\n".join(lines)


def plan_facility_failover(
    facility: str, standings: list[ServiceStanding], standbys: dict[str, str], parallelism: int = 4
) -> FacilityPlan:
    """The facility failover plan for ``facility``.

    ``standbys``: standby server name -> its facility (rebuild candidates outside ``facility``).
    Every standing whose production is in ``facility`` must carry its ``failover_plan``.
    """
    if parallelism < 1:
        raise ValueError("parallelism must be at least 1")
    candidates = tuple(sorted(name for name, where in standbys.items() if where != facility))
    moves: dict[str, ServiceMove] = {}
    rebuild, unprotected, warnings = [], [], []
    for standing in sorted(standings, key=lambda s: (s.tier, s.service)):
        if standing.production_facility == facility:
            outcome = _move_or_rebuild(facility, standing, candidates)
            if isinstance(outcome, ServiceMove):
                moves[standing.service] = outcome
            else:
                rebuild.append(outcome)
        elif standing.mirror and standing.mirror_facility == facility:
            unprotected.append(Unprotected(standing.service, standing.production, standing.mirror))
    by_name = {standing.service: standing for standing in standings}
    for offer in rebuild:
        needed_by = [s.service for s in standings if offer.service in s.depends_on and s.service in moves]
        if needed_by:
            warnings.append(
                f"{', '.join(needed_by)} depend(s) on {offer.service}, which needs a rebuild: they come up without it"
            )
    try:
        waves, promoted = _waves(moves, by_name)
    except ValueError as error:
        return FacilityPlan(
            facility,
            parallelism,
            (),
            tuple(unprotected),
            tuple(rebuild),
            tuple(warnings),
            refusal=f"{error}; fix depends_on in the fleet file (`hotspare fleet check`)",
        )
    warnings += promoted
    refusal = None
    if not moves and not unprotected and not rebuild:
        refusal = f"no service runs or is mirrored in facility {facility}: nothing to fail over"
    return FacilityPlan(facility, parallelism, waves, tuple(unprotected), tuple(rebuild), tuple(warnings), refusal)


def _move_or_rebuild(facility: str, standing: ServiceStanding, standbys: tuple[str, ...]) -> ServiceMove | RebuildOffer:
    plan = standing.failover_plan
    if plan is None:
        return RebuildOffer(standing.service, "no failover plan could be made for it", standbys)
    if standing.mirror is None and standing.state != "failing-over":
        return RebuildOffer(standing.service, f"it has no mirror (state {standing.state})", standbys)
    if standing.mirror_facility == facility and standing.state != "failing-over":
        return RebuildOffer(standing.service, f"its mirror {standing.mirror} is in facility {facility} too", standbys)
    if plan.refusal:
        force = plan.copy_id is not None and "force" in plan.refusal.lower()
        return RebuildOffer(standing.service, f"its mirror cannot take over: {plan.refusal}", standbys, force_possible=force)
    return ServiceMove(
        service=standing.service,
        tier=standing.tier,
        source=plan.source,
        target=plan.target,
        plan_digest=plan.digest,
        copy_id=plan.copy_id,
        copy_age_seconds=plan.copy_age_seconds,
        depends_on=tuple(standing.depends_on),
        resume=standing.state == "failing-over",
    )


def _waves(moves: dict[str, ServiceMove], standings: dict[str, ServiceStanding]) -> tuple[tuple[Wave, ...], list[str]]:
    """Waves in order: by effective tier, then by dependency depth inside the tier.

    A dependency of a service moves no later than that service's tier (it is promoted, with a
    warning): a tier 1 application is not recovered while the database it needs waits for
    tier 3. Dependencies outside the moving set already run elsewhere and are not waited for.
    """
    needs = {name: tuple(d for d in standings[name].depends_on if d in moves) for name in moves}
    order = _dependencies_first(needs)
    dependents: dict[str, list[str]] = {name: [] for name in moves}
    for name, dependencies in needs.items():
        for dependency in dependencies:
            dependents[dependency].append(name)
    tier = {name: move.tier for name, move in moves.items()}
    for name in reversed(order):  # every dependent before its dependencies: one pass settles the tiers
        for dependency in needs[name]:
            tier[dependency] = min(tier[dependency], tier[name])
    warnings = []
    for name in sorted(moves):
        if tier[name] != moves[name].tier:
            lowered_by = sorted(n for n in dependents[name] if tier[n] == tier[name])
            warnings.append(
                f"{name} (tier {moves[name].tier}) moves with tier {tier[name]}: {', '.join(lowered_by)} depend(s) on it"
            )
    depth: dict[str, int] = {}
    for name in order:  # dependencies first: their depth is known
        same_tier = [depth[d] for d in needs[name] if tier[d] == tier[name]]
        depth[name] = 1 + max(same_tier, default=-1)
    grouped: dict[tuple[int, int], list[ServiceMove]] = {}
    for name, move in moves.items():
        grouped.setdefault((tier[name], depth[name]), []).append(_with_tier(move, tier[name]))
    waves = tuple(Wave(key[0], tuple(sorted(grouped[key], key=lambda m: m.service))) for key in sorted(grouped))
    return waves, warnings


def _with_tier(move: ServiceMove, tier: int) -> ServiceMove:
    from dataclasses import replace

    return move if move.tier == tier else replace(move, tier=tier)


def _dependencies_first(needs: dict[str, tuple[str, ...]]) -> list[str]:
    """The names, each after all it depends on (iterative: long chains need no deep recursion).
    ValueError names a cycle."""
    state: dict[str, int] = {}  # 1 on the current path, 2 placed
    order: list[str] = []
    for root in sorted(needs):
        if root in state:
            continue
        path, stack = [root], [iter(needs[root])]
        state[root] = 1
        while stack:
            dependency = next(stack[-1], None)
            if dependency is None:
                stack.pop()
                done = path.pop()
                state[done] = 2
                order.append(done)
            elif state.get(dependency) == 1:
                raise ValueError("dependency cycle: " + " -> ".join([*path[path.index(dependency) :], dependency]))
            elif dependency not in state:
                state[dependency] = 1
                path.append(dependency)
                stack.append(iter(needs[dependency]))
    return order


# --- the facility's return -------------------------------------------------------------------


@dataclass(frozen=True)
class Reprotection:
    """One service protected again when the facility returns (the existing reprotect runbook)."""

    service: str
    tier: int
    production: str
    new_mirror: str
    why: str  # "former production" | "mirror back"
    fence_first: bool  # stop the app on new_mirror first: a former production still runs it as before the loss


@dataclass(frozen=True)
class FailbackOffer:
    service: str
    tier: int
    runs_on: str
    planned_production: str

    @property
    def command(self) -> str:
        return f"hotspare failback {self.service}"


@dataclass(frozen=True)
class ReturnPlan:
    facility: str
    reprotections: tuple[Reprotection, ...]
    failbacks: tuple[FailbackOffer, ...]
    untouched: tuple[str, ...] = field(default=())  # services of the facility that need something else

    def tiers(self) -> list[tuple[int, tuple[Reprotection, ...]]]:
        found = sorted({item.tier for item in self.reprotections})
        return [(tier, tuple(item for item in self.reprotections if item.tier == tier)) for tier in found]

    @property
    def digest(self) -> str:
        """The fingerprint an approval of the return binds to: every reprotection (server, why,
        fencing first) and the facility."""
        return plan_digest(
            {
                "facility": self.facility,
                "reprotections": [
                    [r.service, r.tier, r.production, r.new_mirror, r.why, r.fence_first] for r in self.reprotections
                ],
            }
        )

    def markdown(self) -> str:
        lines = [f"# Facility return: {self.facility}", ""]
        if self.reprotections:
            lines += ["| tier | service | production | new mirror | why |", "|---|---|---|---|---|"]
            lines += [f"| {r.tier} | {r.service} | {r.production} | {r.new_mirror} | {r.why} |" for r in self.reprotections]
        else:
            lines.append("Nothing to reprotect.")
        lines += ["", *failback_lines(self.failbacks)]
        if self.untouched:
            lines += ["", "Not handled by the return (see `hotspare status`): " + ", ".join(self.untouched)]
        lines += ["", f"Plan digest: `{self.digest}` (approve with this digest)"]
        return "\n".join(lines)


def plan_facility_return(facility: str, standings: list[ServiceStanding]) -> ReturnPlan:
    """What the facility's return does: every service that ran in it is protected again."""
    reprotections, failbacks, untouched = [], [], []
    for standing in sorted(standings, key=lambda s: (s.tier, s.service)):
        if standing.state == "failed-over" and standing.previous_production_facility == facility:
            reprotections.append(
                Reprotection(
                    standing.service,
                    standing.tier,
                    standing.production,
                    standing.previous_production,
                    "former production",
                    fence_first=True,
                )
            )
        elif standing.state == "unprotected" and standing.mirror and standing.mirror_facility == facility:
            # A mirror never serves: stop the app there too (reprotect refuses a server that answers).
            reprotections.append(
                Reprotection(
                    standing.service, standing.tier, standing.production, standing.mirror, "mirror back", fence_first=True
                )
            )
        elif facility in (standing.production_facility, standing.mirror_facility) and standing.state not in ("protected",):
            untouched.append(f"{standing.service} ({standing.state})")
    for item in reprotections:
        standing = next(s for s in standings if s.service == item.service)
        if standing.planned_production and standing.planned_production == item.new_mirror:
            failbacks.append(FailbackOffer(item.service, item.tier, item.production, item.new_mirror))
    return ReturnPlan(facility, tuple(reprotections), tuple(failbacks), tuple(untouched))


def failback_lines(failbacks: tuple[FailbackOffer, ...]) -> list[str]:
    """The failback offer, per tier: planned switchovers, no data loss, run when convenient."""
    if not failbacks:
        return ["No failback to offer."]
    lines = ["Failback (planned switchover back to the planned production, no data loss), tier by tier:"]
    for tier in sorted({offer.tier for offer in failbacks}):
        lines.append(f"- tier {tier}:")
        lines += [
            f"  - `{offer.command}`   # {offer.service}: {offer.runs_on} → {offer.planned_production}"
            for offer in failbacks
            if offer.tier == tier
        ]
    return lines


# --- the outcome -----------------------------------------------------------------------------


def advice(service: str, outcome: str, detail: str, state: str | None = None) -> str:
    """What the operator does next for a service whose facility failover did not finish."""
    if outcome == "ok":
        return "-"
    if outcome == "already-done":
        return detail or "-"  # which run did it
    if outcome == HANDLED_ELSEWHERE:
        return f"nothing now: {detail}; `hotspare status` shows when it is done"
    text = detail.lower()
    if state == "failing-over":
        return f"`hotspare failover {service} --resume` once the cause is fixed"
    if "facts changed" in text or "review" in text:
        return f"`hotspare failover {service}`: its plan changed since approval; review and approve the new one"
    if "busy" in text or "lock" in text:
        return f"wait for the run holding {service}'s lock, then `hotspare failover {service}`"
    return f"`hotspare failover {service}` shows why; if its mirror cannot serve, `hotspare rebuild {service}`"


def summary_markdown(plan: FacilityPlan, results: dict[str, dict], total_seconds: float | None) -> str:
    """The facility failover's outcome: one row per service, RTO, and what to do for failures.

    ``results``: service -> {outcome, rto_seconds, since_approval_seconds, detail, state}.
    """
    failed = [name for name, result in results.items() if result.get("outcome") not in NOT_FAILED]
    head = "done" if not failed else f"{len(failed)} service(s) need attention"
    lines = [f"# Facility failover of {plan.facility}: {head}", ""]
    if total_seconds is not None:
        lines.append(f"All moves finished {total_seconds:.1f} s after approval (plan `{plan.digest}`).")
        lines.append("")
    lines += ["| service | tier | outcome | RTO (s) | on mirror after approval (s) | what to do |", "|---|---|---|---|---|---|"]
    for move in plan.moves:
        result = results.get(move.service, {"outcome": "not run", "detail": "not started"})
        rto = result.get("rto_seconds")
        since = result.get("since_approval_seconds")
        lines.append(
            f"| {move.service} | {move.tier} | {result['outcome']} | {'-' if rto is None else rto} | "
            f"{'-' if since is None else since} | "
            f"{advice(move.service, result['outcome'], result.get('detail', ''), result.get('state'))} |"
        )
    for item in plan.unprotected:
        lines.append(
            f"| {item.service} | - | unprotected | - | - | {item.sentence(plan.facility)}; "
            f"`hotspare facility return {plan.facility}` when it is back |"
        )
    for offer in plan.rebuild:
        lines.append(f"| {offer.service} | - | needs rebuild | - | - | {offer.reason}: `{offer.commands()[0]}` |")
    failures = [(name, results[name].get("detail", "")) for name in failed]
    if failures:
        lines += ["", "## Failures", *[f"- **{name}**: {detail}" for name, detail in failures]]
    return "\n".join(lines)
