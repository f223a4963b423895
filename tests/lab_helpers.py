"""Helpers for tests that talk to lab hosts the way an operator would: the plain ssh CLI."""

from __future__ import annotations

import shlex
import subprocess


def ssh_argv(lab_env: dict, host: str, command: list[str], connect_timeout: float = 5) -> list[str]:
    """ssh to a lab host as root with the lab key, trusting only the pinned known_hosts."""
    return [
        "ssh", "-F", "/dev/null",
        "-i", lab_env["ssh"]["key"],
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={lab_env['ssh']['known_hosts']}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"ConnectTimeout={connect_timeout:g}",
        "-p", str(lab_env["hosts"][host]["ssh_port"]),
        f"{lab_env['ssh']['user']}@{lab_env['hosts'][host]['address']}",
        shlex.join(command),
    ]


def ssh(lab_env: dict, host: str, *command: str, connect_timeout: float = 5,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """Run one command on a lab host; returns the completed process (never raises on exit)."""
    return subprocess.run(ssh_argv(lab_env, host, list(command), connect_timeout),
                          capture_output=True, text=True, timeout=timeout, check=False)


def free_slot(avoid: tuple[int, ...] = (0, 1)) -> int:
    """A lab slot nobody uses right now (no claim, no namespaces, ports free), highest first.

    Tests that crash or squat a lab of their own must not touch the session lab (slot 1),
    the demo (slot 0) or a lab a developer has running.
    """
    from pathlib import Path

    from hotspare.lab.lab import CLAIMS_DIR
    from hotspare.lab.probes import port_in_use
    from hotspare.lab.topology import MAX_SLOT, SlotLayout

    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for slot in range(MAX_SLOT, -1, -1):
        layout = SlotLayout(slot)
        if slot in avoid or Path(CLAIMS_DIR, f"slot-{slot}.json").exists():
            continue
        if f"{layout.prefix}-" in namespaces:
            continue
        if port_in_use(layout.dns_port) or port_in_use(layout.smtp_port):
            continue
        return slot
    raise RuntimeError("no free lab slot on this machine")


def host_path(lab_env: dict, host: str, path: str):
    """Where ``path`` as a lab host sees it lives on this machine (read without SSH)."""
    from pathlib import Path

    return Path(lab_env["hosts"][host]["root"]) / path.lstrip("/")


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
        found = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
    return found[0] if found else None
