"""The lab hosts' disks: btrfs on loop devices backed by sparse files, and real disk failures.

Production and mirror hosts keep their /srv on a btrfs RAID10 over four loop devices; a
standby host's /srv is a single-device btrfs (the mirror copies' snapshots need btrfs on
both). Storage and web hosts keep a plain folder. The filesystem is mounted on the host's
folder ``hosts/NAME/srv`` in the machine's root mount namespace *before* the host's sshd
starts, so the host's private mount namespace (which bind-mounts that folder over /srv)
sees it.

A disk failure is real: the member's backing file is truncated to nothing and the loop
device re-reads its size (``losetup --set-capacity``), so every read and write to that
member fails with EIO while the filesystem stays mounted read-write on the three others
(RAID10 tolerates one lost member). This kernel has no device-mapper, and btrfs cannot
lose a member of a mounted filesystem any other way: a busy loop device cannot be
detached. btrfs notices on its next write (the error counters of ``btrfs device stats``
grow). A repair is ``btrfs replace`` of that device id onto a fresh loop device, online.

Backing files live in ``<lab folder>/disks/<host>/``; teardown finds loop devices by that
path alone (``losetup --list``), so it works after a crash that lost state.json and never
touches loop devices of anyone else.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hotspare.lab.errors import LabError
from hotspare.lab.processes import run
from hotspare.lab.topology import HOSTS, HostSpec
from hotspare.planning.raid import parse_filesystem_show

log = logging.getLogger("hotspare.lab")

# Sparse: only written blocks take space. 4 x 2 GiB in RAID10 gives 4 GiB of /srv.
MEMBER_BYTES = 2 * 1024**3
# For benchmarks with large data sets only (bench/proportional_bench.py --disk-gib/--data-profile),
# read when the lab is built: each member's size in GiB, and the data profile of production's and
# the mirror's /srv (raid0 stores each byte once, half the machine's disk of raid10; metadata stays
# raid10). A raid0 lab loses data with a disk: `hotspare lab break HOST disk` is for the default layout.
DISK_GIB_VARIABLE = "HOTSPARE_LAB_DISK_GIB"
DATA_PROFILE_VARIABLE = "HOTSPARE_LAB_DATA_PROFILE"
RAID_MEMBERS = 4
MKFS_SECONDS = 60.0
REPLACE_SECONDS = 300.0


@dataclass(frozen=True)
class DiskPlan:
    """How one host's /srv is built: member count and btrfs profile."""

    members: int
    profile: str  # raid10 or single


def disk_plan(host: HostSpec) -> DiskPlan | None:
    """The host's /srv layout; None keeps a plain folder (storage, web)."""
    if host.role in ("production", "mirror"):
        return DiskPlan(RAID_MEMBERS, "raid10")
    if host.role == "standby":
        return DiskPlan(1, "single")
    return None


def disks_folder(directory: Path) -> Path:
    """Where every backing file of the lab in `directory` lives."""
    return Path(directory) / "disks"


def setup(directory: Path, host_root: Callable[[HostSpec], Path]) -> None:
    """Make, format and mount each host's /srv filesystem (the mount points must exist, empty)."""
    folder = disks_folder(directory)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)
    started = time.monotonic()
    hosts = [host for host in HOSTS if disk_plan(host) is not None]
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        for done in [pool.submit(_make_filesystem, directory, host, host_root(host) / "srv") for host in hosts]:
            done.result()
    log.info("disks: btrfs /srv on %d hosts in %.2f s", len(hosts), time.monotonic() - started)


def _make_filesystem(directory: Path, host: HostSpec, mount_point: Path) -> None:
    """One host's backing files, loop devices, mkfs.btrfs and mount."""
    plan = disk_plan(host)
    devices = [_attach(_new_backing_file(directory, host, devid)) for devid in range(1, plan.members + 1)]
    data = os.environ.get(DATA_PROFILE_VARIABLE) or plan.profile
    if data not in (plan.profile, "raid0"):
        raise LabError(f"{DATA_PROFILE_VARIABLE}={data!r}: use raid0 (benchmarks) or leave it unset ({plan.profile})")
    profile = ["-d", data, "-m", plan.profile] if plan.members > 1 else []
    # -K: no TRIM of the fresh sparse files (nothing to discard, saves time).
    run(
        ["mkfs.btrfs", "-q", "-f", "-K", "-L", host.name, *profile, *devices],
        f"formatting /srv of {host.name}",
        timeout=MKFS_SECONDS,
    )
    run(["btrfs", "device", "scan", *devices], f"registering disks of {host.name}")
    run(["mount", "-t", "btrfs", devices[0], str(mount_point)], f"mounting /srv of {host.name}")
    log.info("%s: /srv is btrfs %s on %s", host.name, plan.profile, " ".join(devices))


