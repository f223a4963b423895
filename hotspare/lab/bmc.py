"""The lab's BMCs: one simulated baseboard management controller per host.

Each BMC has its own address, ``<subnet>.(100 + host octet)``, on a management network per
facility: a namespace ``hs<slot>-mgmt-<facility>`` joined to the slot's bridge. So `lab fail
HOST` (the host's uplink) leaves its BMC answering, while `lab fail FACILITY` also cuts that
facility's management network. Most BMCs are OpenIPMI ``ipmi_sim`` (RMCP+ on UDP 623, a
command console on TCP 9000 of the same address for fault injection); REDFISH_HOSTS speak
Redfish instead: ``redfish_bmc.py`` serving a folder of JSON resources (re-read on every GET)
on TCP 8000, plain HTTP with basic authentication.

Every BMC switches its host's power (``power_switch.py``: ipmi_sim's ``chassis_control``
program, the Redfish ``ComputerSystem.Reset`` action): off drops the host's traffic and ends
its processes, as a fence does to a real server; ``lab heal`` switches it on again.

Credentials are per facility: the BMCs of east log in with ``lab-bmc-east``'s user and password,
west's with ``lab-bmc-west``'s, so a worker given one facility's block cannot switch off the
other facility's servers (``proxy.facility_blocks`` says who reads which).

Files: ``<lab>/bmc/`` (0700) holds credentials-<facility>.json (0600), daemons.json (pids and
command lines) and one folder per host. Teardown stops recorded pids, then anything left in the
management namespaces (crash that lost the files), then deletes veths and namespaces.
"""

from __future__ import annotations

import json
import logging
import secrets as random_secrets
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path

from hotspare.lab import bmc_render
from hotspare.lab.errors import LabError
from hotspare.lab.network import apply_batch, make_fail, make_heal
from hotspare.lab.probes import wait_until
from hotspare.lab.processes import (
    Daemon,
    netns_inode,
    run,
    start_daemon,
    stop_daemon,
    stop_netns_processes,
)
from hotspare.lab.topology import FACILITIES, HOSTS, HostSpec, SlotLayout
from hotspare.local_secrets import write_private

log = logging.getLogger("hotspare.lab")

BMC_BLOCK_PREFIX = "lab-bmc-"
BMC_USER = "admin"
IPMI_PORT = 623
CONSOLE_PORT = 9000
REDFISH_PORT = 8000
REDFISH_HOSTS = ("prod-west",)
BMC_OCTET_OFFSET = 100
REDFISH_ROOT = "/redfish/v1"
START_SECONDS = 20.0
PARTS = ("psu", "fan", "temp")


def block_name(facility: str) -> str:
    """The BmcCredentials block of a facility's BMCs: ``lab-bmc-<facility>``."""
    return f"{BMC_BLOCK_PREFIX}{facility}"


def credentials_file(directory: Path, facility: str) -> Path:
    return _folder(directory) / f"credentials-{facility}.json"


def bmc_facilities() -> list[str]:
    """The facilities that hold a host, so a BMC (and a credentials block)."""
    return sorted({host.facility for host in HOSTS})


def protocol(host: HostSpec) -> str:
    return "redfish" if host.name in REDFISH_HOSTS else "ipmi"


def address(layout: SlotLayout, host: HostSpec) -> str:
    return f"{layout.subnet_base}.{BMC_OCTET_OFFSET + host.last_octet}"


def port(host: HostSpec) -> int:
    return REDFISH_PORT if protocol(host) == "redfish" else IPMI_PORT


def management_netns(layout: SlotLayout, facility: str) -> str:
    return f"{layout.prefix}-mgmt-{facility}"


def _management_veth(layout: SlotLayout, facility: str) -> str:
    index = [f.name for f in FACILITIES].index(facility)
    return f"{layout.prefix}m{index}"


def location(host: HostSpec) -> str:
    """A rack position for the fleet file (what on-site staff look for)."""
    return f"rack {host.facility[0].upper()}{HOSTS.index(host) + 1}, U{10 + 2 * HOSTS.index(host)}"


def _folder(directory: Path) -> Path:
    return Path(directory) / "bmc"


