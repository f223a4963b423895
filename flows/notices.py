"""Telling customers, as Prefect flows: the blast e-mail of an incident notice, and the status page.

Automations (``ensure_automations``) start them from the incident events that
``inventory/incidents.announce`` emits: ``hotspare.incident.opened`` and ``…resolved`` send the
notice (if the fleet's policy for the incident's category says so), and every incident event
republishes the status page. Both flows are side channels: they record failures in the
incident's timeline and never fail a failover that opened the incident.

A notice that customers should get but that did not go out (held for an operator's approval,
nobody configured to receive it, the relay refused) ends the ``customer-notice`` run *Failed*,
under the name ``Held`` or ``Not sent`` with the reason and the command that sends it: the state
the UI marks red and that failure alerts react to, because somebody has to act. A plain
Completed would say "done" while customers of a down service were never told. A notice with
nobody to tell (the incident made no service unavailable, it is internal, the category's policy
sends none) ends Completed: nothing was left undone.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.states import State

NOTICE_DEPLOYMENT = "customer-notice/customer-notice"
STATUS_PAGE_DEPLOYMENT = "status-page-publish/status-page-publish"
INCIDENT_EVENTS = ("opened", "acknowledged", "resolved")


def incident_number(incident_id: int | None, resource_id: str) -> int:
    """The incident's number, given directly or as the event's resource ``hotspare.incident.<id>``."""
    if incident_id is not None:
        return int(incident_id)
    prefix = "hotspare.incident."
    if not resource_id.startswith(prefix) or not resource_id[len(prefix) :].isdigit():
        raise ValueError(f"{resource_id!r} does not name an incident (expected {prefix}<number>)")
    return int(resource_id[len(prefix) :])


@flow(name="customer-notice")
def customer_notice(
    incident_id: int | None = None, kind: str = "opened", resource_id: str = "", approved_by: str | None = None
) -> dict | State:
    """E-mail the contacts of every customer whose service the incident affects (resumable).

    Args:
        incident_id: Incident number (hotspare incident list).
        kind: opened or resolved: which notice to send.
        resource_id: Prefect event resource that started this run (set by the automation; leave empty by hand).
        approved_by: Who approved the notice, where the category's policy asks for approval first.
    """
    from prefect.artifacts import create_markdown_artifact
    from prefect.states import Failed

    from hotspare.inventory.incidents import add_event
    from tasks.notices import preview_notice, send_notice
    from tasks.orchestrator import require_orchestrator

    logger = get_run_logger()
    number = None
    try:
        number = incident_number(incident_id, resource_id)
        require_orchestrator(None, f"{kind} customer notice of incident {number}")  # one orchestrator per fleet
        plan, _incident = preview_notice(number, kind, approved=approved_by is not None)
        logger.info("%s", plan.preview())
        summary = send_notice(number, kind, approved_by=approved_by)
    except Exception as error:  # a side channel: record, never fail the caller
        logger.error("customer notice for incident %s failed: %s", number, error)
        if number is not None:
            try:
                add_event(number, "notice_held", f"{kind} customer notice not sent: {error}", details={"error": str(error)})
            except Exception:
                logger.exception("could not record the failure in incident %s", number)
        return Failed(name="Not sent", message=f"{kind} customer notice of incident {number} not sent: {error}")
    lines = [f"# Customer notice {summary['notice']}", "", "```", plan.preview(), "```", ""]
    if summary.get("sent"):
        lines += [f"- **{state}**: {', '.join(addresses)}" for state, addresses in summary["states"].items()]
    else:
        lines.append(f"Not sent: {summary['reason']}")
    create_markdown_artifact(
        "\n".join(lines), key=f"customer-notice-{number}-{kind}", description=f"customer notice of incident {number} ({kind})"
    )
    if summary.get("attention"):
        name = "Held" if plan.recipients else "Not sent"
        logger.error("customers of %s are affected and were not told: %s", ", ".join(plan.services), summary["reason"])
        return Failed(
            name=name,
            message=f"{kind} notice of incident {number} to the customers of {', '.join(plan.services)}: {summary['reason']}",
        )
    return summary


@flow(name="status-page-publish")
def status_page_publish(incident_id: int | None = None, resource_id: str = "") -> dict:
    """Render the emergency status page and upload it to the off-site web server (never raises).

    Args:
        incident_id: Incident number (hotspare incident list).
        resource_id: Prefect event resource that started this run (set by the automation; leave empty by hand).
    """
    logger = get_run_logger()
    from tasks.notices import publish_status_page
    from tasks.orchestrator import NotOrchestrator, require_orchestrator

    try:
        require_orchestrator(None, "status page publish")  # one orchestrator per fleet
    except NotOrchestrator as error:
        logger.error("%s", error)
        return {"published": False, "error": str(error)}
    number = incident_number(incident_id, resource_id) if (incident_id is not None or resource_id) else None
    result = publish_status_page(number)
    (logger.info if result.get("published") else logger.error)("status page: %s", result)
    return result


def ensure_automations() -> list[str]:
    """Create or update the automations that run the two deployments on incident events.

    Idempotent (matched by name); the deployments must exist (``hotspare serve`` registers them).
    Returns the automations' names.
    """
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture

    with get_client(sync_client=True) as client:
        notice_id = client.read_deployment_by_name(NOTICE_DEPLOYMENT).id
        page_id = client.read_deployment_by_name(STATUS_PAGE_DEPLOYMENT).id
    wanted = [
        (
            f"hotspare customer notice on incident {kind}",
            f"hotspare.incident.{kind}",
            notice_id,
            {"resource_id": "{{ event.resource.id }}", "kind": kind},
        )
        for kind in ("opened", "resolved")
    ] + [("hotspare status page on incident events", None, page_id, {"resource_id": "{{ event.resource.id }}"})]
    names = []
    for name, event, deployment_id, parameters in wanted:
        trigger = EventTrigger(
            expect={event} if event else {f"hotspare.incident.{kind}" for kind in INCIDENT_EVENTS},
            match={"prefect.resource.id": "hotspare.incident.*"},
            posture=Posture.Reactive,
            threshold=1,
        )
        action = RunDeployment(source="selected", deployment_id=deployment_id, parameters=parameters)
        automation = Automation(
            name=name, description="Customer notices and the status page (flows/notices.py)", trigger=trigger, actions=[action]
        )
        try:
            existing = Automation.read(name=name)
        except ValueError:
            existing = None
        if existing is None:
            automation.create()
        else:
            existing.trigger, existing.actions, existing.enabled = trigger, [action], True
            existing.update()
        names.append(name)
    return names
