"""The lab's users' resolver: unbound, caching, in front of the lab's BIND.

Users do not ask the authoritative server; they ask a caching resolver, which keeps an answer
for its TTL. So "users are on the mirror" is measured here, not at BIND: ``lab env --json``
gives ``resolver.address`` and ``resolver.port``, and the failover benchmark asks it.

unbound runs in the foreground on 127.0.0.1, port ``RESOLVER_PORT_BASE + slot``, with only the
iterator module (no DNSSEC: the lab zone is unsigned), ``lab.test`` as a stub zone at the lab's
BIND, and every other name refused locally (``local-zone: "." refuse``) — it never asks the
root servers. Its outgoing queries leave from 127.0.0.1, which the kernel routes nowhere but
loopback. Like the status page server, its pid is kept in ``resolver.json`` in the lab folder,
and ``stop`` ends it by that pid only.
"""

from __future__ import annotations

import json
from pathlib import Path

from hotspare.lab.probes import soa_answers, wait_until
from hotspare.lab.processes import Daemon, recorded_running, start_daemon, stop_recorded
from hotspare.lab.topology import ZONE

UNBOUND = "/usr/sbin/unbound"
RESOLVER_PORT_BASE = 5430  # slot n: 127.0.0.1:5430+n
ADDRESS = "127.0.0.1"
START_SECONDS = 15.0


def port_of(slot: int) -> int:
    return RESOLVER_PORT_BASE + slot


def _state_file(lab) -> Path:
    return lab.directory / "resolver.json"


def config(folder: Path, port: int, dns_port: int) -> str:
    """unbound.conf: a caching resolver for the lab zone only, on loopback only."""
    return f"""server:
  interface: {ADDRESS}@{port}
  port: {port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{folder}"
  pidfile: "{folder}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  num-threads: 1
  so-reuseport: no
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  do-ip6: no
  outgoing-interface: {ADDRESS}
  module-config: "iterator"
  domain-insecure: "{ZONE}"
  local-zone: "." refuse
  local-zone: "{ZONE}." transparent
  prefetch: no
  serve-expired: no
stub-zone:
  name: "{ZONE}"
  stub-addr: {ADDRESS}@{dns_port}
remote-control:
  control-enable: no
"""


def start(lab) -> Daemon:
    """Start unbound for the lab's slot and wait until it answers the lab zone through BIND."""
    folder = lab.directory / "resolver"
    folder.mkdir(mode=0o700, exist_ok=True)
    port = port_of(lab.slot)
    conf = folder / "unbound.conf"
    conf.write_text(config(folder, port, lab.layout.dns_port))
    argv = [UNBOUND, "-d", "-c", str(conf)]
    daemon, process = start_daemon("users' resolver (unbound)", argv, argv, lab.directory / "logs" / "unbound.log", slot=lab.slot)
    _state_file(lab).write_text(json.dumps(daemon.to_json(), indent=2) + "\n")
    wait_until(
        f"the users' resolver on {ADDRESS}:{port}",
        lambda: soa_answers(ZONE, ADDRESS, port),
        START_SECONDS,
        log_path=daemon.log,
        alive=lambda: process.poll() is None,
    )
    return daemon


def stop(lab) -> list[str]:
    """Stop unbound by its recorded pid (if it still runs that command line)."""
    return stop_recorded(_state_file(lab))


def running(lab) -> bool:
    return recorded_running(_state_file(lab))


def describe(lab) -> dict:
    """The env's ``resolver`` entry."""
    return {"resolver": {"address": ADDRESS, "port": port_of(lab.slot), "software": "unbound"}}
