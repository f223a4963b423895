"""Running commands and daemons, and stopping daemons by pid only.

The lab never kills by name: a daemon is identified by its pid and the command line it was
started with (checked in /proc right before each signal), or by living in a network
namespace the lab created.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hotspare.lab.errors import LabError

log = logging.getLogger("hotspare.lab")

COMMAND_TIMEOUT_SECONDS = 60.0
STOP_WAIT_SECONDS = 5.0


def run(argv: list[str], what: str, *, input_text: str | None = None,
        timeout: float = COMMAND_TIMEOUT_SECONDS, check: bool = True) -> subprocess.CompletedProcess:
    """Run argv (never through a shell) with a timeout; on failure raise naming `what`."""
    try:
        result = subprocess.run(argv, input=input_text, capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired as error:
        raise LabError(f"{what}: {argv[0]} did not finish within {timeout:.0f} s") from error
    except FileNotFoundError as error:
        raise LabError(f"{what}: {argv[0]} is not installed") from error
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise LabError(f"{what}: `{' '.join(argv)}` exited {result.returncode}: {detail}")
    return result


@dataclass(frozen=True)
class Daemon:
    """A started daemon as recorded in state.json: enough to find and stop it later."""

    name: str
    pid: int
    cmdline: tuple[str, ...]
    log: str

    def to_json(self) -> dict:
        return {"name": self.name, "pid": self.pid, "cmdline": list(self.cmdline), "log": self.log}

    @classmethod
    def from_json(cls, data: dict) -> "Daemon":
        return cls(data["name"], int(data["pid"]), tuple(data["cmdline"]), data["log"])


def start_daemon(name: str, argv: list[str], expected_cmdline: list[str], log_path: Path
                 ) -> tuple[Daemon, subprocess.Popen]:
    """Start argv detached from our session (it outlives the caller), output to log_path.

    `expected_cmdline` is what /proc/PID/cmdline shows once every exec in argv happened
    (e.g. `ip netns exec ... unshare ... sh -c 'exec sshd'` ends as sshd under the same pid).
    """
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   close_fds=True)
    log.info("started %s (pid %d), log %s", name, process.pid, log_path)
    return Daemon(name, process.pid, tuple(expected_cmdline), str(log_path)), process


def read_cmdline(pid: int) -> tuple[str, ...] | None:
    """The pid's command line, or None if it is gone or a zombie (empty cmdline)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0")[:-1])


def is_gone(pid: int) -> bool:
    """True when pid no longer runs; a zombie counts as gone (init reaps lazily here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def runs_command(pid: int, cmdline: tuple[str, ...]) -> bool:
    """True when pid's command line shows `cmdline`.

    Contained rather than equal: sshd rewrites its title to
    'sshd: /usr/sbin/sshd -D -e -f CONFIG [listener] 0 of 100-200 startups'. The config
    path in it is unique to one lab host, so the check stays specific.
    """
    actual = read_cmdline(pid)
    return actual is not None and " ".join(cmdline) in " ".join(actual)


def is_running(daemon: Daemon) -> bool:
    """True when the daemon's pid still runs the command line it was started with."""
    return runs_command(daemon.pid, daemon.cmdline) and not is_gone(daemon.pid)


def stop_pid(pid: int, description: str, still_ours, popen: subprocess.Popen | None = None) -> str:
    """SIGTERM then SIGKILL one pid, each followed by a bounded wait until it is gone.

    `still_ours()` is re-checked before every signal so a pid reused by some other program
    is never signalled. Returns a sentence saying what happened.
    """
    for signal_number in (signal.SIGTERM, signal.SIGKILL):
        if is_gone(pid) or not still_ours():
            _reap(popen)
            return f"{description} (pid {pid}) is not running"
        try:
            os.kill(pid, signal_number)
        except ProcessLookupError:
            return f"{description} (pid {pid}) exited"
        if _wait_gone(pid, popen, STOP_WAIT_SECONDS):
            return f"stopped {description} (pid {pid}) with {signal.Signals(signal_number).name}"
    raise LabError(f"{description} (pid {pid}) survived SIGKILL for {STOP_WAIT_SECONDS:.0f} s")


def stop_daemon(daemon: Daemon, popen: subprocess.Popen | None = None) -> str:
    """Stop a recorded daemon if its pid still runs the recorded command line."""
    return stop_pid(daemon.pid, daemon.name, lambda: runs_command(daemon.pid, daemon.cmdline),
                    popen)


def _wait_gone(pid: int, popen: subprocess.Popen | None, seconds: float) -> bool:
    """Poll until pid is gone or a zombie, reaping it if it is our child."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _reap(popen)
        if is_gone(pid):
            _reap(popen)
            return True
        time.sleep(0.02)
    return False


def _reap(popen: subprocess.Popen | None) -> None:
    """Collect our own child's exit status so it does not stay a zombie."""
    if popen is not None:
        popen.poll()


def netns_inode(netns: str) -> tuple[int, int] | None:
    """(device, inode) identifying a named network namespace, or None if it does not exist."""
    try:
        stat = os.stat(f"/run/netns/{netns}")
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def pids_in_netns(netns: str) -> list[int]:
    """Every pid living in the named network namespace (what `ip netns pids` reports)."""
    identity = netns_inode(netns)
    if identity is None:
        return []
    return [pid for pid in _all_pids() if _pid_netns(pid) == identity]


def stop_netns_processes(netns: str) -> list[str]:
    """Stop everything still running inside one of our network namespaces.

    Catches what the hosts started themselves (the demo apps, leftover rsync/restic or
    ssh sessions): membership in a namespace the lab created is the proof of ownership,
    re-checked right before each signal.
    """
    identity = netns_inode(netns)
    sentences = []
    for pid in pids_in_netns(netns):
        command = " ".join(read_cmdline(pid) or ("?",))
        sentences.append(stop_pid(pid, f"{command!r} in {netns}",
                                  lambda pid=pid: _pid_netns(pid) == identity))
    return sentences


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _pid_netns(pid: int) -> tuple[int, int] | None:
    try:
        stat = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
