"""Incident runbooks: open, page (walk the escalation chain), acknowledge, resolve.

``page`` is what the written plan says for an emergency: call the office; if nobody answers,
the office's extension 0; then the emergency contacts' cell phones in order — each step waiting
for an acknowledgement (a keypress, an SMS reply, ``hotspare incident ack``), the whole chain
repeated ``rounds`` times. Every page, skip, fallback and failure is in the incident's timeline.
Paging never raises: a failover that opens an incident is never failed by a phone.

Every incident run publishes the incident's timeline as the markdown artifact ``incident-<id>``
(``planning/incident_timeline.py``), and a paging run ends in a state that says how it went:
Completed when the chain was acknowledged and every page went out; ``Pages dropped`` when some
page reached no provider; Failed ``Unacknowledged`` when nobody answered (chain exhausted or
deadline), ``Paging failed`` on an error; ``Not paged``, ``Folded``, ``Refused``, ``No incident``
for a run that deliberately paged nobody (the message says why).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Literal

from prefect import flow
from prefect.states import Completed, Failed

from hotspare.inventory import incidents
from hotspare.planning.run_actor import recorded_actor
from tasks.run_log import run_logger


def _logger():
    """The run's logger; the module's when called outside a run (``page.fn`` in a test)."""
    return run_logger("hotspare.incident")


def publish_timeline(incident_id: int | None) -> None:
    """The incident's timeline as its artifact (``incident-<id>``); never raises: a side channel."""
    if incident_id is None:
        return
    from prefect.artifacts import create_markdown_artifact

    from hotspare.inventory.notices import notices_of
    from hotspare.planning.incident_timeline import artifact_key, timeline_markdown

    try:
        notices = [
            {"kind": row.kind, "state": row.state, "subject": row.subject, "decision": row.decision}
            for row in notices_of(incident_id)
        ]
        incident = incidents.get_incident(incident_id)
        create_markdown_artifact(
            timeline_markdown(incident, notices),
            key=artifact_key(incident_id),
            description=f"Incident {incident_id}: {incident['title'][:80]}",
        )
    except Exception as error:  # noqa: BLE001  (the incident's own records are the outcome)
        _logger().warning("could not publish the timeline of incident %s: %s", incident_id, error)


class PagingFailed(RuntimeError):
    """Nobody acknowledged, or paging broke: the run's failure (the incident records the rest)."""


# outcome of a paging walk -> (state name, failed?) of the run; "stop" without dropped pages is plain Completed
PAGING_STATES = {
    "exhausted": ("Unacknowledged", True),
    "deadline": ("Unacknowledged", True),
    "error": ("Paging failed", True),
    "not paged": ("Not paged", False),
    "folded": ("Folded", False),
    "refused": ("Refused", False),
    "no incident": ("No incident", False),
}


def paging_state(result: dict):
    """The run's final state for a paging result: plain only when acknowledged with every page sent."""
    dropped = result.get("dropped") or []
    name, failed = PAGING_STATES.get(result["outcome"], (None, False))
    if name is None and not dropped:
        return result
    reason = result.get("reason") or result["outcome"]
    if dropped:
        reason += f"; {len(dropped)} page(s) reached no provider: {'; '.join(dropped)[:400]}"
    message = f"incident {result.get('incident')}: {reason}"
    if failed:  # calling the flow raises it; the result stays in the timeline and the log
        return Failed(name=name, message=message, data=PagingFailed(message))
    return Completed(name=name or "Pages dropped", message=message, data=result)


