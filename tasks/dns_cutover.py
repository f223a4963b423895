"""DNS cutover: repoint a service's record with compare-and-swap, then confirm it.

Shared by failover, failback and rebuild. Of two racing cutovers exactly one wins: the update's
prerequisite is that the record still holds the old production address.
"""

from __future__ import annotations

import time

from prefect import get_run_logger, task

from hotspare import access
from hotspare.adapters import dns
from hotspare.adapters.errors import DnsPrerequisiteFailed, TransientError
from hotspare.fleet import Fleet
from tasks.retry import retry_transient_only
from tasks.run_log import run_logger


@task(name="dns-cutover", retries=2, retry_delay_seconds=1, retry_condition_fn=retry_transient_only)
def cutover_dns(fleet: Fleet, service_name: str, old_address: str, new_address: str, confirm_seconds: float = 10.0) -> dict:
    """Move the service record from ``old_address`` to ``new_address`` and confirm the answer.

    Idempotent: when the record already holds ``new_address`` it only confirms. Returns what
    it did, for the run summary.
    """
    logger = get_run_logger()
    service = fleet.service(service_name)
    zone = fleet.zone(service.zone.rstrip("."))
    server = access.dns_server(fleet, zone.name)
    current = dns.read_addresses(server, service.dns_name)
    if current == [new_address]:
        logger.info("%s already points to %s; nothing to change", service.dns_name, new_address)
        action = "already-there"
    else:
        if current != [old_address]:
            raise DnsPrerequisiteFailed(
                f"{service.dns_name} points to {current or 'nothing'}, not to the old production {old_address}: "
                "another failover or a manual change moved it. Nothing was changed; check who did it."
            )
        dns.compare_and_swap_address(
            server, access.tsig_key(zone.tsig_key_block), service.dns_name, old_address, new_address, fleet.record_ttl_of(service)
        )
        logger.info("%s moved from %s to %s", service.dns_name, old_address, new_address)
        action = "moved"
    confirmed_after = confirm_answer(server, service.dns_name, new_address, confirm_seconds)
    return {
        "record": service.dns_name,
        "from": old_address,
        "to": new_address,
        "action": action,
        "confirmed_after_s": confirmed_after,
    }


def confirm_answer(server: dns.AuthoritativeServer, name: str, address: str, within: float) -> float:
    """Poll the authoritative server until it answers ``address``; seconds it took."""
    started = time.monotonic()
    deadline = started + within
    while True:
        answer = dns.read_addresses(server, name)
        if answer == [address]:
            return round(time.monotonic() - started, 3)
        if time.monotonic() >= deadline:
            raise TransientError(f"{server.label} still answers {answer} for {name} after {within:g} s, expected {address}")
        time.sleep(0.1)


def keep_standing_ttl(service_name: str) -> dict:
    """Set the service record's TTL to what the fleet's policy says (``Fleet.record_ttl_of``)
    when it differs: a service that fails over without a person must not leave users on a dead
    address for the zone's whole TTL. Only the TTL changes, and only while the record still holds
    the address read (compare-and-swap). Called after each replication."""
    fleet = access.loaded_fleet()
    service = fleet.service(service_name)
    zone = fleet.zone(service.zone.rstrip("."))
    server = access.dns_server(fleet, zone.name)
    wanted = fleet.record_ttl_of(service)
    current = dns.read_ttl(server, service.dns_name)
    addresses = dns.read_addresses(server, service.dns_name)
    if current is None or current == wanted or len(addresses) != 1:
        return {"ttl": current, "changed": False}
    dns.set_ttl(server, access.tsig_key(zone.tsig_key_block), service.dns_name, addresses[0], wanted)
    run_logger("hotspare.dns").info(
        "the TTL of %s is %d s now (was %d s): %s",
        service.dns_name,
        wanted,
        current,
        "its health policy fails it over, so users' resolvers must follow within seconds"
        if wanted < zone.ttl
        else "the zone's TTL",
    )
    return {"ttl": wanted, "changed": True, "previous": current}
