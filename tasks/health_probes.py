"""One health round's probes from every checker site, as ``Reading``s.

The orchestrator resolves each service's DNS name at the zone's authoritative server (the
only place that answers it), then every site probes the same targets in parallel: servers
(TCP + SSH greeting), each service's health URL at its production address and at the address
its DNS name answers. The orchestrator's own site ("local") also logs in over SSH with the
pinned host key (the existing adapter) and reads disk space; remote sites run
``hotspare/health_probe_script.py`` with ``python3 -`` on their ``via`` server.
"""

from __future__ import annotations

import contextvars
import json
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

from hotspare import access
from hotspare.adapters import dns
from hotspare.adapters.errors import HotspareError
from hotspare.fleet.health_schema import LOCAL
from hotspare.health_probe_script import remote_program, run_probes
from hotspare.planning.health import SiteReport, site_report
from hotspare.planning.health_readings import (
    APPLICATION_DIRECT,
    APPLICATION_DNS,
    REACHABILITY,
    SpaceThresholds,
    certificate_reading,
    dns_answer_reading,
    probe_reading,
    space_readings,
)
from hotspare.planning.readings import ComponentKind, Reading


@dataclass(frozen=True)
class ServerTarget:
    name: str
    facility: str
    address: str
    ssh_port: int


@dataclass(frozen=True)
class ServiceTarget:
    name: str
    active_server: str
    address: str  # the active server's address
    dns_name: str
    zone: str
    port: int
    path: str
    host: str  # Host header
    tls: bool


@dataclass(frozen=True)
class RoundTargets:
    servers: tuple[ServerTarget, ...]
    services: tuple[ServiceTarget, ...] = ()
    resolved: dict = field(default_factory=dict)  # service -> (addresses, error)


@dataclass(frozen=True)
class SiteResult:
    report: SiteReport
    readings: tuple[Reading, ...]


def round_targets(fleet, active_server_of: dict[str, str], services: list[str] | None = None) -> RoundTargets:
    """Servers of the fleet and services (all, or those named) at their active server."""
    servers = tuple(ServerTarget(s.name, s.facility, s.address, s.ssh_port) for s in fleet.servers)
    address_of = {server.name: server.address for server in fleet.servers}
    chosen = []
    for service in fleet.services:
        if services is not None and service.name not in services:
            continue
        active = active_server_of.get(service.name, service.production)
        url = urlsplit(service.health_url) if service.health_url else None
        tls = bool(url and url.scheme == "https")
        chosen.append(
            ServiceTarget(
                name=service.name,
                active_server=active,
                address=address_of[active],
                dns_name=service.dns_name,
                zone=service.zone,
                port=(url.port or (443 if tls else 80)) if url else service.app_port,
                path=((url.path or "/") + (f"?{url.query}" if url.query else "")) if url else "",
                host=url.netloc if url else service.dns_name,
                tls=tls,
            )
        )
    return RoundTargets(servers, tuple(chosen))


def resolve_services(fleet, targets: RoundTargets, timeout: float) -> RoundTargets:
    """Ask each zone's authoritative server for each service's name (in parallel)."""

    def resolve(service: ServiceTarget):
        try:
            return dns.read_addresses(access.dns_server(fleet, service.zone, timeout), service.dns_name), None
        except HotspareError as error:
            return None, str(error)

    if not targets.services:
        return targets
    with ThreadPoolExecutor(max_workers=min(16, len(targets.services))) as pool:
        answers = dict(zip((s.name for s in targets.services), pool.map(resolve, targets.services)))
    return RoundTargets(targets.servers, targets.services, answers)


def probe_spec(targets: RoundTargets, timeout: float) -> dict:
    """The probe script's spec for ``targets`` (the same for every site)."""
    spec = {
        "timeout": timeout,
        "tcp": [{"id": f"reach|{s.name}", "address": s.address, "port": s.ssh_port, "banner": "SSH-"} for s in targets.servers],
        "http": [],
    }
    for service in targets.services:
        addresses = (targets.resolved.get(service.name) or (None, None))[0] or []
        for probe_id, address in (
            (f"direct|{service.name}", service.address),
            (f"dns|{service.name}", addresses[0] if addresses else None),
        ):
            if address is None:
                continue
            if service.path:
                spec["http"].append(
                    {
                        "id": probe_id,
                        "address": address,
                        "port": service.port,
                        "host": service.host,
                        "path": service.path,
                        "tls": service.tls,
                    }
                )
            else:
                spec["tcp"].append({"id": probe_id, "address": address, "port": service.port, "banner": ""})
    return spec


