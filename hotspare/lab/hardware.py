"""`lab break HOST PART` / `lab repair HOST PART`: real hardware faults on a lab host.

``disk`` kills (and hot-replaces) a member of the host's btrfs RAID10 (``disks.py``); ``psu``,
``fan`` and ``temp`` change what the host's BMC reports (``bmc.py``). Each returns the
sentence it prints.
"""

from __future__ import annotations

from hotspare.lab import bmc, disks
from hotspare.lab.errors import LabError
from hotspare.lab.topology import host_by_name

PARTS = ("disk",) + bmc.PARTS


def break_part(lab, host_name: str, part: str) -> str:
    """Make one part of a lab host fail (see module docstring)."""
    return _change(lab, host_name, part, broken=True)


def repair_part(lab, host_name: str, part: str) -> str:
    """Undo `break_part`: replace the dead disk, or make the BMC report the part healthy."""
    return _change(lab, host_name, part, broken=False)


def _change(lab, host_name: str, part: str, broken: bool) -> str:
    host = host_by_name(host_name)
    if part not in PARTS:
        raise LabError(f"unknown part {part!r}; use one of: {', '.join(PARTS)}")
    with lab._locked():
        lab._require_up()
        if part == "disk":
            mount_point = lab.host_root(host) / "srv"
            if broken:
                return disks.break_disk(lab.directory, host, mount_point)
            return disks.repair_disk(lab.directory, host, mount_point)
        return bmc.set_part(lab.directory, lab.layout, host, part, broken)
