"""RAID and disk space facts from command output: pure parsers and the readings they give.

Inputs are the texts a server prints (``btrfs filesystem show``, ``btrfs device stats``,
``btrfs replace status``, the ``/sys/fs/btrfs/<uuid>/devinfo/<devid>/missing`` flags,
``/proc/mdstat``, ``mdadm --detail``, ``df -P``, ``df -Pi``); outputs are
``hotspare.planning.readings.Reading`` lists whose evidence sentences quote what was seen.
No network, no clock: the task that ran the commands passes their output in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hotspare.planning.readings import ComponentKind, ComponentState, Reading

# ----- btrfs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BtrfsDevice:
    """One `devid` line of `btrfs filesystem show`; path None when the device is missing."""

    devid: int
    size: str
    used: str
    path: str | None
    missing: bool = False


@dataclass(frozen=True)
class BtrfsFilesystem:
    """One filesystem of `btrfs filesystem show`."""

    label: str | None
    uuid: str
    total_devices: int
    devices: tuple[BtrfsDevice, ...]
    some_missing: bool = False


_HEADER = re.compile(r"^Label:\s+(?:'(?P<label>.*)'|none)\s+uuid:\s+(?P<uuid>[0-9a-f-]+)")
_TOTAL = re.compile(r"^\s*Total devices\s+(?P<total>\d+)")
_DEVID = re.compile(
    r"^\s*devid\s+(?P<devid>\d+)\s+size\s+(?P<size>\S+)\s+used\s+(?P<used>\S+)"
    r"\s+path\s+(?P<path>.*?)\s*$"
)


def parse_filesystem_show(text: str) -> list[BtrfsFilesystem]:
    """Filesystems in `btrfs filesystem show` output (one per `Label:` block)."""
    blocks: list[dict] = []
    for line in text.splitlines():
        header = _HEADER.match(line.strip())
        if header:
            blocks.append({"label": header["label"], "uuid": header["uuid"], "total": 0, "devices": [], "some_missing": False})
            continue
        if not blocks:
            continue
        current = blocks[-1]
        if total := _TOTAL.match(line):
            current["total"] = int(total["total"])
        elif devid := _DEVID.match(line):
            path = devid["path"]
            missing = path.endswith(" MISSING") or path in ("<missing disk>", "<missing>")
            path = path.removesuffix(" MISSING")
            current["devices"].append(
                BtrfsDevice(
                    int(devid["devid"]), devid["size"], devid["used"], None if path.startswith("<missing") else path, missing
                )
            )
        elif "Some devices missing" in line:
            current["some_missing"] = True
    return [
        BtrfsFilesystem(block["label"], block["uuid"], block["total"], tuple(block["devices"]), block["some_missing"])
        for block in blocks
    ]


_STATS_LINE = re.compile(r"^\[(?P<device>[^\]]+)\]\.(?P<counter>\w+)\s+(?P<value>\d+)\s*$")
ERROR_COUNTERS = ("write_io_errs", "read_io_errs", "flush_io_errs", "corruption_errs", "generation_errs")
# An I/O error means the disk failed a request; checksum or generation mismatches mean it
# returned wrong data (redundancy repaired it): worth a replacement, not yet a failure.
FAILING_COUNTERS = ("write_io_errs", "read_io_errs", "flush_io_errs")


def parse_device_stats(text: str) -> dict[str, dict[str, int]]:
    """`btrfs device stats MOUNT` -> {device path (or "devid:N"): {counter: value}}."""
    stats: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        match = _STATS_LINE.match(line.strip())
        if match:
            stats.setdefault(match["device"], {})[match["counter"]] = int(match["value"])
    return stats


def parse_missing_flags(text: str) -> dict[int, bool]:
    """Lines `/sys/fs/btrfs/<uuid>/devinfo/<devid>/missing:<0|1>` (``grep -r . DIR``) ->
    {devid: missing}."""
    flags = {}
    for line in text.splitlines():
        match = re.search(r"/devinfo/(\d+)/missing:(\d)\s*$", line)
        if match:
            flags[int(match[1])] = match[2] == "1"
    return flags


@dataclass(frozen=True)
class ReplaceStatus:
    """`btrfs replace status -1 MOUNT`: whether a replace runs and how far it is."""

    running: bool
    percent: float | None
    text: str


def parse_replace_status(text: str) -> ReplaceStatus:
    line = text.strip().splitlines()[-1].strip() if text.strip() else "Never started"
    done = re.search(r"([\d.]+)% done", line)
    return ReplaceStatus(done is not None, float(done[1]) if done else None, line)


def btrfs_readings(
    subject: str,
    mount_point: str,
    show_text: str,
    stats_text: str,
    missing_text: str = "",
    replace_text: str = "",
    site: str = "control",
) -> list[Reading]:
    """The array's reading and one per member disk, from the btrfs outputs of one mount."""
    filesystems = parse_filesystem_show(show_text)
    if not filesystems:
        return [
            Reading(
                subject,
                f"raid:{mount_point}",
                ComponentKind.raid,
                ComponentState.unknown,
                f"`btrfs filesystem show {mount_point}` printed no filesystem",
                site,
            )
        ]
    filesystem = filesystems[0]
    stats = parse_device_stats(stats_text)
    missing_flags = parse_missing_flags(missing_text)
    replace = parse_replace_status(replace_text)
    disks = []
    for device in filesystem.devices:
        counters = stats.get(device.path or "", stats.get(f"devid:{device.devid}", {}))
        missing = device.missing or device.path is None or missing_flags.get(device.devid, False)
        errors = {name: value for name, value in counters.items() if value}
        where = f"devid {device.devid} ({device.path or 'no device'})"
        if missing:
            state, evidence = ComponentState.failed, f"{where} is missing from the filesystem"
        elif any(name in FAILING_COUNTERS for name in errors):
            state = ComponentState.failed
            evidence = f"{where} fails requests: {_counters(errors)}"
        elif errors:
            state = ComponentState.degraded
            evidence = f"{where} returned damaged data (repaired from the mirror): {_counters(errors)}"
        else:
            state, evidence = ComponentState.ok, f"{where}: no errors, {device.used} of {device.size} used"
        disks.append(
            Reading(
                subject,
                f"disk:devid {device.devid}",
                ComponentKind.disk,
                state,
                evidence,
                site,
                _part(device, mount_point, filesystem),
            )
        )
    missing_count = filesystem.total_devices - len([d for d in filesystem.devices if d.path])
    bad = [reading for reading in disks if reading.state is not ComponentState.ok]
    summary = (
        f"btrfs {filesystem.label or filesystem.uuid} on {mount_point}: "
        f"{len(filesystem.devices)} of {filesystem.total_devices} devices"
    )
    if replace.running:
        state = ComponentState.degraded
        evidence = f"{summary}; replacing a disk, {replace.percent:.1f}% done ({replace.text})"
    elif filesystem.some_missing or missing_count > 0 or any(reading.state is ComponentState.failed for reading in bad):
        names = ", ".join(reading.component.removeprefix("disk:") for reading in bad) or "a device"
        state = ComponentState.degraded
        evidence = f"{summary}; running without full redundancy: {names} failed or missing"
    elif bad:
        state = ComponentState.degraded
        evidence = f"{summary}; {len(bad)} disk(s) reported errors"
    else:
        state, evidence = ComponentState.ok, f"{summary}, all present, no errors"
    return [Reading(subject, f"raid:{mount_point}", ComponentKind.raid, state, evidence, site, {"uuid": filesystem.uuid})] + disks


