"""The health judge: observations from several sites in, component states with hysteresis out.

Pure (no network, no Prefect, no clock). One call judges one round:

- A **checker site** that cannot reach its own ``via`` server, or reaches nothing at all, is
  *cut off*: its observations do not count, so a site's own outage never reads as "the world
  is down".
- **Reachability and application** components need *agreement*: a round counts as bad only
  when at least two sites that are not cut off see the component fail, at least one of them
  outside the subject's facility. One site alone, or sites all in the subject's own facility,
  cannot take anything down.
- Every other kind (hardware, space, certificate, DNS answer, freshness) comes from one
  authoritative reading per round (the worst a valid site reported).
- **Hysteresis**: a component gets worse only after ``failures_to_down`` consecutive rounds
  worse than its state, better only after ``successes_to_recover`` consecutive rounds better.
  A round with nothing conclusive (no valid site saw it, or the reading was ``unknown``)
  changes no counter.
- **Layout**: a service's components remember the server they were judged on (``part["server"]``).
  When the service runs elsewhere now (a failover, failback or facility failover moved it),
  the rounds counted at the old address do not count: it is judged afresh, and one good round
  at the new address is enough to call it recovered. A moved address is never a failure.

Each decision is a sentence the flow logs verbatim.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

from hotspare.planning.readings import ComponentKind, ComponentState, Reading

AGREEMENT_KINDS = (ComponentKind.reachability, ComponentKind.application)
EVENT_NAMES = {
    ComponentState.failed: "hotspare.health.failed",
    ComponentState.degraded: "hotspare.health.degraded",
    ComponentState.ok: "hotspare.health.recovered",
}


@dataclass(frozen=True)
class Rules:
    """How many consecutive rounds it takes to change a state (from the fleet's health section)."""

    failures_to_down: int = 3
    successes_to_recover: int = 2


@dataclass(frozen=True)
class SiteReport:
    """One checker site's round: whether its own view counts."""

    site: str
    facility: str
    cut_off: bool = False
    reason: str = ""


@dataclass(frozen=True)
class ComponentStatus:
    """A component's judged state and the counters that lead to the next change."""

    subject: str
    component: str
    kind: ComponentKind
    state: ComponentState = ComponentState.ok
    worse_rounds: int = 0  # consecutive rounds observed worse than ``state``
    better_rounds: int = 0  # consecutive rounds observed better than ``state``
    failed_rounds: int = 0  # consecutive rounds observed not ok (for operators)
    good_rounds: int = 0  # consecutive rounds observed ok (for operators)
    evidence: str = ""
    sites: tuple[str, ...] = ()
    part: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.component)


@dataclass(frozen=True)
class Change:
    """A component whose judged state changed this round: what an event carries."""

    subject: str
    component: str
    kind: ComponentKind
    previous: ComponentState
    state: ComponentState
    evidence: str
    sites: tuple[str, ...]
    part: dict = field(default_factory=dict)

    @property
    def event(self) -> str:
        """hotspare.health.failed | degraded | recovered."""
        return EVENT_NAMES.get(self.state, "hotspare.health.degraded")

    @property
    def resource_id(self) -> str:
        """``hotspare.server.<name>`` or ``hotspare.service.<name>``."""
        if self.subject.startswith("service:"):
            return f"hotspare.service.{self.subject.split(':', 1)[1]}"
        return f"hotspare.server.{self.subject}"

    def payload(self) -> dict:
        """What the event carries; a server's event names the server (a service's event gets the
        server it runs on from the flow, which knows where it runs)."""
        server = {} if self.subject.startswith("service:") else {"server": self.subject}
        return {
            **server,
            "component": self.component,
            "kind": self.kind.value,
            "state": self.state.value,
            "previous": self.previous.value,
            "evidence": self.evidence,
            "sites": list(self.sites),
        }


@dataclass(frozen=True)
class Judgement:
    """The new state of every component seen so far, what changed, and why."""

    statuses: dict[tuple[str, str], ComponentStatus]
    changes: tuple[Change, ...]
    decisions: tuple[str, ...]


@dataclass(frozen=True)
class _Round:
    """What one round concluded about one component (``observed`` None: inconclusive)."""

    observed: ComponentState | None
    evidence: str
    sites: tuple[str, ...]
    part: dict


