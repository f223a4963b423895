"""Building a lab's hosts: folders, keys, each host's own folders (/etc, /srv, /home, /root,
/tmp, /var/tmp), the services' files, their accounts and first start, and the fleet file
describing it all.

A mixin of ``Lab`` (``lab.py``): the methods use the lab's paths, layout and state.
"""

from __future__ import annotations

import json
import os
import secrets as random_secrets
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from hotspare.lab import bmc, disks, fleet_file, render
from hotspare.lab.errors import LabError
from hotspare.lab.host_namespace import FOLDER_MODES, FOLDER_PATHS, TMPFS_PATHS
from hotspare.lab.keys import generate_ed25519, tsig_secret
from hotspare.lab.probes import http_get, wait_until
from hotspare.lab.processes import run
from hotspare.lab.remote import ssh_argv
from hotspare.lab.topology import (
    HOSTS,
    SERVICES,
    TSIG_KEY_NAME,
    ZONE,
    HostSpec,
    ServiceSpec,
    host_by_name,
)
from hotspare.local_secrets import FOLDER_MODE, private_folder, write_private

# Paths each host gets its own folder for (hosts/NAME/<path>); /run and /dev/shm are fresh
# tmpfs in each host, and the lab folder is hidden from hosts (host_namespace.py).
PRIVATE_PATHS = FOLDER_PATHS
APP_START_SECONDS = 15.0
PROVISION_SECONDS = 60.0