def teardown(directory: Path) -> list[str]:
    """Unmount every /srv filesystem of the lab and detach its loop devices; absent is fine."""
    done = []
    hosts_folder = (Path(directory) / "hosts").resolve()
    for mount_point in sorted(_mount_points_under(hosts_folder), reverse=True):
        result = run(["umount", mount_point], f"unmounting {mount_point}", check=False)
        if result.returncode != 0:
            # Still busy (a shell sitting in it): detach it lazily, it goes once released.
            run(["umount", "--lazy", mount_point], f"unmounting {mount_point} lazily")
        done.append(f"unmounted {mount_point}")
    # Labs started while ours was up copied our mounts into their hosts' private mount
    # namespaces (the machine's / is not shared, so our unmount does not reach them), which
    # keeps our loop devices busy: drop those copies too. They sit under our folder, which
    # no other lab's host ever uses.
    done += _unmount_copies_elsewhere(hosts_folder)
    for device, backing in loop_devices(directory).items():
        run(["btrfs", "device", "scan", "--forget", device], f"forgetting {device}", check=False)
        run(["losetup", "--detach", device], f"detaching {device}", check=False)
        done.append(f"detached {device} ({backing})")
    return done


def loop_devices(directory: Path) -> dict[str, str]:
    """Loop device -> backing file, for every loop device backed by a file of this lab."""
    prefix = str(disks_folder(directory).resolve()) + "/"
    listing = run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"], "listing loop devices").stdout
    devices = json.loads(listing or '{"loopdevices": []}').get("loopdevices", [])
    return {
        entry["name"]: (entry.get("back-file") or "").removesuffix(" (deleted)")
        for entry in devices
        if (entry.get("back-file") or "").startswith(prefix)
    }


def members(directory: Path, host: HostSpec, mount_point: Path) -> list[dict]:
    """The host's filesystem members: devid, device, backing file, and whether it is dead."""
    shown = run(["btrfs", "filesystem", "show", str(mount_point)], f"reading the disks of {host.name}").stdout
    backing = loop_devices(directory)
    result = []
    for device in parse_filesystem_show(shown)[0].devices:
        result.append(
            {
                "devid": device.devid,
                "device": device.path,
                "backing_file": backing.get(device.path or "", ""),
                "dead": device.path is None or _device_bytes(device.path) == 0,
            }
        )
    return result


def break_disk(directory: Path, host: HostSpec, mount_point: Path) -> str:
    """Kill one RAID member under the mounted filesystem; returns what was done."""
    plan = _require_raid(host)
    current = members(directory, host, mount_point)
    if any(member["dead"] for member in current):
        raise LabError(f"{host.name} already has a dead disk; repair it first with `hotspare lab repair {host.name} disk`")
    victim = next(member for member in current if member["devid"] == 2)  # the second disk
    os.truncate(victim["backing_file"], 0)
    run(["losetup", "--set-capacity", victim["device"]], f"failing {victim['device']}")
    # btrfs notices a dead member on its next write; make that happen now, as the next
    # commit (at most 30 s later) would.
    marker = mount_point / ".lab-disk-probe"
    marker.write_text(f"disk devid {victim['devid']} failed\n")
    run(["btrfs", "filesystem", "sync", str(mount_point)], f"syncing /srv of {host.name}")
    return (
        f"{host.name}: disk devid {victim['devid']} ({victim['device']}) is dead; /srv runs "
        f"degraded on the other {plan.members - 1}"
    )