def _walk(incident_id: int, poll_seconds: float, max_minutes: float) -> dict:
    """Walk the chain for the incident until acknowledged, exhausted or ``max_minutes``."""
    from hotspare.access import loaded_fleet
    from hotspare.fleet.incident_schema import chain_for
    from hotspare.planning.escalation import next_action, paging_decision, plan_escalation
    from tasks.orchestrator import require_orchestrator
    from tasks.paging import load_providers, send_page

    logger = _logger()
    fleet = loaded_fleet()
    incident = incidents.get_incident(incident_id)
    chain = chain_for(fleet.incidents, incident["category"], list(fleet.escalation))
    decision = paging_decision(incident["severity"], chain, fleet.incidents.quiet_hours, datetime.now(timezone.utc))
    logger.info("incident %s: %s", incident_id, decision.reason)
    if not decision.go:
        incidents.add_event(incident_id, "note", f"not paging: {decision.reason}")
        return {"incident": incident_id, "paged": 0, "outcome": "not paged", "reason": decision.reason}
    plan = plan_escalation(chain, fleet.contacts)
    for sentence in plan.skipped:
        incidents.add_event(incident_id, "error", sentence)
        logger.warning("incident %s: %s", incident_id, sentence)
    providers, problems = load_providers(fleet)
    for problem in problems:
        incidents.add_event(incident_id, "error", problem)
    started, sent, dropped = time.monotonic(), {}, []
    deadline = started + max_minutes * 60
    while True:
        acknowledged = incidents.get_incident(incident_id)["status"] != "triggered"
        action = next_action(plan, time.monotonic() - started, sent, acknowledged)
        if action.kind in ("stop", "exhausted"):
            incidents.add_event(incident_id, "note", f"paging ended: {action.reason}")
            logger.info("incident %s: %s", incident_id, action.reason)
            return {
                "incident": incident_id,
                "paged": len(sent),
                "outcome": action.kind,
                "reason": action.reason,
                "dropped": dropped,
            }
        if time.monotonic() > deadline:
            incidents.add_event(incident_id, "error", f"paging stopped after {max_minutes:g} minutes")
            return {
                "incident": incident_id,
                "paged": len(sent),
                "outcome": "deadline",
                "reason": f"nobody acknowledged within {max_minutes:g} minutes",
                "dropped": dropped,
            }
        if action.kind == "page":
            require_orchestrator(fleet, f"page for incident {incident_id}")  # cached; stops after a takeover
            logger.info("incident %s: %s", incident_id, action.reason)
            if "error" in send_page(fleet, incident, action.page, providers):
                dropped.append(action.page.describe())
            sent[action.page.index] = time.monotonic() - started
            publish_timeline(incident_id)  # the UI follows the chain page by page
            continue
        time.sleep(max(0.05, min(action.wait_seconds, poll_seconds)))  # poll for an acknowledgement


@flow(name="incident-page", log_prints=True)
def page(
    incident_id: int | None = None,
    event: str = "",
    resource_id: str = "",
    payload_json: str = "",
    poll_seconds: float = 1.0,
    max_minutes: float = 120.0,
) -> dict:
    """Page for an open incident, or for a health event (``event``, ``resource_id``,
    ``payload_json``): that opens the incident (or folds into the open one, which is being paged
    already) and walks the chain. Never raises; publishes the timeline; ends in a state that
    says how paging went (``paging_state``).

    Args:
        incident_id: Incident number (hotspare incident list).
        event: Health event name that started paging (set by the automation).
        resource_id: Prefect event resource that started this run (set by the automation; leave empty by hand).
        payload_json: The health event's payload as JSON (set by the automation).
        poll_seconds: How often the chain checks for an acknowledgement.
        max_minutes: Stop paging after this many minutes even without an acknowledgement.
    """
    result = _page(incident_id, event, resource_id, payload_json, poll_seconds, max_minutes)
    publish_timeline(result.get("incident"))
    return paging_state(result)


