"""The control site's authenticating proxy: Debian's nginx in front of the Prefect server, with a
login per person and per worker (``planning/api_access.py`` decides what each role may do).

    control netns   nginx on <control address>:4200  (every client: people, workers, commands)
                      └─> Prefect server on 127.0.0.1:4200 of the same namespace, behind an
                          nothing else reaches (Prefect's websockets cannot be re-authenticated
                          by a proxy, so the server has no auth string of its own)

Passwords are generated here (the system's cryptographic random) into the control site's
private folder, one file per identity (``identities/<name>``, 0600, the line a client sets as
``PREFECT_API_AUTH_STRING``); nginx gets only their SHA-512-crypt hashes. nginx runs as a
process of the lab (foreground, its own configuration, pid and logs), never the system service,
and is stopped by PID with the rest of the site. Its workers run as ``www-data``: the htpasswd
file and the folder are readable by that group, the configuration (it holds the server's auth
string) by root only.

Why SHA-512-crypt, not bcrypt: nginx checks the password with crypt(3) on every request, and a
worker makes several requests a second while it runs a flow; bcrypt at cost 10 costs ~60 ms of
CPU per request against ~4 ms for SHA-512-crypt (``bench/proxy_bench.py`` measures both). The
passwords are 256 random bits, which no hash speed makes guessable; a slow hash only helps
passwords people choose.
"""

from __future__ import annotations

import grp
import logging
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from hotspare.lab.errors import LabError
from hotspare.local_secrets import write_private
from hotspare.planning.api_access import (
    APPROVER,
    CONTROL,
    OPERATOR,
    VIEWER,
    WORKER,
    Identity,
    render_nginx,
)

log = logging.getLogger("hotspare.lab")

NGINX = Path("/usr/sbin/nginx")
NGINX_GROUP = "www-data"
# The lab's people: one per role, so tests and the demo can act as each.
PEOPLE = (Identity("ada", VIEWER), Identity("otto", OPERATOR), Identity("april", APPROVER))
CONTROL_IDENTITY = "control"


def lab_identities(facility_blocks: dict[str, tuple[str, ...]]) -> list[Identity]:
    """The control site, a worker per facility (``worker-<facility>``) with the blocks its runs
    need, and the lab's people."""
    workers = [
        Identity(f"worker-{facility}", WORKER, tuple(sorted(blocks))) for facility, blocks in sorted(facility_blocks.items())
    ]
    return [Identity(CONTROL_IDENTITY, CONTROL), *workers, *PEOPLE]


def facility_blocks() -> dict[str, tuple[str, ...]]:
    """The blocks each facility's worker may read with their secrets (``planning/api_access``).

    A facility's worker runs the runbooks that must work while the control site is lost
    (failover, facility failover, reprotect, replication): SSH logins, the DNS update key, the
    mail relay, and the BMC credentials of the servers those runs fence. BMC credentials are a
    block per facility (``bmc.block_name``): a facility's worker reads those of the facilities
    whose services it fails over, which are never its own (``planning/placement``: a failover
    runs outside the facility it recovers from), so a worker taken over in east cannot switch
    off east's other servers, nor read the block a west worker holds. Backup passwords stay with
    the control site's backup and rebuild runs, the phone providers with its incident runs, which
    page; the control site reads every BMC block (its hardware checks and failovers)."""
    from hotspare.lab import bmc, phone
    from hotspare.lab.topology import BLOCK_NAMES, HOSTS, SERVICES, restic_block

    common = (BLOCK_NAMES["ssh"], BLOCK_NAMES["tsig"], BLOCK_NAMES["smtp"])
    hosts = {host.name: host.facility for host in HOSTS}
    served = sorted({hosts[name] for service in SERVICES for name in (service.production, service.mirror)})
    control_only = (*phone.BLOCK_NAMES.values(), *(restic_block(service.name) for service in SERVICES))
    blocks = {facility: common + tuple(bmc.block_name(other) for other in served if other != facility) for facility in served}
    blocks["control"] = common + tuple(bmc.block_name(facility) for facility in bmc.bmc_facilities()) + control_only
    return blocks


def folder(slot: int) -> Path:
    """Outside the lab folder (0700 root): nginx's workers (www-data) must pass through it."""
    return Path(f"/var/tmp/hotspare-lab-{slot}") / "proxy"


def credentials_folder(control_folder: Path) -> Path:
    return control_folder / "identities"


def auth_string(control_folder: Path, name: str) -> str:
    """``name:password`` of an identity (what PREFECT_API_AUTH_STRING takes)."""
    path = credentials_folder(control_folder) / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise LabError(f"no credentials for identity {name!r} in {path.parent}: is the control site up?") from None


def prepare(slot: int, control_folder: Path, identities: list[Identity], listen: str, upstream: str, netns: str) -> Path:
    """Passwords (new each time), the htpasswd file and the configuration; returns the
    configuration's path. Checked with ``nginx -t`` in ``netns`` (it binds the address)."""
    if not NGINX.exists():
        raise LabError(f"nginx is not installed ({NGINX} missing): apt-get install nginx (bash scripts/setup.sh does)")
    group = grp.getgrnam(NGINX_GROUP).gr_gid
    place = folder(slot)
    shutil.rmtree(place, ignore_errors=True)
    place.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    place.mkdir(mode=0o750)
    os.chown(place, 0, group)
    (place / "tmp").mkdir(mode=0o700)
    os.chown(place / "tmp", pwd_uid(NGINX_GROUP), group)
    credentials = credentials_folder(control_folder)
    shutil.rmtree(credentials, ignore_errors=True)
    credentials.mkdir(mode=0o700)
    lines = []
    for identity in identities:
        password = secrets.token_urlsafe(32)
        write_private(credentials / identity.name, f"{identity.name}:{password}\n")
        lines.append(f"{identity.name}:{_hash(password)}\n")
    htpasswd = place / "htpasswd"
    descriptor = os.open(htpasswd, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(descriptor, "w") as handle:
        handle.writelines(lines)
    os.chown(htpasswd, 0, group)
    configuration = place / "nginx.conf"
    write_private(configuration, render_nginx(identities, listen=listen, upstream=upstream, folder=str(place), user=NGINX_GROUP))
    check = subprocess.run(
        ["ip", "netns", "exec", netns, str(NGINX), "-t", "-q", "-c", str(configuration), "-p", str(place)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check.returncode != 0:
        raise LabError(f"the API proxy's nginx configuration {configuration} is refused by nginx -t: {check.stderr.strip()}")
    return configuration


def command(configuration: Path) -> list[str]:
    """nginx in the foreground with its own configuration (``daemon off`` is in it)."""
    return [str(NGINX), "-c", str(configuration), "-p", str(configuration.parent)]


def remove(slot: int) -> None:
    shutil.rmtree(folder(slot), ignore_errors=True)


def pwd_uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


def _hash(password: str) -> str:
    """SHA-512-crypt of ``password`` (openssl, password on stdin, never in argv)."""
    result = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password + "\n", capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0 or not result.stdout.startswith("$6$"):
        raise LabError(f"openssl passwd -6 failed: {result.stderr.strip()}")
    return result.stdout.strip()
