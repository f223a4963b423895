"""What a health check saw: one reading per component of a server or service.

The shared vocabulary between the hardware readers (RAID, BMC sensors over IPMI or Redfish,
disk space), the reachability probes, the health judge (hysteresis, agreement between sites),
the replacement-part routine and incidents. Pure data: no network, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum


class ComponentState(str, Enum):
    """How a component is, from best to worst; ``unknown`` when it could not be read."""

    ok = "ok"
    degraded = "degraded"
    failed = "failed"
    unknown = "unknown"

    @property
    def rank(self) -> int:
        """Ordering for 'worst component': failed > degraded > unknown > ok."""
        return {"ok": 0, "unknown": 1, "degraded": 2, "failed": 3}[self.value]


class ComponentKind(str, Enum):
    """What sort of part a reading is about; hot-swappable kinds get replacement requests."""

    reachability = "reachability"  # TCP, SSH with the pinned key
    application = "application"  # the service's health URL, directly or through DNS
    dns = "dns"  # the authoritative server's answer for the service's name
    certificate = "certificate"  # TLS certificate expiry of an HTTPS health URL
    raid = "raid"  # the array as a whole (members missing, rebuilding)
    disk = "disk"  # one member disk (error counters, missing)
    power_supply = "power_supply"
    fan = "fan"
    temperature = "temperature"
    space = "space"  # free disk space and inodes
    freshness = "freshness"  # replication and backup age against the RPO

    @property
    def replaceable(self) -> bool:
        """Parts the on-site staff swap without a restart (disk, power supply, fan)."""
        return self in (ComponentKind.disk, ComponentKind.power_supply, ComponentKind.fan)


@dataclass(frozen=True)
class Reading:
    """One component's state as one checker saw it at one moment.

    ``component`` names the part uniquely on its subject, e.g. ``disk:devid 3``,
    ``power_supply:PS2``, ``fan:Fan1``, ``reachability:ssh``. ``subject`` is a server name or
    ``service:<name>``. ``evidence`` is the sentence an operator reads (what was seen, with
    the raw value). ``part`` carries what a replacement request needs (bay/slot, serial, model).
    """

    subject: str
    component: str
    kind: ComponentKind
    state: ComponentState
    evidence: str
    site: str = "control"
    part: dict[str, str] = field(default_factory=dict)


def worst(states: Iterable[ComponentState]) -> ComponentState:
    """The worst of ``states`` (``ok`` when there are none)."""
    return max(states, key=lambda state: state.rank, default=ComponentState.ok)