def _counters(errors: dict[str, int]) -> str:
    return ", ".join(f"{name} {value}" for name, value in errors.items())


def _part(device: BtrfsDevice, mount_point: str, filesystem: BtrfsFilesystem) -> dict[str, str]:
    part = {"devid": str(device.devid), "filesystem": filesystem.uuid, "mount": mount_point, "size": device.size}
    if device.path:
        part["device"] = device.path
    return part


# ----- md RAID ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MdArray:
    """One array of /proc/mdstat."""

    name: str
    active: bool
    level: str
    members: tuple[tuple[str, bool], ...]  # (device, marked (F)aulty)
    wanted: int
    working: int
    status: str  # e.g. UU_U
    progress: str | None = None  # "recovery = 27.4% ... finish=112.3min"
    percent: float | None = None


_MD_HEAD = re.compile(r"^(?P<name>md\S*)\s*:\s*(?P<state>active|inactive)(?:\s+\(\S+\))?\s*(?P<rest>.*)$")
_MD_COUNT = re.compile(r"\[(?P<wanted>\d+)/(?P<working>\d+)\]\s+\[(?P<status>[U_]+)\]")
_MD_PROGRESS = re.compile(r"(?P<action>recovery|resync|reshape|check|repair)\s*=\s*(?P<percent>[\d.]+)%")