def _page(
    incident_id: int | None, event: str, resource_id: str, payload_json: str, poll_seconds: float, max_minutes: float
) -> dict:
    """The paging run's work; its result's ``outcome`` names how it ended (``PAGING_STATES``)."""
    import json

    from hotspare.inventory.incidents import announce
    from tasks.orchestrator import NotOrchestrator, require_orchestrator

    logger = _logger()
    try:
        # another orchestrator holding the fleet pages, not this one (checked before opening anything)
        require_orchestrator(None, f"page for incident {incident_id if incident_id is not None else resource_id}")
        if incident_id is None:
            from hotspare.access import loaded_fleet
            from hotspare.planning.incident_rules import from_health_event

            payload = json.loads(payload_json) if payload_json else {}
            request = from_health_event(event, resource_id, payload, loaded_fleet().incidents.open_on_degraded)
            if request is None:
                logger.info("event %s about %s opens no incident", event, resource_id)
                return {"incident": None, "paged": 0, "outcome": "no incident"}
            opening = incidents.open_incident(
                request.category,
                request.severity,
                request.title,
                request.services,
                request.servers,
                request.dedup_key,
                request.detection_text,
                details=request.details,
                outage=request.outage,
                internal=request.internal,
                holders=request.holders,
            )
            incident_id = opening.incident_id
            if not opening.created:
                logger.info("folded into open incident %s (already being paged)", incident_id)
                return {"incident": incident_id, "paged": 0, "outcome": "folded"}
            announce("opened", incident_id, paging="started")
        return _walk(incident_id, poll_seconds, max_minutes)
    except NotOrchestrator as error:
        logger.error("%s", error)
        if incident_id is not None:
            try:
                incidents.add_event(incident_id, "note", f"not paged by this orchestrator: {error}")
            except Exception:  # noqa: BLE001  (the refusal above is the outcome)
                pass
        return {"incident": incident_id, "paged": 0, "outcome": "refused", "reason": str(error)}
    except Exception as error:  # paging is a side channel: record, never raise
        logger.error("paging for incident %s failed: %s", incident_id, error)
        if incident_id is not None:
            try:
                incidents.add_event(incident_id, "error", f"paging failed: {error}")
            except Exception:
                pass
        return {"incident": incident_id, "paged": 0, "outcome": "error", "reason": str(error)}


@flow(name="incident-open")
def open_incident(
    title: str,
    category: Literal[1, 2, 3] = 1,
    severity: Literal["high", "low"] = "high",
    services: list[str] | None = None,
    servers: list[str] | None = None,
    text: str = "",
    by: str = "operator",
) -> int:
    """Open an incident by hand; the ``hotspare.incident.opened`` event starts paging.

    Args:
        title: One line saying what is wrong.
        category: 1: a server, 2: programming, 3: a customer's problem.
        severity: high or low; low is not paged at night unless the policy says so.
        services: Affected services (fleet names).
        servers: Affected servers (fleet names).
        text: What was seen, for the timeline.
        by: Who does this, for the incident's timeline.
    """
    from hotspare.inventory.incidents import announce

    opening = incidents.open_incident(
        category, severity, title, services or [], servers or [], None, text or title, actor=_actor(by)
    )
    announce("opened", opening.incident_id)
    publish_timeline(opening.incident_id)
    return opening.incident_id


@flow(name="incident-acknowledge")
def acknowledge_incident(incident_id: int, by: str) -> bool:
    """Acknowledge: paging stops at its next poll.

    Args:
        incident_id: Incident number (hotspare incident list).
        by: Who does this, for the incident's timeline.
    """
    from hotspare.inventory.incidents import announce

    first = incidents.acknowledge(incident_id, _actor(by), via="Prefect UI")
    if first:
        announce("acknowledged", incident_id)
    publish_timeline(incident_id)
    return first


@flow(name="incident-resolve")
def resolve_incident(incident_id: int, by: str, text: str = "") -> None:
    """Resolve: the incident is closed; the same failure later opens a new one.

    Args:
        incident_id: Incident number (hotspare incident list).
        by: Who does this, for the incident's timeline.
        text: How it was resolved, for the timeline and the resolution notice.
    """
    from hotspare.inventory.incidents import announce

    incidents.resolve(incident_id, _actor(by), text)
    announce("resolved", incident_id)
    publish_timeline(incident_id)


def _actor(by: str) -> str:
    """Behind the API proxy, the login that started this run (``by`` only as whom it was for);
    without the proxy, ``by`` as typed (``planning/run_actor.py``)."""
    from flows.approval import _run_provenance

    provenance = _run_provenance()
    return recorded_actor(by, provenance.creator, provenance.behind_proxy)
