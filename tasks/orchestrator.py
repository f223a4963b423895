"""Before acting or paging: does this orchestrator hold the fleet? (docs/architecture/coordination.md,
"One orchestrator per fleet").

Reads the fleet's marker (a TXT record in its first zone, ``hotspare/planning/orchestrator.py``)
from the zone's authoritative server, compares it with this inventory's identity, claims the
fleet when nobody holds it, and refuses — naming the holder — when another orchestrator does.
The answer is cached per process for ``HOTSPARE_ORCHESTRATOR_CHECK_SECONDS`` (default 30): a
flow run pays one DNS query, a long-running ``hotspare serve`` one per half minute, so an
orchestrator that was taken over stops within that time.

    require_orchestrator(fleet, "failover app1")              raises NotOrchestrator (exit 3)
    require_orchestrator(fleet, "status", read_only=True)     logs a warning instead
    claim_fleet(fleet, takeover=True)                         `hotspare fleet claim --takeover`
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from datetime import UTC, datetime

from hotspare import access
from hotspare.adapters import dns as dns_adapter
from hotspare.adapters.errors import DnsPrerequisiteFailed, TransientError
from hotspare.inventory import db as inventory_db
from hotspare.inventory import orchestrator as identities
from hotspare.planning.orchestrator import (
    Decision,
    Identity,
    Marker,
    after_claim,
    decide,
    marker_zone,
    parse_marker,
    record_name,
)
from tasks.replication import Refused

log = logging.getLogger("hotspare.orchestrator")
MARKER_TTL = 60
DNS_TIMEOUT_SECONDS = 3.0
_CACHE: dict[tuple, tuple[float, Decision]] = {}
_LAST_SENTENCE: dict[tuple, str] = {}
_LOCK = threading.Lock()


class NotOrchestrator(Refused):
    """Another orchestrator holds the fleet (or none can be verified): nothing was done."""


def cache_seconds() -> float:
    return float(os.environ.get("HOTSPARE_ORCHESTRATOR_CHECK_SECONDS", "30"))


def require_orchestrator(fleet, action: str, read_only: bool = False) -> Decision:
    """Act only when this orchestrator holds the fleet: returns the decision (``act``, or
    ``warn`` for read-only callers), raises NotOrchestrator otherwise. Cached per process.
    ``fleet`` None: the loaded fleet."""
    fleet = access.loaded_fleet() if fleet is None else fleet
    zone = marker_zone([zone.name for zone in fleet.zones])
    if zone is None:
        return Decision("act", "the fleet has no DNS zone to hold an orchestrator marker; not checked")
    key = (inventory_db.database_url(), zone, read_only)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is None or cached[0] < time.monotonic():
            decision = _check(fleet, zone, read_only=read_only, takeover=False)
            _CACHE[key] = (time.monotonic() + cache_seconds(), decision)
            if _LAST_SENTENCE.get(key) != decision.sentence:
                _LAST_SENTENCE[key] = decision.sentence
                _say(decision, action)
        else:
            decision = cached[1]
    if decision.kind == "refuse":
        raise NotOrchestrator(f"{action}: refused: {decision.sentence}")
    return decision


def claim_fleet(fleet, takeover: bool = False) -> Decision:
    """Claim the fleet now (``--takeover``: even from another orchestrator, with the next epoch)."""
    zone = marker_zone([zone.name for zone in fleet.zones])
    if zone is None:
        raise Refused("the fleet has no DNS zone: there is nowhere to keep its orchestrator marker")
    forget_checks()
    decision = _check(fleet, zone, read_only=False, takeover=takeover)
    if decision.kind == "refuse":
        raise NotOrchestrator(f"fleet claim: refused: {decision.sentence}")
    log.info("%s", decision.sentence)
    return decision


def holder(fleet) -> tuple[Identity, Marker | None]:
    """This orchestrator's identity and the marker as it reads now (``hotspare fleet orchestrator``)."""
    zone = marker_zone([zone.name for zone in fleet.zones])
    if zone is None:
        return identities.identity(), None
    return identities.identity(), _read_marker(fleet, zone)


def forget_checks() -> None:
    """Drop the cached answers (after a claim, or in tests that change the marker)."""
    with _LOCK:
        _CACHE.clear()
        _LAST_SENTENCE.clear()


def _check(fleet, zone: str, read_only: bool, takeover: bool) -> Decision:
    identity = identities.identity()
    try:
        marker = _read_marker(fleet, zone)
        reachable = True
    except TransientError as error:
        log.warning("reading the orchestrator marker: %s", error)
        marker, reachable = None, False
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    decision = decide(
        identity, marker, reachable=reachable, takeover=takeover, read_only=read_only, new_fleet_id=str(uuid.uuid4()), now=now
    )
    if decision.kind == "claim":
        try:
            _write_marker(fleet, zone, decision.expected, decision.new_marker)
        except DnsPrerequisiteFailed:
            # another orchestrator claimed it between our read and our write: decide on what it wrote
            marker = _read_marker(fleet, zone)
            decision = decide(identity, marker, reachable=True, read_only=read_only, now=now)
            if decision.kind == "claim":
                raise NotOrchestrator("the fleet's orchestrator marker changes under us; try again") from None
        else:
            identities.record(after_claim(identity, decision.new_marker))
            return Decision("act", decision.sentence, holder=decision.new_marker)
    if (
        decision.kind == "act"
        and decision.holder is not None
        and (identity.epoch, identity.fleet_id, identity.lost_to) != (decision.holder.epoch, decision.holder.fleet_id, None)
    ):
        identities.record(after_claim(identity, decision.holder))
    elif decision.kind in ("refuse", "warn") and decision.holder is not None and identity.lost_to != decision.holder.name:
        identities.record(
            Identity(identity.orchestrator_id, identity.name, identity.fleet_id, identity.epoch, decision.holder.name)
        )
    return decision


def _read_marker(fleet, zone: str) -> Marker | None:
    """The marker the zone's server holds now; None when there is no record at all."""
    server = access.dns_server(fleet, zone, timeout=DNS_TIMEOUT_SECONDS)
    records = dns_adapter.read_txt(server, record_name(zone))
    markers = [marker for marker in (parse_marker(strings) for strings in records) if marker is not None]
    if records and not markers:  # a compare-and-swap against "no record" could never succeed
        raise NotOrchestrator(
            f"{record_name(zone)} holds a TXT record that is not hotspare's orchestrator marker "
            f"({' '.join(records[0])[:120]!r}); remove it, then run `hotspare fleet claim`"
        )
    return markers[0] if markers else None


def _write_marker(fleet, zone: str, expected: Marker | None, new: Marker) -> None:
    server = access.dns_server(fleet, zone, timeout=DNS_TIMEOUT_SECONDS)
    key = access.tsig_key(fleet.zone(zone).tsig_key_block)
    dns_adapter.compare_and_swap_txt(
        server,
        key,
        record_name(zone),
        expected.strings() if expected else None,
        new.strings(),
        MARKER_TTL,
        f"claim the fleet for {new.name} (epoch {new.epoch})",
    )


def _say(decision: Decision, action: str) -> None:
    """The decision as one logged sentence in the run's log (a command reports it itself)."""
    from prefect import get_run_logger
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() or TaskRunContext.get():
        get_run_logger().log(logging.INFO if decision.kind == "act" else logging.WARNING, "%s: %s", action, decision.sentence)
    else:  # a command: it reports the refusal or warning itself, once
        log.debug("%s: %s", action, decision.sentence)
