"""From names in the plan to live connections: the loaded fleet plus credentials from blocks.

Flows and the CLI ask this module for "an SSH connection to prod-east" or "the DNS server of
zone lab.test"; it reads the fleet document stored in the inventory (so every worker plans from
the same file) and loads Prefect blocks lazily, once per process.

SSH logins: with the control site's certificate issuer configured (``settings.ssh_issuer``, set
on facility workers), a flow run logs in with a key pair made in memory for that run and a
certificate the issuer signed for it (the hosts its plan needs, minutes long, from this site's
addresses only; docs/trust-model.md); otherwise, and outside a flow run, with the key of the
server's credentials block (the control site's own).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from hotspare import settings
from hotspare.adapters.dns import AuthoritativeServer, TsigKey
from hotspare.adapters.errors import ChannelRefused, MissingConfiguration, TransientError
from hotspare.adapters.issuer import request_certificate
from hotspare.adapters.smtp import Relay
from hotspare.adapters.ssh import Endpoint, Login, SshConnection
from hotspare.adapters.ssh import pipe as ssh_pipe
from hotspare.fleet import Fleet, parse_fleet
from hotspare.inventory import session
from hotspare.inventory.models import FleetDocumentRow
from hotspare.keys import generate_ed25519
from hotspare.planning.certificates import RENEW_BEFORE_SECONDS


def loaded_fleet() -> Fleet:
    """The fleet as last loaded into the inventory (``hotspare fleet load``)."""
    with session() as db:
        document = db.get(FleetDocumentRow, 1)
    if document is None:
        raise MissingConfiguration("the inventory holds no fleet yet: run `hotspare fleet load FLEET.yaml` first")
    return _parse_cached(document.text, document.filename)


@lru_cache(maxsize=4)
def _parse_cached(text: str, filename: str) -> Fleet:
    return parse_fleet(text, filename)


def endpoint(fleet: Fleet, server_name: str) -> Endpoint:
    server = fleet.server(server_name)
    return Endpoint(server.name, server.address, server.ssh_port, server.host_key)


def _load_block(block_class, name: str):
    from prefect.exceptions import PrefectHTTPStatusError

    try:
        return block_class.load(name)
    except ValueError as error:
        raise MissingConfiguration(
            f"Prefect block {name!r} ({block_class.__name__}) could not be loaded: {error}. "
            "Create it in the Prefect UI or with `hotspare lab blocks` for the lab."
        ) from None
    except PrefectHTTPStatusError as error:
        if error.response.status_code != 403:
            raise
        raise refused_block(name, block_class.__name__) from None


def refused_block(name: str, kind: str) -> MissingConfiguration:
    """The API refused this login the block's secrets (the proxy's secrets by need)."""
    return MissingConfiguration(
        f"Prefect block {name!r} ({kind}): this API login may not read its secrets (HTTP 403 from the API "
        "proxy); runs that need it belong where it is granted (backup passwords and phone providers: the "
        "control site), see docs/access.md"
    )


@lru_cache(maxsize=16)
def login(block_name: str) -> Login:
    """SSH login from an SshCredentials block (loaded once per process)."""
    from blocks.credentials import SshCredentials

    block = _load_block(SshCredentials, block_name)
    return Login(block.user, block.private_key.get_secret_value())


CERTIFICATE_USER = "root"  # the user a run's certificate logs in as (the principals name the hosts)


def ssh_login(fleet: Fleet, server_name: str) -> tuple[Login, str]:
    """(login, who it is) for ``server_name``: this run's certificate, or the block's key."""
    issuer = settings.ssh_issuer()
    run_id = _current_run_id() if issuer else None
    if issuer and run_id:
        return run_certificate(issuer, run_id), f"run-{run_id}"
    block = fleet.ssh_block_of(fleet.server(server_name))
    return login(block), block


def login_user(fleet: Fleet, server_name: str) -> str:
    """The remote user hotspare logs in to ``server_name`` as (without loading a key)."""
    if settings.ssh_issuer() and _current_run_id():
        return CERTIFICATE_USER
    return login(fleet.ssh_block_of(fleet.server(server_name))).user


def _current_run_id() -> str | None:
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


_CERTIFICATES: dict[str, tuple[Login, float]] = {}
_CERTIFICATES_LOCK = threading.Lock()


def run_certificate(issuer: tuple[str, str], run_id: str) -> Login:
    """This run's login: an ed25519 key made in memory and the issuer's certificate for it.

    Asked for once per run and process, and again when it nears its end (a connection opened
    before stays good: sshd checks a certificate at login only). The key never leaves memory.
    """
    with _CERTIFICATES_LOCK:
        cached = _CERTIFICATES.get(run_id)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        private_key, public_key = generate_ed25519(f"hotspare-run-{run_id}")
        issued = request_certificate(issuer[0], issuer[1], run_id, public_key)
        run_login = Login(CERTIFICATE_USER, private_key, issued.certificate)
        renew_at = time.monotonic() + max(issued.valid_seconds - RENEW_BEFORE_SECONDS, issued.valid_seconds / 2)
        _CERTIFICATES[run_id] = (run_login, renew_at)
    import logging

    logging.getLogger("hotspare.access").info(
        "SSH certificate %s for %s (valid %d s) from the control site's issuer",
        issued.key_id,
        ", ".join(issued.principals),
        issued.valid_seconds,
    )
    return run_login


@contextmanager
def connect(fleet: Fleet, server_name: str, *, connect_timeout: float = 10.0) -> Iterator[Lease]:
    """An SSH connection to ``server_name`` for the block, shared across the steps of a run.

    A handshake costs ~100 ms of CPU, and a replication talks to the same two servers a
    dozen times, sometimes from two tasks at once: one connection per process and server
    carries them all (SSH multiplexes channels). One idle for a while is probed first,
    bounded by ``connect_timeout``, since a dead peer can leave a transport "active".
    """
    server = fleet.server(server_name)
    server_login, identity = ssh_login(fleet, server_name)
    # a run's certificate is its own: another run in this process never borrows its connection
    key = (server.name, server.address, server.ssh_port, server.host_key, identity)
    connection = _shared(key, connect_timeout)
    if connection is None:
        connection = SshConnection(endpoint(fleet, server_name), server_login, connect_timeout=connect_timeout)
        connection.connect()
        connection = _adopt(key, connection)
    try:
        yield Lease(connection, connect_timeout)
    except ChannelRefused:  # one channel refused on a connection that is up: it stays shared
        raise
    except TransientError:
        # its state is unknown: never hand it out again, and close it, which also ends the
        # commands other borrowers still wait on over a dead link
        _discard(key, connection)
        raise
    finally:
        _release(key, connection)


class Lease:
    """One borrower's use of a shared connection, with the borrower's own connect bound."""

    def __init__(self, connection: SshConnection, connect_timeout: float):
        self._connection = connection
        self._connect_timeout = connect_timeout
        self.endpoint = connection.endpoint

    def run(self, argv, *, stdin: bytes | None = None, timeout: float = 60.0, check: bool = True):
        return self._connection.run(argv, stdin=stdin, timeout=timeout, check=check, open_timeout=self._connect_timeout)

    def open_sftp(self):
        return self._connection.open_sftp()

    def pipe_into(self, argv, stdin: bytes, sink: Lease, sink_argv, sink_prefix: bytes, *, timeout: float):
        """``argv`` here, its output streamed into ``sink_argv`` on ``sink``'s server, never held
        here (``adapters/ssh.pipe``)."""
        return ssh_pipe(self._connection, argv, stdin, sink._connection, sink_argv, sink_prefix, timeout=timeout)

    def holding(self, argv, *, ready: bytes, timeout: float):
        """A command kept running while the block runs (``SshConnection.holding``): a host lock."""
        return self._connection.holding(argv, ready=ready, timeout=timeout)


class _Pooled:
    def __init__(self, connection: SshConnection):
        self.connection = connection
        self.users = 0
        self.last_used = time.monotonic()


_POOL: dict[tuple, _Pooled] = {}
_POOL_LOCK = threading.Lock()
PROBE_AFTER_IDLE_SECONDS = 2.0
CLOSE_AFTER_IDLE_SECONDS = 60.0


def _shared(key: tuple, timeout: float) -> SshConnection | None:
    """The pooled connection for ``key`` if it is still good (probing it when idle)."""
    with _POOL_LOCK:
        pooled = _POOL.get(key)
        if pooled is None:
            return None
        idle = time.monotonic() - pooled.last_used if pooled.users == 0 else 0.0
        if idle > CLOSE_AFTER_IDLE_SECONDS or not pooled.connection.is_open():
            del _POOL[key]
            pooled.connection.close()
            return None
        pooled.users += 1
    if idle > PROBE_AFTER_IDLE_SECONDS:
        try:
            pooled.connection.probe(timeout)  # a round trip, not a command
        except Exception as error:
            _discard(key, pooled.connection)
            _release(key, pooled.connection)
            if isinstance(error, TransientError):
                raise
            return None
    return pooled.connection


def _adopt(key: tuple, connection: SshConnection) -> SshConnection:
    """Pool a new connection, or use one another borrower pooled meanwhile."""
    with _POOL_LOCK:
        pooled = _POOL.get(key)
        if pooled is None or not pooled.connection.is_open():
            pooled = _POOL[key] = _Pooled(connection)
        elif pooled.connection is not connection:
            connection.close()
        pooled.users += 1
        return pooled.connection


def _release(key: tuple, connection: SshConnection) -> None:
    with _POOL_LOCK:
        pooled = _POOL.get(key)
        if pooled is not None and pooled.connection is connection:
            pooled.users -= 1
            pooled.last_used = time.monotonic()


def _discard(key: tuple, connection: SshConnection) -> None:
    with _POOL_LOCK:
        pooled = _POOL.get(key)
        if pooled is not None and pooled.connection is connection:
            del _POOL[key]
    connection.close()


def close_connections() -> None:
    """Close every pooled connection (end of a worker, or after a lab outage in tests)."""
    with _POOL_LOCK:
        pooled = list(_POOL.values())
        _POOL.clear()
    for entry in pooled:
        entry.connection.close()


def dns_server(fleet: Fleet, zone_name: str, timeout: float = 5.0) -> AuthoritativeServer:
    zone = fleet.zone(zone_name.rstrip("."))
    return AuthoritativeServer(zone.name, zone.server, zone.port, timeout)


@lru_cache(maxsize=16)
def tsig_key(block_name: str) -> TsigKey:
    from blocks.credentials import DnsUpdateKey

    block = _load_block(DnsUpdateKey, block_name)
    return TsigKey(block.key_name, block.algorithm, block.secret.get_secret_value())


@lru_cache(maxsize=16)
def bmc_login(block_name: str) -> tuple[str, str]:
    """(username, password) from a BmcCredentials block, loaded once per process."""
    from blocks.credentials import BmcCredentials

    block = _load_block(BmcCredentials, block_name)
    return block.username, block.password.get_secret_value()


def smtp_relay(block_name: str) -> Relay:
    from blocks.credentials import SmtpServer

    block = _load_block(SmtpServer, block_name)
    password = block.password.get_secret_value() if block.password else None
    return Relay(block.host, block.port, block.username, password, block.starttls)


def forget_credentials() -> None:
    """Drop cached credentials (after a block was rotated, or between tests)."""
    login.cache_clear()
    tsig_key.cache_clear()
    with _CERTIFICATES_LOCK:
        _CERTIFICATES.clear()
