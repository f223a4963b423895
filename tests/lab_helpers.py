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
