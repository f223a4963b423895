"""Continuity-plan rules that the schema alone cannot express.

Pure functions over the parts of a fleet (``parts.py``): each yields (field path, message)
for every violation, so the operator sees all of them in one run. The parts may come from a
fleet file that failed the schema; positions are always those of the file, and a rule skips
what it cannot judge (an unusable section, a reference to an item that failed the schema).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator

from hotspare.fleet.parts import FleetParts
from hotspare.fleet.paths import BACKUP_ROOT, form_problem, inside, path_problem, relation
from hotspare.fleet.schema import Fleet, Role, Service

Violation = tuple[tuple[str | int, ...], str]


def rule_violations(parts: FleetParts) -> list[Violation]:
    """Every rule violation in ``parts``, in file order per rule."""
    checks = (
        _version,
        _unique_names,
        _unique_endpoints,
        _server_references,
        _service_servers,
        _service_accounts,
        _service_paths,
        _special_allowances,
        _backup_repositories,
        _service_zones,
        _service_dependencies,
        _people,
        _chain_contacts,
        _customer_services,
        _status_page_server,
        _health_checkers,
    )
    return [violation for check in checks for violation in check(parts)]


def _version(parts: FleetParts) -> Iterator[Violation]:
    if parts.version is not None and parts.version != 1:
        yield ("version",), f"unsupported fleet format version {parts.version}; this hotspare reads version 1"


def _repeated(values: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """(position, value) of every value that occurs more than once."""
    counts = Counter(value for _, value in values)
    return ((position, value) for position, value in values if counts[value] > 1)


def _unique_names(parts: FleetParts) -> Iterator[Violation]:
    # Items that failed the schema still count: their names are what the operator wrote.
    for section_name in ("facilities", "servers", "zones", "services", "contacts"):
        section = getattr(parts, section_name)
        if section is None:
            continue
        for position, name in _repeated(section.names()):
            yield (section_name, position, "name"), f"name {name!r} is used more than once in {section_name}"


def _unique_endpoints(parts: FleetParts) -> Iterator[Violation]:
    if parts.servers is not None:
        endpoints = [(position, f"{s.address}:{s.ssh_port}") for position, s in parts.servers.items]
        for position, endpoint in _repeated(endpoints):
            yield ("servers", position, "address"), f"address {endpoint} is used by more than one server"
    if parts.services is not None:
        dns_names = [(position, s.dns_name.rstrip(".").lower()) for position, s in parts.services.items]
        for position, dns_name in _repeated(dns_names):
            yield ("services", position, "dns_name"), f"DNS name {dns_name!r} is used by more than one service"


def _server_references(parts: FleetParts) -> Iterator[Violation]:
    if parts.facilities is None or parts.servers is None:
        return
    facilities = parts.facilities.known_names()
    for position, server in parts.servers.items:
        if server.facility not in facilities:
            yield (
                ("servers", position, "facility"),
                f"unknown facility {server.facility!r} (known: {', '.join(sorted(facilities))})",
            )


def _service_servers(parts: FleetParts) -> Iterator[Violation]:
    if parts.servers is None or parts.services is None:
        return
    # A server that failed the schema is known by name but not checked further: its own
    # entry already carries the problem, so its services must not add "unknown server".
    servers = {server.name: server for _, server in parts.servers.items}
    names = parts.servers.known_names()
    known = ", ".join(sorted(names))
    for position, service in parts.services.items:
        here = ("services", position)
        for field in ("production", "mirror", "storage"):
            name = getattr(service, field)
            if name not in names:
                yield (*here, field), f"unknown server {name!r} (known: {known})"
        production = servers.get(service.production)
        mirror = servers.get(service.mirror)
        storage = servers.get(service.storage)
        if service.production in names and service.production == service.mirror:
            yield (*here, "mirror"), "the mirror must be a different server than production"
        elif production and mirror and production.facility == mirror.facility:
            yield (
                (*here, "mirror"),
                f"mirror {mirror.name!r} is in the same facility ({mirror.facility}) as production "
                f"{production.name!r}; it must stand in a different facility",
            )
        if service.storage in names and service.storage in (service.production, service.mirror):
            yield (*here, "storage"), "the storage host must be neither the production nor the mirror server"
        if storage and storage.role is not Role.storage:
            yield (*here, "storage"), f"server {storage.name!r} has role {storage.role.value}, not storage"


def _service_accounts(parts: FleetParts) -> Iterator[Violation]:
    if parts.services is None:
        return
    for position, service in parts.services.items:
        if service.accounts.uid_min > service.accounts.uid_max:
            yield ("services", position, "accounts", "uid_min"), "uid_min is greater than uid_max"
    yield from _shared_accounts(parts)


def _shared_accounts(parts: FleetParts) -> Iterator[Violation]:
    """Two services on one server never claim the same account: the merge of one may then
    neither remove nor change the other's. Both declare users: no name in common; otherwise
    (each then claims every account in its range) their UID ranges do not overlap."""
    seen: dict[str, list[tuple[int, Service]]] = defaultdict(list)
    for position, service in parts.services.items:
        here = ("services", position, "accounts")
        mine = service.accounts
        clashes: dict[str, str] = {}
        for server in dict.fromkeys((service.production, service.mirror)):
            for _, other in seen[server]:
                theirs = other.accounts
                if other.name in clashes:
                    continue
                if mine.users and theirs.users:
                    common = sorted(set(mine.users) & set(theirs.users))
                    if common:
                        clashes[other.name] = (
                            f"user(s) {', '.join(common)} also declared by service {other.name!r} "
                            f"on {server}; each account on a server must belong to one service"
                        )
                elif mine.uid_min <= theirs.uid_max and theirs.uid_min <= mine.uid_max:
                    clashes[other.name] = (
                        f"UID range {mine.uid_min}-{mine.uid_max} overlaps {theirs.uid_min}-{theirs.uid_max} of service "
                        f"{other.name!r} on {server}, and one of them declares no users (it then claims every "
                        "account in its range); give them disjoint ranges or declare each one's users"
                    )
            seen[server].append((position, service))
        for sentence in clashes.values():
            yield (*here, "users" if mine.users else "uid_min"), sentence


def _declared_paths(position: int, service: Service) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(field path, path) of every path the service copies, restores and makes live."""
    here = ("services", position)
    for field in ("data_paths", "app_paths", "config_paths"):
        for index, path in enumerate(getattr(service, field)):
            yield (*here, field, index), path
    for index, path in enumerate(service.accounts.files):
        yield (*here, "accounts", "files", index), path


