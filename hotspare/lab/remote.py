"""The ssh command line the lab (and its tests) use to reach a lab host.

The only place the lab turns argument lists into a remote command string (shlex.join).
"""

from __future__ import annotations

import shlex
from pathlib import Path


def remote_command(commands: list[list[str]]) -> str:
    """Argument lists joined with && into one quoted remote command."""
    return " && ".join(shlex.join(argv) for argv in commands)


def ssh_argv(
    key: Path | str,
    known_hosts: Path | str,
    address: str,
    commands: list[list[str]],
    *,
    user: str = "root",
    port: int = 22,
    connect_timeout: float = 5,
) -> list[str]:
    """ssh argv with pinned host keys only (no prompts, no agent, no user ssh config).

    The first -o of an option wins in ssh, and -F /dev/null keeps ~/.ssh/config out.
    """
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(key),
        "-p",
        str(port),
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        f"ConnectTimeout={connect_timeout:g}",
        "-o",
        "LogLevel=ERROR",
        f"{user}@{address}",
        remote_command(commands),
    ]


def host_ssh_argv(env: dict, host: str, command: list[str], connect_timeout: float = 5) -> list[str]:
    """ssh to a lab host named in ``lab env --json`` (``env``) with the lab key, pinned keys only.

    The one helper tests and benchmarks use to reach a lab host the way an operator would.
    """
    return ssh_argv(
        env["ssh"]["key"],
        env["ssh"]["known_hosts"],
        env["hosts"][host]["address"],
        [command],
        user=env["ssh"]["user"],
        port=env["hosts"][host]["ssh_port"],
        connect_timeout=connect_timeout,
    )
