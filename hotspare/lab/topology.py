"""The lab's fixed shape: facilities, hosts, services, and what a slot number decides.

Pure data, no side effects: everything else in the lab derives names, addresses and
ports from here, so two labs on different slots never collide and a crashed lab can be
cleaned up from its slot number alone.
"""

from __future__ import annotations

from dataclasses import dataclass

ZONE = "lab.test"
TTL = 60
APP_PORT = 8080
SSH_PORT = 22
MAX_SLOT = 19

# Slot n (0..19) uses 10.211.(70+n).0/24, BIND on 5390+n and SMTP on 2525+n (all on 127.0.0.1).
SUBNET_THIRD_OCTET_BASE = 70
DNS_PORT_BASE = 5390
SMTP_PORT_BASE = 2525
# Root-namespace blackhole covering every slot's subnet (and more): longest-prefix match
# lets each bridge's connected /24 win while the lab is up, and keeps any packet for a lab
# address (a stale fleet file, a lab that is down) from leaving via the default route.
COVER_NETWORK = "10.211.0.0/16"
BLACKHOLE_METRIC = 4242

TSIG_KEY_NAME = "lab-tsig"
BLOCK_NAMES = {
    "ssh": "lab-ssh",
    "tsig": TSIG_KEY_NAME,
    "smtp": "lab-smtp",
    "restic": "lab-restic",
}
MAIL_SENDER = "hotspare@lab.test"


def restic_block(service_name: str) -> str:
    """The service's own repository password block (one per service, never shared)."""
    return f"{BLOCK_NAMES['restic']}-{service_name}"


@dataclass(frozen=True)
class Facility:
    """A place that fails as a whole (power, uplink, flood)."""

    name: str
    description: str


@dataclass(frozen=True)
class HostSpec:
    """One lab host: an sshd in its own network and mount namespace."""

    name: str
    facility: str
    role: str
    last_octet: int


@dataclass(frozen=True)
class AppUser:
    """A system account the service owns on its production host."""

    name: str
    uid: int


@dataclass(frozen=True)
class ServiceSpec:
    """A hosted service with a production host, a mirror in another facility and storage."""

    name: str
    production: str
    mirror: str
    storage: str
    uid_min: int
    uid_max: int
    users: tuple[AppUser, ...]
    # Services sharing a host cannot share a port: each app listens on its own (app start,
    # health URL and the fleet file's ``app_port`` all read it from here).
    port: int = APP_PORT

    @property
    def dns_name(self) -> str:
        return f"{self.name}.{ZONE}"

    @property
    def root(self) -> str:
        return f"/srv/{self.name}"

    @property
    def data_path(self) -> str:
        return f"{self.root}/data"

    @property
    def app_path(self) -> str:
        return f"{self.root}/app"

    @property
    def run_path(self) -> str:
        return f"{self.root}/run"

    @property
    def accounts_file(self) -> str:
        return f"{self.root}/accounts"

    @property
    def config_path(self) -> str:
        return f"/etc/{self.name}"


FACILITIES = (
    Facility("east", "Lab facility east (network namespaces on one machine)"),
    Facility("west", "Lab facility west (network namespaces on one machine)"),
    Facility("vault", "Lab backup storage facility"),
)

HOSTS = (
    HostSpec("prod-east", "east", "production", 11),
    HostSpec("mirror-west", "west", "mirror", 12),
    HostSpec("prod-west", "west", "production", 13),
    HostSpec("mirror-east", "east", "mirror", 14),
    HostSpec("standby-east", "east", "standby", 21),
    HostSpec("standby-west", "west", "standby", 22),
    HostSpec("storage-vault", "vault", "storage", 31),
    HostSpec("web-vault", "vault", "web", 41),
)

SERVICES = (
    ServiceSpec(
        "app1",
        "prod-east",
        "mirror-west",
        "storage-vault",
        2000,
        2999,
        (AppUser("app1-web", 2001), AppUser("app1-batch", 2002)),
    ),
    ServiceSpec(
        "app2",
        "prod-west",
        "mirror-east",
        "storage-vault",
        3000,
        3999,
        (AppUser("app2-web", 3001), AppUser("app2-batch", 3002)),
    ),
    # Shares app1's production, mirror and storage: what several services change on one host
    # (account files, the mirror's copy area) is tested with it.
    ServiceSpec(
        "app3",
        "prod-east",
        "mirror-west",
        "storage-vault",
        4000,
        4999,
        (AppUser("app3-web", 4001), AppUser("app3-batch", 4002)),
        port=APP_PORT + 3,
    ),
)


def host_by_name(name: str) -> HostSpec:
    """The host called `name`; KeyError names the known hosts."""
    for host in HOSTS:
        if host.name == name:
            return host
    raise KeyError(f"no lab host {name!r}; hosts are {', '.join(h.name for h in HOSTS)}")


def hosts_for_target(target: str) -> tuple[HostSpec, ...]:
    """The hosts a fail/heal target means: one host by name, or every host of a facility."""
    if any(facility.name == target for facility in FACILITIES):
        return tuple(host for host in HOSTS if host.facility == target)
    if any(host.name == target for host in HOSTS):
        return (host_by_name(target),)
    names = [f.name for f in FACILITIES] + [h.name for h in HOSTS]
    raise KeyError(f"unknown lab target {target!r}; use one of: {', '.join(names)}")


@dataclass(frozen=True)
class SlotLayout:
    """Names, addresses and ports of the lab in one slot (0..MAX_SLOT)."""

    slot: int

    def __post_init__(self) -> None:
        if not 0 <= self.slot <= MAX_SLOT:
            raise ValueError(f"lab slot must be 0..{MAX_SLOT}, got {self.slot}")

    @property
    def prefix(self) -> str:
        return f"hs{self.slot}"

    @property
    def subnet_base(self) -> str:
        return f"10.211.{SUBNET_THIRD_OCTET_BASE + self.slot}"

    @property
    def network(self) -> str:
        return f"{self.subnet_base}.0/24"

    @property
    def halves(self) -> tuple[str, str]:
        """Two /25s that together cover the subnet and beat its connected /24 route."""
        return (f"{self.subnet_base}.0/25", f"{self.subnet_base}.128/25")

    @property
    def gateway(self) -> str:
        return f"{self.subnet_base}.1"

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def dns_port(self) -> int:
        return DNS_PORT_BASE + self.slot

    @property
    def smtp_port(self) -> int:
        return SMTP_PORT_BASE + self.slot

    def address(self, host: HostSpec) -> str:
        return f"{self.subnet_base}.{host.last_octet}"

    def netns(self, host: HostSpec) -> str:
        return f"{self.prefix}-{host.name}"

    def veth(self, host: HostSpec) -> str:
        """Root-namespace end of the host's veth pair (interface names max 15 chars)."""
        return f"{self.prefix}v{HOSTS.index(host)}"
