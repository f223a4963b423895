"""`Lab`: a fleet of real hosts on one machine for tests, the demo and the benchmarks.

Each host is a real sshd in its own network namespace (own address on a bridge) and own
mount namespace (own /srv, /etc, /home, /root, /tmp, /var/tmp and a fresh /run; the lab
folder hidden). BIND serves the lab.test zone with TSIG updates,
aiosmtpd stores mail in a maildir. `up` writes a fleet file describing it all and an env
JSON that tests read. Layout of the lab folder:

    state.json   what runs (pids + command lines), so `down` works from any process
    env.json     the description returned by `env()`
    fleet.yaml   the fleet file (docs/fleet-example.yaml structure, real values)
    secrets.json client key, TSIG secret, one restic password per service (mode 0600)
    client_key, client_key.pub, known_hosts
    hosts/NAME/{etc,srv,home,root,tmp,var/tmp}  what that host sees there
    hosts/NAME/ssh/            its sshd config, host key, authorized_keys, pid file
    dns/ mail/ logs/

``Lab`` is the public face (up, down, env, status, fail, heal) and the build order; its parts
live beside it by concern: building hosts and files (``building.py``), daemons
(``daemons.py``), slot claims (``slots.py``), Prefect blocks (``blocks.py``), disks and BMCs
(``disks.py``, ``bmc.py``), the network (``network.py``), the phone and web endpoints and the
control site (``phone.py``, ``web.py``, ``control.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hotspare.lab import bmc, control, disks, network, phone, resolver, web
from hotspare.lab.blocks import LabBlocks
from hotspare.lab.building import LabBuilding, host_python
from hotspare.lab.daemons import NAMED, SSHD, LabDaemons
from hotspare.lab.errors import LabError
from hotspare.lab.host_namespace import lab_folder_problem
from hotspare.lab.probes import banner, http_get, soa_answers, wait_until
from hotspare.lab.processes import Daemon, is_running, netns_inode, stop_daemon, stop_marked, stop_netns_processes
from hotspare.lab.slots import CLAIMS_DIR, LabSlotClaims, _other_claims
from hotspare.lab.topology import BLOCK_NAMES, HOSTS, SERVICES, SSH_PORT, ZONE, HostSpec, SlotLayout, hosts_for_target
from hotspare.local_secrets import private_folder
from hotspare.probes import tcp_reachable

log = logging.getLogger("hotspare.lab")

REQUIRED_TOOLS = (SSHD, NAMED, resolver.UNBOUND, "tsig-keygen", "ip", "unshare", "cp", "ssh")


class Lab(LabBuilding, LabDaemons, LabSlotClaims, LabBlocks):
    """One lab: a folder on disk plus a slot (subnet, ports and name prefix)."""

    def __init__(self, directory: Path | str, slot: int = 0) -> None:
        self.directory = Path(directory).absolute()
        self.layout = SlotLayout(slot)
        self.slot = slot
        self._children: dict[int, subprocess.Popen] = {}

    @classmethod
    def from_env(cls, env: dict) -> Lab:
        """The Lab an env dict describes (for tests that only hold the env)."""
        return cls(Path(env["directory"]), int(env["slot"]))

    # ----- paths -----------------------------------------------------------------------

    def _path(self, *parts: str) -> Path:
        return self.directory.joinpath(*parts)

    def host_root(self, host: HostSpec) -> Path:
        """The host's folder on the machine (its /etc, /srv, /home, /root, /tmp, /var/tmp below it)."""
        return self._path("hosts", host.name)

    @property
    def _state_file(self) -> Path:
        return self._path("state.json")

    @property
    def _env_file(self) -> Path:
        return self._path("env.json")

    @property
    def _claim_file(self) -> Path:
        return CLAIMS_DIR / f"slot-{self.slot}.json"

    # ----- public API --------------------------------------------------------------------

    def up(self) -> dict:
        """Start the lab and return its env; idempotent, and self-healing after a crash.

        An already healthy lab is returned as is (after healing any injected failure, since
        `up` means every host reachable). Anything else left by an earlier lab in this
        folder or slot (stale pids, namespaces, links, routes) is removed first, then
        everything is built fresh.
        """
        _require_root_and_tools()
        self._check_directory()
        with self._locked():
            if self._healthy():
                self._heal_hosts(HOSTS)
                if self._sshd_answering(deadline_seconds=5.0):
                    log.info("lab in %s (slot %d) is already up", self.directory, self.slot)
                    return self.env()
                log.warning("lab in %s has unreachable hosts; rebuilding it", self.directory)
            self._check_slot_owner()
            self._stop_everything()
            self._check_ports_free()
            started = time.monotonic()
            try:
                self._build()
            except BaseException:
                log.error("lab start-up failed; stopping what was started (logs kept in %s)", self._path("logs"))
                self._stop_everything()
                raise
            self._update_state(up_seconds=round(time.monotonic() - started, 3))
            log.info("lab up in %.2f s", time.monotonic() - started)
            return self.env()

    def down(self) -> None:
        """Stop everything the lab started (by pid) and remove its network and run state.

        Host folders and logs stay for inspection; the next `up` rebuilds them. Calling it
        on a lab that is not up does nothing.
        """
        _require_root_and_tools()
        with self._locked():
            started = time.monotonic()
            self._stop_everything()
            log.info("lab down in %.2f s", time.monotonic() - started)

    def env(self) -> dict:
        """The lab's description (see module docstring); LabError if the lab is not up."""
        if not self._state_file.exists() or not self._env_file.exists():
            raise LabError(
                f"the lab in {self.directory} (slot {self.slot}) is not up; start it "
                f"with `hotspare lab up --dir {self.directory} --slot {self.slot}`"
            )
        return json.loads(self._env_file.read_text())

    def status(self) -> dict:
        """What runs and, per host, whether it is failed on purpose and whether it answers."""
        state = self._read_state()
        if state is None:
            return {"up": False, "directory": str(self.directory), "slot": self.slot}
        daemons = [Daemon.from_json(entry) for entry in state["daemons"]]
        running = {daemon.name: is_running(daemon) for daemon in daemons}
        with ThreadPoolExecutor(max_workers=len(HOSTS) + 4) as pool:
            host_probes = {host.name: pool.submit(self._probe_host, host) for host in HOSTS}
            app_probes = {
                (service.name, host_name): pool.submit(http_get, self._health_url(service, host_name), 1.0)
                for service in SERVICES
                for host_name in (service.production, service.mirror)
            }
            dns_probe = pool.submit(soa_answers, ZONE, "127.0.0.1", self.layout.dns_port)
            smtp_probe = pool.submit(banner, "127.0.0.1", self.layout.smtp_port)
        hosts = {name: probe.result() for name, probe in host_probes.items()}
        return {
            "up": all(running.values()) and len(running) == len(HOSTS) + 2,
            "directory": str(self.directory),
            "slot": self.slot,
            "up_seconds": state.get("up_seconds"),
            "daemons": {d.name: {"pid": d.pid, "running": running[d.name], "log": d.log} for d in daemons},
            "hosts": hosts,
            "dns": {"port": self.layout.dns_port, "answering": dns_probe.result()},
            "smtp": {"port": self.layout.smtp_port, "answering": smtp_probe.result().startswith(b"220")},
            "apps": {f"{service}@{host}": probe.result() is not None for (service, host), probe in app_probes.items()},
        }

    def fail(self, target: str) -> list[str]:
        """Make a host, or every host of a facility, silently unreachable; returns names."""
        if target == control.FACILITY:  # the control site (`lab up --workers`)
            with self._locked():
                return control.fail_site(self, failed=True)
        hosts = hosts_for_target(target)
        with self._locked():
            self._require_up()
            for host in hosts:
                network.fail(self.layout, host)
                log.info("failed %s (%s): its traffic is now dropped", host.name, self.layout.address(host))
            for sentence in bmc.fail_facility(self.layout, target, failed=True):
                log.info("%s", sentence)
        return [host.name for host in hosts]

    def heal(self, target: str) -> list[str]:
        """Undo `fail` for a host or a facility; returns the host names."""
        if target == control.FACILITY:  # the control site (`lab up --workers`)
            with self._locked():
                return control.fail_site(self, failed=False)
        hosts = hosts_for_target(target)
        with self._locked():
            self._require_up()
            self._heal_hosts(hosts)
            for sentence in bmc.fail_facility(self.layout, target, failed=False):
                log.info("%s", sentence)
        return [host.name for host in hosts]

    # ----- up: building --------------------------------------------------------------------

    def _build(self) -> None:
        """Everything `up` creates, in order; state.json is written first and kept current."""
        self._write_state({"slot": self.slot, "directory": str(self.directory), "started_at": time.time(), "daemons": []})
        self._claim_slot()
        self._prepare_directories()
        python = host_python()
        host_keys = self._write_keys()
        network.setup(self.layout)
        self._build_host_filesystems(python, host_keys)
        self._start_daemons()
        bmc.start(self.directory, self.layout)  # one simulated BMC per host (bmc.py)
        self._provision_services()
        self._write_fleet(host_keys)
        self._env_file.write_text(json.dumps(self._describe(), indent=2) + "\n")

    def _describe(self) -> dict:
        """The env dict: where everything is, for tests, the demo and the benchmarks."""
        return {
            "fleet_file": str(self._path("fleet.yaml")),
            "zone": ZONE,
            "dns": {"address": "127.0.0.1", "port": self.layout.dns_port},
            "ssh": {"user": "root", "key": str(self._path("client_key")), "known_hosts": str(self._path("known_hosts"))},
            "smtp": {"address": "127.0.0.1", "port": self.layout.smtp_port, "maildir": str(self._path("mail"))},
            "hosts": {
                host.name: {
                    "address": self.layout.address(host),
                    "ssh_port": SSH_PORT,
                    "facility": host.facility,
                    "role": host.role,
                    "root": str(self.host_root(host)),
                    "netns": self.layout.netns(host),
                }
                for host in HOSTS
            },
            "services": {
                service.name: {
                    "dns_name": service.dns_name,
                    "production": service.production,
                    "mirror": service.mirror,
                    "app_port": service.port,
                    "data_path": service.data_path,
                }
                for service in SERVICES
            },
            "directory": str(self.directory),
            "slot": self.slot,
            "secrets_file": str(self._path("secrets.json")),
            "blocks": dict(BLOCK_NAMES),
            "bmcs": bmc.describe(self.layout),
            "phone": phone.describe(self),
            **web.describe(self),
            **resolver.describe(self),
        }

    # ----- health, teardown --------------------------------------------------------------

    def _healthy(self) -> bool:
        """True when state says up and every recorded daemon and namespace still exists."""
        state = self._read_state()
        if state is None or not self._env_file.exists() or "up_seconds" not in state:
            return False
        daemons = self._daemons()
        return (
            len(daemons) == len(HOSTS) + 2
            and all(is_running(d) for d in daemons)
            and all(netns_inode(self.layout.netns(h)) is not None for h in HOSTS)
            and resolver.running(self)
            and self._owns_claim()
        )

    def _sshd_answering(self, deadline_seconds: float) -> bool:
        """True when every host's sshd greets within the deadline."""
        try:
            with ThreadPoolExecutor(max_workers=len(HOSTS)) as pool:
                for wait in [
                    pool.submit(
                        wait_until,
                        host.name,
                        lambda host=host: banner(self.layout.address(host), SSH_PORT).startswith(b"SSH-"),
                        deadline_seconds,
                    )
                    for host in HOSTS
                ]:
                    wait.result()
        except LabError:
            return False
        return True

    def _probe_host(self, host: HostSpec) -> dict:
        """One host's line in `status()`."""
        address = self.layout.address(host)
        return {
            "address": address,
            "facility": host.facility,
            "role": host.role,
            "failed": network.is_failed(self.layout, host),
            "reachable": tcp_reachable(address, SSH_PORT, timeout=1.0),
        }

    def _heal_hosts(self, hosts) -> None:
        """Remove injected failures and switch powered-off hosts on again (their apps stay
        stopped, as after a fence); hosts that were not failed are left alone."""
        for host in hosts:
            if bmc.power_on(self.directory, self.layout, host):
                log.info("powered %s on again through its BMC's switch (its app stays stopped)", host.name)
            if netns_inode(self.layout.netns(host)) is not None and network.heal(self.layout, host):
                log.info("healed %s (%s)", host.name, self.layout.address(host))

    def _stop_everything(self) -> None:
        """Stop recorded daemons, then anything left in our namespaces, then the network.

        Works from state.json if present and from the slot's deterministic names otherwise.
        Leaves the network alone if the slot belongs to another live lab.
        """
        state = self._read_state() or {}
        phone.stop(self)
        control.stop_site(self)  # the control site and its workers (`lab up --workers`), if any
        for daemon in self._daemons():
            log.info("%s", stop_daemon(daemon, self._children.pop(daemon.pid, None)))
        for sentence in web.stop(self):
            log.info("%s", sentence)
        for sentence in resolver.stop(self):
            log.info("%s", sentence)
        # The folder's earlier lab may have run on another slot than the one asked for now.
        for slot in sorted({self.slot, int(state.get("slot", self.slot))}):
            Lab(self.directory, slot)._remove_slot_network()
        for sentence in disks.teardown(self.directory):  # after the hosts that used them
            log.info("%s", sentence)
        for path in (self._state_file, self._env_file):
            path.unlink(missing_ok=True)

    def _remove_slot_network(self) -> None:
        """Stop what runs in this slot's namespaces and delete its network and claim,
        unless the slot belongs to a live lab in another folder."""
        owner = self._slot_owner_elsewhere()
        if owner is not None:
            log.info("slot %d belongs to the lab in %s; leaving its network alone", self.slot, owner)
            return
        for sentence in stop_marked(self.slot):  # whatever the slot's labs started, state files or not
            log.info("%s", sentence)
        for host in HOSTS:
            for sentence in stop_netns_processes(self.layout.netns(host)):
                log.info("%s", sentence)
        for sentence in bmc.teardown(self.directory, self.layout):  # BMCs, management networks
            log.info("%s", sentence)
        if self._owns_claim():
            self._claim_file.unlink()
        for sentence in network.teardown(self.layout, last_lab=not _other_claims(self.slot)):
            log.info("%s", sentence)

    def _require_up(self) -> None:
        if self._read_state() is None:
            self.env()  # raises the "not up" error with the command to fix it

    # ----- state and slot claim ----------------------------------------------------------

    def _read_state(self) -> dict | None:
        try:
            return json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return None

    def _write_state(self, state: dict) -> None:
        temporary = self._state_file.with_suffix(".tmp")
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(state, indent=2) + "\n")
        temporary.replace(self._state_file)

    def _update_state(self, **changes) -> None:
        state = self._read_state() or {}
        state.update(changes)
        self._write_state(state)

    @contextlib.contextmanager
    def _locked(self):
        """Serialize up/down/fail/heal on one lab folder across processes."""
        private_folder(self.directory, "the lab folder")  # it holds the lab's keys and secrets
        with open(self._path(".lock"), "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _check_directory(self) -> None:
        """The lab folder must not be where hosts have their own folders (host_namespace.py)."""
        problem = lab_folder_problem(self.directory.resolve())
        if problem is not None:
            raise LabError(problem)


def _require_root_and_tools() -> None:
    """The lab needs root (namespaces, bind mounts) and the Debian packages of the brief."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, bind mounts)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise LabError(
            f"missing programs: {', '.join(missing)} (install openssh-server, bind9, bind9-utils, iproute2, util-linux)"
        )


def _write_private(path: Path, text: str) -> None:
    """Write a secret readable by root only (created 0600, never briefly wider)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