def _special_allowances(parts: FleetParts) -> Iterator[Violation]:
    """An ``allow_special`` path is in normal form and inside one of the service's own paths."""
    if parts.services is None:
        return
    for position, service in parts.services.items:
        declared = [path for _, path in _declared_paths(position, service)]
        for index, entry in enumerate(service.allow_special):
            problem = form_problem(entry.path)
            if problem is None and not any(entry.path == path or inside(entry.path, path) for path in declared):
                problem = f"{entry.path} is not inside a path of this service ({', '.join(declared)})"
            if problem:
                yield ("services", position, "allow_special", index, "path"), problem


def _repository(service: Service) -> str | None:
    """The service's backup repository folder (None without backups), as backup planning makes it."""
    if service.backup is None:
        return None
    return service.backup.repository or f"{BACKUP_ROOT}/{service.name}"


def _service_paths(parts: FleetParts) -> Iterator[Violation]:
    """Safe paths only (``paths.py``), and no path shared by two services on one server.

    Two services share a server when one's production or mirror is the other's production or
    mirror: both run there at some point, and activating one must not overwrite the other.
    """
    if parts.services is None:
        return
    # Every repository and every folder above one, each naming a repository it leads to.
    repositories: dict[str, str] = {}
    for _, service in parts.services.items:
        if (repository := _repository(service)) and not form_problem(repository):
            for folder in (repository, *_parents(repository)):
                repositories.setdefault(folder, repository)
    usable: list[tuple[tuple[str | int, ...], str, Service]] = []
    for position, service in parts.services.items:
        seen: dict[str, tuple[str | int, ...]] = {}
        for location, path in _declared_paths(position, service):
            problem = path_problem(path)
            repository = (
                None
                if problem
                else repositories.get(path)
                or next((folder for folder in _parents(path) if repositories.get(folder) == folder), None)
            )
            if repository:
                problem = f"{path} overlaps the backup repository {repository}"
            if problem is None and path in seen:
                problem = f"{path} is declared twice in this service (also at {'.'.join(map(str, seen[path][2:]))})"
            if problem:
                yield location, problem
                continue
            seen[path] = location
            usable.append((location, path, service))
    yield from _clashes(usable, lambda service: {service.production, service.mirror}, "path")


