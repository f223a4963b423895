"""Which hosts a run may log in to, from where and for how long: the SSH certificate of one run.

Pure (no network, no Prefect, no clock): the run as the control site read it from Prefect
(``RunFacts``), the site asking (``Requester``) and the fleet's layout (``FleetLayout``) in; a
``CertificatePlan`` out — principals (host names), source addresses, validity in minutes, key id
and an optional forced command — or the same plan with ``refusal`` set, a sentence that says why
not. The control site's issuer (``hotspare/issuer``) signs what this returns and nothing else.

The rules, in the order they are checked:

- the run must be **running** (a scheduled, paused, finished or unknown run gets nothing);
- a run with a work pool is served only to the site whose workers poll that pool; a run without
  one (a command at the control site, ``hotspare failover app1``) only to the control site;
- the hosts are the ones the runbook needs for its parameters: a service's servers (planned
  production and mirror, and where it runs and is copied to now), its storage host for backups,
  the standbys for a rebuild, every server for health checks, the status page's web server;
  a runbook that logs in nowhere gets nothing;
- a **gated** runbook (failover, reprotect, facility failover and return, rebuild) asked for by a
  facility's worker is served only once approved: up front in its parameters (``yes``,
  ``approved_plan_digest``, ``unattended`` — the last only for the health run's own subflow or a
  run the control site made) or by an ``approve`` answer at its approval gate. The
  control site itself holds the CA key, so refusing it would protect nothing: it is served before
  approval (a rebuild surveys the storage host and standbys over SSH before asking).

A certificate's principals are host names: each host accepts a certificate only if its own name
is among them (sshd's ``AuthorizedPrincipalsFile``), and only from the addresses in
``source_addresses`` (the certificate's ``source-address`` option, enforced by sshd).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from hotspare.planning.unattended import unattended_counts

VALIDITY_MINUTES = 10  # connections outlive it; a run asks again when it nears its end
CLOCK_SKEW_MINUTES = 1  # valid from a minute before signing, for hosts whose clocks run behind
RENEW_BEFORE_SECONDS = 120  # a client asks for a new certificate this long before expiry
GATED = frozenset({"failover", "failback", "reprotect", "facility-failover", "facility-return", "rebuild"})
UP_FRONT_APPROVALS = ("yes", "approved_plan_digest", "unattended")
# The status page is written over SFTP only: its certificate runs sshd's own SFTP server whatever
# the client asks to execute.
SFTP_ONLY = "internal-sftp"
RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class ServiceHosts:
    """A service's servers as the fleet plans them and the inventory has them now."""

    name: str
    servers: tuple[str, ...]  # planned production and mirror, active and current mirror, failover target
    storage: str


@dataclass(frozen=True)
class FleetLayout:
    """What the planner needs of the fleet: servers by facility, standbys, services."""

    facility_of: Mapping[str, str]  # server name -> facility
    standbys: tuple[str, ...]
    services: tuple[ServiceHosts, ...]
    status_page_server: str | None = None

    def service(self, name: str) -> ServiceHosts | None:
        return next((service for service in self.services if service.name == name), None)


@dataclass(frozen=True)
class RunFacts:
    """A Prefect flow run as the control site read it."""

    run_id: str
    flow_name: str
    state: str  # Prefect's state type: RUNNING, PAUSED, COMPLETED, ...
    parameters: Mapping[str, object]
    pool: str | None  # the work pool of the run, or of the run it is a subflow of
    approval: str | None = None  # the newest answer at its approval gate: "approve", "reject" or None
    # "approve" counts only when the answer names the digest that pause showed (``issuer/facts.py``)
    creator_role: str | None = None  # the role the API proxy stamped on the run when it was made, if any
    parent_flow: str | None = None  # the flow of the run this one is a subflow of (``health`` for unattended)


@dataclass(frozen=True)
class Requester:
    """A site that may ask for certificates: its name, addresses and the pools its workers poll."""

    site: str
    addresses: tuple[str, ...]
    pools: tuple[str, ...]
    control: bool = False  # the control site: runs without a pool, gated runs before approval


