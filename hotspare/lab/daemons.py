"""The lab's daemons: one sshd per host in its own namespaces, BIND, the SMTP sink and the
phone and web endpoints; each started process is recorded in state.json at once, so a crash
can always be cleaned up by PID.

A mixin of ``Lab`` (``lab.py``).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

from hotspare.lab import (
    phone,  # the recording phone provider endpoint (phone.py)
    render,
    resolver,
    web,
)
from hotspare.lab.host_namespace import boot_argv, hidden_folders
from hotspare.lab.probes import banner, soa_answers, wait_until
from hotspare.lab.processes import Daemon, is_running, start_daemon
from hotspare.lab.topology import HOSTS, SSH_PORT, ZONE, HostSpec
from hotspare.settings import hotspare_home

SSHD = "/usr/sbin/sshd"
NAMED = "/usr/sbin/named"
SSHD_START_SECONDS = 15.0
NAMED_START_SECONDS = 20.0
SMTP_START_SECONDS = 20.0


class LabDaemons:
    """Starting the lab's daemons and recording them (mixin of ``Lab``)."""

    def _start_daemons(self) -> None:
        """Start every sshd, BIND and the SMTP server, then wait until all of them answer."""
        for host in HOSTS:
            self._start_sshd(host)
        named = self._start_named()
        smtp = self._start_smtp()
        phone.start(self)  # its own state entry, stopped by phone.stop
        with ThreadPoolExecutor(max_workers=len(HOSTS) + 2) as pool:
            waits = [pool.submit(self._wait_sshd, host) for host in HOSTS]
            waits.append(
                pool.submit(
                    wait_until,
                    f"BIND (named on 127.0.0.1:{self.layout.dns_port})",
                    lambda: soa_answers(ZONE, "127.0.0.1", self.layout.dns_port),
                    NAMED_START_SECONDS,
                    log_path=named.log,
                    alive=self._alive(named),
                )
            )
            waits.append(
                pool.submit(
                    wait_until,
                    f"SMTP server on 127.0.0.1:{self.layout.smtp_port}",
                    lambda: banner("127.0.0.1", self.layout.smtp_port).startswith(b"220"),
                    SMTP_START_SECONDS,
                    log_path=smtp.log,
                    alive=self._alive(smtp),
                )
            )
            for wait in waits:
                wait.result()
        web.start(self)  # the off-site status page server (web.py)
        resolver.start(self)  # the users' caching resolver (resolver.py)

    def _start_sshd(self, host: HostSpec, extra_environment: dict[str, str] | None = None) -> Daemon:
        """sshd inside the host's network namespace and a private mount namespace, which gives
        the host its own folders and /run and hides the lab's files (``host_namespace.py``);
        its own UTS namespace too, so `hostname` tells the hosts apart (``extra_environment``: a
        skewed clock, ``clocks.py``)."""
        root = self.host_root(host)
        config = root / "ssh" / "sshd_config"
        hidden = hidden_folders(self.directory.resolve(), hotspare_home().resolve())
        expected = [SSHD, "-D", "-e", "-f", str(config)]
        argv = [
            "ip",
            "netns",
            "exec",
            self.layout.netns(host),
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "--",
            *boot_argv(root, host.name, hidden, expected),
        ]
        return self._start(f"sshd {host.name}", argv, expected, f"sshd-{host.name}.log", extra_environment)

    def _start_named(self) -> Daemon:
        """BIND in the foreground as root, authoritative for lab.test on 127.0.0.1 only."""
        dns_dir = self._path("dns")
        zone_file = dns_dir / f"{ZONE}.zone"
        for journal in dns_dir.glob("*.jnl"):
            journal.unlink()  # a stale journal makes the fresh zone fail to load
        zone_file.write_text(render.zone_file(self.layout, serial=int(time.time())))
        conf = dns_dir / "named.conf"
        conf.write_text(render.named_conf(dns_dir, self.layout.dns_port, dns_dir / "tsig.key", zone_file))
        argv = [NAMED, "-g", "-c", str(conf)]
        return self._start("named", argv, argv, "named.log")

    def _start_smtp(self) -> Daemon:
        """aiosmtpd storing every message in the lab's maildir (-n: stay root, no setuid)."""
        argv = [
            sys.executable,
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            f"127.0.0.1:{self.layout.smtp_port}",
            "-c",
            "hotspare.lab.mail_sink.LabMailbox",
            str(self._path("mail")),
        ]
        return self._start("smtp", argv, argv, "smtp.log")

    def _start(
        self, name: str, argv: list[str], expected: list[str], log_name: str, extra_environment: dict[str, str] | None = None
    ) -> Daemon:
        """Start a daemon and record it in state.json at once (so a crash can clean it)."""
        daemon, process = start_daemon(
            name, argv, expected, self._path("logs", log_name), slot=self.slot, extra_environment=extra_environment
        )
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
        wait_until(
            f"sshd of {host.name} ({address}:{SSH_PORT})",
            lambda: is_running(daemon) and banner(address, SSH_PORT).startswith(b"SSH-"),
            SSHD_START_SECONDS,
            log_path=daemon.log,
            alive=self._alive(daemon),
        )

    def _daemons(self) -> list[Daemon]:
        state = self._read_state() or {}
        return [Daemon.from_json(entry) for entry in state.get("daemons", [])]