def _clashes(entries, servers_of, what: str) -> Iterator[Violation]:
    """Every entry whose path overlaps a path of another service on a server both use.

    ``entries`` are (location, path, service) in file order. Each entry names its first clash
    in file order. Indexed by server and path, and each path looked up with its parents, so a
    fleet of a thousand services is checked in milliseconds, not pair by pair.
    """
    by_server: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index, (_, path, service) in enumerate(entries):
        for server in servers_of(service):
            by_server[server][path].append(index)
    first: dict[int, int] = {}  # entry -> the earliest entry it clashes with
    for index, (_, path, service) in enumerate(entries):
        for candidate in (path, *_parents(path)):
            for server in servers_of(service):
                for other in by_server[server].get(candidate, ()):
                    if entries[other][2].name != service.name:
                        # path is inside (or equal to) the other: both are reported.
                        first[index] = min(first.get(index, other), other)
                        first[other] = min(first.get(other, index), index)
    for index, (location, path, service) in enumerate(entries):
        if index in first:
            _, other_path, other = entries[first[index]]
            shared = ", ".join(sorted(servers_of(service) & servers_of(other)))
            yield (
                location,
                (
                    f"{path} is {relation(path, other_path)} {other_path} of service {other.name!r} on {shared}; "
                    f"each {what} on a server must belong to one service"
                ),
            )


def _parents(path: str) -> Iterator[str]:
    """The folders that contain the normal absolute ``path``, nearest first."""
    while "/" in path and path != "/":
        path = path.rsplit("/", 1)[0] or "/"
        yield path


def _backup_repositories(parts: FleetParts) -> Iterator[Violation]:
    """A declared repository is a safe path, and no two repositories on one storage host nest."""
    if parts.services is None:
        return
    usable: list[tuple[tuple[str | int, ...], str, Service]] = []
    for position, service in parts.services.items:
        repository = _repository(service)
        if repository is None:
            continue
        location = ("services", position, "backup", "repository")
        if repository == BACKUP_ROOT:
            problem = f"{repository} is the backup root itself; give the service its own folder inside it"
        elif inside(repository, BACKUP_ROOT):
            problem = form_problem(repository)  # where repositories belong
        else:
            problem = path_problem(repository)
        if problem:
            yield location, problem
        else:
            usable.append((location, repository, service))
    yield from _clashes(usable, lambda service: {service.storage}, "backup repository")


def _service_zones(parts: FleetParts) -> Iterator[Violation]:
    if parts.zones is None or parts.services is None:
        return
    zone_names = {name.rstrip(".") for name in parts.zones.known_names()}
    for position, service in parts.services.items:
        zone = service.zone.rstrip(".")
        dns_name = service.dns_name.rstrip(".")
        if zone not in zone_names:
            yield (
                ("services", position, "zone"),
                f"unknown zone {service.zone!r} (known: {', '.join(sorted(zone_names)) or 'none'})",
            )
        elif not (dns_name == zone or dns_name.endswith("." + zone)):
            yield ("services", position, "dns_name"), f"{service.dns_name!r} is not inside zone {service.zone!r}"


def _service_dependencies(parts: FleetParts) -> Iterator[Violation]:
    """``depends_on`` names known services, never the service itself, and forms no cycle
    (a facility failover recovers a service's dependencies first: a cycle has no first)."""
    if parts.services is None:
        return
    known = parts.services.known_names()
    needs = {service.name: [name for name in service.depends_on if name in known] for _, service in parts.services.items}
    for position, service in parts.services.items:
        for index, name in enumerate(service.depends_on):
            if name == service.name:
                yield ("services", position, "depends_on", index), f"{service.name!r} cannot depend on itself"
            elif name not in known:
                yield ("services", position, "depends_on", index), f"unknown service {name!r} (known: {', '.join(sorted(known))})"
        cycle = _cycle_through(service.name, needs)
        if cycle:
            yield ("services", position, "depends_on"), "dependency cycle: " + " -> ".join(cycle)


