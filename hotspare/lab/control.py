"""The lab's control site: a third network location holding the Prefect server (on PostgreSQL)
and the inventory database, so the orchestrator survives losing east or west.

    control (netns hsN-control, 10.211.(70+N).5)   PostgreSQL :5432 (databases prefect, inventory)
                                                   Prefect server :4200 (basic auth)
                                                   the control worker (hotspare/lab/workers.py)

Everything it starts is recorded in ``control.json`` in the lab folder and stopped by PID by
``stop_site`` (called from ``Lab._stop_everything``); names derive from the slot, so a crashed
site is still found and removed. Client settings (API URL, auth string, inventory URL) are in
``control/client.json`` (0600): ``client_environment(lab)`` gives them as environment variables.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hotspare.lab import network, proxy
from hotspare.lab.errors import LabError
from hotspare.lab.postgres import PostgresServer
from hotspare.lab.processes import (
    MARK,
    Daemon,
    is_gone,
    netns_inode,
    run,
    runs_command,
    stop_netns_processes,
    stop_pid,
)
from hotspare.local_secrets import write_private
from hotspare.planning import database_roles as roles

log = logging.getLogger("hotspare.lab")

FACILITY = "control"
LAST_OCTET = 5
POSTGRES_PORT = 5432
PREFECT_PORT = 4200
SERVER_START_SECONDS = 180.0
TEMPLATE_ROOT = Path("/var/tmp/hotspare-lab-templates")


def netns(lab) -> str:
    return f"{lab.layout.prefix}-control"


def veth(lab) -> str:
    return f"{lab.layout.prefix}vc"


def address(lab) -> str:
    return f"{lab.layout.subnet_base}.{LAST_OCTET}"


def api_url(lab) -> str:
    return f"http://{address(lab)}:{PREFECT_PORT}/api"


def folder(lab) -> Path:
    return lab.directory / "control"


def postgres_folder(lab) -> Path:
    """Outside the lab folder (0700 root): the postgres account must pass through it."""
    return Path(f"/var/tmp/hotspare-lab-{lab.slot}") / "postgres"


def _state_file(lab) -> Path:
    return lab.directory / "control.json"


def read_state(lab) -> dict:
    try:
        return json.loads(_state_file(lab).read_text())
    except (OSError, ValueError):
        return {"daemons": []}


def record(lab, daemon: Daemon, **extra) -> None:
    """Add a started process to control.json at once, so a crash can still stop it."""
    state = read_state(lab)
    state["daemons"].append({**daemon.to_json(), **extra})
    temporary = _state_file(lab).with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    temporary.replace(_state_file(lab))


def client_environment(lab) -> dict[str, str]:
    """PREFECT_API_URL, PREFECT_API_AUTH_STRING and HOTSPARE_DB_URL of the control site."""
    client = json.loads((folder(lab) / "client.json").read_text())
    return {
        "PREFECT_API_URL": client["api_url"],
        "PREFECT_API_AUTH_STRING": client["api_auth_string"],
        "HOTSPARE_DB_URL": client["database_url"],
    }


def exports(lab) -> dict[str, str]:
    """What points a shell's commands at the control site (``hotspare lab env --exports``): its
    API, auth string and inventory, its SSH certificate issuer, the lab folder and the fleet file. Read from the 0600
    ``client.json`` when asked, never stored in env.json."""
    from hotspare.lab import issuer  # the SSH certificate issuer, when the workers' site has one

    return {
        **client_environment(lab),
        **issuer.exports(lab),
        "HOTSPARE_LAB_DIR": str(lab.directory),
        "HOTSPARE_LAB_FLEET": str(lab.directory / "fleet.yaml"),
    }


# A site's credentials: only a worker (or the control site's own operator shell) holds them. The
# issuer's token yields certificates for any run of the site's pool, so a person's shell never
# gets it, whatever their role (docs/trust-model.md).
SITE_ONLY = ("HOTSPARE_SSH_ISSUER_URL", "HOTSPARE_SSH_ISSUER_TOKEN")


def person_shell(lab, name: str, site_exports: dict[str, str]) -> dict[str, str]:
    """Everything a person's shell gets: the site's exports without its credentials, then the
    person's own login (``person_exports``)."""
    return {**{key: value for key, value in site_exports.items() if key not in SITE_ONLY}, **person_exports(lab, name)}


