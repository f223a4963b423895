"""A lab host's power, as its simulated BMC switches it (standard library only, run as a script).

A lab host is a network namespace with its own sshd and whatever the host started (the app,
rsync, restic). "Power off" makes it what a powered-off server is to the rest of the fleet:
its traffic is dropped (the same two /25 blackholes as ``lab fail``) and every process in its
namespace is ended, except the lab's own sshd listener (the host's "firmware": unreachable
while the power is off, answering again at power on). The app is not restarted at power on:
a fenced server comes back with its app stopped, as a server whose app is not started at boot.

The state lives in one file, so every reader agrees: ``1`` on, ``0`` off (absent: on).

Called by OpenIPMI ``ipmi_sim`` as its ``chassis_control`` program (it appends ``get power``
or ``set power "0"``), by the lab's Redfish BMC on ``ComputerSystem.Reset``, and by ``lab heal``:

    power_switch.py STATE NETNS SSHD_PIDFILE HALF1 HALF2 get power
    power_switch.py STATE NETNS SSHD_PIDFILE HALF1 HALF2 set power 0|1

Kept free of hotspare imports: ipmi_sim runs it for every power query, so it must start fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def read_state(state_file: Path) -> int:
    try:
        return 0 if state_file.read_text().strip() == "0" else 1
    except OSError:
        return 1


def _netns_identity(netns: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(f"/run/netns/{netns}")
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _pid_identity(pid: int) -> tuple[int, int] | None:
    try:
        stat = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _sshd_listener(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def end_processes(netns: str, keep: int | None) -> int:
    """SIGKILL every process in the namespace but ``keep``; membership is re-checked per pid."""
    identity = _netns_identity(netns)
    if identity is None:
        return 0
    ended = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (keep, os.getpid()):
            continue
        pid = int(entry)
        if _pid_identity(pid) != identity:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            ended += 1
        except ProcessLookupError:
            pass
    return ended


def _routes(netns: str, verb: str, halves: list[str]) -> None:
    for half in halves:
        subprocess.run(
            ["ip", "-n", netns, "route", verb, "blackhole", half],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )


def set_power(state_file: Path, netns: str, sshd_pidfile: Path, halves: list[str], on: bool) -> None:
    if on:
        _routes(netns, "del", halves)
        state_file.write_text("1\n")
        return
    state_file.write_text("0\n")  # first: a reader during the switch already sees "off"
    _routes(netns, "replace", halves)
    end_processes(netns, _sshd_listener(sshd_pidfile))


def main(argv: list[str]) -> int:
    if len(argv) < 7:
        print("usage: power_switch.py STATE NETNS SSHD_PIDFILE HALF1 HALF2 get power | set power 0|1", file=sys.stderr)
        return 2
    state_file, netns, sshd_pidfile = Path(argv[0]), argv[1], Path(argv[2])
    halves, action, names_and_values = argv[3:5], argv[5], argv[6:]
    if action == "get":
        print(f"power:{read_state(state_file)}")
        return 0
    if action == "set" and len(names_and_values) >= 2 and names_and_values[0] == "power":
        value = names_and_values[1].strip('"')
        if value not in ("0", "1"):
            print(f"power must be 0 or 1, not {value!r}", file=sys.stderr)
            return 2
        set_power(state_file, netns, sshd_pidfile, halves, on=value == "1")
        return 0
    print(f"unsupported request: {' '.join(argv[5:])}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
