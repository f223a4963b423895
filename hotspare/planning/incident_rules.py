"""Which detections open an incident, with which category, severity, title and dedup key. Pure.

Health checks emit Prefect events ``hotspare.health.degraded|failed|recovered`` about a
resource ``hotspare.server.<name>`` or ``hotspare.service.<name>`` with a payload
``{component, kind, state, previous, evidence, sites}``. A failed server or service is a
category 1 (server) incident of high severity; a degraded part a category 1 incident of low
severity (quiet hours apply). A failure's dedup key names the machine (the server, or the server
a failed service runs on, given as ``server`` in the payload), so a machine that goes down with
its services opens one incident; a degradation's names the resource and the component, so the
same part seen again folds into the open incident.

A redundant part (one disk of a RAID, one power supply of two, a fan) failing while the machine
answers is no outage: the service runs on. It opens a low-severity incident of its own (the
replacement request follows from the health runbook), pages by the low-severity policy, and is
internal: no customer is e-mailed and the public status page does not show it. If the machine or
the array itself fails, their own components (reachability, ``raid``) say so and open the outage.

Failed runs: a failover or rebuild that failed is high severity; a replication that failed is
low (the copy is older than planned, nobody is down). Each service's failures of one kind fold.

What an incident affects is decided when it opens (``impact_of``): every service the named
servers hold, by role, from the inventory's layout at that moment. Production (or a service
named directly) in an outage: its customers are affected and are told; mirror, standby and
storage: protection is lost; a part that is not an outage puts the service at risk only. The
record is kept whatever happens later, so a failover right after the opening cannot empty it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HEALTH_SEVERITY = {"hotspare.health.failed": "high", "hotspare.health.degraded": "low"}
RUN_SEVERITY = {"failover": "high", "rebuild": "high", "replicate": "low"}
# Parts a server has more than one of, swapped while it runs (the readings' replaceable kinds).
REDUNDANT_PART_KINDS = ("disk", "power_supply", "fan")
# What a server's failure must be about to make the services it holds unavailable.
OUTAGE_KINDS = ("reachability", "raid", None)
CUSTOMERS_AFFECTED, PROTECTION_LOST, AT_RISK = "customers affected", "protection lost", "at risk"


@dataclass(frozen=True)
class IncidentRequest:
    """What to open (or fold into): the arguments of ``incidents.open_incident``."""

    category: int
    severity: str
    title: str
    dedup_key: str
    detection_text: str
    services: tuple[str, ...] = ()
    servers: tuple[str, ...] = ()
    details: dict = field(default_factory=dict)
    outage: bool = True  # does it make what the servers hold unavailable (False: a part, a late copy)
    holders: tuple[str, ...] | None = None  # servers whose services it affects (None: ``servers``)
    internal: bool = False  # kept from customers (no notice, not on the public page) unless published


@dataclass(frozen=True)
class Impact:
    """One service an incident affects, through which server, in which role, and how."""

    service: str
    server: str  # "" for a service named directly
    role: str  # production | mirror | standby | storage | service (named directly)
    effect: str  # customers affected | protection lost | at risk

    @property
    def tell(self) -> bool:
        """Its customers get the incident's notices."""
        return self.effect == CUSTOMERS_AFFECTED


@dataclass(frozen=True)
class Placement:
    """Where one service's parts are now (the inventory's layout)."""

    service: str
    active_server: str
    mirror_server: str | None
    storage: str | None


def impact_of(servers, services, layout, outage: bool, standby_servers=()) -> tuple[Impact, ...]:
    """Every service the ``servers`` hold, by role, plus the ``services`` named directly.

    ``layout``: ``Placement`` of every service now. A standby server holds a service only when the
    layout puts one there (after a rebuild): otherwise it holds spare capacity, no named service.
    """
    found: dict[tuple[str, str], Impact] = {}
    for placement in layout:
        for role, server in (
            ("production", placement.active_server),
            ("mirror", placement.mirror_server),
            ("storage", placement.storage),
        ):
            if server and server in servers:
                effect = (CUSTOMERS_AFFECTED if role == "production" else PROTECTION_LOST) if outage else AT_RISK
                if role != "production" and server in standby_servers:
                    role = "standby"
                found.setdefault((placement.service, server), Impact(placement.service, server, role, effect))
    for service in services:
        if not any(impact.service == service and impact.tell for impact in found.values()):
            found.setdefault((service, ""), Impact(service, "", "service", CUSTOMERS_AFFECTED if outage else AT_RISK))
    return tuple(sorted(found.values(), key=lambda impact: (impact.service, impact.server)))


