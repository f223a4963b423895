"""The control site's SSH certificate issuer in the lab (``hotspare/issuer``), and what each
facility's worker needs to use it.

    start_issuer(lab)        in the control site's network at ADDRESS:ISSUER_PORT; returns the
                             sites' tokens (also in control/issuer-tokens.json, 0600)
    worker_environment(...)  HOTSPARE_SSH_ISSUER_URL and the site's own token, for a worker

Sites (``workers.requesters``): east's and west's workers (each asking from the address of the
standby whose network it shares, for its own pool) and the control site (its worker, and the
machine's own commands, which reach the lab from the bridge's address). The CA key stays in the
lab folder.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hotspare.lab import control
from hotspare.lab.errors import LabError
from hotspare.local_secrets import write_private
from hotspare.planning.certificates import Requester

ISSUER_PORT = 4290
START_SECONDS = 60.0


def url(lab) -> str:
    return f"http://{control.address(lab)}:{ISSUER_PORT}"


def tokens_file(lab) -> Path:
    return control.folder(lab) / "issuer-tokens.json"


def tokens(lab) -> dict[str, str]:
    """{site: token} of the running issuer (the control site's file)."""
    return json.loads(tokens_file(lab).read_text())


def start_issuer(lab, requesters: list[Requester]) -> dict[str, str]:
    """Write the configuration (a new token per site), start the issuer in the control site, wait
    for it; returns {site: token}."""
    from hotspare.issuer.service import config_json, new_token

    sites = {requester.site: (requester, new_token()) for requester in requesters}
    config = control.folder(lab) / "issuer.json"
    write_private(config, config_json(lab.directory / "ssh_ca", list(sites.values())))
    write_private(tokens_file(lab), json.dumps({site: token for site, (_, token) in sites.items()}, indent=2) + "\n")
    project = str(Path(__file__).resolve().parents[2])
    environment = {**control.base_environment(lab, "issuer"), **control.client_environment(lab), "PYTHONPATH": project}
    command = [
        sys.executable,
        "-m",
        "hotspare.issuer.service",
        "--config",
        str(config),
        "--listen",
        f"{control.address(lab)}:{ISSUER_PORT}",
    ]
    daemon, process = control.start_in_netns(
        lab, "ssh issuer", control.netns(lab), command, environment, control.folder(lab) / "issuer.log"
    )
    control.record(lab, daemon, kind="issuer")
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        if _healthy(lab):
            return {site: token for site, (_, token) in sites.items()}
        time.sleep(0.2)
    tail = Path(daemon.log).read_text(errors="replace")[-2000:]
    raise LabError(f"the SSH certificate issuer ({url(lab)}) did not answer within {START_SECONDS:g} s; its log ends:\n{tail}")


def _healthy(lab) -> bool:
    import httpx

    try:
        return httpx.get(f"{url(lab)}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def exports(lab) -> dict[str, str]:
    """What makes this machine's commands (the control site's operator) log in with their runs'
    certificates too: the issuer's URL and the control site's token; {} when no issuer runs."""
    from hotspare.lab.processes import is_gone

    recorded = [entry for entry in control.read_state(lab).get("daemons", []) if entry.get("kind") == "issuer"]
    if not recorded or all(is_gone(entry["pid"]) for entry in recorded):
        return {}
    try:
        return worker_environment(lab, control.FACILITY, tokens(lab))
    except (OSError, ValueError, KeyError):
        return {}


def worker_environment(lab, site: str, site_tokens: dict[str, str]) -> dict[str, str]:
    """What a worker of ``site`` needs to log in with certificates: the URL and its own token."""
    return {"HOTSPARE_SSH_ISSUER_URL": url(lab), "HOTSPARE_SSH_ISSUER_TOKEN": site_tokens[site]}
