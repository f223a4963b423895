"""Offering a waiting failover plan to an approver inside an incident's page.

A contact marked ``may_approve: true`` who is paged (call or SMS) for an incident hears, besides
the incident, every plan waiting at a failover gate for a service the incident affects: one
sentence each (service, from, to, data-loss window). A call asks for 2 to approve them; an SMS
asks for ``APPROVE n``. Each offer is recorded by the page's SID with the digest it offered
(``inventory/approvals``), so the webhook approves exactly what was heard, nothing newer.

When the health runbook declares a production down, the incident's page and the failover it
submits start at the same moment; the failover needs a few seconds to make its plan. A page to
an approver of a service whose policy is ``approval`` waits for that plan (at most
``PLAN_WAIT_SECONDS``), so the first call can already carry it.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from hotspare.inventory import approvals
from hotspare.inventory.models import utcnow

log = logging.getLogger(__name__)

PLAN_WAIT_SECONDS = 20.0  # a failover makes its plan in a few seconds
FRESH_INCIDENT = timedelta(minutes=2)  # only a page this soon after the incident opened waits


def affected_services(incident: dict) -> list[str]:
    """Services the incident names or recorded as affected at opening."""
    return sorted(set(incident.get("services", [])) | {item["service"] for item in incident.get("impact", [])})


def may_approve(fleet, contact_name: str) -> bool:
    return any(contact.name == contact_name and getattr(contact, "may_approve", False) for contact in fleet.contacts)


def to_offer(fleet, incident: dict, page, wait_seconds: float = PLAN_WAIT_SECONDS) -> list[approvals.PendingApproval]:
    """The waiting plans this page offers: none unless it goes by phone to an approver."""
    if page.action not in ("call", "sms") or not may_approve(fleet, page.target):
        return []
    services = affected_services(incident)
    waiting = approvals.waiting_for(services)
    if waiting or not _plan_expected(fleet, incident, services):
        return waiting
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        waiting = approvals.waiting_for(services)
        if waiting:
            log.info(
                "incident %s: the failover plan of %s is ready; offering it to %s",
                incident["id"],
                ", ".join(approval.service for approval in waiting),
                page.target,
            )
            return waiting
    log.warning(
        "incident %s: no failover plan of %s waited within %.0f s; paging %s without one",
        incident["id"],
        ", ".join(services),
        wait_seconds,
        page.target,
    )
    return []


def _plan_expected(fleet, incident: dict, services: list[str]) -> bool:
    """A new incident of a service whose policy submits a failover for approval."""
    opened = incident.get("opened_at")
    if not opened or utcnow() - datetime.fromisoformat(opened) > FRESH_INCIDENT:
        return False
    health = getattr(fleet, "health", None)
    return health is not None and any(health.policy(service).automatic_failover == "approval" for service in services)


def spoken(offered: list[approvals.PendingApproval]) -> str | None:
    """What pressing 2 approves, in words (None: nothing offered)."""
    return "; and ".join(approval.sentence for approval in offered) or None


def sms_words(offered: list[approvals.PendingApproval]) -> str:
    return "".join(f" Reply APPROVE {approval.id} to {approval.sentence}." for approval in offered)


def record(
    offered: list[approvals.PendingApproval], incident_id: int, provider: str, sid: str, action: str, contact: str, number: str
) -> None:
    for approval in offered:
        approvals.record_offer(approval, incident_id, provider, sid, action, contact, number)