@dataclass(frozen=True)
class CertificatePlan:
    key_id: str
    principals: tuple[str, ...] = ()
    source_addresses: tuple[str, ...] = ()
    validity_minutes: int = VALIDITY_MINUTES
    force_command: str | None = None
    refusal: str | None = None
    notes: tuple[str, ...] = field(default=())

    def sentence(self) -> str:
        """The decision as one logged sentence."""
        if self.refusal:
            return f"no certificate for {self.key_id}: {self.refusal}"
        forced = f", forced command {self.force_command}" if self.force_command else ""
        return (
            f"certificate {self.key_id} for {', '.join(self.principals)} from {', '.join(self.source_addresses)}, "
            f"valid {self.validity_minutes} min{forced}"
        )


def plan_certificate(run: RunFacts, requester: Requester, layout: FleetLayout, now: datetime | None = None) -> CertificatePlan:
    """The certificate ``requester`` may have for ``run``, or the reason it may not (``now``: the
    issuer's clock, against which an up-front approval's ``approval_expires_at`` is judged)."""
    key_id = f"run-{run.run_id}"
    refused = CertificatePlan(key_id)
    if run.state != "RUNNING":
        return replace(refused, refusal=f"the run ({run.flow_name}) is {run.state.lower()}, not running")
    if run.pool is None and not requester.control:
        return replace(
            refused,
            refusal=f"the run ({run.flow_name}) is not in a work pool: only the control site runs it, not {requester.site}",
        )
    if run.pool is not None and run.pool not in requester.pools:
        return replace(
            refused, refusal=f"the run ({run.flow_name}) is in work pool {run.pool}, which {requester.site}'s workers do not poll"
        )
    hosts, problem = hosts_of_run(run.flow_name, run.parameters, layout)
    if problem:
        return replace(refused, refusal=problem)
    if run.flow_name in GATED and not requester.control and not approved(run, now):
        return replace(
            refused,
            refusal=f"{run.flow_name} is a gated runbook and this run is not approved yet "
            f"(answer at its gate: {run.approval or 'none'}); certificates come after approval",
        )
    forced = SFTP_ONLY if run.flow_name == "status-page-publish" else None
    return CertificatePlan(key_id, tuple(sorted(hosts)), tuple(requester.addresses), VALIDITY_MINUTES, forced)


def approved(run: RunFacts, now: datetime | None = None) -> bool:
    """Approved up front in the run's parameters, or by the newest answer at its gate.

    Up front means ``yes`` set to true (not any value) or a digest-shaped ``approved_plan_digest``;
    it does not count once ``approval_expires_at`` has passed (the flow would cancel itself), nor
    behind the API proxy when the run was made by anyone but an approver or the control site (the
    flow would ask at its gate). ``unattended`` set to true counts only for the health run's own
    subflow or a run the control site made (``planning/unattended.py``: a person's ``unattended``
    is no approval; the flow checks the policy and the health records itself, before any login).
    At the gate, the newest answer must approve and name the digest that pause showed
    (``issuer/facts.py``)."""
    parameters = run.parameters
    up_front = parameters.get("yes") is True or bool(DIGEST.match(str(parameters.get("approved_plan_digest") or "")))
    if up_front and now is not None and _expired(parameters.get("approval_expires_at"), now):
        up_front = False
    if up_front and run.creator_role is not None and run.creator_role not in UP_FRONT_ROLES:
        up_front = False
    unattended = parameters.get("unattended") is True and unattended_counts(run.creator_role, run.parent_flow)
    return up_front or unattended or run.approval == "approve"


DIGEST = re.compile(r"^[0-9a-f]{16}$")
UP_FRONT_ROLES = ("approver", "control")  # who may make a pre-approved run behind the proxy


def _expired(deadline: object, now: datetime) -> bool:
    """``approval_expires_at`` as given (ISO text or a datetime) is before ``now``; an unreadable
    deadline counts as expired (the flow would not accept it either)."""
    if deadline in (None, ""):
        return False
    try:
        moment = deadline if isinstance(deadline, datetime) else datetime.fromisoformat(str(deadline))
    except ValueError:
        return True
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment <= now


