"""Copy step and activation: btrfs snapshots against hard-link copies and bare ``rsync -a``.

Runs on one machine, local rsync (no SSH: the transfer itself is the same for every back-end;
this measures what each back-end adds on the mirror), in a btrfs folder given on the command
line (e.g. a loop-mounted scratch filesystem):

    python bench/snapshot_bench.py /mnt/scratch-btrfs [--files 10000] [--kib 100]

Per scenario (full, 1 % changed, nothing changed) it times: bare ``rsync -a`` into a plain
folder; the hard-link back-end (``rsync --link-dest`` into a new folder); the snapshot
back-end (``rsync`` into the working subvolume + read-only snapshots, the product's own
scripts). Then activation of a small and the big data set: local ``rsync --delete`` (the
hard-link back-end's way) against the snapshot-and-swap script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hotspare.planning import activation
from hotspare.planning import copy_backends as backends

DATA = "/srv/bench/data"


def timed(argv: list[str], env: dict | None = None) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return round(time.monotonic() - started, 3)


def make_source(root: Path, files: int, kib: int) -> Path:
    source = root / "production" / DATA.lstrip("/")
    source.mkdir(parents=True)
    for number in range(files):
        (source / f"f{number:05d}.bin").write_bytes(os.urandom(kib * 1024))
    return root / "production"


def change(source: Path, fraction: float) -> None:
    names = sorted((source / DATA.lstrip("/")).iterdir())
    for path in names[: int(len(names) * fraction)]:
        path.write_bytes(os.urandom(path.stat().st_size))


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def main(folder: str, files: int, kib: int) -> dict:
    root = Path(folder) / "snapshot-bench"
    if root.exists():
        subprocess.run(["sh", "-c", backends.REMOVE_SCRIPT, "sh", str(root / "svc" / "work")], check=False)
        for copy in (root / "svc" / "copies").glob("*") if (root / "svc" / "copies").exists() else []:
            subprocess.run(["sh", "-c", backends.REMOVE_SCRIPT, "sh", str(copy)], check=True)
        shutil.rmtree(root)
    root.mkdir()
    source = make_source(root, files, kib)
    work, copies = root / "svc" / "work", root / "svc" / "copies"
    copies.mkdir(parents=True)
    remove_env = {**os.environ, "REMOVE": backends.REMOVE_SCRIPT}
    rsync = ["rsync", "-aHAX", "--numeric-ids", "--relative", "--delete"]
    results = {"files": files, "bytes": files * kib * 1024, "copy": {}, "activation": {}}
    previous_link = None
    for number, (scenario, fraction) in enumerate((("full", None), ("1% changed", 0.01), ("nothing changed", 0.0))):
        if fraction:
            change(source, fraction)
        drop_caches()
        bare = timed(["rsync", "-a", f"{source}/./srv/", str(root / "bare") + "/"])
        drop_caches()
        link_copy = root / "links" / f"c{number}"
        link_copy.mkdir(parents=True)
        hard_links = timed(
            [*rsync, *([f"--link-dest={previous_link}"] if previous_link else []), f"{source}/./srv", str(link_copy) + "/"]
        )
        previous_link = link_copy
        drop_caches()
        started = time.monotonic()
        subprocess.run(["sh", "-c", backends.MAKE_WORK_SCRIPT, "sh", str(work), "", DATA], check=True)
        subprocess.run([*rsync, f"{source}/./srv", str(work / "tree") + "/"], check=True)
        subprocess.run(
            ["sh", "-c", backends.SNAPSHOT_SCRIPT, "sh", str(work), str(copies / f"c{number}"), DATA], check=True, env=remove_env
        )
        snapshot = round(time.monotonic() - started, 3)
        results["copy"][scenario] = {
            "bare_rsync_a": bare,
            "hard_links": hard_links,
            "btrfs_snapshot": snapshot,
            "snapshot_over_bare": round(snapshot / bare, 2),
            "hard_links_over_bare": round(hard_links / bare, 2),
        }
        print(scenario, results["copy"][scenario], flush=True)
    # activation: the newest copy made live; a small data set beside the big one
    small = copies / "small"
    subprocess.run(["btrfs", "-q", "subvolume", "create", str(small)], check=True)
    (small / "tree" / DATA.lstrip("/")).parent.mkdir(parents=True)
    subprocess.run(["btrfs", "-q", "subvolume", "create", str(small / "tree" / DATA.lstrip("/"))], check=True)
    for number in range(100):
        (small / "tree" / DATA.lstrip("/") / f"f{number}.bin").write_bytes(os.urandom(100 * 1024))
    for label, copy in (("10 MB / 100 files", small), (f"{files * kib // 1024} MB / {files} files", copies / "c2")):
        live = root / "live" / label.split()[0]
        live.mkdir(parents=True)
        drop_caches()
        copied = timed(["rsync", "-aHAX", "--numeric-ids", "--delete", f"{copy}/tree{DATA}/", str(live / "rsync") + "/"])
        drop_caches()
        swapped = timed(["sh", "-c", activation.CLONE_SWAP_SCRIPT, "sh", f"{copy}/tree{DATA}", str(live / "swap"), "c"])
        results["activation"][label] = {"rsync_copy": copied, "snapshot_swap": swapped}
        print(label, results["activation"][label], flush=True)
    return results


if __name__ == "__main__":
    arguments = sys.argv[1:]
    options = {"--files": 10000, "--kib": 100}
    for index, value in enumerate(arguments):
        if value in options:
            options[value] = int(arguments[index + 1])
    print(json.dumps(main(arguments[0], options["--files"], options["--kib"]), indent=2))
