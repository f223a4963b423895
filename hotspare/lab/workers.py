"""One Prefect worker per facility in the lab, each in that facility's network, each polling its
own process work pool: ``hotspare-east`` (in standby-east's namespace), ``hotspare-west`` (in
standby-west's) and ``hotspare-control`` (in the control site's). Each is the product's warm worker
(``python -m hotspare.warm_worker``: runs forked from a pre-imported process, woken by the pool's
events), the path docs/operations.md tells operators to run.

A worker in east's network goes down with east (``hotspare lab fail east`` blackholes its
namespace: it can no longer reach the Prefect server or the inventory). Workers reach the
project's code through the shared filesystem (deployments use the project folder as their
source) and the lab's DNS and SMTP through a loopback relay (``relay.py``).

    start_workers(lab)   control site first (control.py), its SSH certificate issuer (issuer.py),
                         then relays and workers (each logs in to hosts with its runs' certificates)
    worker_status(lab)   {pool: ONLINE/OFFLINE...} as the Prefect server sees them
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hotspare.lab import control, issuer
from hotspare.lab.errors import LabError
from hotspare.lab.topology import host_by_name
from hotspare.planning.certificates import Requester

POOL_PREFIX = "hotspare-"
# Seconds between a worker's polls for runs (Prefect's default is 10): the lab's runs start fast.
QUERY_SECONDS = 2
HEARTBEAT_SECONDS = 10
ONLINE_SECONDS = 180.0
WARM_READY = "warm process ready"  # the line hotspare/warm_worker/forkserver.py logs once it can fork runs


@dataclass(frozen=True)
class WorkerSpec:
    """A worker: its facility, its pool, and the lab host whose network it shares (or control)."""

    facility: str
    network_of: str  # a lab host name, or "control"

    @property
    def pool(self) -> str:
        return pool_name(self.facility)

    def name(self, lab) -> str:
        return f"worker-{self.facility}-slot{lab.slot}"

    def namespace(self, lab) -> str:
        if self.network_of == control.FACILITY:
            return control.netns(lab)
        return lab.layout.netns(host_by_name(self.network_of))


WORKERS = (WorkerSpec("east", "standby-east"), WorkerSpec("west", "standby-west"), WorkerSpec(control.FACILITY, control.FACILITY))


def pool_name(facility: str) -> str:
    """The process work pool of a facility: ``hotspare-<facility>``."""
    return f"{POOL_PREFIX}{facility}"


def start_workers(lab, wait: bool = True) -> list[dict]:
    """Start the control site, then a relay and a worker per facility; wait until all are ONLINE
    (or, with ``wait=False``, leave that to ``wait_online`` so the caller can use the start-up
    time). Records them in the lab's env (``workers``, ``control``) and returns the workers part."""
    env = lab.env()
    site = control.start_site(lab)
    client = control.client_environment(lab)
    # workers log in to hosts with certificates per run from the control site, never a key of their own
    site_tokens = issuer.start_issuer(lab, requesters(lab))
    project = str(Path(__file__).resolve().parents[2])
    relay_ports = [str(env["dns"]["port"]), str(env["smtp"]["port"])]
    create_pools(client)  # by the control site: a worker may not create or change a pool
    for spec in WORKERS:
        namespace = spec.namespace(lab)
        relay_command = [sys.executable, "-m", "hotspare.lab.relay", namespace] + relay_ports
        daemon, _ = _start_relay(lab, spec, relay_command)
        control.record(lab, daemon, kind="relay")
        # its own API login (what its runs may read and do) and the inventory's worker user
        environment = {
            **control.base_environment(lab, f"worker-{spec.facility}"),
            **client,
            **control.identity_environment(lab, identity_name(spec.facility)),
            "HOTSPARE_DB_URL": control.database_urls(lab)["worker"],
            "HOTSPARE_API_PROXY": "1",
            "PYTHONPATH": project,
            "HOTSPARE_SITE": spec.facility,
            "HOTSPARE_WARM_FOLDER": str(control.folder(lab) / f"warm-{spec.facility}"),
            "PREFECT_WORKER_QUERY_SECONDS": str(QUERY_SECONDS),
            "PREFECT_WORKER_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            **issuer.worker_environment(lab, spec.facility, site_tokens),
        }
        command = [sys.executable, "-m", "hotspare.warm_worker", "--pool", spec.pool, "--name", spec.name(lab)]
        daemon, _ = control.start_in_netns(
            lab, f"worker {spec.facility}", namespace, command, environment, control.folder(lab) / f"worker-{spec.facility}.log"
        )
        control.record(lab, daemon, kind="worker", facility=spec.facility, pool=spec.pool)
    workers = describe(lab)
    env["control"], env["workers"] = site, workers
    temporary = lab.directory / "env.json.tmp"
    temporary.write_text(json.dumps(env, indent=2) + "\n")
    temporary.replace(lab.directory / "env.json")
    if wait:
        wait_online(lab, client)
    return workers