def person_exports(lab, name: str) -> dict[str, str]:
    """A person's shell (``lab env --exports --as NAME``): their own API login through the proxy,
    the inventory's read-only user, and the proxy's approval records trusted by their runs."""
    if name not in {person.name for person in proxy.PEOPLE}:
        raise LabError(f"--as {name}: the lab's people are {', '.join(person.name for person in proxy.PEOPLE)}")
    return {**identity_environment(lab, name), "HOTSPARE_DB_URL": database_urls(lab)["reporting"], "HOTSPARE_API_PROXY": "1"}


def start_site(lab) -> dict:
    """Network location, PostgreSQL and the Prefect server; returns the env's ``control`` part."""
    stop_site(lab)
    folder(lab).mkdir(mode=0o700, exist_ok=True)
    shutil.rmtree(postgres_folder(lab).parent, ignore_errors=True)
    _add_network(lab)
    database = _database_from_template(lab)
    record(lab, database.start(), kind="postgres")
    database.set_password(secrets.token_urlsafe(24))  # never the template's
    passwords = database.apply_roles(_migrate_inventory)  # users per role, none a superuser
    configuration = proxy.prepare(
        lab.slot,
        folder(lab),
        proxy.lab_identities(proxy.facility_blocks()),
        listen=f"{address(lab)}:{PREFECT_PORT}",
        upstream=f"127.0.0.1:{PREFECT_PORT}",
        netns=netns(lab),
    )
    urls = {
        role: database.role_url(role, passwords[role], roles.INVENTORY_DATABASE)
        for role in (roles.CONTROL, roles.WORKER, roles.REPORTING)
    }
    client = {
        "api_url": api_url(lab),
        "api_auth_string": proxy.auth_string(folder(lab), proxy.CONTROL_IDENTITY),
        "database_url": urls[roles.CONTROL],
        "worker_database_url": urls[roles.WORKER],
        "reporting_database_url": urls[roles.REPORTING],
    }
    write_private(folder(lab) / "client.json", json.dumps(client, indent=2) + "\n")
    prefect_url = database.role_url(roles.PREFECT, passwords[roles.PREFECT], roles.PREFECT_DATABASE, driver="asyncpg")
    _start_prefect_server(lab, prefect_url, configuration)
    _record_in_env(lab)
    return describe(lab)


def _record_in_env(lab) -> None:
    """The env's ``control`` part, so `lab env --exports` finds the site (workers or not)."""
    path = lab.directory / "env.json"
    env = json.loads(path.read_text())
    env["control"] = describe(lab)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(env, indent=2) + "\n")
    temporary.replace(path)


def identity_environment(lab, name: str) -> dict[str, str]:
    """PREFECT_API_URL and PREFECT_API_AUTH_STRING of one identity (a person or a worker)."""
    return {"PREFECT_API_URL": api_url(lab), "PREFECT_API_AUTH_STRING": proxy.auth_string(folder(lab), name)}


def _migrate_inventory(url: str) -> None:
    """The inventory's tables, made by the control user (their owner) before grants on them."""
    from hotspare.inventory.db import migrate

    engine = _inventory_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()


def _inventory_engine(url: str):
    from sqlalchemy import create_engine

    return create_engine(url, connect_args={"options": "-c timezone=UTC"})


def database_urls(lab) -> dict[str, str]:
    """The inventory's URL per role (control, worker, reporting), from the 0600 client.json."""
    client = json.loads((folder(lab) / "client.json").read_text())
    return {
        "control": client["database_url"],
        "worker": client["worker_database_url"],
        "reporting": client["reporting_database_url"],
    }


def _template() -> Path:
    """A stopped cluster whose ``prefect`` database Prefect already migrated (one per Prefect
    version): copying it spares each lab the ~1 min of migrations on a fresh database."""
    from importlib.metadata import version

    return TEMPLATE_ROOT / f"prefect-{version('prefect')}"


def _database_from_template(lab) -> PostgresServer:
    """The control site's cluster, copied from the template (made first if missing); not started."""
    template = _template()
    if not (template / "ready").exists():
        _make_template(lab, template)
    postgres_folder(lab).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    run(["cp", "-a", str(template / "postgres"), str(postgres_folder(lab))], "copying the PostgreSQL template", timeout=300)
    return PostgresServer(postgres_folder(lab), address(lab), POSTGRES_PORT, netns=netns(lab))


