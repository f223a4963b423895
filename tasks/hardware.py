"""Reading a server's hardware: RAID and disk space over SSH, sensors from its BMC.

``read_hardware(fleet, server_name)`` is what the health checks call, once per server and
round, from worker threads. It never raises for what it cannot read: a part it could not
read becomes an ``unknown`` reading saying why, so one dead BMC never hides a dead disk.
Plain function (no Prefect task), so callers choose how to run it.

Over SSH (argument lists, the shared connection of ``hotspare.access``): ``df -P`` and
``df -Pi`` of ``/``, ``/srv`` and the data folders of the services the server holds; for each
btrfs among their filesystems ``btrfs filesystem show``, ``btrfs device stats``, ``btrfs
replace status`` and the ``/sys/fs/btrfs/<uuid>/devinfo/*/missing`` flags; ``/proc/mdstat``
and ``mdadm --detail`` when the server has md arrays. From the BMC (``Server.bmc``): IPMI
``sdr elist`` or Redfish Power/Thermal, logging in with its ``BmcCredentials`` block.
"""

from __future__ import annotations

from hotspare import access
from hotspare.adapters import ipmi, redfish
from hotspare.adapters.errors import HotspareError
from hotspare.fleet import Fleet
from hotspare.planning import raid
from hotspare.planning.readings import ComponentKind, ComponentState, Reading

COMMAND_SECONDS = 20.0
CONNECT_SECONDS = 10.0
SITE = "control"


def read_hardware(fleet: Fleet, server_name: str) -> list[Reading]:
    """Every hardware reading of one server: RAID arrays and member disks, free space and
    inodes, power supplies, fans and temperatures."""
    return _storage_readings(fleet, server_name) + _bmc_readings(fleet, server_name)


# ----- over SSH ---------------------------------------------------------------------------------


def checked_paths(fleet: Fleet, server_name: str) -> list[str]:
    """/, /srv and the data folders of every service this server holds (production or mirror)."""
    paths = ["/", "/srv"]
    for service in fleet.services:
        if server_name in (service.production, service.mirror):
            paths += [path for path in service.data_paths if path not in paths]
    return paths


def _storage_readings(fleet: Fleet, server_name: str) -> list[Reading]:
    try:
        with access.connect(fleet, server_name, connect_timeout=CONNECT_SECONDS) as lease:
            return _read_storage(lease, server_name, checked_paths(fleet, server_name))
    except (HotspareError, OSError) as error:
        return [
            Reading(
                server_name, "raid:*", ComponentKind.raid, ComponentState.unknown, f"RAID and disk space not read: {error}", SITE
            )
        ]


def _run(lease, argv: list[str]) -> tuple[int, str]:
    result = lease.run(argv, timeout=COMMAND_SECONDS, check=False)
    return result.exit_status, result.text


def _read_storage(lease, server_name: str, paths: list[str]) -> list[Reading]:
    # df prints the folders that exist (and complains about the others): one line each.
    _, df_text = _run(lease, ["df", "-P", *paths])
    _, inode_text = _run(lease, ["df", "-Pi", *paths])
    lines = raid.parse_df(df_text)
    mounts = list(dict.fromkeys(line.mount_point for line in lines))
    unique_df = _unique_lines(df_text, mounts)
    unique_inodes = _unique_lines(inode_text, mounts)
    readings = raid.space_readings(server_name, unique_df, unique_inodes, SITE)
    if mounts:
        _, types = _run(lease, ["stat", "-f", "-c", "%T", *mounts])
        # A btrfs subvolume (a snapshot made live by a failover) has a device of its own, so df
        # names it as if it were mounted: read each btrfs filesystem once, at its real mount point.
        btrfs_mounts = []
        for mount, filesystem_type in zip(mounts, types.split()):
            if filesystem_type == "btrfs":
                _, target = _run(lease, ["findmnt", "-n", "-o", "TARGET", "-T", mount])
                btrfs_mounts.append(target.strip() or mount)
        for mount in dict.fromkeys(btrfs_mounts):
            readings += _btrfs(lease, server_name, mount)
    status, mdstat = _run(lease, ["cat", "/proc/mdstat"])
    if status == 0 and any(array.name for array in raid.parse_mdstat(mdstat)):
        details = {}
        for array in raid.parse_mdstat(mdstat):
            code, text = _run(lease, ["mdadm", "--detail", f"/dev/{array.name}"])
            if code == 0:
                details[array.name] = text
        readings += raid.md_readings(server_name, mdstat, details, SITE)
    return readings


def _btrfs(lease, server_name: str, mount: str) -> list[Reading]:
    status, show = _run(lease, ["btrfs", "filesystem", "show", mount])
    if status != 0:
        return [
            Reading(
                server_name,
                f"raid:{mount}",
                ComponentKind.raid,
                ComponentState.unknown,
                f"`btrfs filesystem show {mount}` failed: {show.strip() or 'no output'}",
                SITE,
            )
        ]
    _, stats = _run(lease, ["btrfs", "device", "stats", mount])
    _, replace = _run(lease, ["btrfs", "replace", "status", "-1", mount])
    filesystems = raid.parse_filesystem_show(show)
    missing = ""
    if filesystems:
        _, missing = _run(lease, ["grep", "-r", "--include=missing", ".", f"/sys/fs/btrfs/{filesystems[0].uuid}/devinfo"])
    return raid.btrfs_readings(server_name, mount, show, stats, missing, replace, SITE)


def _unique_lines(df_text: str, mounts: list[str]) -> str:
    """df output with one line per mount point (several paths often share one)."""
    lines = df_text.splitlines()
    kept, seen = lines[:1], set()
    for line in lines[1:]:
        parsed = raid.parse_df("header\n" + line)
        if parsed and parsed[0].mount_point in mounts and parsed[0].mount_point not in seen:
            seen.add(parsed[0].mount_point)
            kept.append(line)
    return "\n".join(kept) + "\n"


# ----- BMC ------------------------------------------------------------------------------------


def _bmc_readings(fleet: Fleet, server_name: str) -> list[Reading]:
    bmc = fleet.server(server_name).bmc
    if bmc is None:
        return []
    try:
        username, password = access.bmc_login(bmc.credentials_block)
        if bmc.protocol == "ipmi":
            text = ipmi.read_sdr(bmc.address, bmc.port, username, password)
            readings = ipmi.sdr_readings(server_name, text, SITE)
        else:
            power, thermal = redfish.read_chassis(bmc.scheme, bmc.address, bmc.port, bmc.chassis, username, password)
            readings = redfish.chassis_readings(server_name, power, thermal, SITE)
    except HotspareError as error:
        return [
            Reading(
                server_name,
                "reachability:bmc",
                ComponentKind.reachability,
                ComponentState.unknown,
                f"BMC {bmc.address}:{bmc.port} ({bmc.protocol}) not read: {error}",
                SITE,
                {"bmc": f"{bmc.address}:{bmc.port}"},
            )
        ]
    if not readings:
        return [
            Reading(
                server_name,
                "reachability:bmc",
                ComponentKind.reachability,
                ComponentState.unknown,
                f"BMC {bmc.address}:{bmc.port} ({bmc.protocol}) reported no power supply, fan or temperature sensor",
                SITE,
            )
        ]
    return readings