class LabBuilding:
    """Building the lab's hosts and their files (mixin of ``Lab``)."""

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
        for path in PRIVATE_PATHS:  # the mount points on this machine
            Path(path).mkdir(mode=0o755, parents=True, exist_ok=True)

    def _write_keys(self) -> dict[str, str]:
        """Client key, host keys, known_hosts, TSIG key and secrets.json; returns host keys."""
        client_private, client_public = generate_ed25519("hotspare-lab-client")
        write_private(self._path("client_key"), client_private)
        self._path("client_key.pub").write_text(client_public + "\n")
        # The control site's SSH certificate authority: its private half stays in the lab folder
        # (the control site's); hosts trust the public half (hotspare/issuer, docs/trust-model.md).
        ca_private, ca_public = generate_ed25519("hotspare-lab-ssh-ca")
        write_private(self._path("ssh_ca"), ca_private)
        self._path("ssh_ca.pub").write_text(ca_public + "\n")
        host_keys = {}
        for host in HOSTS:
            ssh_dir = self.host_root(host) / "ssh"
            ssh_dir.mkdir(parents=True)
            ssh_dir.chmod(FOLDER_MODE)  # holds the host's private key
            private, public = generate_ed25519(f"{host.name}.{ZONE}")
            write_private(ssh_dir / "ssh_host_ed25519_key", private)
            (ssh_dir / "ssh_host_ed25519_key.pub").write_text(public + "\n")
            (ssh_dir / "authorized_keys").write_text(client_public + "\n")
            (ssh_dir / "trusted_user_ca_keys").write_text(ca_public + "\n")
            (ssh_dir / "principals").mkdir()
            (ssh_dir / "principals" / "root").write_text(host.name + "\n")  # a certificate must name this host
            host_keys[host.name] = " ".join(public.split()[:2])
        self._path("known_hosts").write_text(
            render.known_hosts([(self.layout.address(host), host_keys[host.name]) for host in HOSTS])
        )
        key_text = run(["tsig-keygen", "-a", "hmac-sha256", TSIG_KEY_NAME], "making TSIG key").stdout
        write_private(self._path("dns", "tsig.key"), key_text)
        write_private(
            self._path("secrets.json"),
            json.dumps(
                {
                    "ssh": {"user": "root", "private_key": client_private},
                    "tsig": {"key_name": TSIG_KEY_NAME, "algorithm": "hmac-sha256", "secret": tsig_secret(key_text)},
                    "smtp": {"host": "127.0.0.1", "port": self.layout.smtp_port},
                    "restic": {"passwords": {s.name: random_secrets.token_urlsafe(24) for s in SERVICES}},
                    "app_users": app_user_passwords(),
                },
                indent=2,
            )
            + "\n",
        )
        return host_keys

    def _build_host_filesystems(self, python: str, host_keys: dict[str, str]) -> None:
        """Per host: a copy of /etc (so useradd works per host), its other folders empty,
        an sshd config; then the demo services' files on their production and mirror."""
        copies = [
            subprocess.Popen(["cp", "-a", "/etc", str(self.host_root(host) / "etc")], stderr=subprocess.PIPE, text=True)
            for host in HOSTS
        ]
        for host, copy in zip(HOSTS, copies):
            try:
                _, errors = copy.communicate(timeout=120)
            except subprocess.TimeoutExpired as error:
                raise LabError(f"copying /etc for {host.name} took over 120 s") from error
            if copy.returncode != 0:
                raise LabError(f"copying /etc for {host.name} failed: {errors.strip()}")
        for host in HOSTS:
            root = self.host_root(host)
            for path in PRIVATE_PATHS:  # /etc is the copy above
                folder = root / path.lstrip("/")
                folder.mkdir(parents=True, exist_ok=path == "/etc")
                folder.chmod(FOLDER_MODES.get(path, 0o755))
            (root / "etc" / "hostname").write_text(host.name + "\n")
            # Root's shell is sh: bash run by sshd sources ~/.bashrc for every command (~80 ms
            # each here), and whatever a test puts in a host's own /root must not slow the lab.
            passwd = root / "etc" / "passwd"
            passwd.write_text(render.with_login_shell(passwd.read_text(), "root", "/bin/sh"))
            ssh_dir = root / "ssh"
            (ssh_dir / "sshd_config").write_text(
                render.sshd_config(
                    self.layout.address(host),
                    ssh_dir / "ssh_host_ed25519_key",
                    ssh_dir / "sshd.pid",
                    ssh_dir / "authorized_keys",
                    storage=host.role == "storage",
                    certificate_authority=ssh_dir / "trusted_user_ca_keys",
                    principals_folder=ssh_dir / "principals",
                )
            )
        disks.setup(self.directory, self.host_root)  # btrfs /srv of production, mirror, standby
        for service in SERVICES:
            self._install_service(service, host_by_name(service.production), python, render.production_data_files(service))
            self._install_service(service, host_by_name(service.mirror), python, render.mirror_data_files(service))

    def _install_service(self, service: ServiceSpec, host: HostSpec, python: str, data_files: dict[str, str]) -> None:
        """Write a service's data, scripts, accounts and config into a host's folders."""
        root = self.host_root(host)
        srv = root / service.root.lstrip("/")
        if host.role == "production":  # a subvolume, so replication ships its snapshots (btrfs send)
            srv.mkdir(parents=True, exist_ok=True)
            run(
                ["btrfs", "-q", "subvolume", "create", str(srv / "data")],
                f"making {service.data_path} a subvolume on {host.name}",
            )
        for relative, text in data_files.items():
            target = srv / "data" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        (srv / "run").mkdir()
        # The app's run folder belongs to its first account (by number: the mirror learns the
        # name only from replication), so the app can run as that account (a drill's run_as).
        owner = service.users[0].uid
        (srv / "run" / "http.log").touch()
        for owned in (srv / "run", srv / "run" / "http.log"):
            os.chown(owned, owner, owner)
        (srv / "app").mkdir()
        _write_executable(srv / "app" / "ctl", render.app_ctl_script(service, python))
        _write_executable(srv / "app" / "dump-db", render.dump_db_script(service, python))
        (srv / "accounts").write_text(render.accounts_file(service))
        config_dir = root / service.config_path.lstrip("/")
        config_dir.mkdir()
        (config_dir / f"{service.name}.conf").write_text(render.app_config(service))

    def _provision_services(self) -> None:
        """Over SSH (so it runs inside each host): create app users, start the apps.

        One job per host, every service of that host in it: useradd and chpasswd of two
        services on one production must not run at once (each rewrites /etc/passwd)."""
        secrets_data = json.loads(self._path("secrets.json").read_text())
        commands: dict[str, list[list[str]]] = {}
        password_lines: dict[str, str] = {}
        for service in SERVICES:
            passwords = secrets_data["app_users"][service.production]
            commands.setdefault(service.production, []).extend(
                ["useradd", "--uid", str(user.uid), "--user-group", "--create-home", "--shell", "/bin/sh", user.name]
                for user in service.users
            )
            password_lines[service.production] = password_lines.get(service.production, "") + "".join(
                f"{user.name}:{passwords[user.name]}\n" for user in service.users
            )
        for host_name in password_lines:
            commands[host_name].append(["chpasswd"])
        for service in SERVICES:
            for host_name in (service.production, service.mirror):
                commands.setdefault(host_name, []).append([f"{service.app_path}/ctl", "start"])
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            results = [
                pool.submit(self._ssh, host_name, host_commands, password_lines.get(host_name))
                for host_name, host_commands in commands.items()
            ]
            for result in results:
                result.result()
        for service in SERVICES:
            for host_name in (service.production, service.mirror):
                wait_until(
                    f"{service.name} on {host_name}",
                    lambda service=service, host_name=host_name: http_get(self._health_url(service, host_name), 1.0) is not None,
                    APP_START_SECONDS,
                    log_path=str(self.host_root(host_by_name(host_name)) / service.run_path.lstrip("/") / "http.log"),
                )

    def _ssh(self, host_name: str, commands: list[list[str]], stdin: str | None) -> None:
        """Run commands on a lab host as root with the lab key and pinned host keys."""
        argv = ssh_argv(
            self._path("client_key"), self._path("known_hosts"), self.layout.address(host_by_name(host_name)), commands
        )
        run(argv, f"provisioning {host_name}", input_text=stdin or "", timeout=PROVISION_SECONDS)

    def _health_url(self, service: ServiceSpec, host_name: str) -> str:
        return f"http://{self.layout.address(host_by_name(host_name))}:{service.port}/health.txt"

    def _write_fleet(self, host_keys: dict[str, str]) -> None:
        """fleet.yaml describing this lab with real addresses, keys and hardware."""
        fleet = fleet_file.fleet(self.layout, host_keys, machine_hardware(self.directory))
        bmc.annotate_fleet(fleet, self.layout)  # each server's bmc and location
        header = (
            f"# Fleet of the hotspare lab in {self.directory} (slot {self.slot}).\n"
            "# Generated by `hotspare lab up`; credentials are Prefect block names.\n"
        )
        text = yaml.safe_dump(fleet, sort_keys=False, default_flow_style=None, width=100)
        self._path("fleet.yaml").write_text(header + text)


def app_user_passwords() -> dict[str, dict[str, str]]:
    """A fresh password per app user, by production host (services may share one)."""
    passwords: dict[str, dict[str, str]] = {}
    for service in SERVICES:
        passwords.setdefault(service.production, {}).update(
            {user.name: random_secrets.token_urlsafe(12) for user in service.users}
        )
    return passwords


def host_python() -> str:
    """An absolute python3 that every lab host can run (hosts share /usr, not /root or /tmp).

    Prefers the system's python3; on machines with only pyenv, the interpreter behind the
    running one (never a shim, which depends on the caller's environment).
    """
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    if not any(str(base).startswith(private + "/") for private in PRIVATE_PATHS + TMPFS_PATHS):
        return str(base)
    raise LabError(f"no python3 usable inside lab hosts (found only {base})")


def machine_hardware(directory: Path) -> dict[str, int]:
    """cpus, memory_mb and disk_gb of this machine (disk: the lab folder's filesystem)."""
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    return {"cpus": os.cpu_count() or 1, "memory_mb": memory_kb // 1024, "disk_gb": shutil.disk_usage(directory).total // 10**9}


def _write_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)
