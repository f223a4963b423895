"""Pure planning of when each service is replicated: an interval derived from its RPO.

No network, no Prefect, no clock. The fleet's ``defaults.replication_schedule`` crons (01:00 and
13:00 unless the fleet file says otherwise) stay the baseline; a service whose recovery point
objective they cannot keep gets an interval of its own:

- **the crons' cadence** is the longest gap between two of their firings (two a day: 12 h);
- a service whose RPO is **at least that cadence stays on the crons**, as before (the default
  12 h RPO: twice a day; the copy age peaks at 12 h plus one replication);
- a shorter RPO gets **half its RPO**, so a copy that fails once is still within the RPO, rounded
  down to the next step of ``STEPS_MINUTES`` (5, 10, 15, 20, 30 min; 1, 2, 3, 4, 6, 8, 12, 24 h:
  each divides a day, so few groups and clock-aligned cron lines) and **never under 5 minutes**.

What a schedule really gives: the copy age is the time since the replication that made the
current copy *began*, so it peaks just before the next copy is promoted, at **interval + one
replication**. A 5-minute schedule therefore gives an RPO of about 5 minutes plus the time one
replication of that service takes (seconds for a small change), and 5 minutes more for every run
that fails or is skipped; an RPO under 10 minutes cannot keep that margin, and the sentence says so.

Services with the same interval form **one schedule group**: one deployment whose run works
them in parallel within the fleet's ``replication`` bounds (100 services at 5 minutes are one
deployment, not 100). The crons' group keeps the deployment name ``replicate-all``. Groups run
independently, and a run skips a service the previous run is still replicating (the service
lock), so a slow or failing service never delays the others.

The interval groups' cron lines run in UTC: a daylight-saving change never stretches their
interval. The crons' group keeps the fleet's time zone, as the operator wrote it.

The rolling verification slice needs the replications a service gets per day
(``replications_per_day_of``): 1440 / interval minutes for an interval group, and the fleet's
``replication.replications_per_day`` (the operator's figure, default 2) for the crons' group.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

SHORTEST_INTERVAL_MINUTES = 5
STEPS_MINUTES = (5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440)
CRON_GROUP_NAME = "replicate-all"
# A fixed Monday as the start of the simulated week: the cadence of cron lines does not depend
# on today's date (no clock), and a week covers weekday-restricted lines.
REFERENCE_MONDAY = datetime(2024, 1, 1)
SIMULATED_DAYS = 8
DAY_MINUTES = 1440.0


@dataclass(frozen=True)
class ServiceSchedule:
    """When one service is replicated and why, in one sentence an operator reads."""

    service: str
    rpo_minutes: float
    interval_minutes: float  # the crons' cadence for a service on the crons
    group: str
    within_rpo_after_one_failure: bool
    sentence: str


@dataclass(frozen=True)
class ScheduleGroup:
    """One ``replicate`` deployment: its services, when it runs, and why."""

    name: str
    interval_minutes: int | None  # None: the fleet's crons
    cron_lines: tuple[str, ...]
    timezone: str
    services: tuple[str, ...]
    replications_per_day: float
    sentences: tuple[str, ...]

    @property
    def on_fleet_crons(self) -> bool:
        return self.interval_minutes is None

    @property
    def reason(self) -> str:
        """The group in one sentence (for the deployment's description and ``hotspare schedule``)."""
        when = (
            f"on the fleet's crons {', '.join(self.cron_lines)} ({self.timezone})"
            if self.on_fleet_crons
            else f"every {duration_text(self.interval_minutes)} ({self.cron_lines[0]}, UTC)"
        )
        members = ", ".join(self.services) if self.services else "no service"
        return f"{self.name}: {members} {when}"


@dataclass(frozen=True)
class ReplicationSchedule:
    """Every schedule group of a fleet, the crons' group first (it exists even when empty)."""

    cadence_minutes: float
    groups: tuple[ScheduleGroup, ...]
    services: tuple[ServiceSchedule, ...]

    def group_of(self, service: str) -> ScheduleGroup:
        for group in self.groups:
            if service in group.services:
                return group
        raise KeyError(f"no service {service!r} in the replication schedule")

    def sentences(self) -> list[str]:
        return [service.sentence for service in self.services]


def duration_text(minutes: float) -> str:
    """``5 min``, ``90 min``, ``12 h``, ``7 d``: whole units where they fit (a tenth of a minute at most)."""
    minutes = round(minutes, 1)
    if minutes < 120 or minutes % 60:
        return f"{minutes:g} min"
    if minutes < 2 * DAY_MINUTES or minutes % DAY_MINUTES:
        return f"{minutes / 60:g} h"
    return f"{minutes / DAY_MINUTES:g} d"


def cron_cadence_minutes(cron_lines: list[str] | tuple[str, ...]) -> float:
    """The longest gap, in minutes, between two firings of ``cron_lines`` together over a week.

    Fewer than two firings in the simulated week (a monthly line, no lines) count as a week: the
    crons then keep no RPO shorter than that. ``ValueError`` names a line that is not a cron line.
    """
    from cronsim import CronSim, CronSimError

    end = REFERENCE_MONDAY + timedelta(days=SIMULATED_DAYS)
    firings: set[datetime] = set()
    for line in cron_lines:
        try:
            simulation = CronSim(line, REFERENCE_MONDAY - timedelta(minutes=1))
        except CronSimError as error:
            raise ValueError(
                f"defaults.replication_schedule: {line!r} is not a cron line ({error}); write five fields, e.g. '0 1 * * *'"
            ) from error
        for moment in simulation:
            if moment >= end:
                break
            firings.add(moment)
    ordered = sorted(firings)
    week = REFERENCE_MONDAY + timedelta(days=7)
    gaps = [(later - earlier).total_seconds() / 60 for earlier, later in zip(ordered, ordered[1:]) if earlier < week]
    return max(gaps) if gaps else 7 * DAY_MINUTES


def interval_for(rpo_minutes: float) -> int:
    """Half the RPO, rounded down to a step of ``STEPS_MINUTES``, never under 5 minutes."""
    fitting = [step for step in STEPS_MINUTES if step <= rpo_minutes / 2]
    return fitting[-1] if fitting else SHORTEST_INTERVAL_MINUTES


def cron_line_for(interval_minutes: int) -> str:
    """A clock-aligned cron line firing every ``interval_minutes`` (a step of ``STEPS_MINUTES``)."""
    if interval_minutes < 60:
        return f"*/{interval_minutes} * * * *"
    if interval_minutes < DAY_MINUTES:
        return f"0 */{interval_minutes // 60} * * *"
    return "0 0 * * *"


def group_name_for(interval_minutes: int) -> str:
    """``replicate-every-5m``, ``replicate-every-2h``, ``replicate-every-24h``."""
    if interval_minutes < 60:
        return f"replicate-every-{interval_minutes}m"
    return f"replicate-every-{interval_minutes // 60}h"


def plan_replication_schedule(fleet) -> ReplicationSchedule:
    """Every service's schedule and the groups they form (see the module docstring for the rule)."""
    cron_lines = tuple(fleet.defaults.replication_schedule)
    cadence = cron_cadence_minutes(cron_lines)
    ordered = sorted(fleet.services, key=lambda service: (service.tier, service.name))
    members: dict[int | None, list[str]] = {None: []}
    schedules = []
    for service in ordered:
        rpo = fleet.rpo_hours_of(service) * 60
        interval = interval_for(rpo)
        own = rpo < cadence and interval < cadence
        key = interval if own else None
        members.setdefault(key, []).append(service.name)
        schedules.append(
            _service_schedule(
                service.name,
                rpo,
                interval if own else cadence,
                group_name_for(interval) if own else CRON_GROUP_NAME,
                own,
                cron_lines,
            )
        )
    groups = [_cron_group(fleet, cron_lines, cadence, members[None], schedules)]
    for interval in sorted(key for key in members if key is not None):
        names = tuple(members[interval])
        groups.append(
            ScheduleGroup(
                name=group_name_for(interval),
                interval_minutes=interval,
                cron_lines=(cron_line_for(interval),),
                timezone="UTC",
                services=names,
                replications_per_day=DAY_MINUTES / interval,
                sentences=tuple(schedule.sentence for schedule in schedules if schedule.service in names),
            )
        )
    return ReplicationSchedule(cadence, tuple(groups), tuple(schedules))


def replications_per_day_of(fleet, service) -> float:
    """Replications ``service`` (a fleet Service or its name) gets per day, for the rolling
    verification slice: 1440 / interval minutes, or the fleet's ``replication.replications_per_day``
    for a service on the fleet's crons."""
    name = service if isinstance(service, str) else service.name
    return plan_replication_schedule(fleet).group_of(name).replications_per_day


def _cron_group(fleet, cron_lines, cadence: float, names: list[str], schedules: list[ServiceSchedule]) -> ScheduleGroup:
    return ScheduleGroup(
        name=CRON_GROUP_NAME,
        interval_minutes=None,
        cron_lines=cron_lines,
        timezone=fleet.defaults.timezone,
        services=tuple(names),
        replications_per_day=fleet.replication.replications_per_day,
        sentences=tuple(schedule.sentence for schedule in schedules if schedule.service in names),
    )


def _service_schedule(
    name: str, rpo: float, interval: float, group: str, own: bool, cron_lines: tuple[str, ...]
) -> ServiceSchedule:
    margin = 2 * interval <= rpo
    notes = [f"copy age peaks at ~{duration_text(interval)} + one replication"]
    if own:
        when = f"every {duration_text(interval)}"
        if not margin:
            notes.append(
                f"{SHORTEST_INTERVAL_MINUTES} min is the shortest interval, so one failed or skipped run "
                f"leaves the copy ~{duration_text(2 * interval)} old"
            )
    else:
        when = f"the fleet's crons {', '.join(cron_lines)}"
        notes.insert(0, f"at most {duration_text(interval)} apart")
        if not margin:
            notes.append("one failed run leaves the copy older than the RPO")
    return ServiceSchedule(
        name, rpo, interval, group, margin, f"{name}: RPO {duration_text(rpo)} → {when} ({'; '.join(notes)}) [{group}]"
    )
