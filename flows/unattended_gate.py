"""The facts a failover's ``unattended`` parameter is checked against, read where they live.

The decision is ``hotspare/planning/unattended.py``; this module reads its facts: the fleet's
health policy, the inventory's health records of the service's production, and who started the
run. The health runbook's in-process subflow is proven by a context variable that only its own
process sets (``from_the_health_run``): a run created through the API — whoever created it, with
whatever parent it claims — executes in another process, where it is unset.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prefect import get_run_logger

from hotspare.inventory import copies
from hotspare.inventory import health as health_inventory
from hotspare.inventory.models import as_utc, utcnow
from hotspare.planning.approval import Approval
from hotspare.planning.unattended import (
    Declaration,
    UnattendedFacts,
    UnattendedRefused,
    declaration_age_limit,
    judge_unattended,
)

UNATTENDED_APPROVER = "health policy (unattended)"
UNATTENDED_HOW = "with no one asked: production was declared down by the multi-site quorum"

_HEALTH_RUN: ContextVar[str | None] = ContextVar("hotspare_unattended_health_run", default=None)


@contextmanager
def from_the_health_run(health_run_id: str | None) -> Iterator[None]:
    """Within this block, in this process, a failover called as a subflow is the health run's own."""
    token = _HEALTH_RUN.set(health_run_id or "local")
    try:
        yield
    finally:
        _HEALTH_RUN.reset(token)


def unattended_approval(fleet, service: str, digest: str) -> Approval:
    """The approval ``unattended`` gives, when the facts allow it; ``UnattendedRefused`` (exit 7,
    nothing changed) with one sentence naming every missing fact otherwise."""
    decision = judge_unattended(unattended_facts(fleet, service))
    if not decision.allowed:
        raise UnattendedRefused(decision.sentence)
    get_run_logger().warning(decision.sentence)
    return Approval(f"failover of {service}", digest, UNATTENDED_APPROVER, UNATTENDED_HOW)


def unattended_facts(fleet, service: str) -> UnattendedFacts:
    production = copies.service_row(service).active_server
    declarations = tuple(
        Declaration(row.subject, row.component, row.evidence, checked)
        for row in health_inventory.declared_down(production)
        if (checked := as_utc(row.checked_at)) is not None
    )
    health_run = _HEALTH_RUN.get()
    creator = None
    if health_run is None:  # only a run from outside the health run's process needs its provenance
        from flows.approval import _run_provenance

        creator = _run_provenance().creator
    return UnattendedFacts(
        service,
        fleet.health.policy(service).automatic_failover,
        production,
        declarations,
        utcnow(),
        declaration_age_limit(fleet.health.interval_seconds),
        health_run,
        creator,
    )
