"""Deployments of the incident runbooks, and the automations that start paging.

``incident-page/page`` walks the escalation chain; Prefect automations run it on
``hotspare.health.failed`` and ``hotspare.health.degraded`` events (the run opens or folds the
incident) and on ``hotspare.incident.opened`` events whose opener asked for paging (label
``hotspare.paging: requested``: incidents opened by hand or by a failed run). The open,
acknowledge and resolve flows are run buttons with typed forms in the UI.
"""

from __future__ import annotations

PAGE_DEPLOYMENT = "incident-page/page"
AUTOMATION_PREFIX = "hotspare-incident-"


def deployments_for(fleet) -> list:
    """``flow.to_deployment`` objects for the incident runbooks (gathered by ``deployments/serve.py``)."""
    from flows.incident import acknowledge_incident, open_incident, page, resolve_incident

    return [
        page.to_deployment(name="page", description="Page the escalation chain for an incident or a health event."),
        open_incident.to_deployment(name="open", description="Open an incident by hand (paging follows)."),
        acknowledge_incident.to_deployment(name="acknowledge", description="Acknowledge an incident; paging stops."),
        resolve_incident.to_deployment(name="resolve", description="Resolve an incident."),
    ]


def automation_specs(deployment_id) -> list:
    """The automations (not yet saved) that run the paging deployment ``deployment_id``."""
    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture

    def run_page(parameters: dict) -> RunDeployment:
        return RunDeployment(source="selected", deployment_id=deployment_id, parameters=parameters)

    return [
        Automation(
            name=f"{AUTOMATION_PREFIX}page-on-health",
            description="A server or service failed or degraded: open (or fold into) an incident and page.",
            trigger=EventTrigger(
                expect={"hotspare.health.failed", "hotspare.health.degraded"},
                match={"prefect.resource.id": "hotspare.*"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                run_page(
                    {
                        "event": "{{ event.event }}",
                        "resource_id": "{{ event.resource.id }}",
                        "payload_json": "{{ event.payload | tojson }}",
                    }
                )
            ],
        ),
        Automation(
            name=f"{AUTOMATION_PREFIX}page-on-opened",
            description="An incident was opened and its opener asked for paging.",
            trigger=EventTrigger(
                expect={"hotspare.incident.opened"},
                match={"prefect.resource.id": "hotspare.incident.*", "hotspare.paging": "requested"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[run_page({"incident_id": "{{ event.payload.id }}"})],
        ),
    ]


def ensure_automations(apply: bool) -> list[str]:
    """Create or update the paging automations (idempotent: matched by name). Returns sentences;
    with ``apply`` False only says what would change."""
    from prefect.automations import Automation

    from hotspare.adapters.errors import MissingConfiguration

    try:
        deployment_id = _deployment_id(PAGE_DEPLOYMENT)
    except Exception as error:
        raise MissingConfiguration(
            f"the deployment {PAGE_DEPLOYMENT} is not registered ({error}); start `hotspare serve` first"
        ) from None
    sentences = []
    for wanted in automation_specs(deployment_id):
        try:
            existing = Automation.read(name=wanted.name)
        except ValueError:
            existing = None
        if existing is None:
            sentences.append(f"create automation {wanted.name}")
            if apply:
                wanted.create()
            continue
        same = existing.trigger.model_dump() == wanted.trigger.model_dump() and [
            action.model_dump() for action in existing.actions
        ] == [a.model_dump() for a in wanted.actions]
        if same:
            sentences.append(f"automation {wanted.name} is up to date")
            continue
        sentences.append(f"update automation {wanted.name}")
        if apply:
            wanted.id = existing.id
            wanted.update()
    return sentences


def _deployment_id(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name).id
