"""The live-data program (``planning/live_data.py``) against the bare tools, on one machine.

    python bench/live_data_bench.py [FOLDER] [--files 10000]

Builds a service tree of FILES small files in folders of 100 (plus a handful of planted hostile
items) in FOLDER (default: a scratch folder under /var/tmp), then times, each warm, best of three:

- bare ``find -xdev`` for the same kinds (devices, FIFOs, sockets, setuid/setgid, links) with
  ``-print0`` — what a find-only scan costs, without capabilities or link resolution;
- bare ``getcap -r`` — the capability scan alone (libcap2-bin);
- the product's program in report-only mode (walk, capabilities, link resolution; nothing
  changed), and its kept-aside listing of a backup folder of the same size against the tree.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hotspare.planning import live_data


def build(root: Path, files: int) -> Path:
    data = root / "srv/app/data"
    for index in range(files):
        folder = data / f"d{index // 100:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index:06d}").write_bytes(b"x" * 64)
    os.mknod(data / "disk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    os.mkfifo(data / "pipe")
    (data / "shadow").symlink_to("/etc/shadow")
    (data / "suid").write_bytes(b"x")
    os.chmod(data / "suid", 0o4755)
    return data


def best_of(argv: list[str], stdin: bytes | None = None, runs: int = 3) -> tuple[float, bytes]:
    timings, output = [], b""
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, input=stdin, capture_output=True, check=False)
        timings.append(time.perf_counter() - started)
        output = done.stdout
    return round(min(timings), 3), output


def main() -> None:
    arguments = sys.argv[1:]
    files = int(arguments[arguments.index("--files") + 1]) if "--files" in arguments else 10000
    folder = Path(arguments[0]) if arguments and not arguments[0].startswith("--") else None
    root = Path(tempfile.mkdtemp(prefix="live-data-bench-", dir=folder or "/var/tmp"))
    try:
        data = build(root, files)
        kept = root / "replaced" / str(data).lstrip("/")
        shutil.copytree(data, kept, symlinks=True, ignore=lambda _folder, names: [n for n in names if n in ("disk", "pipe")])
        results = {"files": files}
        results["find_xdev_s"], _ = best_of(
            [
                "find",
                str(data),
                "-xdev",
                "(",
                "-type",
                "b",
                "-o",
                "-type",
                "c",
                "-o",
                "-type",
                "p",
                "-o",
                "-type",
                "s",
                "-o",
                "-type",
                "l",
                "-o",
                "-perm",
                "/6000",
                ")",
                "-print0",
            ]
        )
        if shutil.which("getcap"):
            results["getcap_r_s"], _ = best_of(["getcap", "-r", str(data)])
        stdin = live_data.neutralise_stdin([(str(data), str(data))], [str(data)], [], act=False)
        results["program_scan_s"], output = best_of(live_data.neutralise_argv(), stdin)
        report = live_data.parse_report(output.decode())
        results["program_findings"] = len(report.findings)
        stdin = live_data.neutralise_stdin([], [str(data)], [], kept=[(str(kept), str(data))], act=False)
        results["program_kept_listing_s"], _ = best_of(live_data.neutralise_argv(), stdin)
        print(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