def requesters(lab) -> list[Requester]:
    """The issuer's sites: each worker from its network's address, for its own pool; the control
    site also from the bridge's address (the machine's own commands)."""
    sites = []
    for spec in WORKERS:
        if spec.network_of == control.FACILITY:
            sites.append(Requester(spec.facility, (control.address(lab), lab.layout.gateway), (spec.pool,), control=True))
        else:
            sites.append(Requester(spec.facility, (lab.layout.address(host_by_name(spec.network_of)),), (spec.pool,)))
    return sites


def identity_name(facility: str) -> str:
    """The API login of a facility's worker (``proxy.lab_identities``)."""
    return f"worker-{facility}"


def create_pools(client: dict[str, str]) -> None:
    """Each facility's process pool with hotspare's locked job template (``planning/work_pools.py``:
    a run's creator cannot change its command or environment), made by the control site before
    its worker starts (a worker would otherwise try to create or update it)."""
    import httpx

    from hotspare.commands.deploy_commands import POOL_CONCURRENCY, PROJECT
    from hotspare.planning.work_pools import locked_job_template

    user, _, password = client["PREFECT_API_AUTH_STRING"].partition(":")
    template = locked_job_template(str(PROJECT))
    for spec in WORKERS:
        response = httpx.post(
            f"{client['PREFECT_API_URL']}/work_pools/",
            auth=(user, password),
            timeout=30,
            json={
                "name": spec.pool,
                "type": "process",
                "base_job_template": template,
                "concurrency_limit": POOL_CONCURRENCY,
                "description": f"hotspare runs executed in {spec.facility}",
            },
        )
        if response.status_code not in (201, 409):
            raise LabError(f"creating work pool {spec.pool} failed: HTTP {response.status_code} {response.text[:300]}")


def _start_relay(lab, spec: WorkerSpec, command: list[str]):
    """The relay runs in the machine's namespace (it enters the worker's only to listen)."""
    import subprocess

    from hotspare.lab.processes import Daemon

    log_path = control.folder(lab) / f"relay-{spec.facility}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=control.base_environment(lab, f"relay-{spec.facility}"),
        )
    lab._children[process.pid] = process
    return Daemon(f"relay {spec.facility}", process.pid, tuple(command), str(log_path)), process


def describe(lab) -> list[dict]:
    """The env's ``workers``: name, facility, pool, network namespace, PID and log."""
    by_facility = {entry.get("facility"): entry for entry in control.read_state(lab)["daemons"] if entry.get("kind") == "worker"}
    return [
        {
            "name": spec.name(lab),
            "facility": spec.facility,
            "pool": spec.pool,
            "netns": spec.namespace(lab),
            "pid": by_facility[spec.facility]["pid"],
            "log": by_facility[spec.facility]["log"],
        }
        for spec in WORKERS
        if spec.facility in by_facility
    ]


def worker_status(client: dict[str, str], pool: str) -> dict[str, str]:
    """{worker name: status} of a pool, read from the Prefect server's API."""
    import httpx

    user, _, password = client["PREFECT_API_AUTH_STRING"].partition(":")
    response = httpx.post(
        f"{client['PREFECT_API_URL']}/work_pools/{pool}/workers/filter", json={}, auth=(user, password), timeout=10
    )
    if response.status_code == 404:
        return {}
    response.raise_for_status()
    return {worker["name"]: worker["status"] for worker in response.json()}


def wait_online(lab, client: dict[str, str]) -> None:
    """Wait until every facility's worker is ONLINE on the control site's server and its warm
    process is ready (its log says so), so the first run already starts warm."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    deadline = time.monotonic() + ONLINE_SECONDS
    waiting = {spec.pool: spec.name(lab) for spec in WORKERS}
    while waiting and time.monotonic() < deadline:
        for pool, name in list(waiting.items()):
            try:
                if worker_status(client, pool).get(name) == "ONLINE":
                    del waiting[pool]
            except Exception:  # the pool appears when its worker first polls
                pass
        time.sleep(0.5)
    if waiting:
        logs = ", ".join(str(control.folder(lab) / f"worker-{pool.removeprefix(POOL_PREFIX)}.log") for pool in waiting)
        raise LabError(f"workers of {', '.join(waiting)} did not come ONLINE within {ONLINE_SECONDS:g} s; see {logs}")
    warming = {spec.facility: control.folder(lab) / f"worker-{spec.facility}.log" for spec in WORKERS}
    while warming and time.monotonic() < deadline:
        for facility, log in list(warming.items()):
            if WARM_READY in log.read_text(errors="replace"):
                del warming[facility]
        time.sleep(0.2)
    if warming:
        raise LabError(
            f"the warm processes of {', '.join(warming)} were not ready within {ONLINE_SECONDS:g} s; "
            f"see {', '.join(str(log) for log in warming.values())}"
        )