def power_switch_arguments(directory: Path, layout: SlotLayout, host: HostSpec) -> list[str]:
    """What the host's power switch needs: its state file, namespace, sshd pid file, blackholes."""
    return [
        str(_folder(directory) / host.name / "power"),
        layout.netns(host),
        str(Path(directory) / "hosts" / host.name / "ssh" / "sshd.pid"),
        *layout.halves,
    ]


def _switch_command(directory: Path, layout: SlotLayout, host: HostSpec) -> list[str]:
    script = Path(__file__).with_name("power_switch.py")
    return [sys.executable, "-I", str(script), *power_switch_arguments(directory, layout, host)]


def is_powered_off(directory: Path, host: HostSpec) -> bool:
    try:
        return (_folder(directory) / host.name / "power").read_text().strip() == "0"
    except OSError:
        return False


def power_on(directory: Path, layout: SlotLayout, host: HostSpec) -> bool:
    """Switch a powered-off host on again (what `lab heal` does); returns whether it was off."""
    if not is_powered_off(directory, host):
        return False
    run(_switch_command(directory, layout, host) + ["set", "power", "1"], f"powering {host.name} on")
    return True


# ----- start --------------------------------------------------------------------------------


def start(directory: Path, layout: SlotLayout) -> None:
    """Management networks, credentials, and one BMC per host, answering before returning."""
    started_at = time.monotonic()
    folder = _folder(directory)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700)
    passwords = {facility: random_secrets.token_urlsafe(12) for facility in bmc_facilities()}
    for facility, password in passwords.items():
        write_private(credentials_file(directory, facility), json.dumps({"username": BMC_USER, "password": password}) + "\n")
    _write_json(folder / "daemons.json", [])
    for facility in FACILITIES:
        netns = management_netns(layout, facility.name)
        veth = _management_veth(layout, facility.name)
        apply_batch(
            [
                f"netns add {netns}",
                f"link add {veth} type veth peer name eth0 netns {netns}",
                f"link set {veth} master {layout.bridge} up",
            ],
            f"creating management network {netns}",
        )
        lines = [f"address add {address(layout, host)}/24 dev eth0" for host in HOSTS if host.facility == facility.name]
        apply_batch(lines + ["link set lo up", "link set eth0 up"], f"configuring {netns}", netns)
    compiled = folder / "sdr.20.main"
    (folder / "main.sdrs").write_text(bmc_render.sdrs())
    run(["sdrcomp", "-o", str(compiled), str(folder / "main.sdrs")], "compiling BMC sensors")
    started = []
    for host in HOSTS:
        if protocol(host) == "redfish":
            started.append((host, _start_redfish(directory, layout, host)))
        else:
            started.append((host, _start_ipmi(directory, layout, host, compiled, passwords[host.facility])))
    for host, (daemon, process, ready) in started:
        wait_until(
            f"BMC of {host.name} ({address(layout, host)})",
            ready,
            START_SECONDS,
            log_path=daemon.log,
            alive=lambda process=process: process.poll() is None,
        )
    log.info("bmcs: %d BMCs answering in %.2f s", len(started), time.monotonic() - started_at)


def _start_ipmi(directory: Path, layout: SlotLayout, host: HostSpec, compiled: Path, password: str):
    folder = _folder(directory) / host.name
    state = folder / "state"
    (state / "ipmi_sim" / host.name).mkdir(parents=True)
    shutil.copy(compiled, state / "ipmi_sim" / host.name / "sdr.20.main")
    bmc_address = address(layout, host)
    (folder / "power").write_text("1\n")
    write_private(
        folder / "lan.conf",
        bmc_render.lan_conf(
            host.name,
            bmc_address,
            IPMI_PORT,
            CONSOLE_PORT,
            BMC_USER,
            password,
            chassis_control=shlex.join(_switch_command(directory, layout, host)),
        ),
    )
    (folder / "lab.emu").write_text(bmc_render.emu_commands())
    command = ["ipmi_sim", "-c", str(folder / "lan.conf"), "-f", str(folder / "lab.emu"), "-s", str(state), "-n"]
    daemon, process = _start(directory, layout, host, command, command)
    return daemon, process, lambda: _udp_bound(daemon.pid, bmc_address, IPMI_PORT)


