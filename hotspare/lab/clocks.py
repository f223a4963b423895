"""A lab host whose clock is off: the lab's model of a server whose clock drifted.

Linux has one real-time clock per machine (time namespaces shift only the monotonic and boot
clocks), so a lab host cannot get a kernel clock of its own. The lab shifts what the host's
programs read instead, with libfaketime (Debian ``faketime``):

- the host's **sshd** is restarted with libfaketime preloaded and ``FAKETIME`` in its
  environment, so the server that checks a key's ``expiry-time`` judges it by the skewed time
  (its re-executed children inherit the environment);
- every session there gets the same through ``SetEnv`` in that host's own sshd configuration
  (sshd gives sessions a fresh environment), so ``date``, rsync and every forced command read
  the skewed time too.

``FAKETIME_DISABLE_SHM``: sshd's seccomp sandbox kills a pre-authentication child that unlinks
libfaketime's shared semaphore. ``NO_FAKE_STAT``: files keep the times they have (a host whose
clock drifted does not see its old files move). Used by tests only; ``restore_clock`` undoes it
(the same sshd restart, with the configuration as the lab wrote it).
"""

from __future__ import annotations

import glob
from pathlib import Path

from hotspare.lab.errors import LabError
from hotspare.lab.processes import Daemon, stop_daemon
from hotspare.lab.topology import host_by_name


def faketime_library() -> str:
    """libfaketime's path (the package installs it under the architecture's library folder)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        raise LabError("libfaketime is not installed (Debian package faketime): `. scripts/setup.sh` installs it")
    return found[0]


def skew_clock(lab, host_name: str, seconds: int) -> None:
    """Make ``host_name``'s clock read ``seconds`` ahead (negative: behind) of the machine's."""
    environment = {
        "LD_PRELOAD": faketime_library(),
        "FAKETIME": f"{seconds:+d}",
        "FAKETIME_DISABLE_SHM": "1",
        "NO_FAKE_STAT": "1",
    }
    config = _config(lab, host_name)
    text = _without_skew(config.read_text())
    config.write_text(text + MARK + "\nSetEnv " + " ".join(f"{name}={value}" for name, value in environment.items()) + "\n")
    _restart_sshd(lab, host_name, environment)


def restore_clock(lab, host_name: str) -> None:
    """Give ``host_name`` the machine's clock again."""
    config = _config(lab, host_name)
    config.write_text(_without_skew(config.read_text()))
    _restart_sshd(lab, host_name, None)


MARK = "# hotspare lab: a skewed clock (hotspare/lab/clocks.py)"


def _config(lab, host_name: str) -> Path:
    return Path(lab.host_root(host_by_name(host_name))) / "ssh" / "sshd_config"


def _without_skew(text: str) -> str:
    return text.split(MARK, 1)[0]


def _restart_sshd(lab, host_name: str, environment: dict[str, str] | None) -> None:
    """Stop the host's recorded sshd by its PID, start it again (``environment`` added), wait
    until it greets."""
    host = host_by_name(host_name)
    name = f"sshd {host.name}"
    state = lab._read_state() or {}
    for entry in [entry for entry in state.get("daemons", []) if entry["name"] == name]:
        daemon = Daemon.from_json(entry)
        stop_daemon(daemon, lab._children.pop(daemon.pid, None))
    state["daemons"] = [entry for entry in state.get("daemons", []) if entry["name"] != name]
    lab._write_state(state)
    lab._start_sshd(host, environment)
    lab._wait_sshd(host)