def hosts_of_run(flow_name: str, parameters: Mapping[str, object], layout: FleetLayout) -> tuple[set[str], str | None]:
    """(hosts, None) the runbook ``flow_name`` logs in to with these parameters, or (set(), why not)."""
    services, problem = _services_named(parameters, layout, flow_name)
    if problem:
        return set(), problem
    if flow_name in (
        "replicate-service",
        "replicate",
        "verify",
        "failover",
        "failback",
        "drill",
        "facility-failover",
        "facility-return",
    ):
        hosts = _servers_of(services)
    elif flow_name in ("backup",):
        hosts = _servers_of(services) | {service.storage for service in services}
    elif flow_name in ("backup-check", "restore-proof"):
        hosts = {service.storage for service in services}
    elif flow_name == "reprotect":
        hosts = _servers_of(services) | _named_servers(parameters, ("mirror",))
    elif flow_name == "rebuild":
        standby = _named_servers(parameters, ("standby",))
        hosts = _servers_of(services) | {service.storage for service in services} | (standby or set(layout.standbys))
    elif flow_name == "expire-temporary-accounts":
        hosts = set(layout.standbys)
    elif flow_name == "health":
        hosts = set(layout.facility_of)
    elif flow_name == "status-page-publish":
        hosts = {layout.status_page_server} if layout.status_page_server else set()
    else:
        return set(), f"the runbook {flow_name!r} logs in to no server"
    unknown = sorted(host for host in hosts if host not in layout.facility_of)
    if unknown:
        return set(), f"the run names servers the fleet does not have: {', '.join(unknown)}"
    if not hosts:
        return set(), f"the runbook {flow_name!r} needs no server with these parameters"
    return hosts, None


def _services_named(
    parameters: Mapping[str, object], layout: FleetLayout, flow_name: str
) -> tuple[list[ServiceHosts], str | None]:
    """The services a run's parameters name (``service``, ``services``, ``facility``); all when none."""
    facility = parameters.get("facility")
    if flow_name in ("facility-failover", "facility-return") or (flow_name == "drill" and facility):
        if facility not in set(layout.facility_of.values()):
            return [], f"the run names no facility of the fleet ({facility!r})"
        return [
            service
            for service in layout.services
            if any(layout.facility_of.get(server) == facility for server in service.servers)
        ], None
    names = _names(parameters.get("service")) + _names(parameters.get("services"))
    if not names:
        return list(layout.services), None
    found = [layout.service(name) for name in names]
    unknown = [name for name, service in zip(names, found) if service is None]
    if unknown:
        return [], f"the run names services the fleet does not have: {', '.join(map(str, unknown))}"
    return [service for service in found if service is not None], None


def _names(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        return [str(item) for item in value]
    return [str(value)]


def _servers_of(services: Iterable[ServiceHosts]) -> set[str]:
    return {server for service in services for server in service.servers}


def _named_servers(parameters: Mapping[str, object], names: tuple[str, ...]) -> set[str]:
    return {str(parameters[name]) for name in names if parameters.get(name)}


def layout_of(fleet, dynamic: Mapping[str, Iterable[str | None]]) -> FleetLayout:
    """The planner's view of ``fleet`` (a ``hotspare.fleet.Fleet``), with each service's servers
    now (``dynamic``: service -> active server, current mirror, failover target, ...) added to
    the planned production and mirror."""
    services = []
    for service in fleet.services:
        now = [server for server in dynamic.get(service.name, ()) if server]
        servers = tuple(dict.fromkeys([service.production, service.mirror, *now]))
        services.append(ServiceHosts(service.name, servers, service.storage))
    status_page = fleet.customer_notices.status_page
    return FleetLayout(
        facility_of={server.name: server.facility for server in fleet.servers},
        standbys=tuple(server.name for server in fleet.servers if server.role == "standby"),
        services=tuple(services),
        status_page_server=status_page.server if status_page else None,
    )