def parse_mdstat(text: str) -> list[MdArray]:
    """Arrays of /proc/mdstat with their members, [n/m] counts and rebuild progress."""
    arrays: list[dict] = []
    for line in text.splitlines():
        head = _MD_HEAD.match(line)
        if head:
            words = head["rest"].split()
            level = words[0] if words and not words[0].endswith("]") and "[" not in words[0] else ""
            members = tuple((re.sub(r"\[\d+\].*", "", word), "(F)" in word) for word in words[1 if level else 0 :] if "[" in word)
            arrays.append(
                {
                    "name": head["name"],
                    "active": head["state"] == "active",
                    "level": level,
                    "members": members,
                    "wanted": len(members),
                    "working": len([m for m in members if not m[1]]),
                    "status": "",
                    "progress": None,
                    "percent": None,
                }
            )
            continue
        if not arrays:
            continue
        if count := _MD_COUNT.search(line):
            arrays[-1].update(wanted=int(count["wanted"]), working=int(count["working"]), status=count["status"])
        elif progress := _MD_PROGRESS.search(line):
            arrays[-1].update(progress=line.strip().split("]", 1)[-1].strip(), percent=float(progress["percent"]))
    return [
        MdArray(
            a["name"], a["active"], a["level"], a["members"], a["wanted"], a["working"], a["status"], a["progress"], a["percent"]
        )
        for a in arrays
    ]


@dataclass(frozen=True)
class MdDetail:
    """`mdadm --detail /dev/mdX`: the State line, counts and each member's role."""

    device: str
    state: str
    fields: dict[str, str] = field(default_factory=dict)
    members: tuple[tuple[str, str], ...] = ()  # (device or "-", state words)


def parse_mdadm_detail(text: str) -> MdDetail:
    lines = text.splitlines()
    device = lines[0].strip().rstrip(":") if lines else ""
    fields: dict[str, str] = {}
    members = []
    in_table = False
    for line in lines[1:]:
        if re.match(r"^\s*Number\s+Major\s+Minor\s+RaidDevice\s+State", line):
            in_table = True
            continue
        if in_table:
            words = line.split()
            if len(words) >= 5:
                path = words[-1] if words[-1].startswith("/") else "-"
                state_words = words[4:-1] if path != "-" else words[4:]
                members.append((path, " ".join(state_words)))
            continue
        if ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return MdDetail(device, fields.get("State", ""), fields, tuple(members))