def repair_disk(directory: Path, host: HostSpec, mount_point: Path) -> str:
    """Hot-replace every dead member with a new disk (`btrfs replace`), online."""
    _require_raid(host)
    dead = [member for member in members(directory, host, mount_point) if member["dead"]]
    if not dead:
        return f"{host.name}: no dead disk to replace"
    sentences = []
    for member in dead:
        new_device = _attach(_new_backing_file(directory, host, member["devid"]))
        # -r: read only from the other mirrors, the old disk answers nothing but errors.
        run(
            ["btrfs", "replace", "start", "-B", "-r", "-f", str(member["devid"]), new_device, str(mount_point)],
            f"replacing disk devid {member['devid']} of {host.name}",
            timeout=REPLACE_SECONDS,
        )
        run(["losetup", "--detach", member["device"]], f"detaching {member['device']}", check=False)
        Path(member["backing_file"]).unlink(missing_ok=True)
        (mount_point / ".lab-disk-probe").unlink(missing_ok=True)
        sentences.append(f"{host.name}: disk devid {member['devid']} replaced by {new_device}")
    return "; ".join(sentences)


def describe(directory: Path, host: HostSpec) -> dict | None:
    """The env entry for a host's disks (None for hosts with a plain /srv)."""
    plan = disk_plan(host)
    if plan is None:
        return None
    return {"profile": plan.profile, "members": plan.members, "backing_folder": str(disks_folder(directory) / host.name)}


def _require_raid(host: HostSpec) -> DiskPlan:
    plan = disk_plan(host)
    if plan is None or plan.members < 2:
        raise LabError(
            f"{host.name} has no RAID (its /srv is "
            f"{'a single disk' if plan else 'a plain folder'}); break a disk of a "
            f"production or mirror host"
        )
    return plan


def _new_backing_file(directory: Path, host: HostSpec, devid: int) -> Path:
    """A fresh sparse file for member `devid` (a replacement gets the next free name)."""
    folder = disks_folder(directory) / host.name
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    generation = 0
    while (path := folder / f"disk-{devid}.{generation}.img").exists():
        generation += 1
    with path.open("xb") as handle:
        handle.truncate(member_bytes())
    return path


def member_bytes() -> int:
    """A member's size: MEMBER_BYTES, or HOTSPARE_LAB_DISK_GIB GiB for a benchmark's large data."""
    value = os.environ.get(DISK_GIB_VARIABLE)
    if not value:
        return MEMBER_BYTES
    try:
        gib = float(value)
    except ValueError:
        gib = 0.0
    if not 1 <= gib <= 64:
        raise LabError(f"{DISK_GIB_VARIABLE}={value!r}: give a member size in GiB between 1 and 64, or leave it unset")
    return int(gib * 1024**3)


def _attach(path: Path) -> str:
    """A new loop device on `path`; returns its /dev path."""
    return run(["losetup", "--find", "--show", str(path)], f"attaching {path}").stdout.strip()


def _device_bytes(device: str) -> int:
    """Size of a block device as the kernel sees it now (0 after a failure)."""
    try:
        sectors = Path(f"/sys/class/block/{os.path.basename(device)}/size").read_text()
    except OSError:
        return 0
    return int(sectors) * 512


def _unmount_copies_elsewhere(folder: Path) -> list[str]:
    """Lazily unmount copies of our mounts held in other mount namespaces (one pid each)."""
    done = []
    own = os.stat("/proc/self/ns/mnt").st_ino
    seen = {own}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            namespace = os.stat(f"/proc/{entry}/ns/mnt").st_ino
            if namespace in seen:
                continue
            seen.add(namespace)
            points = _mount_points_under(folder, f"/proc/{entry}/mountinfo")
        except OSError:
            continue
        for point in sorted(points, reverse=True):
            result = run(["nsenter", "-t", entry, "-m", "umount", "--lazy", point], f"unmounting a copy of {point}", check=False)
            if result.returncode == 0:
                done.append(f"unmounted the copy of {point} in mount namespace of pid {entry}")
    return done


def _mount_points_under(folder: Path, mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points (root namespace) at or below `folder`, from /proc/self/mountinfo."""
    prefix = str(folder) + "/"
    points = []
    for line in Path(mountinfo).read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            points.append(point)
    return points