def _make_template(lab, template: Path) -> None:
    """initdb, databases ``prefect`` (migrated) and ``inventory``, clean shutdown, then copy."""
    draft_folder = postgres_folder(lab)
    database = PostgresServer(draft_folder, address(lab), POSTGRES_PORT, netns=netns(lab))
    daemon = database.start()
    record(lab, daemon, kind="postgres")
    try:
        database.create_database("prefect")
        database.create_database("inventory")
        environment = {
            **base_environment(lab, "migrate"),
            "PREFECT_API_DATABASE_CONNECTION_URL": database.url("prefect", driver="asyncpg"),
        }
        prefect = str(Path(sys.executable).parent / "prefect")
        result = subprocess.run(
            ["ip", "netns", "exec", netns(lab), prefect, "server", "database", "upgrade", "-y"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0:
            raise LabError(f"migrating the control site's Prefect database failed: {result.stderr[-2000:]}")
    finally:
        database.stop()
        _forget_daemons(lab, daemon.pid)
    shutil.rmtree(template, ignore_errors=True)
    draft = template.with_name(template.name + ".draft")
    shutil.rmtree(draft, ignore_errors=True)
    draft.mkdir(mode=0o700, parents=True)
    run(["cp", "-a", str(draft_folder), str(draft / "postgres")], "saving the PostgreSQL template", timeout=300)
    (draft / "ready").write_text("migrated\n")
    draft.rename(template)
    shutil.rmtree(draft_folder, ignore_errors=True)


def _forget_daemons(lab, pid: int) -> None:
    state = read_state(lab)
    state["daemons"] = [entry for entry in state["daemons"] if entry["pid"] != pid]
    _state_file(lab).write_text(json.dumps(state, indent=2) + "\n")


def describe(lab) -> dict:
    return {
        "facility": FACILITY,
        "address": address(lab),
        "netns": netns(lab),
        "api_url": api_url(lab),
        "postgres": f"{address(lab)}:{POSTGRES_PORT}",
        "client_file": str(folder(lab) / "client.json"),
    }


def _add_network(lab) -> None:
    """A namespace with its veth on the slot's bridge, like a lab host's (no sshd in it)."""
    network.apply_batch(
        [
            f"netns add {netns(lab)}",
            f"link add {veth(lab)} type veth peer name eth0 netns {netns(lab)}",
            f"link set {veth(lab)} master {lab.layout.bridge} up",
        ],
        "creating the control site's network",
    )
    network.apply_batch(
        [f"address add {address(lab)}/24 dev eth0", "link set lo up", "link set eth0 up"],
        "configuring the control site",
        netns(lab),
    )


def _start_prefect_server(lab, database_url: str, proxy_configuration: Path) -> None:
    """The Prefect server on the namespace's loopback, and nginx in front of it on the site's
    address: every client, the UI included, goes through the proxy (``proxy.py``), which is the
    only authentication (the server's own auth string would refuse every run's websocket)."""
    prefect = str(Path(sys.executable).parent / "prefect")
    upstream = f"http://127.0.0.1:{PREFECT_PORT}/api"
    command = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(PREFECT_PORT)]
    environment = {
        **base_environment(lab, "server"),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_UI_API_URL": api_url(lab),
        "PREFECT_API_URL": upstream,
    }
    daemon, process = start_in_netns(lab, "prefect server", netns(lab), command, environment, folder(lab) / "prefect-server.log")
    record(lab, daemon, kind="prefect-server")
    nginx, nginx_process = start_in_netns(
        lab,
        "api proxy",
        netns(lab),
        proxy.command(proxy_configuration),
        base_environment(lab, "proxy"),
        folder(lab) / "proxy.log",
    )
    record(lab, nginx, kind="proxy")
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None or nginx_process.poll() is not None:
            break
        if _healthy(api_url(lab)):  # through the proxy: both are up
            return
        time.sleep(0.5)
    if nginx_process.poll() is not None:
        tail = (proxy.folder(lab.slot) / "error.log").read_text(errors="replace")[-3000:]
        raise LabError(f"the control site's API proxy (nginx) ended at start; its error log ends:\n{tail}")
    tail = Path(daemon.log).read_text(errors="replace")[-3000:]
    raise LabError(
        f"the control site's Prefect server ({api_url(lab)}) did not become healthy within "
        f"{SERVER_START_SECONDS:g} s; its log ends:\n{tail}"
    )


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def base_environment(lab, name: str) -> dict[str, str]:
    """The machine's environment with a private PREFECT_HOME and HOTSPARE_HOME per process."""
    home = folder(lab) / name
    home.mkdir(mode=0o700, exist_ok=True)
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "HOTSPARE_"))}
    environment[MARK] = f"slot-{lab.slot}"  # found again by the next `lab up`/`down` (processes.py)
    environment.update(
        {
            "PREFECT_HOME": str(home / "prefect"),
            "HOTSPARE_HOME": str(home / "hotspare"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PATH": f"{Path(sys.executable).parent}:{environment.get('PATH', '/usr/bin:/bin')}",
        }
    )
    return environment


def start_in_netns(
    lab, name: str, namespace: str, command: list[str], environment: dict[str, str], log_path: Path
) -> tuple[Daemon, subprocess.Popen]:
    """Start ``command`` inside ``namespace`` (``ip netns exec`` execs: the PID stays the command's)."""
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace] + command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=environment,
        )
    log.info("started %s (pid %d) in %s, log %s", name, process.pid, namespace, log_path)
    lab._children[process.pid] = process
    return Daemon(name, process.pid, tuple(command), str(log_path)), process


