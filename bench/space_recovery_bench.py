"""What lifting a service's quota limit costs the metadata steps of a copy: the copy's read-only
snapshot and a pruned copy's removal, bare against the same commands inside
``space_recovery.LIFTED_LIMIT_SCRIPT`` (read the limit, lift it, run, set it again).

Runs on one machine, on a loop-mounted scratch btrfs it makes in FOLDER (root needed; unmounted and
detached at the end), with simple quotas turned on by the product's own quota step and a working
subvolume of N files in the service's group. Each round makes a read-only snapshot of the working
subvolume and removes it (``REMOVE_SCRIPT``), once bare and once lifted, in alternating order:

    python bench/space_recovery_bench.py /tmp/space-recovery-bench [--files 2000] [--rounds 15]

Prints the median milliseconds of each, their ratio, and the load average.
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

from hotspare.planning import copy_backends, space
from hotspare.planning import space_recovery as recovery

GROUP = space.qgroup_id("bench")


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    run(*argv)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    options = parser.parse_args()
    options.folder.mkdir(parents=True, exist_ok=True)
    image, mount = options.folder / "disk.img", options.folder / "mnt"
    with open(image, "wb") as handle:
        handle.truncate(2 * 2**30)
    run("mkfs.btrfs", "-q", "-f", str(image))
    device = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True, text=True).stdout.strip()
    mount.mkdir(exist_ok=True)
    run("mount", device, str(mount))
    try:
        root = mount / "hotspare" / "bench"
        root.mkdir(parents=True)
        run(*space.quota_argv(str(root), "bench", 2**30))  # simple quotas, the group, its limit
        work = root / "work"
        run("btrfs", "-q", "subvolume", "create", "-i", GROUP, str(work))
        for number in range(options.files):
            (work / f"file-{number}").write_bytes(os.urandom(4096))
        run("btrfs", "filesystem", "sync", str(mount))
        times: dict[str, list[float]] = {"bare": [], "lifted": []}
        for round_number in range(options.rounds):
            for mode in ("bare", "lifted") if round_number % 2 == 0 else ("lifted", "bare"):
                copy = root / f"copy-{mode}-{round_number}"
                steps = [
                    ["btrfs", "-q", "subvolume", "snapshot", "-r", "-i", GROUP, str(work), str(copy)],
                    ["sh", "-c", copy_backends.REMOVE_SCRIPT, "sh", str(copy)],
                ]
                if mode == "lifted":
                    steps = [["sh", "-c", recovery.LIFTED_LIMIT_SCRIPT, "sh", str(root), GROUP, *step] for step in steps]
                times[mode].append(sum(timed(step) for step in steps))
        bare, lifted = statistics.median(times["bare"]), statistics.median(times["lifted"])
        print(f"{options.files} files, {options.rounds} rounds, snapshot -r + removal per round")
        print(f"bare    {bare * 1000:.1f} ms (median; {min(times['bare']) * 1000:.1f}-{max(times['bare']) * 1000:.1f})")
        print(f"lifted  {lifted * 1000:.1f} ms (median; {min(times['lifted']) * 1000:.1f}-{max(times['lifted']) * 1000:.1f})")
        print(f"ratio   {lifted / bare:.2f}x, +{(lifted - bare) * 1000:.1f} ms per copy (one snapshot and one removal)")
        print("load average", " ".join(f"{value:.2f}" for value in os.getloadavg()))
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        subprocess.run(["losetup", "-d", device], check=False)
        image.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
