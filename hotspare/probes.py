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


def http_get_via_dns(url: str, resolve, timeout: float = 5.0) -> tuple[int, bytes, str]:
    """GET ``url`` with its host name resolved by ``resolve(name) -> [addresses]``.

    Returns (status, body, address used). Lets hotspare check an app "through the DNS name"
    against the zone's authoritative server, never the machine's own resolver. An answer broken
    off midway raises ``ConnectionError``, as a refused connection does.
    """
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    addresses = resolve(parts.hostname)
    if not addresses:
        raise ConnectionError(f"{parts.hostname} does not resolve")
    address = addresses[0]
    connection = http.client.HTTPConnection(address, parts.port or 80, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", path, headers={"Host": parts.netloc})
        response = connection.getresponse()
        return response.status, response.read(), address
    except http.client.HTTPException as error:  # an app stopping mid-answer: not answering, like a refused connect
        raise ConnectionError(f"{address}:{parts.port or 80} broke off its answer ({type(error).__name__})") from None
    finally:
        connection.close()