def stop_site(lab) -> list[str]:
    """Stop workers, relays, the Prefect server and PostgreSQL by PID; remove the namespace."""
    sentences = []
    for entry in reversed(read_state(lab).get("daemons", [])):
        daemon = Daemon.from_json(entry)
        sentences.append(kill(daemon, lab._children.pop(daemon.pid, None), gentle=entry.get("kind") == "postgres"))
    if netns_inode(netns(lab)) is not None:
        sentences += stop_netns_processes(netns(lab))
    if run(["ip", "link", "show", veth(lab)], "looking for the control site's veth", check=False).returncode == 0:
        run(["ip", "link", "del", veth(lab)], "deleting the control site's veth")
    if netns_inode(netns(lab)) is not None:
        run(["ip", "netns", "del", netns(lab)], "deleting the control site's namespace")
        sentences.append(f"deleted namespace {netns(lab)}")
    _state_file(lab).unlink(missing_ok=True)
    proxy.remove(lab.slot)
    shutil.rmtree(postgres_folder(lab).parent, ignore_errors=True)
    _forget_in_env(lab)
    for sentence in sentences:
        log.info("%s", sentence)
    return sentences


def fail_site(lab, failed: bool) -> list[str]:
    """``lab fail control`` / ``lab heal control``: the control site's network drops (or carries
    again) all lab traffic, like east's hosts in ``lab fail east``. Its processes keep running
    (a cut uplink, not a power loss): the Prefect server, PostgreSQL and the control worker still
    talk to each other inside the site, but no worker or command outside reaches the API or the
    inventory (their connections time out), and the control worker reaches no lab host."""
    if netns_inode(netns(lab)) is None:
        raise LabError(f"the lab at slot {lab.slot} has no control site; start it with `hotspare lab up --workers`")
    if failed:
        network.apply_batch(network.make_fail(lab.layout), "failing the control site", netns(lab))
        log.info("failed the control site (%s): its traffic is now dropped", address(lab))
        return [FACILITY]
    for line in network.make_heal(lab.layout):
        result = run(["ip", "-n", netns(lab)] + line.split(), "healing the control site", check=False)
        if result.returncode != 0 and "No such process" not in result.stderr:
            raise LabError(f"healing the control site: {result.stderr.strip()}")
    log.info("healed the control site (%s)", address(lab))
    return [FACILITY]


def site_failed(lab) -> bool:
    """True when the control site's namespace holds the fail blackholes."""
    result = run(["ip", "-n", netns(lab), "route", "show", "type", "blackhole"], "reading the control site's routes", check=False)
    return result.returncode == 0 and lab.layout.halves[0] in result.stdout


def _forget_in_env(lab) -> None:
    """Drop ``control`` and ``workers`` from the lab's env.json (they are gone)."""
    path = lab.directory / "env.json"
    try:
        env = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    removed = [env.pop(key, None) for key in ("control", "workers")]
    if any(part is not None for part in removed):
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(env, indent=2) + "\n")
        temporary.replace(path)


def kill(daemon: Daemon, popen: subprocess.Popen | None = None, gentle: bool = False) -> str:
    """Stop one recorded process by PID. Prefect workers ignore SIGTERM (prefect-facts.md), so
    they get SIGKILL at once; PostgreSQL gets SIGTERM first (a clean shutdown)."""
    if gentle:
        return stop_pid(daemon.pid, daemon.name, lambda: runs_command(daemon.pid, daemon.cmdline), popen)
    if is_gone(daemon.pid) or not runs_command(daemon.pid, daemon.cmdline):
        return f"{daemon.name} (pid {daemon.pid}) is not running"
    try:
        os.killpg(daemon.pid, 9)  # its own session: its flow-run children go with it
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not is_gone(daemon.pid):
        if popen is not None:
            popen.poll()
        time.sleep(0.02)
    return f"stopped {daemon.name} (pid {daemon.pid}) with SIGKILL"
