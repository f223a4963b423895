"""What simple quotas cost a received snapshot stream: ``btrfs receive`` into a service's received
area with no quotas, under full quota accounting (the area in the service's level-1 group, as the
rsync back-end's subvolumes are), and under simple quotas (the product's own quota step, so every
received subvolume joins the group at creation).

Runs on one machine, on three loop-mounted scratch filesystems it makes in FOLDER (root needed;
each is unmounted and detached at the end). One stream (``btrfs send`` of N MiB in 100 files) is
received by each filesystem in turn, interleaved, ``--rounds`` times, each followed by a
``btrfs filesystem sync``; the receive into the no-quota filesystem is the bare tool:

    python bench/squota_bench.py /tmp/squota-bench [--mib 200] [--rounds 5]

Prints the median seconds per mode, the ratio to no quotas, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hotspare.planning import space

MODES = ("none", "qgroup", "squota")
GROUP = space.qgroup_id("bench")


def run(*argv: str, stdin=None) -> None:
    subprocess.run(argv, check=True, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_filesystem(folder: Path, name: str) -> tuple[str, Path]:
    image, mount = folder / f"{name}.img", folder / name
    with open(image, "wb") as handle:
        handle.truncate(3 * 2**30)
    run("mkfs.btrfs", "-q", "-f", str(image))
    device = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True).stdout.strip()
    mount.mkdir(exist_ok=True)
    run("mount", device, str(mount))
    return device, mount


def prepare_area(mode: str, mount: Path) -> Path:
    area = mount / "hotspare" / "bench" / "received"
    area.parent.mkdir(parents=True)
    if mode == "none":
        run("btrfs", "-q", "subvolume", "create", str(area))
    elif mode == "qgroup":
        run("btrfs", "quota", "enable", str(mount))
        run("btrfs", "qgroup", "create", GROUP, str(mount))
        run("btrfs", "-q", "subvolume", "create", "-i", GROUP, str(area))
        run("btrfs", "qgroup", "limit", str(2 * 2**30), GROUP, str(mount))
    else:  # the product's quota step: simple quotas on, the group, the area in it, the limit
        run(*space.quota_argv(str(area.parent), "bench", 2 * 2**30, str(area)))
    return area


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    options.folder.mkdir(parents=True, exist_ok=True)
    mounted: list[tuple[str, Path]] = []
    try:
        filesystems = {}
        for mode in MODES:
            mounted.append(make_filesystem(options.folder, mode))
            filesystems[mode] = (mounted[-1][1], prepare_area(mode, mounted[-1][1]))
        source = filesystems["none"][0] / "source"
        run("btrfs", "-q", "subvolume", "create", str(source))
        for number in range(100):
            (source / f"file-{number}.bin").write_bytes(os.urandom(options.mib * 2**20 // 100))
        run("btrfs", "-q", "subvolume", "snapshot", "-r", str(source), str(source) + "@1")
        stream = options.folder / "stream"
        with open(stream, "wb") as handle:
            subprocess.run(["btrfs", "send", "-q", str(source) + "@1"], check=True, stdout=handle)
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for round_number in range(options.rounds):
            order = MODES if round_number % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                mount, area = filesystems[mode]
                with open(stream, "rb") as handle:
                    started = time.monotonic()
                    run("btrfs", "receive", "-q", str(area), stdin=handle)
                    run("btrfs", "filesystem", "sync", str(mount))
                    times[mode].append(time.monotonic() - started)
                run("btrfs", "-q", "subvolume", "delete", str(area / "source@1"))
                run("btrfs", "subvolume", "sync", str(mount))
        bare = statistics.median(times["none"])
        print(f"receive of {options.mib} MiB in 100 files, {options.rounds} rounds interleaved (median seconds)")
        for mode in MODES:
            median = statistics.median(times[mode])
            print(f"  {mode:7s} {median:6.2f} s  x{median / bare:4.2f}  (all: {', '.join(f'{t:.2f}' for t in times[mode])})")
        print("load average:", " ".join(Path("/proc/loadavg").read_text().split()[:3]))
    finally:
        for device, mount in reversed(mounted):
            subprocess.run(["umount", str(mount)], check=False)
            subprocess.run(["losetup", "-d", device], check=False)


if __name__ == "__main__":
    main()
