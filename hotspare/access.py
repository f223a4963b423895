"""From names in the plan to live connections: the loaded fleet plus credentials from blocks.

Flows and the CLI ask this module for "an SSH connection to prod-east" or "the DNS server of
zone lab.test"; it reads the fleet document stored in the inventory (so every worker plans from
the same file) and loads Prefect blocks lazily, once per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from hotspare.adapters.dns import AuthoritativeServer, TsigKey
from hotspare.adapters.errors import PermanentError, TransientError
from hotspare.adapters.smtp import Relay
from hotspare.adapters.ssh import Endpoint, Login, SshConnection
from hotspare.fleet import Fleet, parse_fleet
from hotspare.inventory import session
from hotspare.inventory.models import FleetDocumentRow


def loaded_fleet() -> Fleet:
    """The fleet as last loaded into the inventory (``hotspare fleet load``)."""
    with session() as db:
        document = db.get(FleetDocumentRow, 1)
    if document is None:
        raise PermanentError("the inventory holds no fleet yet: run `hotspare fleet load FLEET.yaml` first")
    return _parse_cached(document.text, document.filename)


@lru_cache(maxsize=4)
def _parse_cached(text: str, filename: str) -> Fleet:
    return parse_fleet(text, filename)


def endpoint(fleet: Fleet, server_name: str) -> Endpoint:
    server = fleet.server(server_name)
    return Endpoint(server.name, server.address, server.ssh_port, server.host_key)


def _load_block(block_class, name: str):
    try:
        return block_class.load(name)
    except ValueError as error:
        raise PermanentError(
            f"Prefect block {name!r} ({block_class.__name__}) could not be loaded: {error}. "
            "Create it in the Prefect UI or with `hotspare lab blocks` for the lab."
        ) from None


@lru_cache(maxsize=16)
def login(block_name: str) -> Login:
    """SSH login from an SshCredentials block (loaded once per process)."""
    from blocks.credentials import SshCredentials

    block = _load_block(SshCredentials, block_name)
    return Login(block.user, block.private_key.get_secret_value())


@contextmanager
def connect(fleet: Fleet, server_name: str, *, connect_timeout: float = 10.0) -> Iterator[SshConnection]:
    """An open SSH connection to ``server_name`` for the block, reused across the steps of a run.

    A handshake costs ~100 ms of CPU, and a replication talks to the same two servers a
    dozen times. Connections are kept per process and server; one idle for a while is probed
    first (bounded by ``connect_timeout``) since a dead peer can leave a transport "active".
    """
    server = fleet.server(server_name)
    key = (server.name, server.address, server.ssh_port, server.host_key, fleet.ssh_block_of(server))
    connection = _borrow(key, connect_timeout)
    if connection is not None:
        connection.connect_timeout = connect_timeout  # the caller's bound applies to a reused one too
    else:
        connection = SshConnection(endpoint(fleet, server_name), login(fleet.ssh_block_of(server)), connect_timeout=connect_timeout)
        connection.connect()
    try:
        yield connection
    except TransientError:
        connection.close()  # its state is unknown: never hand it out again
        raise
    _give_back(key, connection)


_POOL: dict[tuple, tuple[SshConnection, float]] = {}
_POOL_LOCK = threading.Lock()
PROBE_AFTER_IDLE_SECONDS = 2.0
CLOSE_AFTER_IDLE_SECONDS = 60.0


def _borrow(key: tuple, timeout: float) -> SshConnection | None:
    with _POOL_LOCK:
        pooled = _POOL.pop(key, None)
    if pooled is None:
        return None
    connection, last_used = pooled
    idle = time.monotonic() - last_used
    if idle > CLOSE_AFTER_IDLE_SECONDS or not connection.is_open():
        connection.close()
        return None
    if idle > PROBE_AFTER_IDLE_SECONDS:
        try:
            connection.run(["true"], timeout=timeout)
        except TransientError:
            connection.close()
            raise
        except Exception:
            connection.close()
            return None
    return connection


def _give_back(key: tuple, connection: SshConnection) -> None:
    if not connection.is_open():
        return
    with _POOL_LOCK:
        previous = _POOL.pop(key, None)
        _POOL[key] = (connection, time.monotonic())
    if previous is not None:
        previous[0].close()


def close_connections() -> None:
    """Close every pooled connection (end of a worker, or after a lab outage in tests)."""
    with _POOL_LOCK:
        pooled = list(_POOL.values())
        _POOL.clear()
    for connection, _ in pooled:
        connection.close()


def dns_server(fleet: Fleet, zone_name: str, timeout: float = 5.0) -> AuthoritativeServer:
    zone = fleet.zone(zone_name.rstrip("."))
    return AuthoritativeServer(zone.name, zone.server, zone.port, timeout)


@lru_cache(maxsize=16)
def tsig_key(block_name: str) -> TsigKey:
    from blocks.credentials import DnsUpdateKey

    block = _load_block(DnsUpdateKey, block_name)
    return TsigKey(block.key_name, block.algorithm, block.secret.get_secret_value())


def smtp_relay(block_name: str) -> Relay:
    from blocks.credentials import SmtpServer

    block = _load_block(SmtpServer, block_name)
    password = block.password.get_secret_value() if block.password else None
    return Relay(block.host, block.port, block.username, password, block.starttls)


def forget_credentials() -> None:
    """Drop cached credentials (after a block was rotated, or between tests)."""
    login.cache_clear()
    tsig_key.cache_clear()
