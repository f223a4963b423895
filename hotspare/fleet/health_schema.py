"""The fleet file's ``health`` section: where checks run from, how often, and when to act.

Health checks run from several **checker sites** so that one site's own outage never reads as
"the world is down": a component is declared down only when sites agree (see
``hotspare/planning/health.py``). A checker either runs in the orchestrator's process
(``via: local``, the orchestrator's own site is the facility ``control``) or sends its probes
over SSH to a server in its facility (``via: <server name>``). Cross-references (the ``via``
server exists and stands in the checker's facility, services named exist) are checked by
``health_problems``; placement advice (two sites, one outside each server's facility) by
``health_warnings``, which the health flow and ``hotspare health`` print.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from hotspare.fleet.base import Name, Strict
from hotspare.fleet.values import CronLine, EmailAddress, PhoneNumber

CONTROL_FACILITY = "control"
LOCAL = "local"


class RemoteHands(Strict):
    """Staff in a facility who swap parts on request (disks, power supplies, fans)."""

    name: str = Field(min_length=1, description="Who to ask (a team or a person).")
    email: EmailAddress = Field(description="Where replacement requests are e-mailed.")
    phone: PhoneNumber | None = Field(default=None, description="Phone number for urgent requests.")


class Checker(Strict):
    """One site health checks run from."""

    name: Name = Field(description="Checker name, unique in the health section (e.g. the facility's name).")
    facility: Name = Field(description="Facility the checks run from; 'control' is the orchestrator's own site.")
    via: str = Field(
        default=LOCAL,
        min_length=1,
        description="Server in that facility whose SSH login runs the probes, or 'local' for the orchestrator itself.",
    )


class ServiceHealth(Strict):
    """Per-service health policy."""

    name: Name = Field(description="Service this policy applies to.")
    automatic_failover: Literal["off", "approval", "unattended"] = Field(
        default="off",
        description=(
            "When production is declared down: off (an operator decides), approval (the failover deployment is "
            "submitted and waits for an approver), unattended (the failover runs at once, fenced, approved by this "
            "policy). true and false read as approval and off."
        ),
    )

    @field_validator("automatic_failover", mode="before")
    @classmethod
    def _booleans_read_as_before(cls, value):
        """``true``/``false`` from fleet files written before the three modes keep their meaning."""
        if value is True:
            return "approval"
        if value is False:
            return "off"
        return value

    interval_seconds: float | None = Field(
        default=None, gt=0, description="Own check interval for this service (default: the section's interval)."
    )


def _default_checkers() -> list[Checker]:
    return [Checker(name=CONTROL_FACILITY, facility=CONTROL_FACILITY, via=LOCAL)]


class Health(Strict):
    """Health checks from several sites, with hysteresis before anything is declared down."""

    checkers: list[Checker] = Field(default_factory=_default_checkers, min_length=1, description="Sites the checks run from.")
    interval_seconds: float = Field(default=10, gt=0, description="Seconds between two check rounds.")
    failures_to_down: int = Field(default=3, ge=1, description="Consecutive failed rounds before a component is failed.")
    successes_to_recover: int = Field(
        default=2, ge=1, description="Consecutive good rounds before a failed or degraded component is ok again."
    )
    run_seconds: float = Field(
        default=90,
        gt=0,
        description="How long one scheduled run keeps checking: longer than the schedule's period, so a run that starts "
        "late leaves no gap (the next run takes over when this one ends; two never check at once).",
    )
    schedule: CronLine = Field(default="* * * * *", description="Cron line of the health deployment.")
    probe_timeout_seconds: float = Field(default=3, gt=0, description="Timeout of one probe (TCP, SSH, HTTP, DNS).")
    certificate_warning_days: int = Field(default=21, ge=0, description="A TLS certificate expiring sooner is degraded.")
    disk_space_warning_percent: float = Field(default=85, gt=0, le=100, description="Disk use at or above: degraded.")
    disk_space_failed_percent: float = Field(default=95, gt=0, le=100, description="Disk use at or above: failed.")
    inode_warning_percent: float = Field(default=85, gt=0, le=100, description="Inode use at or above: degraded.")
    inode_failed_percent: float = Field(default=95, gt=0, le=100, description="Inode use at or above: failed.")
    services: list[ServiceHealth] = Field(default_factory=list, description="Per-service policies.")

    @model_validator(mode="after")
    def _consistent(self) -> Health:
        names = [checker.name for checker in self.checkers]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"checker names must be unique; repeated: {', '.join(repeated)}")
        if self.disk_space_warning_percent > self.disk_space_failed_percent:
            raise ValueError("disk_space_warning_percent must not exceed disk_space_failed_percent")
        if self.inode_warning_percent > self.inode_failed_percent:
            raise ValueError("inode_warning_percent must not exceed inode_failed_percent")
        return self

    def policy(self, service_name: str) -> ServiceHealth:
        """The service's policy (defaults when the section names it not)."""
        for policy in self.services:
            if policy.name == service_name:
                return policy
        return ServiceHealth(name=service_name)


def health_problems(fleet) -> list[str]:
    """Cross-reference errors of the health section: each a sentence naming the field."""
    problems = []
    facilities = {facility.name for facility in fleet.facilities}
    servers = {server.name: server for server in fleet.servers}
    services = {service.name for service in fleet.services}
    for position, checker in enumerate(fleet.health.checkers):
        where = f"health.checkers.{position} ({checker.name})"
        if checker.facility != CONTROL_FACILITY and checker.facility not in facilities:
            problems.append(f"{where}: unknown facility {checker.facility!r} (known: control, {', '.join(sorted(facilities))})")
        if checker.via == LOCAL:
            continue
        server = servers.get(checker.via)
        if server is None:
            problems.append(f"{where}: via names no server {checker.via!r}; use a server of {checker.facility} or 'local'")
        elif server.facility != checker.facility:
            problems.append(f"{where}: via server {checker.via} stands in {server.facility}, not in {checker.facility}")
    for position, policy in enumerate(fleet.health.services):
        if policy.name not in services:
            problems.append(f"health.services.{position}: unknown service {policy.name!r}")
    return problems


def health_warnings(fleet) -> list[str]:
    """Placement advice: without two sites, or one outside a server's facility, a site's own
    outage cannot be told from the server's, so nothing of it can be declared down."""
    checkers = fleet.health.checkers
    warnings = []
    if len({checker.name for checker in checkers}) < 2:
        warnings.append(
            "health: only one checker site; nothing can be declared down without a second site to agree "
            "(add checkers in other facilities, e.g. via a standby there)"
        )
    facilities_with_servers = sorted({server.facility for server in fleet.servers})
    for facility in facilities_with_servers:
        if not any(checker.facility != facility for checker in checkers):
            warnings.append(
                f"health: no checker outside facility {facility}; its servers can never be declared down "
                f"(add a checker in another facility or 'control')"
            )
    return warnings