def _cycle_through(start: str, needs: dict[str, list[str]]) -> list[str] | None:
    """The names of a dependency path from ``start`` back to itself, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        name, path = stack.pop()
        for dependency in needs.get(name, ()):
            if dependency == start and len(path) > 1:
                return [*path, start]
            if dependency not in seen and dependency != start:
                seen.add(dependency)
                stack.append((dependency, [*path, dependency]))
    return None


def _people(parts: FleetParts) -> Iterator[Violation]:
    if parts.contacts is None or parts.escalation is None:
        return
    contacts = parts.contacts.known_names()
    for position, name in parts.escalation:
        if name not in contacts:
            yield ("escalation", position), f"unknown contact {name!r} (add them under contacts)"


def _chain_contacts(parts: FleetParts) -> Iterator[Violation]:
    """Every contact an incident chain names exists and has what its step needs: a phone number
    to call or text, an e-mail address to e-mail (else that step would be skipped in an emergency)."""
    if parts.incidents is None or parts.contacts is None:
        return
    known = parts.contacts.known_names()
    valid = {contact.name: contact for _, contact in parts.contacts.items}
    for chain_position, chain in enumerate(parts.incidents.chains):
        for step_position, step in enumerate(chain.steps):
            if step.contact is None:
                continue
            here = ("incidents", "chains", chain_position, "steps", step_position, "contact")
            action = step.action.value
            contact = valid.get(step.contact)
            if step.contact not in known:
                yield (
                    here,
                    f"unknown contact {step.contact!r} (known: {', '.join(sorted(known)) or 'none'}; add them under contacts)",
                )
            elif contact is None:
                continue  # the contact's own entry carries its schema problem
            elif action == "email" and not contact.email:
                yield here, f"contact {contact.name!r} has no email, which this email step needs (add it under contacts)"
            elif action in ("call", "sms") and not contact.phone:
                yield here, f"contact {contact.name!r} has no phone, which this {action} step needs (add it under contacts)"


def _customer_services(parts: FleetParts) -> Iterator[Violation]:
    """A customer owns services of this fleet (a notice for an unknown one would reach nobody)."""
    if parts.customer_notices is None or parts.services is None:
        return
    known = parts.services.known_names()
    for customer_position, customer in enumerate(parts.customer_notices.customers):
        for position, name in enumerate(customer.services):
            if name not in known:
                yield (
                    ("customer_notices", "customers", customer_position, "services", position),
                    f"unknown service {name!r} (known: {', '.join(sorted(known)) or 'none'})",
                )


def _status_page_server(parts: FleetParts) -> Iterator[Violation]:
    """The status page is published to a server of this fleet whose role is web."""
    if parts.customer_notices is None or parts.customer_notices.status_page is None or parts.servers is None:
        return
    name = parts.customer_notices.status_page.server
    servers = {server.name: server for _, server in parts.servers.items}
    here = ("customer_notices", "status_page", "server")
    if name not in parts.servers.known_names():
        yield here, f"unknown server {name!r} (known: {', '.join(sorted(parts.servers.known_names()))})"
    elif name in servers and servers[name].role is not Role.web:
        yield here, f"server {name!r} has role {servers[name].role.value}, not web"


def _health_checkers(parts: FleetParts) -> Iterator[Violation]:
    """A checker stands in a known facility (or control) and probes through a server there."""
    if parts.health is None:
        return
    from hotspare.fleet.health_schema import CONTROL_FACILITY, LOCAL

    facilities = parts.facilities.known_names() if parts.facilities is not None else None
    servers = {server.name: server for _, server in parts.servers.items} if parts.servers is not None else None
    server_names = parts.servers.known_names() if parts.servers is not None else set()
    for position, checker in enumerate(parts.health.checkers):
        here = ("health", "checkers", position)
        if facilities is not None and checker.facility != CONTROL_FACILITY and checker.facility not in facilities:
            yield (
                (*here, "facility"),
                f"unknown facility {checker.facility!r} (known: {CONTROL_FACILITY}, {', '.join(sorted(facilities))})",
            )
        if checker.via == LOCAL or servers is None:
            continue
        if checker.via not in server_names:
            yield ((*here, "via"), f"unknown server {checker.via!r}; use a server of facility {checker.facility} or '{LOCAL}'")
        elif checker.via in servers and servers[checker.via].facility != checker.facility:
            yield (
                (*here, "via"),
                f"server {checker.via!r} stands in facility {servers[checker.via].facility}, not in {checker.facility}",
            )
    if parts.services is not None:
        known = parts.services.known_names()
        for position, policy in enumerate(parts.health.services):
            if policy.name not in known:
                yield ("health", "services", position, "name"), f"unknown service {policy.name!r}"


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
                (
                    ("services", position, "backup", "password_block"),
                    "hotspare-backup-repository-password",
                    service.backup.password_block,
                )
            )
    if fleet.mail:
        references.append((("mail", "smtp_block"), "hotspare-smtp-server", fleet.mail.smtp_block))
    return references
