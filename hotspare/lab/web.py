"""The lab's off-site web server: web-vault serves the emergency status page folder over HTTP.

hotspare publishes the page over SFTP into ``STATUS_FOLDER`` on web-vault (its sshd sees the
host's own ``/srv``); a plain ``python3 -m http.server`` in web-vault's network namespace
serves the same folder on the machine. Its pid and command line are kept in ``web.json`` in
the lab folder (not in state.json's daemon list, whose length the lab's health check counts),
and ``stop`` ends it by that pid only. After a crash the lab's namespace sweep ends it too.
"""

from __future__ import annotations

import json
from pathlib import Path

from hotspare.lab.probes import http_get, wait_until
from hotspare.lab.processes import Daemon, recorded_running, start_daemon, stop_recorded
from hotspare.lab.topology import host_by_name

WEB_HOST = "web-vault"
WEB_PORT = 8080
STATUS_FOLDER = "/srv/status-page"
START_SECONDS = 15.0
SUBSCRIPTIONS_PORT_BASE = 7500  # slot n: hotspare's status page subscription endpoint on 127.0.0.1:7500+n


def subscriptions_port(slot: int) -> int:
    """Where the lab fleet's ``status_page.subscribe_url`` points (served by the test or the operator)."""
    return SUBSCRIPTIONS_PORT_BASE + slot


def _state_file(lab) -> Path:
    return lab.directory / "web.json"


def folder_on_machine(lab) -> Path:
    """Where web-vault's ``STATUS_FOLDER`` lives on this machine."""
    return lab.host_root(host_by_name(WEB_HOST)) / STATUS_FOLDER.lstrip("/")


def url(lab) -> str:
    return f"http://{lab.layout.address(host_by_name(WEB_HOST))}:{WEB_PORT}/"


def start(lab) -> Daemon:
    """Start the web server in web-vault's namespace and wait until it answers."""
    from hotspare.lab.building import host_python

    folder = folder_on_machine(lab)
    folder.mkdir(parents=True, exist_ok=True)
    address = lab.layout.address(host_by_name(WEB_HOST))
    command = [host_python(), "-m", "http.server", str(WEB_PORT), "--bind", address, "--directory", str(folder)]
    argv = ["ip", "netns", "exec", lab.layout.netns(host_by_name(WEB_HOST)), *command]
    daemon, process = start_daemon(
        "web-vault status page server", argv, command, lab.directory / "logs" / "web-vault-http.log", slot=lab.slot
    )
    _state_file(lab).write_text(json.dumps(daemon.to_json(), indent=2) + "\n")
    wait_until(
        f"status page server on {address}:{WEB_PORT}",
        lambda: http_get(url(lab), 1.0) is not None,
        START_SECONDS,
        log_path=daemon.log,
        alive=lambda: process.poll() is None,
    )
    return daemon


def stop(lab) -> list[str]:
    """Stop the web server by its recorded pid (if it still runs that command line)."""
    return stop_recorded(_state_file(lab))


def running(lab) -> bool:
    return recorded_running(_state_file(lab))


def describe(lab) -> dict:
    """The env's ``status_page`` entry."""
    return {
        "status_page": {
            "url": url(lab),
            "host": WEB_HOST,
            "folder": STATUS_FOLDER,
            "folder_on_machine": str(folder_on_machine(lab)),
        }
    }
