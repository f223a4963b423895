"""Cheap, bounded liveness probes used by status and preflight checks. Never cached."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor


def tcp_reachable(address: str, port: int, timeout: float = 2.0) -> bool:
    """True when a TCP connection to address:port opens within ``timeout``."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def reachability(targets: dict[str, tuple[str, int]], timeout: float = 2.0) -> dict[str, bool]:
    """Probe every named (address, port) in parallel; the whole call takes about ``timeout``."""
    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=min(32, len(targets))) as pool:
        futures = {name: pool.submit(tcp_reachable, *target, timeout) for name, target in targets.items()}
        return {name: future.result() for name, future in futures.items()}
