"""From names in the plan to live connections: the loaded fleet plus credentials from blocks.

Flows and the CLI ask this module for "an SSH connection to prod-east" or "the DNS server of
zone lab.test"; it reads the fleet document stored in the inventory (so every worker plans from
the same file) and loads Prefect blocks lazily, once per process.
"""

from __future__ import annotations

from functools import lru_cache

from hotspare.adapters.dns import AuthoritativeServer, TsigKey
from hotspare.adapters.errors import PermanentError
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


def connect(fleet: Fleet, server_name: str, *, connect_timeout: float = 10.0) -> SshConnection:
    """An unopened connection to ``server_name``; use it as a context manager."""
    server = fleet.server(server_name)
    return SshConnection(endpoint(fleet, server_name), login(fleet.ssh_block_of(server)), connect_timeout=connect_timeout)


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