def impact_text(impacts) -> str:
    """One line for operators: ``app1 (production on prod-east: customers affected); ...``."""
    parts = [
        f"{impact.service} ({impact.role}" + (f" on {impact.server}" if impact.server else "") + f": {impact.effect})"
        for impact in impacts
    ]
    return "; ".join(parts) or "no service"


def subject_of(resource_id: str) -> tuple[str, str] | None:
    """("server"|"service", name) from ``hotspare.server.<name>`` / ``hotspare.service.<name>``."""
    for kind in ("server", "service"):
        prefix = f"hotspare.{kind}."
        if resource_id.startswith(prefix) and len(resource_id) > len(prefix):
            return kind, resource_id[len(prefix) :]
    return None


def from_health_event(event: str, resource_id: str, payload: dict, open_on_degraded: bool = True) -> IncidentRequest | None:
    """The incident a health event opens, or None (recovered, unknown, degraded when not wanted)."""
    severity = HEALTH_SEVERITY.get(event)
    subject = subject_of(resource_id)
    if severity is None or subject is None or (severity == "low" and not open_on_degraded):
        return None
    kind, name = subject
    component = str(payload.get("component") or payload.get("kind") or "health")
    state = "failed" if severity == "high" else "degraded"
    if kind == "server" and (
        payload.get("kind") in REDUNDANT_PART_KINDS or (payload.get("kind") == "raid" and state == "degraded")
    ):
        return _redundant_part(event, resource_id, name, component, state, payload)
    # One machine down fails its reachability and every service on it in the same round: all
    # failures of one machine (the server itself, or a service whose payload names the server it
    # runs on) fold into one incident, so the chain is walked once and customers get one notice.
    machine = name if kind == "server" else str(payload.get("server") or "")
    dedup_key = (
        f"health:hotspare.server.{machine}:failed" if severity == "high" and machine else f"health:{resource_id}:{component}"
    )
    servers = (machine,) if machine and severity == "high" else ((name,) if kind == "server" else ())
    evidence = str(payload.get("evidence") or "").strip()
    sites = payload.get("sites") or []
    seen_from = f" (seen from {', '.join(map(str, sites))})" if sites else ""
    return IncidentRequest(
        category=1,
        severity=severity,
        title=f"{kind} {name}: {component} {state}",
        dedup_key=dedup_key,
        detection_text=(f"{kind} {name}: {component} {state}{seen_from}" + (f": {evidence}" if evidence else "")),
        services=(name,) if kind == "service" else (),
        servers=servers,
        # Only a machine that stops answering (or a service, or an array that stops) makes what
        # it holds unavailable; a hot inlet or a full disk on a server that answers is urgent for
        # operators, and the service's own probes say when customers are hit.
        outage=severity == "high" and (kind == "service" or payload.get("kind") in OUTAGE_KINDS),
        # A service's own failure names its server (to fold with the machine's), not the server's
        # other services: only a server's own failure affects everything it holds.
        holders=None if kind == "server" else (),
        details={
            "event": event,
            "resource": resource_id,
            **{key: payload[key] for key in payload if key in ("component", "kind", "state", "previous", "evidence", "sites")},
        },
    )


def _redundant_part(event: str, resource_id: str, server: str, component: str, state: str, payload: dict) -> IncidentRequest:
    """A disk, power supply or fan: its own low-severity incident, internal, the service runs on."""
    evidence = str(payload.get("evidence") or "").strip()
    return IncidentRequest(
        category=1,
        severity="low",
        title=f"server {server}: {component} {state} (redundant part; services keep running)",
        dedup_key=f"health:{resource_id}:{component}",
        detection_text=f"server {server}: {component} {state}"
        + (f": {evidence}" if evidence else "")
        + "; a redundant part: a replacement request follows, no customer is told",
        servers=(server,),
        details={
            "event": event,
            "resource": resource_id,
            "redundant_part": True,
            **{key: payload[key] for key in payload if key in ("component", "kind", "state", "previous", "evidence", "sites")},
        },
        outage=False,
        internal=True,
    )


def from_failed_run(run_id: int, kind: str, service: str, summary: str) -> IncidentRequest | None:
    """The incident a failed failover, rebuild or replication opens; None for other runs."""
    severity = RUN_SEVERITY.get(kind)
    if severity is None:
        return None
    return IncidentRequest(
        category=1,
        severity=severity,
        title=f"{kind} of {service} failed",
        dedup_key=f"run:{kind}:{service}",
        detection_text=f"{kind} run {run_id} of {service} failed: {summary}"[:1000],
        services=(service,),
        details={"run_id": run_id, "run_kind": kind},
        outage=severity == "high",
    )