def _start_redfish(directory: Path, layout: SlotLayout, host: HostSpec):
    host_folder = _folder(directory) / host.name
    folder = host_folder / "redfish"
    write_redfish(folder, bmc_render.redfish_tree(host.name))
    (host_folder / "power").write_text("1\n")
    state, netns, sshd_pidfile, *halves = power_switch_arguments(directory, layout, host)
    _write_json(host_folder / "switch.json", {"state": state, "netns": netns, "sshd_pidfile": sshd_pidfile, "halves": halves})
    bmc_address = address(layout, host)
    script = str(Path(__file__).with_name("redfish_bmc.py"))
    tail = [
        script,
        bmc_address,
        str(REDFISH_PORT),
        str(folder),
        str(credentials_file(directory, host.facility)),
        str(host_folder / "switch.json"),
    ]
    daemon, process = _start(directory, layout, host, [sys.executable, "-I"] + tail, tail)
    return daemon, process, lambda: _accepts(bmc_address, REDFISH_PORT)


def _start(directory: Path, layout: SlotLayout, host: HostSpec, command: list[str], expected: list[str]):
    netns = management_netns(layout, host.facility)
    log_path = _folder(directory) / f"bmc-{host.name}.log"
    daemon, process = start_daemon(
        f"bmc {host.name}", ["ip", "netns", "exec", netns] + command, expected, log_path, slot=layout.slot
    )
    daemons = json.loads((_folder(directory) / "daemons.json").read_text())
    _write_json(_folder(directory) / "daemons.json", daemons + [daemon.to_json()])
    return daemon, process


def _accepts(bmc_address: str, tcp_port: int) -> bool:
    """True when a TCP connection to address:port is accepted (the Redfish BMC listens)."""
    try:
        with socket.create_connection((bmc_address, tcp_port), timeout=1.0):
            return True
    except OSError:
        return False


def _udp_bound(pid: int, bmc_address: str, udp_port: int) -> bool:
    """True when the process's namespace has a UDP socket bound to address:port.

    Read from /proc, not by connecting: ipmi_sim dies of SIGPIPE when a console client
    hangs up before its greeting is written, so a TCP probe would kill it.
    """
    wanted = "{:08X}:{:04X}".format(int.from_bytes(socket.inet_aton(bmc_address), "little"), udp_port)
    try:
        table = Path(f"/proc/{pid}/net/udp").read_text()
    except OSError:
        return False
    return any(line.split()[1] == wanted for line in table.splitlines()[1:])


# ----- teardown ------------------------------------------------------------------------------


def teardown(directory: Path, layout: SlotLayout) -> list[str]:
    """Stop the BMCs (recorded pids, then whatever runs in the management namespaces) and
    delete the management networks of the slot; absent parts are fine."""
    done = []
    try:
        recorded = json.loads((_folder(directory) / "daemons.json").read_text())
    except (OSError, ValueError):
        recorded = []
    for entry in recorded:
        done.append(stop_daemon(Daemon.from_json(entry)))
    if _folder(directory).is_dir():
        _write_json(_folder(directory) / "daemons.json", [])
    links = run(["ip", "-o", "link", "show"], "listing interfaces").stdout
    for facility in FACILITIES:
        netns = management_netns(layout, facility.name)
        done += stop_netns_processes(netns)
        veth = _management_veth(layout, facility.name)
        if f" {veth}@" in links or f" {veth}:" in links:
            run(["ip", "link", "del", veth], f"deleting {veth}")
            done.append(f"deleted veth {veth}")
        if netns_inode(netns) is not None:
            run(["ip", "netns", "del", netns], f"deleting namespace {netns}")
            done.append(f"deleted namespace {netns}")
    return done


# ----- faults ---------------------------------------------------------------------------------


def fail_facility(layout: SlotLayout, target: str, failed: bool) -> list[str]:
    """Cut (or restore) a facility's management network when `target` is a facility."""
    if target not in [facility.name for facility in FACILITIES]:
        return []
    netns = management_netns(layout, target)
    if netns_inode(netns) is None:
        return []
    if failed:
        apply_batch(make_fail(layout), f"failing management network {netns}", netns)
        return [f"management network {netns} cut"]
    for line in make_heal(layout):
        run(["ip", "-n", netns] + line.split(), f"healing {netns}", check=False)
    return [f"management network {netns} restored"]


