"""`Lab`: a fleet of real hosts on one machine for tests, the demo and the benchmarks.

Each host is a real sshd in its own network namespace (own address on a bridge) and own
mount namespace (own /srv, /etc, /home). BIND serves the lab.test zone with TSIG updates,
aiosmtpd stores mail in a maildir. `up` writes a fleet file describing it all and an env
JSON that tests read. Layout of the lab folder:

    state.json   what runs (pids + command lines), so `down` works from any process
    env.json     the description returned by `env()`
    fleet.yaml   the fleet file (docs/fleet-example.yaml structure, real values)
    secrets.json client key, TSIG secret, one restic password per service (mode 0600)
    client_key, client_key.pub, known_hosts
    hosts/NAME/{etc,srv,home}  what that host sees as /etc, /srv, /home
    hosts/NAME/ssh/            its sshd config, host key, authorized_keys, pid file
    dns/ mail/ logs/
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets as random_secrets
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from hotspare.lab import bmc, disks, network, render
from hotspare.lab import phone  # the recording phone provider endpoint (phone.py)
from hotspare.lab.errors import LabError
from hotspare.lab.keys import generate_ed25519, tsig_secret
from hotspare.lab.probes import banner, http_get, port_in_use, soa_answers, wait_until
from hotspare.probes import tcp_reachable
from hotspare.lab.processes import (
    Daemon,
    is_running,
    netns_inode,
    run,
    start_daemon,
    stop_daemon,
    stop_netns_processes,
)
from hotspare.lab.remote import ssh_argv
from hotspare.lab import web
from hotspare.lab import control  # the control site: Prefect server, inventory, workers (control.py)
from hotspare.local_secrets import FOLDER_MODE, private_folder
from hotspare.lab.topology import (
    APP_PORT,
    BLOCK_NAMES,
    HOSTS,
    SERVICES,
    SSH_PORT,
    TSIG_KEY_NAME,
    ZONE,
    HostSpec,
    ServiceSpec,
    SlotLayout,
    host_by_name,
    hosts_for_target,
    restic_block,
)

log = logging.getLogger("hotspare.lab")

SSHD = "/usr/sbin/sshd"
NAMED = "/usr/sbin/named"
REQUIRED_TOOLS = (SSHD, NAMED, "tsig-keygen", "ip", "unshare", "cp", "ssh")
CLAIMS_DIR = Path("/run/hotspare-lab")
# Paths each host gets its own copy of; the lab folder must not live under them, or the
# bind mounts would hide the host's own sshd config.
PRIVATE_PATHS = ("/srv", "/etc", "/home")
# Runs inside the host's namespaces: $1 = host folder, $2 = sshd config,
# $3 = host name (own UTS namespace, so `hostname` tells the hosts apart).
HOST_BOOT_SCRIPT = (
    'hostname "$3" && mount --bind "$1/srv" /srv && mount --bind "$1/etc" /etc && '
    'mount --bind "$1/home" /home && exec /usr/sbin/sshd -D -e -f "$2"'
)
SSHD_START_SECONDS = 15.0
NAMED_START_SECONDS = 20.0
SMTP_START_SECONDS = 20.0
APP_START_SECONDS = 15.0
PROVISION_SECONDS = 60.0


class Lab:
    """One lab: a folder on disk plus a slot (subnet, ports and name prefix)."""

    def __init__(self, directory: Path | str, slot: int = 0) -> None:
        self.directory = Path(directory).absolute()
        self.layout = SlotLayout(slot)
        self.slot = slot
        self._children: dict[int, subprocess.Popen] = {}

    @classmethod
    def from_env(cls, env: dict) -> "Lab":
        """The Lab an env dict describes (for tests that only hold the env)."""
        return cls(Path(env["directory"]), int(env["slot"]))

    # ----- paths -----------------------------------------------------------------------

    def _path(self, *parts: str) -> Path:
        return self.directory.joinpath(*parts)

    def host_root(self, host: HostSpec) -> Path:
        """The host's folder on the machine (its /etc, /srv and /home live below it)."""
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
                log.error("lab start-up failed; stopping what was started (logs kept in %s)",
                          self._path("logs"))
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
            raise LabError(f"the lab in {self.directory} (slot {self.slot}) is not up; start it "
                           f"with `hotspare lab up --dir {self.directory} --slot {self.slot}`")
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
                (service.name, host_name): pool.submit(http_get, self._health_url(host_name), 1.0)
                for service in SERVICES for host_name in (service.production, service.mirror)
            }
            dns_probe = pool.submit(soa_answers, ZONE, "127.0.0.1", self.layout.dns_port)
            smtp_probe = pool.submit(banner, "127.0.0.1", self.layout.smtp_port)
        hosts = {name: probe.result() for name, probe in host_probes.items()}
        return {
            "up": all(running.values()) and len(running) == len(HOSTS) + 2,
            "directory": str(self.directory),
            "slot": self.slot,
            "up_seconds": state.get("up_seconds"),
            "daemons": {d.name: {"pid": d.pid, "running": running[d.name], "log": d.log}
                        for d in daemons},
            "hosts": hosts,
            "dns": {"port": self.layout.dns_port, "answering": dns_probe.result()},
            "smtp": {"port": self.layout.smtp_port,
                     "answering": smtp_probe.result().startswith(b"220")},
            "apps": {f"{service}@{host}": probe.result() is not None
                     for (service, host), probe in app_probes.items()},
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
                log.info("failed %s (%s): its traffic is now dropped", host.name,
                         self.layout.address(host))
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

    def register_blocks(self) -> list[str]:
        """Save the lab's credentials as Prefect blocks in the current Prefect API.

        Imports Prefect and the block classes only here, so importing the lab never needs
        a Prefect server.
        """
        from blocks.credentials import (
            BackupRepositoryPassword,
            DnsUpdateKey,
            SmtpServer,
            SshCredentials,
        )

        self._require_up()
        stored = json.loads(self._path("secrets.json").read_text())
        blocks = {
            BLOCK_NAMES["ssh"]: SshCredentials(user=stored["ssh"]["user"],
                                               private_key=stored["ssh"]["private_key"]),
            BLOCK_NAMES["tsig"]: DnsUpdateKey(key_name=stored["tsig"]["key_name"],
                                              algorithm=stored["tsig"]["algorithm"],
                                              secret=stored["tsig"]["secret"]),
            BLOCK_NAMES["smtp"]: SmtpServer(host=stored["smtp"]["host"],
                                            port=stored["smtp"]["port"],
                                            username=None, password=None, starttls=False),
        }
        for service in SERVICES:
            blocks[restic_block(service.name)] = BackupRepositoryPassword(
                password=stored["restic"]["passwords"][service.name])
        blocks.update(phone.blocks(self))
        blocks.update(bmc.credential_blocks(self.directory))
        for name, block in blocks.items():
            block.save(name, overwrite=True)
            log.info("saved block %s (%s)", name, type(block).__name__)
        return list(blocks)

    # ----- up: building --------------------------------------------------------------------

    def _build(self) -> None:
        """Everything `up` creates, in order; state.json is written first and kept current."""
        self._write_state({"slot": self.slot, "directory": str(self.directory),
                           "started_at": time.time(), "daemons": []})
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

    def _prepare_directories(self) -> None:
        """Fresh hosts/, dns/, mail/ and logs/ folders (an earlier lab's are removed)."""
        private_folder(self.directory, "the lab folder")
        for name in ("hosts", "dns", "mail", "logs"):
            shutil.rmtree(self._path(name), ignore_errors=True)
            self._path(name).mkdir()
        self._path("dns").chmod(FOLDER_MODE)  # holds the TSIG key
        for part in ("tmp", "new", "cur"):
            # mailbox.Maildir only makes these when the folder itself does not exist yet.
            self._path("mail", part).mkdir()
        for path in PRIVATE_PATHS + ("/run/sshd",):
            Path(path).mkdir(mode=0o755, exist_ok=True)

    def _write_keys(self) -> dict[str, str]:
        """Client key, host keys, known_hosts, TSIG key and secrets.json; returns host keys."""
        client_private, client_public = generate_ed25519("hotspare-lab-client")
        _write_private(self._path("client_key"), client_private)
        self._path("client_key.pub").write_text(client_public + "\n")
        host_keys = {}
        for host in HOSTS:
            ssh_dir = self.host_root(host) / "ssh"
            ssh_dir.mkdir(parents=True)
            ssh_dir.chmod(FOLDER_MODE)  # holds the host's private key
            private, public = generate_ed25519(f"{host.name}.{ZONE}")
            _write_private(ssh_dir / "ssh_host_ed25519_key", private)
            (ssh_dir / "ssh_host_ed25519_key.pub").write_text(public + "\n")
            (ssh_dir / "authorized_keys").write_text(client_public + "\n")
            host_keys[host.name] = " ".join(public.split()[:2])
        self._path("known_hosts").write_text(render.known_hosts(
            [(self.layout.address(host), host_keys[host.name]) for host in HOSTS]))
        key_text = run(["tsig-keygen", "-a", "hmac-sha256", TSIG_KEY_NAME], "making TSIG key").stdout
        _write_private(self._path("dns", "tsig.key"), key_text)
        _write_private(self._path("secrets.json"), json.dumps({
            "ssh": {"user": "root", "private_key": client_private},
            "tsig": {"key_name": TSIG_KEY_NAME, "algorithm": "hmac-sha256",
                     "secret": tsig_secret(key_text)},
            "smtp": {"host": "127.0.0.1", "port": self.layout.smtp_port},
            "restic": {"passwords": {s.name: random_secrets.token_urlsafe(24) for s in SERVICES}},
            "app_users": {s.production: {u.name: random_secrets.token_urlsafe(12) for u in s.users}
                          for s in SERVICES},
        }, indent=2) + "\n")
        return host_keys

    def _build_host_filesystems(self, python: str, host_keys: dict[str, str]) -> None:
        """Per host: a copy of /etc (so useradd works per host), empty /srv and /home,
        an sshd config; then the demo services' files on their production and mirror."""
        copies = [subprocess.Popen(["cp", "-a", "/etc", str(self.host_root(host) / "etc")],
                                   stderr=subprocess.PIPE, text=True) for host in HOSTS]
        for host, copy in zip(HOSTS, copies):
            try:
                _, errors = copy.communicate(timeout=120)
            except subprocess.TimeoutExpired as error:
                raise LabError(f"copying /etc for {host.name} took over 120 s") from error
            if copy.returncode != 0:
                raise LabError(f"copying /etc for {host.name} failed: {errors.strip()}")
        for host in HOSTS:
            root = self.host_root(host)
            (root / "srv").mkdir()
            (root / "home").mkdir()
            (root / "etc" / "hostname").write_text(host.name + "\n")
            # Hosts share this machine's /root; bash would source its ~/.bashrc for every
            # command sshd runs (~80 ms each here), which a real server does not pay.
            passwd = root / "etc" / "passwd"
            passwd.write_text(render.with_login_shell(passwd.read_text(), "root", "/bin/sh"))
            ssh_dir = root / "ssh"
            (ssh_dir / "sshd_config").write_text(render.sshd_config(
                self.layout.address(host), ssh_dir / "ssh_host_ed25519_key",
                ssh_dir / "sshd.pid", ssh_dir / "authorized_keys", storage=host.role == "storage"))
        disks.setup(self.directory, self.host_root)  # btrfs /srv of production, mirror, standby
        for service in SERVICES:
            self._install_service(service, host_by_name(service.production), python,
                                  render.production_data_files(service))
            self._install_service(service, host_by_name(service.mirror), python,
                                  render.mirror_data_files(service))

    def _install_service(self, service: ServiceSpec, host: HostSpec, python: str,
                         data_files: dict[str, str]) -> None:
        """Write a service's data, scripts, accounts and config into a host's folders."""
        root = self.host_root(host)
        srv = root / service.root.lstrip("/")
        for relative, text in data_files.items():
            target = srv / "data" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        (srv / "run").mkdir()
        (srv / "app").mkdir()
        _write_executable(srv / "app" / "ctl", render.app_ctl_script(service, python))
        _write_executable(srv / "app" / "dump-db", render.dump_db_script(service, python))
        (srv / "accounts").write_text(render.accounts_file(service))
        config_dir = root / service.config_path.lstrip("/")
        config_dir.mkdir()
        (config_dir / f"{service.name}.conf").write_text(render.app_config(service))

    def _start_daemons(self) -> None:
        """Start every sshd, BIND and the SMTP server, then wait until all of them answer."""
        for host in HOSTS:
            self._start_sshd(host)
        named = self._start_named()
        smtp = self._start_smtp()
        phone.start(self)  # its own state entry, stopped by phone.stop
        with ThreadPoolExecutor(max_workers=len(HOSTS) + 2) as pool:
            waits = [pool.submit(self._wait_sshd, host) for host in HOSTS]
            waits.append(pool.submit(
                wait_until, f"BIND (named on 127.0.0.1:{self.layout.dns_port})",
                lambda: soa_answers(ZONE, "127.0.0.1", self.layout.dns_port),
                NAMED_START_SECONDS, log_path=named.log, alive=self._alive(named)))
            waits.append(pool.submit(
                wait_until, f"SMTP server on 127.0.0.1:{self.layout.smtp_port}",
                lambda: banner("127.0.0.1", self.layout.smtp_port).startswith(b"220"),
                SMTP_START_SECONDS, log_path=smtp.log, alive=self._alive(smtp)))
            for wait in waits:
                wait.result()
        web.start(self)  # the off-site status page server (web.py)

    def _start_sshd(self, host: HostSpec) -> Daemon:
        """sshd inside the host's network namespace and a private mount namespace."""
        root = self.host_root(host)
        config = root / "ssh" / "sshd_config"
        argv = ["ip", "netns", "exec", self.layout.netns(host),
                "unshare", "--mount", "--uts", "--propagation", "private", "--",
                "sh", "-c", HOST_BOOT_SCRIPT, "sh", str(root), str(config), host.name]
        expected = [SSHD, "-D", "-e", "-f", str(config)]
        return self._start(f"sshd {host.name}", argv, expected, f"sshd-{host.name}.log")

    def _start_named(self) -> Daemon:
        """BIND in the foreground as root, authoritative for lab.test on 127.0.0.1 only."""
        dns_dir = self._path("dns")
        zone_file = dns_dir / f"{ZONE}.zone"
        for journal in dns_dir.glob("*.jnl"):
            journal.unlink()  # a stale journal makes the fresh zone fail to load
        zone_file.write_text(render.zone_file(self.layout, serial=int(time.time())))
        conf = dns_dir / "named.conf"
        conf.write_text(render.named_conf(dns_dir, self.layout.dns_port, dns_dir / "tsig.key",
                                          zone_file))
        argv = [NAMED, "-g", "-c", str(conf)]
        return self._start("named", argv, argv, "named.log")

    def _start_smtp(self) -> Daemon:
        """aiosmtpd storing every message in the lab's maildir (-n: stay root, no setuid)."""
        argv = [sys.executable, "-m", "aiosmtpd", "-n", "-l",
                f"127.0.0.1:{self.layout.smtp_port}", "-c", "hotspare.lab.mail_sink.LabMailbox",
                str(self._path("mail"))]
        return self._start("smtp", argv, argv, "smtp.log")

    def _start(self, name: str, argv: list[str], expected: list[str], log_name: str) -> Daemon:
        """Start a daemon and record it in state.json at once (so a crash can clean it)."""
        daemon, process = start_daemon(name, argv, expected, self._path("logs", log_name))
        self._children[daemon.pid] = process
        state = self._read_state() or {}
        state.setdefault("daemons", []).append(daemon.to_json())
        self._write_state(state)
        return daemon

    def _alive(self, daemon: Daemon):
        """A callable telling whether our child process for the daemon still runs."""
        process = self._children.get(daemon.pid)
        return lambda: process is None or process.poll() is None

    def _wait_sshd(self, host: HostSpec) -> None:
        """Wait until the host's sshd is exec'd (mounts done) and greets on port 22."""
        daemon = next(d for d in self._daemons() if d.name == f"sshd {host.name}")
        address = self.layout.address(host)
        wait_until(f"sshd of {host.name} ({address}:{SSH_PORT})",
                   lambda: is_running(daemon) and banner(address, SSH_PORT).startswith(b"SSH-"),
                   SSHD_START_SECONDS, log_path=daemon.log, alive=self._alive(daemon))

    def _provision_services(self) -> None:
        """Over SSH (so it runs inside each host): create app users, start the apps."""
        secrets_data = json.loads(self._path("secrets.json").read_text())
        jobs = []
        for service in SERVICES:
            passwords = secrets_data["app_users"][service.production]
            commands = [["useradd", "--uid", str(user.uid), "--user-group", "--create-home",
                         "--shell", "/bin/sh", user.name] for user in service.users]
            commands += [["chpasswd"], [f"{service.app_path}/ctl", "start"]]
            password_lines = "".join(f"{u.name}:{passwords[u.name]}\n" for u in service.users)
            jobs.append((service.production, commands, password_lines))
            jobs.append((service.mirror, [[f"{service.app_path}/ctl", "start"]], None))
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            results = [pool.submit(self._ssh, host, commands, stdin) for host, commands, stdin in jobs]
            for result in results:
                result.result()
        for service in SERVICES:
            for host_name in (service.production, service.mirror):
                wait_until(f"{service.name} on {host_name}",
                           lambda host_name=host_name: http_get(self._health_url(host_name), 1.0)
                           is not None,
                           APP_START_SECONDS,
                           log_path=str(self.host_root(host_by_name(host_name)) /
                                        service.run_path.lstrip("/") / "http.log"))

    def _ssh(self, host_name: str, commands: list[list[str]], stdin: str | None) -> None:
        """Run commands on a lab host as root with the lab key and pinned host keys."""
        argv = ssh_argv(self._path("client_key"), self._path("known_hosts"),
                        self.layout.address(host_by_name(host_name)), commands)
        run(argv, f"provisioning {host_name}", input_text=stdin or "",
            timeout=PROVISION_SECONDS)

    def _health_url(self, host_name: str) -> str:
        return f"http://{self.layout.address(host_by_name(host_name))}:{APP_PORT}/health.txt"

    def _write_fleet(self, host_keys: dict[str, str]) -> None:
        """fleet.yaml describing this lab with real addresses, keys and hardware."""
        fleet = render.fleet(self.layout, host_keys, machine_hardware(self.directory))
        bmc.annotate_fleet(fleet, self.layout)  # each server's bmc and location
        header = (f"# Fleet of the hotspare lab in {self.directory} (slot {self.slot}).\n"
                  "# Generated by `hotspare lab up`; credentials are Prefect block names.\n")
        text = yaml.safe_dump(fleet, sort_keys=False, default_flow_style=None, width=100)
        self._path("fleet.yaml").write_text(header + text)

    def _describe(self) -> dict:
        """The env dict: where everything is, for tests, the demo and the benchmarks."""
        return {
            "fleet_file": str(self._path("fleet.yaml")),
            "zone": ZONE,
            "dns": {"address": "127.0.0.1", "port": self.layout.dns_port},
            "ssh": {"user": "root", "key": str(self._path("client_key")),
                    "known_hosts": str(self._path("known_hosts"))},
            "smtp": {"address": "127.0.0.1", "port": self.layout.smtp_port,
                     "maildir": str(self._path("mail"))},
            "hosts": {host.name: {"address": self.layout.address(host), "ssh_port": SSH_PORT,
                                  "facility": host.facility, "role": host.role,
                                  "root": str(self.host_root(host)),
                                  "netns": self.layout.netns(host)}
                      for host in HOSTS},
            "services": {service.name: {"dns_name": service.dns_name,
                                        "production": service.production,
                                        "mirror": service.mirror,
                                        "app_port": APP_PORT,
                                        "data_path": service.data_path}
                         for service in SERVICES},
            "directory": str(self.directory),
            "slot": self.slot,
            "secrets_file": str(self._path("secrets.json")),
            "blocks": dict(BLOCK_NAMES),
            "bmcs": bmc.describe(self.layout),
            "phone": phone.describe(self),
            **web.describe(self),
        }

    # ----- health, teardown --------------------------------------------------------------

    def _healthy(self) -> bool:
        """True when state says up and every recorded daemon and namespace still exists."""
        state = self._read_state()
        if state is None or not self._env_file.exists() or "up_seconds" not in state:
            return False
        daemons = self._daemons()
        return (len(daemons) == len(HOSTS) + 2 and all(is_running(d) for d in daemons)
                and all(netns_inode(self.layout.netns(h)) is not None for h in HOSTS)
                and self._owns_claim())

    def _sshd_answering(self, deadline_seconds: float) -> bool:
        """True when every host's sshd greets within the deadline."""
        try:
            with ThreadPoolExecutor(max_workers=len(HOSTS)) as pool:
                for wait in [pool.submit(wait_until, host.name,
                                         lambda host=host: banner(self.layout.address(host),
                                                                  SSH_PORT).startswith(b"SSH-"),
                                         deadline_seconds) for host in HOSTS]:
                    wait.result()
        except LabError:
            return False
        return True

    def _probe_host(self, host: HostSpec) -> dict:
        """One host's line in `status()`."""
        address = self.layout.address(host)
        return {"address": address, "facility": host.facility, "role": host.role,
                "failed": network.is_failed(self.layout, host),
                "reachable": tcp_reachable(address, SSH_PORT, timeout=1.0)}

    def _heal_hosts(self, hosts) -> None:
        """Remove injected failures; hosts that were not failed are left alone."""
        for host in hosts:
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
            log.info("slot %d belongs to the lab in %s; leaving its network alone",
                     self.slot, owner)
            return
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

    def _daemons(self) -> list[Daemon]:
        state = self._read_state() or {}
        return [Daemon.from_json(entry) for entry in state.get("daemons", [])]

    def _claim_slot(self) -> None:
        """Record in /run that this folder's lab owns the slot (tmpfs: gone after reboot,
        like the namespaces it protects)."""
        CLAIMS_DIR.mkdir(exist_ok=True)
        self._claim_file.write_text(json.dumps({"directory": str(self.directory)}) + "\n")

    def _claim_owner(self) -> Path | None:
        try:
            return Path(json.loads(self._claim_file.read_text())["directory"])
        except (OSError, ValueError, KeyError):
            return None

    def _owns_claim(self) -> bool:
        return self._claim_owner() == self.directory

    def _slot_owner_elsewhere(self) -> Path | None:
        """Another folder whose lab is alive on our slot, or None."""
        owner = self._claim_owner()
        if owner is None or owner == self.directory:
            return None
        other = Lab(owner, self.slot)
        return owner if any(is_running(d) for d in other._daemons()) else None

    def _check_slot_owner(self) -> None:
        """Refuse to take a slot from a live lab in another folder."""
        owner = self._slot_owner_elsewhere()
        if owner is not None:
            raise LabError(f"slot {self.slot} is used by the lab in {owner}; stop it with "
                           f"`hotspare lab down --dir {owner}` or choose another --slot")

    def _check_ports_free(self) -> None:
        """Refuse ports another program holds (a second named would start silently)."""
        for port, what in ((self.layout.dns_port, "DNS"), (self.layout.smtp_port, "SMTP")):
            if port_in_use(port):
                raise LabError(f"{what} port 127.0.0.1:{port} of slot {self.slot} is already "
                               f"in use by another program (see `ss -lntup`); stop it or "
                               f"choose another --slot")

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
        """The lab folder must stay visible inside hosts (not under /srv, /etc, /home)."""
        resolved = self.directory.resolve()
        for private in PRIVATE_PATHS:
            if resolved == Path(private) or Path(private) in resolved.parents:
                raise LabError(f"lab folder {resolved} is under {private}, which every lab host "
                               f"replaces with its own; choose another with --dir or "
                               f"$HOTSPARE_LAB_DIR (e.g. /var/lib/hotspare/lab)")
        if resolved == Path("/"):
            raise LabError("the lab folder cannot be /")


def _other_claims(slot: int) -> list[Path]:
    """Claim files of labs on other slots (they still need the covering blackhole)."""
    if not CLAIMS_DIR.is_dir():
        return []
    return [path for path in CLAIMS_DIR.glob("slot-*.json") if path.name != f"slot-{slot}.json"]


def _require_root_and_tools() -> None:
    """The lab needs root (namespaces, bind mounts) and the Debian packages of the brief."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, bind mounts)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise LabError(f"missing programs: {', '.join(missing)} (install openssh-server, "
                       f"bind9, bind9-utils, iproute2, util-linux)")


def host_python() -> str:
    """An absolute python3 that every lab host can run (hosts share /usr and /root).

    Prefers the system's python3; on machines with only pyenv, the interpreter behind the
    running one (never a shim, which depends on the caller's environment).
    """
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    if not any(str(base).startswith(private + "/") for private in PRIVATE_PATHS):
        return str(base)
    raise LabError(f"no python3 usable inside lab hosts (found only {base})")


def machine_hardware(directory: Path) -> dict[str, int]:
    """cpus, memory_mb and disk_gb of this machine (disk: the lab folder's filesystem)."""
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal:"))
    return {"cpus": os.cpu_count() or 1, "memory_mb": memory_kb // 1024,
            "disk_gb": shutil.disk_usage(directory).total // 10**9}


def _write_private(path: Path, text: str) -> None:
    """Write a secret readable by root only (created 0600, never briefly wider)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def _write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)
