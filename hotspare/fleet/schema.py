"""The fleet file's schema: every field the continuity plan may say, with its meaning.

Unknown keys are errors (``extra="forbid"``) so a mistyped field is reported, not ignored.
Cross-references (a service's servers, a zone's block, …) are checked in ``rules.py``.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from pydantic import Field, StringConstraints

from hotspare.fleet.base import AbsolutePath, Command, Name, Pattern, Strict  # noqa: F401 (re-exported)
from hotspare.fleet.customer_schema import CustomerNotices
from hotspare.fleet.hardware_schema import Bmc
from hotspare.fleet.health_schema import Health, RemoteHands
from hotspare.fleet.incident_schema import Incidents
from hotspare.fleet.replication_schema import Replication
from hotspare.fleet.values import CronLine, EmailAddress, PhoneNumber, TimeZone, Url


class Role(str, Enum):
    """What a server is for in the continuity plan."""

    production = "production"
    mirror = "mirror"
    standby = "standby"
    storage = "storage"
    web = "web"


class Facility(Strict):
    name: Name = Field(description="Data center name, unique in the fleet.")
    description: str = Field(default="", description="Free text for operators.")
    remote_hands: RemoteHands | None = Field(default=None, description="On-site staff who swap failed parts.")


class Hardware(Strict):
    cpus: int = Field(ge=1, le=4096, description="CPU cores.")
    memory_mb: int = Field(ge=1, le=64 * 1024 * 1024, description="Memory in MiB.")
    disk_gb: int = Field(ge=1, le=1_000_000, description="Disk for customer data in GiB.")


class Server(Strict):
    name: Name = Field(description="Server name, unique in the fleet.")
    facility: Name = Field(description="Facility the server stands in.")
    address: str = Field(min_length=1, description="IP address or host name hotspare connects to.")
    ssh_port: int = Field(default=22, ge=1, le=65535, description="SSH port.")
    host_key: str = Field(
        pattern=r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+$",
        description="Pinned SSH host key, 'TYPE BASE64' as in known_hosts.",
    )
    role: Role = Field(description="Planned role: production, mirror, standby, storage or web.")
    ssh_user_block: Name | None = Field(default=None, description="SshCredentials block for this server (default: defaults).")
    hardware: Hardware | None = Field(default=None, description="Declared hardware.")
    bmc: Bmc | None = Field(default=None, description="Baseboard management controller (sensors).")
    location: str | None = Field(default=None, description='Rack and position, e.g. "rack B4, U12".')


class Zone(Strict):
    name: str = Field(min_length=1, description="DNS zone, e.g. example.com.")
    server: str = Field(min_length=1, description="Authoritative server address for queries/updates.")
    port: int = Field(default=53, ge=1, le=65535, description="Authoritative server port.")
    tsig_key_block: Name = Field(description="DnsUpdateKey block allowed to update the zone.")
    ttl: int = Field(default=300, ge=1, le=86400, description="TTL of service records hotspare writes.")
    failover_ttl: int = Field(
        default=20,
        ge=1,
        le=86400,
        description="Standing TTL of the records of services whose health policy fails them over (automatic_failover "
        "approval or unattended), kept by every replication: users' resolvers follow a failover within it.",
    )


class Accounts(Strict):
    uid_min: int = Field(default=1000, ge=1, le=4294967294, description="Lowest UID of replicated system accounts.")
    uid_max: int = Field(default=59999, ge=1, le=4294967294, description="Highest UID of replicated system accounts.")
    files: list[AbsolutePath] = Field(default_factory=list, description="Application account files.")
    users: list[Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")]] = Field(
        default_factory=list,
        description=(
            "System accounts of the service (names) that replication, rebuild and temporary logins may "
            "create or change; each needs a UID in uid_min..uid_max. Empty: the accounts in that range."
        ),
    )


class SpecialKind(str, Enum):
    """What activation neutralises in a live tree unless allowed (``planning/live_data.py``)."""

    devices = "devices"
    fifos = "fifos"
    sockets = "sockets"
    setuid = "setuid"
    setgid = "setgid"
    capabilities = "capabilities"
    links_outside = "links_outside"


class AllowSpecial(Strict):
    """What a service really needs below one of its paths, kept live (and still named in the run)."""

    path: AbsolutePath = Field(description="A declared path of the service, or a file or folder inside one.")
    allow: list[SpecialKind] = Field(
        min_length=1,
        description=(
            "Kept below path: devices, fifos, sockets, setuid, setgid, capabilities, links_outside "
            "(symbolic links that resolve outside the service's paths). Everything else is removed, "
            "cleared or replaced before a copy goes live."
        ),
    )


class Backup(Strict):
    """Third copy of a service on its storage host: a restic repository reached over SFTP."""

    password_block: Name = Field(description="BackupRepositoryPassword block holding the repository password.")
    repository: AbsolutePath | None = Field(
        default=None, description="Repository folder on the storage host (default /srv/backup/<service>)."
    )
    keep_daily: int = Field(default=7, ge=0, le=1000, description="Daily snapshots kept by retention.")
    keep_weekly: int = Field(default=4, ge=0, le=1000, description="Weekly snapshots kept by retention.")
    keep_monthly: int = Field(default=6, ge=0, le=1000, description="Monthly snapshots kept by retention.")
    schedule: CronLine = Field(default="30 2 * * *", description="Cron line for the backup flow.")
    restore_proof_schedule: CronLine = Field(default="0 4 * * 0", description="Cron line for the restore proof.")
    check_schedule: CronLine = Field(default="0 3 * * *", description="Cron line for the repository check.")
    check_subsets: int = Field(
        default=7, ge=1, le=1000, description="Each check reads 1/N of the pack files, rolling, so N checks read all."
    )


class Service(Strict):
    name: Name = Field(description="Service (customer application) name, unique in the fleet.")
    dns_name: str = Field(min_length=1, description="Record users reach the service by.")
    zone: str = Field(min_length=1, description="Zone that holds dns_name.")
    production: Name = Field(description="Server that runs the service now (planned).")
    mirror: Name = Field(description="Server in another facility that holds copies.")
    storage: Name = Field(description="Backup storage host.")
    data_paths: list[AbsolutePath] = Field(min_length=1, description="Customer data folders.")
    app_paths: list[AbsolutePath] = Field(default_factory=list, description="Application code.")
    config_paths: list[AbsolutePath] = Field(default_factory=list, description="OS configuration.")
    accounts: Accounts = Field(default_factory=Accounts, description="User accounts to replicate.")
    allow_special: list[AllowSpecial] = Field(
        default_factory=list,
        description=(
            "Device nodes, FIFOs, sockets, setuid/setgid bits, file capabilities or outside links the "
            "service really needs; activation neutralises all others."
        ),
    )
    pre_sync: list[Command] = Field(default_factory=list, description="Commands run on production before a sync.")
    activate: list[Command] = Field(default_factory=list, description="Commands that start the service.")
    deactivate: list[Command] = Field(default_factory=list, description="Commands that stop the service.")
    run_as: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")] | None = Field(
        default=None,
        description=(
            "Account the service's activate/deactivate commands run as. A failover uses it when set (else root, as "
            "configured); a drill always contains them and defaults to the first of accounts.users, else the copy's "
            "first account in the UID range; `root` must be named to drill as root (of a user namespace only)."
        ),
    )
    health_url: Url | None = Field(default=None, description="URL that answers 2xx when the app is healthy.")
    app_port: int = Field(default=80, ge=1, le=65535, description="Port the application listens on.")
    tier: int = Field(default=2, ge=1, le=4, description="Priority tier; 1 is recovered first.")
    depends_on: list[Name] = Field(
        default_factory=list, description="Services this one needs; a facility failover recovers them first."
    )
    rto_minutes: float | None = Field(
        default=None,
        gt=0,
        description="Recovery time objective: minutes from approval to users served again (default: defaults).",
    )
    rpo_hours: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Recovery point objective in hours (default: defaults). Shorter than the gap between the "
            "replication_schedule's runs: replicated every half RPO rounded down to a clock step, 5 min at least (`hotspare schedule`)."
        ),
    )
    copies_to_keep: int | None = Field(default=None, ge=1, le=1000, description="Point-in-time copies kept on the mirror.")
    space_gib: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description=(
            "Most the service's area on a shared mirror may hold, in GiB: its copies and working tree, and its live "
            "data there after a failover: a btrfs quota group where copies are snapshots (elsewhere replication "
            "keeps 10 % of the disk free instead). Default: defaults.space_gib (`planning/space.py`)."
        ),
    )
    max_shrink: float = Field(
        default=0.5, gt=0, le=1, description="Refuse to sync when size or file count dropped by more than this fraction."
    )
    backup: Backup | None = Field(default=None, description="Backups to the storage host (none when absent).")
    exclude: list[Pattern] = Field(
        default_factory=list,
        description=(
            "Files never copied, compared, backed up or restored (caches, sockets, temporary files): an absolute "
            "folder (itself and everything under it) or a glob on the full path or on the file name, e.g. '*.sock'."
        ),
    )
    fuzzy: list[Pattern] = Field(
        default_factory=list,
        description=(
            "Files allowed to be unreadable or to differ in a copy because production rewrites them all the time "
            "(same forms as exclude): named in the verification, but they never keep a copy from becoming current."
        ),
    )
    drill_schedule: CronLine | None = Field(
        default="0 5 1 * *",
        description=(
            "Cron line of the failover drill (the service brought up from its newest verified copy in an isolated "
            "bubble on the mirror, then removed); default monthly; null turns scheduled drills off."
        ),
    )


class Contact(Strict):
    name: str = Field(min_length=1, description="Person's name, unique.")
    role: str = Field(default="", description="Role in the escalation chain.")
    phone: PhoneNumber | None = Field(default=None, description="Phone number for calls and SMS.")
    email: EmailAddress | None = Field(default=None, description="E-mail address.")
    may_approve: bool = Field(
        default=False,
        description="May approve a waiting failover from the phone: pages offer the plan (press 2, or reply APPROVE n).",
    )


class Mail(Strict):
    smtp_block: Name = Field(description="SmtpServer block.")
    sender: EmailAddress = Field(description="From address of notices.")


class Defaults(Strict):
    ssh_user_block: Name = Field(description="SshCredentials block for servers that name none.")
    rpo_hours: float = Field(default=12, gt=0, description="Default recovery point objective.")
    copies_to_keep: int = Field(default=4, ge=1, le=1000, description="Default point-in-time copies kept.")
    replication_schedule: list[CronLine] = Field(
        default_factory=lambda: ["0 1 * * *", "0 13 * * *"],
        description="Cron lines for replicate: every service whose RPO is at least their longest gap (`hotspare schedule`).",
    )
    timezone: TimeZone = Field(default="UTC", description="Time zone of the schedules.")
    rto_minutes: float = Field(default=60, gt=0, description="Default recovery time objective in minutes.")
    facility_parallelism: int = Field(
        default=4, ge=1, le=64, description="Services of one tier a facility failover moves at the same time."
    )
    space_gib: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description=(
            "Default of each service's space_gib; unset: an equal share of 90 % of the mirror's disk among "
            "the services it keeps copies of (the rest stays free for activations)."
        ),
    )


class Fleet(Strict):
    version: int = Field(description="Fleet file format version; must be 1.")
    facilities: list[Facility] = Field(min_length=1)
    defaults: Defaults
    servers: list[Server] = Field(min_length=1)
    zones: list[Zone] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=list)
    contacts: list[Contact] = Field(default_factory=list)
    escalation: list[str] = Field(default_factory=list, description="Contact names, first called first.")
    mail: Mail | None = None
    customer_notices: CustomerNotices = Field(default_factory=CustomerNotices, description="Customers, notices, status page.")
    health: Health = Field(default_factory=Health, description="Health checks from several sites (health_schema.py).")
    incidents: Incidents = Field(
        default_factory=Incidents, description="Escalation chains and phone providers (incident_schema.py)."
    )
    replication: Replication = Field(
        default_factory=Replication, description="Copy back-end, verification period, parallelism (replication_schema.py)."
    )

    def server(self, name: str) -> Server:
        """The server called ``name`` (the fleet was validated, so it exists)."""
        return next(server for server in self.servers if server.name == name)

    def service(self, name: str) -> Service:
        """The service called ``name``; KeyError names the known ones."""
        for service in self.services:
            if service.name == name:
                return service
        known = ", ".join(s.name for s in self.services) or "none"
        raise KeyError(f"no service {name!r} in the fleet (known: {known})")

    def zone(self, name: str) -> Zone:
        return next(zone for zone in self.zones if zone.name == name)

    def ssh_block_of(self, server: Server) -> str:
        """Block name holding the SSH credentials for ``server``."""
        return server.ssh_user_block or self.defaults.ssh_user_block

    def rpo_hours_of(self, service: Service) -> float:
        return service.rpo_hours or self.defaults.rpo_hours

    def copies_to_keep_of(self, service: Service) -> int:
        return service.copies_to_keep or self.defaults.copies_to_keep

    def record_ttl_of(self, service: Service) -> int:
        """The TTL the service's record stands at: short where the health policy fails it over
        (users' caches must follow within seconds), the zone's otherwise."""
        zone = self.zone(service.zone.rstrip("."))
        if self.health.policy(service.name).automatic_failover != "off":
            return min(zone.ttl, zone.failover_ttl)
        return zone.ttl