def set_part(directory: Path, layout: SlotLayout, host: HostSpec, part: str, broken: bool) -> str:
    """Make the host's BMC report a part broken (or repaired); returns what it did."""
    if part not in PARTS:
        raise LabError(f"unknown part {part!r}; use disk, {', '.join(PARTS)}")
    what = "broken" if broken else "repaired"
    if protocol(host) == "redfish":
        folder = _folder(directory) / host.name / "redfish"
        write_redfish(folder, bmc_render.redfish_fault(read_redfish(folder), part, broken))
        return f"{host.name}: Redfish BMC now reports {part} {what}"
    for command in bmc_render.console_commands(part, broken):
        _console(address(layout, host), command)
    return f"{host.name}: IPMI BMC now reports {part} {what}"


def _console(bmc_address: str, command: str) -> None:
    """Send one line to ipmi_sim's console and wait for its next prompt."""
    try:
        with socket.create_connection((bmc_address, CONSOLE_PORT), timeout=5.0) as connection:
            _read_prompt(connection)
            connection.sendall(command.encode() + b"\n")
            answer = _read_prompt(connection)
    except OSError as error:
        raise LabError(
            f"BMC console {bmc_address}:{CONSOLE_PORT} did not answer ({error}); is the lab up and the facility healed?"
        ) from error
    if b"error" in answer.lower() or b"invalid" in answer.lower():
        raise LabError(f"BMC console refused {command!r}: {answer.decode(errors='replace')}")


def _read_prompt(connection: socket.socket) -> bytes:
    received = b""
    deadline = time.monotonic() + 5.0
    while not received.rstrip().endswith(b">") and time.monotonic() < deadline:
        chunk = connection.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def write_redfish(folder: Path, resources: dict[str, dict]) -> None:
    """Write resources as the lab's Redfish BMC reads them (`<folder>/<path below /redfish/v1>/index.json`),
    each replaced atomically."""
    for path, body in resources.items():
        relative = path.removeprefix(REDFISH_ROOT).strip("/")
        target = folder / relative / "index.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(body, indent=2) + "\n")
        temporary.replace(target)


def read_redfish(folder: Path) -> dict[str, dict]:
    """The resources `write_redfish` wrote, by Redfish path."""
    resources = {}
    for index in folder.rglob("index.json"):
        relative = str(index.parent.relative_to(folder))
        path = REDFISH_ROOT if relative == "." else f"{REDFISH_ROOT}/{relative}"
        resources[path] = json.loads(index.read_text())
    return resources


# ----- description ----------------------------------------------------------------------------


def describe(layout: SlotLayout) -> dict:
    """env.json's `bmcs`: protocol, address, port and credentials block per host."""
    return {
        host.name: {
            "protocol": protocol(host),
            "address": address(layout, host),
            "port": port(host),
            "credentials_block": block_name(host.facility),
            "management_netns": management_netns(layout, host.facility),
        }
        for host in HOSTS
    }


def annotate_fleet(fleet: dict, layout: SlotLayout) -> dict:
    """Add each server's `bmc` and `location` to the fleet dict the lab writes."""
    for server in fleet["servers"]:
        host = next(h for h in HOSTS if h.name == server["name"])
        server["bmc"] = {
            "protocol": protocol(host),
            "address": address(layout, host),
            "port": port(host),
            "credentials_block": block_name(host.facility),
        }
        if protocol(host) == "redfish":
            server["bmc"]["scheme"] = "http"  # the lab's Redfish BMC speaks plain HTTP
        server["location"] = location(host)
    return fleet


def credential_blocks(directory: Path) -> dict:
    """{block name: BmcCredentials}, one per facility, for `Lab.register_blocks` (imports Prefect
    only here)."""
    from blocks.credentials import BmcCredentials

    blocks = {}
    for facility in bmc_facilities():
        stored = json.loads(credentials_file(directory, facility).read_text())
        blocks[block_name(facility)] = BmcCredentials(username=stored["username"], password=stored["password"])
    return blocks


def _write_json(path: Path, value) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=2) + "\n")
    temporary.replace(path)