def readings_from(site: str, results: dict, targets: RoundTargets) -> list[Reading]:
    """The probe results of one site as readings (a DNS name that did not resolve fails its probe)."""
    readings = [
        probe_reading(s.name, REACHABILITY, ComponentKind.reachability, results.get(f"reach|{s.name}"), site)
        for s in targets.servers
    ]
    for service in targets.services:
        subject = f"service:{service.name}"
        readings.append(
            probe_reading(subject, APPLICATION_DIRECT, ComponentKind.application, results.get(f"direct|{service.name}"), site)
        )
        addresses, error = targets.resolved.get(service.name) or (None, "not resolved")
        through_dns = results.get(f"dns|{service.name}")
        if through_dns is None:
            through_dns = {"ok": False, "evidence": f"{service.dns_name} does not resolve ({error or 'no A record'})"}
        readings.append(probe_reading(subject, APPLICATION_DNS, ComponentKind.application, through_dns, site))
    return [Reading(r.subject, r.component, r.kind, r.state, r.evidence, site, r.part) for r in readings]


def probe_site(fleet, checker, targets: RoundTargets, timeout: float) -> SiteResult:
    """Run the probes at one checker site; a site that cannot run them is cut off."""
    spec = probe_spec(targets, timeout)
    via_error = None
    results: dict = {}
    if checker.via == LOCAL:
        results = run_probes(spec)
    else:
        try:
            with access.connect(fleet, checker.via, connect_timeout=timeout) as connection:
                output = connection.run(["python3", "-"], stdin=remote_program(spec).encode(), timeout=timeout * 3 + 5)
            results = json.loads(output.text)
        except HotspareError as error:
            via_error = f"{checker.via}: {error}"
        except ValueError as error:
            via_error = f"{checker.via} returned no probe results ({error})"
    readings = readings_from(checker.name, results, targets) if via_error is None else []
    return SiteResult(site_report(checker.name, checker.facility, via_error, readings), tuple(readings))


def login_and_space(fleet, server: ServerTarget, timeout: float, thresholds: SpaceThresholds, site: str) -> list[Reading]:
    """SSH login with the pinned host key (the adapter), then disk space and inodes of / and /srv."""
    try:
        with access.connect(fleet, server.name, connect_timeout=timeout) as connection:
            blocks = connection.run(["df", "-P", "/", "/srv"], timeout=timeout * 2, check=False).text
            inodes = connection.run(["df", "-P", "-i", "/", "/srv"], timeout=timeout * 2, check=False).text
    except HotspareError as error:
        return [probe_reading(server.name, REACHABILITY, ComponentKind.reachability, {"ok": False, "evidence": str(error)}, site)]
    login = probe_reading(
        server.name,
        REACHABILITY,
        ComponentKind.reachability,
        {"ok": True, "evidence": f"SSH login with the pinned host key works ({server.address})"},
        site,
    )
    space = [
        Reading(r.subject, r.component, r.kind, r.state, r.evidence, site)
        for r in space_readings(server.name, blocks, inodes, thresholds)
    ]
    return [login, *space]


def control_extras(
    fleet,
    targets: RoundTargets,
    site: str,
    timeout: float,
    thresholds: SpaceThresholds,
    warning_days: int,
    tcp_ok: dict[str, bool],
    ssh_login: bool = True,
) -> list[Reading]:
    """What only the orchestrator reads: SSH logins and space, DNS answers, certificates."""
    readings: list[Reading] = []
    if ssh_login:
        reachable = [s for s in targets.servers if tcp_ok.get(s.name)]
        if reachable:
            with ThreadPoolExecutor(max_workers=min(16, len(reachable))) as pool:
                futures = [
                    pool.submit(contextvars.copy_context().run, login_and_space, fleet, server, timeout, thresholds, site)
                    for server in reachable
                ]  # in the run's context (its certificate)
                for future in futures:
                    readings += future.result()
    now = datetime.now(timezone.utc)
    for service in targets.services:
        addresses, error = targets.resolved.get(service.name) or (None, "not resolved")
        reading = dns_answer_reading(service.name, service.dns_name, addresses, error, service.address, service.active_server)
        readings.append(Reading(reading.subject, reading.component, reading.kind, reading.state, reading.evidence, site))
        if service.tls:
            not_after, cert_error = certificate_expiry(service.address, service.port, service.host.split(":")[0], timeout)
            cert = certificate_reading(service.name, not_after, cert_error, now, warning_days)
            readings.append(Reading(cert.subject, cert.component, cert.kind, cert.state, cert.evidence, site))
    return readings


def certificate_expiry(address: str, port: int, server_name: str, timeout: float) -> tuple[datetime | None, str | None]:
    """The notAfter of the certificate ``address:port`` presents for ``server_name``."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we judge expiry, not trust: read the certificate whatever signs it
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                der = tls.getpeercert(binary_form=True)
    except OSError as error:
        return None, f"{address}:{port}: {getattr(error, 'strerror', None) or error}"
    from cryptography import x509

    return x509.load_der_x509_certificate(der).not_valid_after_utc, None