def site_report(site: str, facility: str, via_error: str | None, readings: list[Reading]) -> SiteReport:
    """Judge whether a site's own view counts: cut off when its ``via`` server could not be
    reached, or when it reached none of at least two reachability targets."""
    if via_error:
        return SiteReport(site, facility, True, f"cannot reach its own probe host: {via_error}")
    reach = [reading for reading in readings if reading.kind == ComponentKind.reachability]
    if len(reach) >= 2 and all(reading.state == ComponentState.failed for reading in reach):
        return SiteReport(site, facility, True, f"reached none of its {len(reach)} targets")
    return SiteReport(site, facility)


def judge(
    readings: list[Reading],
    sites: list[SiteReport],
    previous: dict[tuple[str, str], ComponentStatus],
    facility_of: dict[str, str],
    rules: Rules,
    placement: dict[str, str] | None = None,
) -> Judgement:
    """One round: fold ``readings`` (from every site) into ``previous`` states.

    ``placement``: subject (``service:<name>``) -> the server it runs on in this round's layout.
    """
    placement = placement or {}
    decisions = [
        f"site {report.site} is cut off ({report.reason}): its observations do not count" for report in sites if report.cut_off
    ]
    cut_off = {report.site for report in sites if report.cut_off}
    facility_of_site = {report.site: report.facility for report in sites}
    grouped: dict[tuple[str, str], list[Reading]] = defaultdict(list)
    for reading in readings:
        grouped[(reading.subject, reading.component)].append(reading)
    statuses = dict(previous)
    changes = []
    for key, group in sorted(grouped.items()):
        valid = [reading for reading in group if reading.site not in cut_off]
        kind = group[0].kind
        if kind in AGREEMENT_KINDS:
            outcome = _agreement_round(valid, facility_of.get(key[0], ""), facility_of_site, rules)
        else:
            outcome = _single_source_round(valid)
        before = statuses.get(key) or ComponentStatus(key[0], key[1], kind)
        server = placement.get(key[0])
        step_rules = rules
        if server and before.part.get("server") not in (None, server):
            decisions.append(
                f"{key[0]} {key[1]}: the service moved from {before.part['server']} to {server}; "
                f"rounds counted at the old address do not count, one good round recovers it"
            )
            before = replace(before, worse_rounds=0, better_rounds=0)
            step_rules = replace(rules, successes_to_recover=1)
        after, sentence = _step(before, outcome, step_rules)
        if server and outcome.observed is not None:  # judged at this address (inconclusive: not yet)
            after = replace(after, part={**after.part, "server": server})
        statuses[key] = after
        if sentence:
            decisions.append(sentence)
        if after.state != before.state:
            changes.append(Change(key[0], key[1], kind, before.state, after.state, after.evidence, after.sites, after.part))
    return Judgement(statuses, tuple(changes), tuple(decisions))


def _agreement_round(valid: list[Reading], subject_facility: str, facility_of_site: dict[str, str], rules: Rules) -> _Round:
    """Bad only with two failing sites, one of them outside the subject's facility."""
    if not valid:
        return _Round(None, "no site that is not cut off observed it", (), {})
    per_site: dict[str, Reading] = {}
    for reading in valid:  # a site votes once: its worst reading (e.g. TCP fine, SSH login failed)
        if reading.site not in per_site or reading.state.rank > per_site[reading.site].state.rank:
            per_site[reading.site] = reading
    valid = list(per_site.values())
    bad = [reading for reading in valid if reading.state in (ComponentState.failed, ComponentState.degraded)]
    good = [reading for reading in valid if reading.state == ComponentState.ok]
    outside = [reading for reading in bad if facility_of_site.get(reading.site, reading.site) != subject_facility]
    evidence = "; ".join(f"{reading.site}: {reading.evidence}" for reading in (bad or good or valid))
    if len(bad) >= 2 and outside:
        failed = [reading for reading in bad if reading.state == ComponentState.failed]
        state = ComponentState.failed if len(failed) >= 2 else ComponentState.degraded
        return _Round(state, evidence, tuple(sorted(reading.site for reading in bad)), {})
    if good:
        note = ""
        if bad:
            note = (
                f" (only {', '.join(sorted(r.site for r in bad))} saw it fail: not enough to agree, "
                f"which needs 2 sites incl. one outside {subject_facility or 'its facility'})"
            )
        return _Round(ComponentState.ok, evidence + note, tuple(sorted(reading.site for reading in good)), {})
    return _Round(None, f"inconclusive: {evidence}", tuple(sorted(reading.site for reading in bad)), {})


