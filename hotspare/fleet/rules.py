"""Continuity-plan rules that the schema alone cannot express.

Pure functions over a parsed Fleet: each yields (field path, message) for every violation,
so the operator sees all of them in one run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from hotspare.fleet.schema import Fleet, Role

Violation = tuple[tuple[str | int, ...], str]


def rule_violations(fleet: Fleet) -> list[Violation]:
    """Every rule violation in ``fleet``, in file order per rule."""
    checks = (
        _version,
        _unique_names,
        _server_references,
        _service_layout,
        _people,
    )
    return [violation for check in checks for violation in check(fleet)]


def _version(fleet: Fleet) -> Iterator[Violation]:
    if fleet.version != 1:
        yield ("version",), f"unsupported fleet format version {fleet.version}; this hotspare reads version 1"


def _duplicates(values: list[str]) -> set[str]:
    return {value for value, count in Counter(values).items() if count > 1}


def _unique_names(fleet: Fleet) -> Iterator[Violation]:
    sections = {
        "facilities": [f.name for f in fleet.facilities],
        "servers": [s.name for s in fleet.servers],
        "zones": [z.name for z in fleet.zones],
        "services": [s.name for s in fleet.services],
        "contacts": [c.name for c in fleet.contacts],
    }
    for section, names in sections.items():
        repeated = _duplicates(names)
        for position, name in enumerate(names):
            if name in repeated:
                yield (section, position, "name"), f"name {name!r} is used more than once in {section}"
    endpoints = [f"{s.address}:{s.ssh_port}" for s in fleet.servers]
    repeated = _duplicates(endpoints)
    for position, endpoint in enumerate(endpoints):
        if endpoint in repeated:
            yield ("servers", position, "address"), f"address {endpoint} is used by more than one server"
    dns_names = [s.dns_name.rstrip(".").lower() for s in fleet.services]
    repeated = _duplicates(dns_names)
    for position, dns_name in enumerate(dns_names):
        if dns_name in repeated:
            yield ("services", position, "dns_name"), f"DNS name {dns_name!r} is used by more than one service"


def _server_references(fleet: Fleet) -> Iterator[Violation]:
    facilities = {f.name for f in fleet.facilities}
    for position, server in enumerate(fleet.servers):
        if server.facility not in facilities:
            yield (
                ("servers", position, "facility"),
                f"unknown facility {server.facility!r} (known: {', '.join(sorted(facilities))})",
            )


def _service_layout(fleet: Fleet) -> Iterator[Violation]:
    servers = {s.name: s for s in fleet.servers}
    known = ", ".join(sorted(servers))
    for position, service in enumerate(fleet.services):
        here = ("services", position)
        for field in ("production", "mirror", "storage"):
            name = getattr(service, field)
            if name not in servers:
                yield (*here, field), f"unknown server {name!r} (known: {known})"
        production = servers.get(service.production)
        mirror = servers.get(service.mirror)
        storage = servers.get(service.storage)
        if production and mirror:
            if production.name == mirror.name:
                yield (*here, "mirror"), "the mirror must be a different server than production"
            elif production.facility == mirror.facility:
                yield (
                    (*here, "mirror"),
                    f"mirror {mirror.name!r} is in the same facility ({mirror.facility}) as production "
                    f"{production.name!r}; it must stand in a different facility",
                )
        if storage and storage.name in (service.production, service.mirror):
            yield (*here, "storage"), "the storage host must be neither the production nor the mirror server"
        if storage and storage.role is not Role.storage:
            yield (*here, "storage"), f"server {storage.name!r} has role {storage.role.value}, not storage"
        if service.accounts.uid_min > service.accounts.uid_max:
            yield (*here, "accounts", "uid_min"), "uid_min is greater than uid_max"
        zone_names = {z.name.rstrip(".") for z in fleet.zones}
        zone = service.zone.rstrip(".")
        if zone not in zone_names:
            yield (*here, "zone"), f"unknown zone {service.zone!r} (known: {', '.join(sorted(zone_names)) or 'none'})"
        elif not (service.dns_name.rstrip(".") == zone or service.dns_name.rstrip(".").endswith("." + zone)):
            yield (*here, "dns_name"), f"{service.dns_name!r} is not inside zone {service.zone!r}"


def block_references(fleet: Fleet) -> list[tuple[tuple[str | int, ...], str, str]]:
    """(field path, block type slug, block name) of every credential the fleet names.

    Checked against the Prefect API by ``hotspare fleet check --blocks``: the pure rules
    cannot know which blocks exist.
    """
    references = [(("defaults", "ssh_user_block"), "hotspare-ssh-credentials", fleet.defaults.ssh_user_block)]
    for position, server in enumerate(fleet.servers):
        if server.ssh_user_block:
            references.append((("servers", position, "ssh_user_block"), "hotspare-ssh-credentials", server.ssh_user_block))
    for position, zone in enumerate(fleet.zones):
        references.append((("zones", position, "tsig_key_block"), "hotspare-dns-update-key", zone.tsig_key_block))
    for position, service in enumerate(fleet.services):
        if service.backup is not None:
            references.append(
                (("services", position, "backup", "password_block"), "hotspare-backup-repository-password", service.backup.password_block)
            )
    if fleet.mail:
        references.append((("mail", "smtp_block"), "hotspare-smtp-server", fleet.mail.smtp_block))
    return references


def _people(fleet: Fleet) -> Iterator[Violation]:
    contacts = {c.name for c in fleet.contacts}
    for position, name in enumerate(fleet.escalation):
        if name not in contacts:
            yield ("escalation", position), f"unknown contact {name!r} (add them under contacts)"
