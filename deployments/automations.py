"""Every hotspare automation in one call: paging and customer notices.

Prefect automations turn events into runs of deployments:

- ``hotspare.health.failed|degraded`` → ``incident-page/page`` (opens or folds the incident and
  walks the escalation chain), ``hotspare.incident.opened`` with paging requested → the same
  (``deployments/incidents.py``);
- ``hotspare.incident.opened|resolved`` → ``customer-notice/customer-notice`` (the blast
  e-mail), every incident event → ``status-page-publish/status-page-publish``
  (``flows/notices.py``).

``ensure_all_automations`` creates or updates all of them (matched by name, so running it again
changes nothing); ``hotspare serve`` calls it at start, ``hotspare automations apply`` by hand.
The deployments must be registered first (``register_automation_targets`` does that for the
three it needs). ``automation_targets`` reads back what exists, for operators and tests.
"""

from __future__ import annotations

from deployments.incidents import AUTOMATION_PREFIX, PAGE_DEPLOYMENT
from flows.notices import NOTICE_DEPLOYMENT, STATUS_PAGE_DEPLOYMENT

TARGET_DEPLOYMENTS = (PAGE_DEPLOYMENT, NOTICE_DEPLOYMENT, STATUS_PAGE_DEPLOYMENT)
NOTICE_PREFIX = "hotspare "  # flows/notices.py names its automations "hotspare customer notice …"


def register_automation_targets(deployments: list) -> list[str]:
    """Register (``apply``) the deployments automations run, out of ``deployments`` (the
    ``flow.to_deployment`` objects ``serve`` is about to serve); returns their names."""
    registered = []
    for deployment in deployments:
        name = f"{deployment.flow_name}/{deployment.name}"
        if name in TARGET_DEPLOYMENTS:
            deployment.apply()
            registered.append(name)
    return registered


def ensure_all_automations(apply: bool = True) -> list[str]:
    """Create or update the paging and notice automations; one sentence per automation.

    Idempotent. With ``apply`` False, only says what the paging part would change and which
    notice automations exist (nothing is written). Raises ``MissingConfiguration`` naming the
    deployment that is not registered (start ``hotspare serve``)."""
    from deployments.incidents import ensure_automations as ensure_paging
    from hotspare.adapters.errors import MissingConfiguration

    sentences = ensure_paging(apply)
    try:
        if apply:
            from flows.notices import ensure_automations as ensure_notices

            sentences += [f"automation {name} is ready" for name in ensure_notices()]
        else:
            sentences += [f"automation {name} exists" for name in automation_targets() if not name.startswith(AUTOMATION_PREFIX)]
    except MissingConfiguration:
        raise
    except Exception as error:
        missing = ", ".join(TARGET_DEPLOYMENTS)
        raise MissingConfiguration(
            f"the notice automations could not be made ({error}); the deployments {missing} "
            f"must be registered: start `hotspare serve` first"
        ) from None
    return sentences


def automation_targets() -> dict[str, list[str]]:
    """Every hotspare automation (by name) -> the deployments (``flow/deployment``) its actions run."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        automations = client.read_automations()
        names: dict[str, str] = {}
        targets = {}
        for automation in sorted(automations, key=lambda automation: automation.name):
            if not automation.name.startswith((AUTOMATION_PREFIX, NOTICE_PREFIX)):
                continue
            deployments = []
            for action in automation.actions:
                deployment_id = getattr(action, "deployment_id", None)
                if deployment_id is None:
                    continue
                if str(deployment_id) not in names:
                    deployment = client.read_deployment(deployment_id)
                    flow = client.read_flow(deployment.flow_id)
                    names[str(deployment_id)] = f"{flow.name}/{deployment.name}"
                deployments.append(names[str(deployment_id)])
            targets[automation.name] = deployments
    return targets
