"""Self-contained probes (standard library only) run at a checker site.

The orchestrator imports ``run_probes`` for its own site; for a remote site the text of this
file plus one line that calls ``run_probes`` on a JSON spec goes to ``python3 -`` on the site's
``via`` server over SSH (stdin), so nothing is installed there. Every probe has a timeout and
all run in parallel; the result is one JSON object {probe id: {"ok": bool, "evidence": str}}.

Spec: {"timeout": seconds, "tcp": [{"id", "address", "port", "banner": "SSH-"|""}],
       "http": [{"id", "address", "port", "host", "path", "tls": bool}]}
"""

import http.client
import json
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def tcp_probe(target, timeout):
    """Connect; when ``banner`` is set, the first bytes must start with it (SSH greets first)."""
    started = time.monotonic()
    where = "%s:%s" % (target["address"], target["port"])
    try:
        with socket.create_connection((target["address"], target["port"]), timeout=timeout) as connection:
            if target.get("banner"):
                connection.settimeout(timeout)
                greeting = connection.recv(64)
                if not greeting.startswith(target["banner"].encode()):
                    return {
                        "ok": False,
                        "evidence": "%s answered %r, not an %s greeting" % (where, greeting[:20], target["banner"]),
                    }
                return {
                    "ok": True,
                    "evidence": "%s greets %s (%.0f ms)"
                    % (where, greeting.split(b"\r")[0][:40].decode(errors="replace"), (time.monotonic() - started) * 1000),
                }
    except socket.timeout:
        return {"ok": False, "evidence": "%s: no answer within %g s" % (where, timeout)}
    except OSError as error:
        return {"ok": False, "evidence": "%s: %s" % (where, error.strerror or error)}
    return {"ok": True, "evidence": "%s accepts connections (%.0f ms)" % (where, (time.monotonic() - started) * 1000)}


def http_probe(target, timeout):
    """GET the path from ``address`` with the Host header of the URL; 2xx is healthy."""
    started = time.monotonic()
    where = "%s:%s%s (Host %s)" % (target["address"], target["port"], target["path"], target["host"])
    try:
        if target.get("tls"):
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # expiry is judged by the orchestrator's certificate probe
            connection = http.client.HTTPSConnection(target["address"], target["port"], timeout=timeout, context=context)
        else:
            connection = http.client.HTTPConnection(target["address"], target["port"], timeout=timeout)
        # One deadline for the whole answer: the socket timeout bounds each read only, and an app
        # that drips a byte at a time would hold the round (and every service's checks) for ever.
        watchdog = threading.Timer(timeout, _cut, (connection,))
        watchdog.start()
        try:
            connection.request("GET", target["path"], headers={"Host": target["host"], "User-Agent": "hotspare-health"})
            response = connection.getresponse()
            response.read(4096)
        finally:
            watchdog.cancel()
            connection.close()
        if time.monotonic() - started >= timeout:
            raise socket.timeout()
    except socket.timeout:
        return {"ok": False, "evidence": "%s: no complete answer within %g s" % (where, timeout)}
    except (OSError, http.client.HTTPException) as error:
        if time.monotonic() - started >= timeout:
            return {"ok": False, "evidence": "%s: no complete answer within %g s" % (where, timeout)}
        return {"ok": False, "evidence": "%s: %s" % (where, getattr(error, "strerror", None) or error or type(error).__name__)}
    elapsed = (time.monotonic() - started) * 1000
    healthy = 200 <= response.status < 300
    return {"ok": healthy, "evidence": "%s answered %s in %.0f ms" % (where, response.status, elapsed)}


def _cut(connection):
    """End a probe's connection from the watchdog thread: a blocked read returns at once."""
    try:
        if connection.sock is not None:
            connection.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def run_probes(spec):
    """Run every probe of ``spec`` in parallel; {probe id: result}."""
    timeout = float(spec.get("timeout", 3))
    jobs = [(target["id"], tcp_probe, target) for target in spec.get("tcp", [])]
    jobs += [(target["id"], http_probe, target) for target in spec.get("http", [])]
    if not jobs:
        return {}
    with ThreadPoolExecutor(max_workers=min(64, len(jobs))) as pool:
        futures = {probe_id: pool.submit(function, target, timeout) for probe_id, function, target in jobs}
        return {probe_id: future.result() for probe_id, future in futures.items()}


def remote_program(spec):
    """The text sent to ``python3 -``: this file, then one call on ``spec`` (a JSON literal)."""
    with open(__file__) as handle:
        source = handle.read()
    return source + "\nprint(json.dumps(run_probes(json.loads(%r))))\n" % json.dumps(spec)
