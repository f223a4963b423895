"""Running commands and daemons, and stopping daemons by pid only.

The lab never kills by name: a daemon is identified by its pid and the command line it was
started with (checked in /proc right before each signal), by living in a network
namespace the lab created, or by the slot's mark in its environment
(``HOTSPARE_LAB_PROCESS=slot-N``, which its children inherit): every process a lab starts
carries it, so the next ``up`` or ``down`` on that slot finds it again even when the lab's
folder and state files are gone (``marked_pids``, ``stop_marked``).
"""

from __future__ import annotations

import json
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
MARK = "HOTSPARE_LAB_PROCESS"
STOP_WAIT_SECONDS = 5.0


def run(
    argv: list[str], what: str, *, input_text: str | None = None, timeout: float = COMMAND_TIMEOUT_SECONDS, check: bool = True
) -> subprocess.CompletedProcess:
    """Run argv (never through a shell) with a timeout; on failure raise naming `what`."""
    try:
        result = subprocess.run(argv, input=input_text, capture_output=True, text=True, timeout=timeout, check=False)
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
    def from_json(cls, data: dict) -> Daemon:
        return cls(data["name"], int(data["pid"]), tuple(data["cmdline"]), data["log"])


def mark(slot: int) -> str:
    """The environment entry that marks a process as started by the lab of ``slot``."""
    return f"{MARK}=slot-{slot}"


def marked_environment(slot: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: ours) plus the slot's mark."""
    return {**(os.environ if base is None else base), MARK: f"slot-{slot}"}


def start_daemon(
    name: str,
    argv: list[str],
    expected_cmdline: list[str],
    log_path: Path,
    slot: int | None = None,
    extra_environment: dict[str, str] | None = None,
) -> tuple[Daemon, subprocess.Popen]:
    """Start argv detached from our session (it outlives the caller), output to log_path,
    marked as the lab of ``slot``'s when one is given.

    `expected_cmdline` is what /proc/PID/cmdline shows once every exec in argv happened
    (e.g. `ip netns exec ... unshare ... sh -c 'exec sshd'` ends as sshd under the same pid).
    """
    environment = None if slot is None else marked_environment(slot)
    if extra_environment:
        environment = {**(environment or os.environ), **extra_environment}
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=environment,
        )
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
    return stop_pid(daemon.pid, daemon.name, lambda: runs_command(daemon.pid, daemon.cmdline), popen)


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
        sentences.append(stop_pid(pid, f"{command!r} in {netns}", lambda pid=pid: _pid_netns(pid) == identity))
    return sentences


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _pid_netns(pid: int) -> tuple[int, int] | None:
    try:
        stat = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def carries_mark(pid: int, slot: int) -> bool:
    """True when pid's environment (as it was at its exec) holds the slot's mark."""
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return mark(slot).encode() in entries


def marked_pids(slot: int) -> list[int]:
    """Every live process carrying the slot's mark, but this process and its ancestors."""
    spared = _ancestors(os.getpid())
    return [pid for pid in _all_pids() if pid not in spared and carries_mark(pid, slot) and not is_gone(pid)]


def stop_marked(slot: int) -> list[str]:
    """Stop every process carrying the slot's mark (re-checked right before each signal)."""
    sentences = []
    for pid in marked_pids(slot):
        command = " ".join(read_cmdline(pid) or ("?",))
        sentences.append(stop_pid(pid, f"{command[:120]!r} (marked slot-{slot})", lambda pid=pid: carries_mark(pid, slot)))
    return sentences


def _ancestors(pid: int) -> set[int]:
    found = set()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found


def port_holder(port: int) -> str | None:
    """ "pid N (command)" of a process holding a TCP or UDP socket on ``port`` (any address), if
    /proc shows one; None when nothing we can see holds it."""
    inodes = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0":
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for pid in _all_pids():
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                if os.readlink(f"/proc/{pid}/fd/{descriptor}") in inodes:
                    return f"pid {pid} ({' '.join(read_cmdline(pid) or ('?',))[:160]})"
            except OSError:
                continue
    return None


def stop_recorded(state_file: Path) -> list[str]:
    """Stop the daemon recorded in ``state_file`` (one ``Daemon`` as JSON) by its pid, if it
    still runs that command line, and forget it: for the lab's daemons kept out of state.json."""
    try:
        daemon = Daemon.from_json(json.loads(state_file.read_text()))
    except (OSError, ValueError, KeyError):
        return []
    sentence = stop_daemon(daemon)
    state_file.unlink(missing_ok=True)
    return [sentence]


def recorded_running(state_file: Path) -> bool:
    """The daemon recorded in ``state_file`` still runs its command line."""
    try:
        return is_running(Daemon.from_json(json.loads(state_file.read_text())))
    except (OSError, ValueError, KeyError):
        return False
