"""After the test suite: list, and end by PID, every process the suite started that still runs.

A process belongs to the suite when its command line or environment (as at its exec) names one
of the markers given (the suite's HOTSPARE_HOME, pytest's temporary folder) or carries
``HOTSPARE_SUITE_RUN=<the run's id>``. This script, its parent shell and their ancestors are
spared. Each one found is printed, then sent SIGTERM and, if it stays, SIGKILL — the marker is
read again right before each signal, so a reused PID is never signalled. Exit 1 when any was
found (CI fails on it), 0 otherwise.

    python scripts/leftover_processes.py --run-id ID MARKER...
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

WAIT_SECONDS = 5.0


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def belongs(pid: int, markers: list[bytes], run_entry: bytes | None) -> bool:
    cmdline = _read(f"/proc/{pid}/cmdline")
    environ = _read(f"/proc/{pid}/environ")
    if run_entry is not None and run_entry in environ.split(b"\0"):
        return True
    return any(marker in cmdline or marker in environ for marker in markers)


def alive(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def ancestors(pid: int) -> set[int]:
    found = set()
    while pid > 1 and pid not in found:
        found.add(pid)
        stat = _read(f"/proc/{pid}/stat")
        if not stat:
            break
        pid = int(stat.rsplit(b")", 1)[1].split()[1])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", help="the value of HOTSPARE_SUITE_RUN the suite ran with")
    parser.add_argument("markers", nargs="+", help="paths only the suite's processes name")
    arguments = parser.parse_args()
    markers = [marker.encode() for marker in arguments.markers if marker]
    run_entry = f"HOTSPARE_SUITE_RUN={arguments.run_id}".encode() if arguments.run_id else None
    spared = ancestors(os.getpid())
    found = [
        pid
        for pid in sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit())
        if pid not in spared and alive(pid) and belongs(pid, markers, run_entry)
    ]
    for pid in found:
        command = _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
        print(f"left running after the tests: pid {pid}: {command[:200]}", file=sys.stderr)
    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        for pid in found:
            if alive(pid) and belongs(pid, markers, run_entry):
                try:
                    os.kill(pid, signal_number)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and any(alive(pid) for pid in found):
            time.sleep(0.1)
    if found:
        still = [pid for pid in found if alive(pid)]
        print(
            f"{len(found)} process(es) of the test suite were still running; ended them by PID"
            + (f" (still alive: {still})" if still else ""),
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