def _single_source_round(valid: list[Reading]) -> _Round:
    """The worst conclusive reading of a valid site; ``unknown`` alone is inconclusive."""
    conclusive = [reading for reading in valid if reading.state != ComponentState.unknown]
    if not conclusive:
        evidence = "; ".join(f"{reading.site}: {reading.evidence}" for reading in valid) or "not read"
        return _Round(None, f"inconclusive: {evidence}", (), {})
    worst_reading = max(conclusive, key=lambda reading: reading.state.rank)
    return _Round(worst_reading.state, worst_reading.evidence, (worst_reading.site,), dict(worst_reading.part))


def _step(before: ComponentStatus, outcome: _Round, rules: Rules) -> tuple[ComponentStatus, str]:
    """Apply one round to one component: the new status and a sentence when it matters."""
    name = f"{before.subject} {before.component}"
    if outcome.observed is None:
        return replace(before, evidence=outcome.evidence or before.evidence), ""
    observed = outcome.observed
    failed_rounds = before.failed_rounds + 1 if observed != ComponentState.ok else 0
    good_rounds = before.good_rounds + 1 if observed == ComponentState.ok else 0
    # Part details accumulate: a disk that went missing no longer shows its device path or
    # serial, but the request to replace it needs what was last seen of it.
    base = replace(
        before,
        failed_rounds=failed_rounds,
        good_rounds=good_rounds,
        evidence=outcome.evidence,
        sites=outcome.sites,
        part={**before.part, **outcome.part},
    )
    if observed.rank == before.state.rank:
        return replace(base, worse_rounds=0, better_rounds=0), ""
    if observed.rank > before.state.rank:
        worse = before.worse_rounds + 1
        if worse >= rules.failures_to_down:
            return (
                replace(base, state=observed, worse_rounds=0, better_rounds=0),
                f"{name} is now {observed.value} (was {before.state.value}) after {worse} consecutive rounds: {outcome.evidence}",
            )
        return (
            replace(base, worse_rounds=worse, better_rounds=0),
            f"{name} looks {observed.value} ({worse} of {rules.failures_to_down} rounds before it is declared): "
            f"{outcome.evidence}",
        )
    better = before.better_rounds + 1
    if better >= rules.successes_to_recover:
        verb = "recovered" if observed == ComponentState.ok else f"is now {observed.value}"
        return (
            replace(base, state=observed, worse_rounds=0, better_rounds=0),
            f"{name} {verb} (was {before.state.value}) after {better} consecutive good rounds: {outcome.evidence}",
        )
    return (
        replace(base, better_rounds=better, worse_rounds=0),
        f"{name} looks {observed.value} again ({better} of {rules.successes_to_recover} rounds before it counts as recovered)",
    )


def worst_component(statuses: list[ComponentStatus]) -> ComponentStatus | None:
    """The component in the worst state (None when all are ok or there are none)."""
    bad = [status for status in statuses if status.state != ComponentState.ok]
    return max(bad, key=lambda status: (status.state.rank, status.component), default=None)


SHORT_KINDS = {ComponentKind.power_supply: "psu", ComponentKind.temperature: "temp"}


def component_label(kind: ComponentKind, component: str) -> str:
    """A component as operators name it: ``power_supply:PS2 Status`` -> ``psu PS2``,
    ``disk:devid 2`` -> ``disk devid 2``, ``fan:Fan1`` -> ``fan Fan1``."""
    name = component.split(":", 1)[-1].removesuffix(" Status").strip()
    return f"{SHORT_KINDS.get(kind, kind.value)} {name}".strip()


def status_text(status: ComponentStatus) -> str:
    """The HEALTH column of ``hotspare status``: a component and its state (``psu PS2 failed``)."""
    return f"{component_label(status.kind, status.component)} {status.state.value}"


def production_down(change: Change, active_server_of: dict[str, str]) -> list[str]:
    """Services whose active (production) server this change declared unreachable."""
    if change.kind != ComponentKind.reachability or change.state != ComponentState.failed:
        return []
    return sorted(service for service, server in active_server_of.items() if server == change.subject)