def md_readings(subject: str, mdstat_text: str, details: dict[str, str] | None = None, site: str = "control") -> list[Reading]:
    """One raid reading per md array and a disk reading per faulty or removed member."""
    readings = []
    for array in parse_mdstat(mdstat_text):
        detail = parse_mdadm_detail(details[array.name]) if details and array.name in details else None
        summary = f"/dev/{array.name} ({array.level or 'unknown level'}) [{array.wanted}/{array.working}] [{array.status}]"
        if detail is not None:
            summary += f", mdadm state: {detail.state}"
        if not array.active:
            state, evidence = ComponentState.failed, f"{summary}: array is inactive"
        elif array.working < array.wanted or "_" in array.status:
            state = ComponentState.degraded
            evidence = f"{summary}: {array.wanted - array.working} member(s) missing"
            if array.progress:
                evidence += f"; rebuilding: {array.progress}"
        elif array.progress:
            state, evidence = ComponentState.ok, f"{summary}: {array.progress}"
        else:
            state, evidence = ComponentState.ok, f"{summary}: all members in sync"
        readings.append(
            Reading(
                subject, f"raid:/dev/{array.name}", ComponentKind.raid, state, evidence, site, {"array": f"/dev/{array.name}"}
            )
        )
        for member, faulty in array.members:
            if faulty:
                readings.append(
                    Reading(
                        subject,
                        f"disk:{member}",
                        ComponentKind.disk,
                        ComponentState.failed,
                        f"/dev/{member} is marked faulty (F) in /dev/{array.name}",
                        site,
                        {"device": f"/dev/{member}", "array": f"/dev/{array.name}"},
                    )
                )
        for member, member_state in detail.members if detail else ():
            if member != "-" and "faulty" not in member_state and "rebuilding" in member_state:
                readings.append(
                    Reading(
                        subject,
                        f"disk:{member.removeprefix('/dev/')}",
                        ComponentKind.disk,
                        ComponentState.degraded,
                        f"{member} is being rebuilt into /dev/{array.name} "
                        f"({detail.fields.get('Rebuild Status', 'progress unknown')})",
                        site,
                        {"device": member, "array": f"/dev/{array.name}"},
                    )
                )
    return readings


# ----- free space ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DfLine:
    """One line of `df -P` (1024-blocks) or `df -Pi` (inodes); None when not applicable."""

    filesystem: str
    total: int | None
    used: int | None
    available: int | None
    mount_point: str

    @property
    def percent_used(self) -> float | None:
        if not self.total or self.used is None or self.available is None:
            return None
        return 100.0 * self.used / (self.used + self.available)


def parse_df(text: str) -> list[DfLine]:
    """Lines of POSIX `df -P` / `df -Pi` output (a mount point may contain spaces)."""
    result = []
    for line in text.splitlines()[1:]:
        words = line.split()
        if len(words) < 6:
            continue
        numbers = [None if word == "-" else int(word) for word in words[1:4]]
        result.append(DfLine(words[0], numbers[0], numbers[1], numbers[2], " ".join(words[5:])))
    return result


SPACE_DEGRADED_PERCENT = 85.0
SPACE_FAILED_PERCENT = 95.0


def space_readings(
    subject: str,
    df_text: str,
    df_inodes_text: str = "",
    site: str = "control",
    degraded_percent: float = SPACE_DEGRADED_PERCENT,
    failed_percent: float = SPACE_FAILED_PERCENT,
) -> list[Reading]:
    """One space reading per mount point: the worse of block and inode use."""
    inodes = {line.mount_point: line for line in parse_df(df_inodes_text)}
    readings = []
    for line in parse_df(df_text):
        percent = line.percent_used
        parts = [
            f"{percent:.0f}% of {line.total // 1024} MiB used, {line.available // 1024} MiB free"
            if percent is not None
            else "size unknown"
        ]
        worst_percent = percent or 0.0
        inode_line = inodes.get(line.mount_point)
        if inode_line is not None and inode_line.percent_used is not None:
            parts.append(f"inodes {inode_line.percent_used:.0f}% used ({inode_line.available} free)")
            worst_percent = max(worst_percent, inode_line.percent_used)
        elif inode_line is not None:
            parts.append("no inode limit")
        if percent is None:
            state = ComponentState.unknown
        elif worst_percent >= failed_percent:
            state = ComponentState.failed
        elif worst_percent >= degraded_percent:
            state = ComponentState.degraded
        else:
            state = ComponentState.ok
        readings.append(
            Reading(
                subject,
                f"space:{line.mount_point}",
                ComponentKind.space,
                state,
                f"{line.mount_point} ({line.filesystem}): " + "; ".join(parts),
                site,
                {"mount": line.mount_point},
            )
        )
    return readings
