"""Helpers for tests that talk to lab hosts the way an operator would: the plain ssh CLI."""

from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager

from hotspare.lab.remote import host_ssh_argv as ssh_argv  # one home for tests and benchmarks
from hotspare.lab.slots import free_slot


def ssh(lab_env: dict, host: str, *command: str, connect_timeout: float = 5, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run one command on a lab host; returns the completed process (never raises on exit)."""
    return subprocess.run(
        ssh_argv(lab_env, host, list(command), connect_timeout), capture_output=True, text=True, timeout=timeout, check=False
    )


def start_apps(lab_env: dict, *hosts: str) -> None:
    """Start every lab service's app on each of ``hosts`` where the lab runs it (its production
    and mirror), as the lab starts them: a fenced or powered-off host comes back with every
    app stopped, and two services share prod-east and mirror-west."""
    for host in hosts:
        for name, service in lab_env["services"].items():
            if host in (service["production"], service["mirror"]):
                started = ssh(lab_env, host, f"/srv/{name}/app/ctl", "start")
                assert started.returncode == 0, f"{name} on {host}: {started.stderr}"


def host_path(lab_env: dict, host: str, path: str):
    """Where ``path`` as a lab host sees it lives on this machine (read without SSH): its own
    folder (hosts/NAME/...) for /srv, /etc, /home, /root, /tmp, /var/tmp and /usr/local/lib/hotspare; for its tmpfs
    (/run, /dev/shm), the path through its sshd's mount namespace (/proc/PID/root/...)."""
    from pathlib import Path

    from hotspare.lab.host_namespace import TMPFS_PATHS

    root = Path(lab_env["hosts"][host]["root"])
    if any(path == tmpfs or path.startswith(tmpfs + "/") for tmpfs in TMPFS_PATHS):
        listener = int((root / "ssh" / "sshd.pid").read_text().split()[0])
        return Path(f"/proc/{listener}/root") / path.lstrip("/")
    return root / path.lstrip("/")


def tree_digest(folder) -> dict[str, str]:
    """{relative path: sha256} of every regular file under ``folder``."""
    import hashlib

    digests = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digests[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def poll(condition, seconds: float, what: str):
    """Return ``condition()``'s first truthy value, polling until ``seconds`` pass."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def wait_for(what: str, probe, seconds: float = 10.0):
    """``poll`` with the sentence first, as the lab tests read."""
    return poll(probe, seconds, what)


def paused_flow_run():
    """The first flow run paused for input (an approval gate), or None."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
        )
    return found[0] if found else None


@contextmanager
def lab_fleet_changed(lab_env: dict, folder, change):
    """The lab's fleet file with ``change(data)`` applied (shorter waits and timeouts, say) loaded
    into the inventory for the block; the lab's own fleet loaded again afterwards."""
    from pathlib import Path

    import yaml

    from hotspare.cli import main

    original = Path(lab_env["fleet_file"])
    data = yaml.safe_load(original.read_text())
    change(data)
    changed = Path(folder) / "fleet-changed.yaml"
    changed.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["fleet", "load", str(changed)]) == 0
    try:
        yield data
    finally:
        assert main(["fleet", "load", str(original)]) == 0


def kill_failover_after_activation(
    lab_env: dict, service: str = "app1", mirror: str = "mirror-west", seconds: float = 120
) -> float:
    """Run ``hotspare failover SERVICE --yes`` in a process of its own and kill it (SIGKILL, by its
    PID) once the copy is live on ``mirror``: the service stays failing-over, its lease no longer
    renewed. The active-copy marker is removed first, so only this run's activation counts.
    Returns the ``time.monotonic()`` at which the activation was seen."""
    import os
    import signal
    import sys

    from prefect.settings import PREFECT_API_URL

    marker = host_path(lab_env, mirror, f"/srv/hotspare/{service}/active-copy")
    marker.unlink(missing_ok=True)
    environment = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    process = subprocess.Popen(
        [sys.executable, "-m", "hotspare.cli", "failover", service, "--yes"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        poll(marker.exists, seconds, f"the copy to be made live on {mirror}")
        activated = time.monotonic()
        os.kill(process.pid, signal.SIGKILL)  # the failover process started here
    finally:
        process.wait(timeout=30)
    return activated
