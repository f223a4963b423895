"""Probes and bounded waits: is a port free, does sshd/BIND/SMTP/the app answer.

Every wait polls with a deadline and fails with a message naming what did not come up
and where its log is; nothing sleeps a fixed time hoping things are ready.
"""

from __future__ import annotations

import errno
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hotspare.lab.errors import LabError

POLL_FIRST_SECONDS = 0.01
POLL_MAX_SECONDS = 0.2


def wait_until(
    what: str,
    probe: Callable[[], bool],
    deadline_seconds: float,
    *,
    log_path: str | None = None,
    alive: Callable[[], bool] | None = None,
) -> float:
    """Poll `probe` until it returns True; return the seconds it took.

    Fails early when `alive()` says the process behind it died, and always names the log.
    """
    started = time.monotonic()
    interval = POLL_FIRST_SECONDS
    while True:
        if probe():
            return time.monotonic() - started
        if alive is not None and not alive():
            raise LabError(f"{what} exited during start-up{_log_hint(log_path)}")
        if time.monotonic() - started > deadline_seconds:
            raise LabError(f"{what} did not come up within {deadline_seconds:.0f} s{_log_hint(log_path)}")
        time.sleep(interval)
        interval = min(interval * 2, POLL_MAX_SECONDS)


def _log_hint(log_path: str | None) -> str:
    """'; see LOG (last lines: ...)' so the error alone is often enough to diagnose."""
    if not log_path:
        return ""
    try:
        tail = Path(log_path).read_text(errors="replace").strip().splitlines()[-5:]
    except OSError:
        tail = []
    shown = " | ".join(tail)
    return f"; see {log_path}" + (f" (last lines: {shown})" if shown else "")


def banner(address: str, port: int, timeout: float = 0.5) -> bytes:
    """The first bytes a TCP server sends (sshd and SMTP greet first), b'' if none."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            return connection.recv(64)
    except OSError:
        return b""


def port_in_use(port: int, address: str = "127.0.0.1") -> bool:
    """True when something holds address:port over TCP or UDP.

    Binding without SO_REUSEPORT fails even against a named that uses SO_REUSEPORT,
    which is the point: a second named on the same port would start silently.
    """
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            if kind == socket.SOCK_STREAM:
                # Ignore TIME_WAIT leftovers of a lab that was just stopped.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    return True
                raise
    return False


def soa_answers(zone: str, server: str, port: int, timeout: float = 0.5) -> bool:
    """True when the server answers the zone's SOA with NOERROR (SERVFAIL means not loaded)."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    query = dns.message.make_query(zone, "SOA")
    try:
        response = dns.query.udp(query, server, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return False
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)


def http_get(url: str, timeout: float = 2.0) -> str | None:
    """The body of url, or None; ignores any proxy settings (lab traffic stays local)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.read().decode(errors="replace")
    except OSError:
        return None
