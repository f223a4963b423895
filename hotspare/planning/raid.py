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
_DEVID = re.compile(r"^\s*devid\s+(?P<devid>\d+)\s+size\s+(?P<size>\S+)\s+used\s+(?P<used>\S+)"
                    r"\s+path\s+(?P<path>.*?)\s*$")


def parse_filesystem_show(text: str) -> list[BtrfsFilesystem]:
    """Filesystems in `btrfs filesystem show` output (one per `Label:` block)."""
    blocks: list[dict] = []
    for line in text.splitlines():
        header = _HEADER.match(line.strip())
        if header:
            blocks.append({"label": header["label"], "uuid": header["uuid"], "total": 0,
                           "devices": [], "some_missing": False})
            continue
        if not blocks:
            continue
        current = blocks[-1]
        if (total := _TOTAL.match(line)):
            current["total"] = int(total["total"])
        elif (devid := _DEVID.match(line)):
            path = devid["path"]
            missing = path.endswith(" MISSING") or path in ("<missing disk>", "<missing>")
            path = path.removesuffix(" MISSING")
            current["devices"].append(BtrfsDevice(
                int(devid["devid"]), devid["size"], devid["used"],
                None if path.startswith("<missing") else path, missing))
        elif "Some devices missing" in line:
            current["some_missing"] = True
    return [BtrfsFilesystem(block["label"], block["uuid"], block["total"],
                            tuple(block["devices"]), block["some_missing"]) for block in blocks]
