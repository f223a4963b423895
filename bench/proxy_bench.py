"""Benchmark: what the API proxy's login check costs per request, bare against nginx.

    .venv/bin/python bench/proxy_bench.py [--requests 300]

Starts on loopback a trivial HTTP upstream (Python's http.server answering 200) and one nginx
(Debian's, foreground, its own folder) with three servers in front of it: no authentication,
basic auth with a SHA-512-crypt hash (what ``lab/proxy.py`` writes) and with a bcrypt hash
(cost 10). Measures the median and 95th percentile of sequential requests on one kept-alive
connection to the upstream directly and through each, and the CPU nginx spent. nginx checks
the password with crypt(3) on every request, so the hash's cost is paid per API call. Prints a
table; not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NGINX = "/usr/sbin/nginx"
PASSWORD = "bench-password-" + "x" * 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_port(port: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def crypt_hash(scheme: str) -> str:
    """A hash made by libxcrypt's crypt (the library nginx checks with)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    method = crypt.METHOD_SHA512 if scheme == "sha512" else crypt.METHOD_BLOWFISH
    salt = crypt.mksalt(method) if scheme == "sha512" else crypt.mksalt(method, rounds=2**10)
    return crypt.crypt(PASSWORD, salt)


def measure(url: str, requests: int, auth: tuple[str, str] | None) -> list[float]:
    import httpx

    with httpx.Client(auth=auth, timeout=30) as client:
        client.get(url).raise_for_status()
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            client.get(url).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return times


def nginx_cpu_seconds(pid: int) -> float:
    """User + system CPU of nginx and its workers (children), from /proc."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    if not Path(NGINX).exists():
        raise SystemExit("nginx is not installed: apt-get install nginx")
    folder = Path(tempfile.mkdtemp(prefix="hotspare-proxy-bench."))
    folder.chmod(0o755)
    upstream, bare, sha512, bcrypt = (free_port() for _ in range(4))
    for name, scheme in (("sha512", "sha512"), ("bcrypt", "bcrypt")):
        (folder / f"htpasswd-{name}").write_text(f"bench:{crypt_hash(scheme)}\n")
        (folder / f"htpasswd-{name}").chmod(0o644)
    (folder / "tmp").mkdir()
    (folder / "nginx.conf").write_text(f"""daemon off; worker_processes 1; pid {folder}/nginx.pid;
error_log {folder}/error.log; events {{}}
http {{ access_log off; client_body_temp_path {folder}/tmp; proxy_temp_path {folder}/tmp;
  fastcgi_temp_path {folder}/tmp; uwsgi_temp_path {folder}/tmp; scgi_temp_path {folder}/tmp;
  upstream app {{ server 127.0.0.1:{upstream}; keepalive 4; }}
  server {{ listen 127.0.0.1:{bare}; location / {{ proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://app; }} }}
  server {{ listen 127.0.0.1:{sha512}; auth_basic b; auth_basic_user_file {folder}/htpasswd-sha512;
    location / {{ proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://app; }} }}
  server {{ listen 127.0.0.1:{bcrypt}; auth_basic b; auth_basic_user_file {folder}/htpasswd-bcrypt;
    location / {{ proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://app; }} }}
}}
""")
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(upstream), "--bind", "127.0.0.1", "--directory", str(folder / "tmp")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = subprocess.Popen([NGINX, "-c", str(folder / "nginx.conf"), "-p", str(folder)], start_new_session=True)
    try:
        for port in (upstream, bare, sha512, bcrypt):
            wait_port(port)
        rows = []
        for label, port, auth in (
            ("upstream directly", upstream, None),
            ("nginx, no login", bare, None),
            ("nginx, SHA-512-crypt login", sha512, ("bench", PASSWORD)),
            ("nginx, bcrypt(10) login", bcrypt, ("bench", PASSWORD)),
        ):
            cpu_before = nginx_cpu_seconds(proxy.pid)
            times = measure(f"http://127.0.0.1:{port}/", args.requests, auth)
            cpu = (nginx_cpu_seconds(proxy.pid) - cpu_before) / args.requests * 1000
            rows.append((label, statistics.median(times), statistics.quantiles(times, n=20)[18], cpu))
        print(f"{args.requests} sequential GETs each, one kept-alive connection, load {os.getloadavg()[0]:.1f}")
        print(f"{'path':32} {'median ms':>10} {'p95 ms':>8} {'nginx CPU ms/request':>22}")
        for label, median, p95, cpu in rows:
            print(f"{label:32} {median:10.2f} {p95:8.2f} {cpu:22.2f}")
    finally:
        os.killpg(proxy.pid, 9)
        proxy.wait(timeout=30)
        server.kill()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
