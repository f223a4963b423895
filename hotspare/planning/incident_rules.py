"""Which detections open an incident, with which category, severity, title and dedup key. Pure.

Health checks emit Prefect events ``hotspare.health.degraded|failed|recovered`` about a
resource ``hotspare.server.<name>`` or ``hotspare.service.<name>`` with a payload
``{component, kind, state, previous, evidence, sites}``. A failed server or service is a
category 1 (server) incident of high severity; a degraded part a category 1 incident of low
severity (quiet hours apply). A failure's dedup key names the machine (the server, or the server
a failed service runs on, given as ``server`` in the payload), so a machine that goes down with
its services opens one incident; a degradation's names the resource and the component, so the
same part seen again folds into the open incident.

Failed runs: a failover or rebuild that failed is high severity; a replication that failed is
low (the copy is older than planned, nobody is down). Each service's failures of one kind fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HEALTH_SEVERITY = {"hotspare.health.failed": "high", "hotspare.health.degraded": "low"}
RUN_SEVERITY = {"failover": "high", "rebuild": "high", "replicate": "low"}


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


def subject_of(resource_id: str) -> tuple[str, str] | None:
    """("server"|"service", name) from ``hotspare.server.<name>`` / ``hotspare.service.<name>``."""
    for kind in ("server", "service"):
        prefix = f"hotspare.{kind}."
        if resource_id.startswith(prefix) and len(resource_id) > len(prefix):
            return kind, resource_id[len(prefix):]
    return None


def from_health_event(event: str, resource_id: str, payload: dict, open_on_degraded: bool = True
                      ) -> IncidentRequest | None:
    """The incident a health event opens, or None (recovered, unknown, degraded when not wanted)."""
    severity = HEALTH_SEVERITY.get(event)
    subject = subject_of(resource_id)
    if severity is None or subject is None or (severity == "low" and not open_on_degraded):
        return None
    kind, name = subject
    component = str(payload.get("component") or payload.get("kind") or "health")
    state = "failed" if severity == "high" else "degraded"
    # One machine down fails its reachability and every service on it in the same round: all
    # failures of one machine (the server itself, or a service whose payload names the server it
    # runs on) fold into one incident, so the chain is walked once and customers get one notice.
    machine = name if kind == "server" else str(payload.get("server") or "")
    dedup_key = (f"health:hotspare.server.{machine}:failed" if severity == "high" and machine
                 else f"health:{resource_id}:{component}")
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
        details={"event": event, "resource": resource_id, **{key: payload[key] for key in payload
                                                              if key in ("component", "kind", "state", "previous",
                                                                         "evidence", "sites")}},
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
    )
