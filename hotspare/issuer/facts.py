"""What the issuer reads before it decides: the run from Prefect, the fleet from the inventory.

Read fresh for every request (a run's state and approval change by the second); a few API calls
and one inventory query, measured in ``bench/certificate_bench.py``.
"""

from __future__ import annotations

import json
import re
from uuid import UUID

from hotspare.planning.api_access import parse_provenance
from hotspare.planning.certificates import FleetLayout, RunFacts, layout_of

APPROVAL_INPUT_PREFIX = "paused-"  # Prefect's keys of a pause's form: paused-<n>-response
APPROVAL_INPUT_SUFFIX = "-response"
SCHEMA_SUFFIX = "-schema"
MAX_PARENTS = 8  # subflows nest a few levels at most (facility failover -> failover)


def warm_up() -> None:
    """Import Prefect's client and the inventory before the first request (seconds on a busy
    machine, which the first worker to ask would otherwise wait out)."""
    import prefect.client.orchestration  # noqa: F401
    import sqlmodel  # noqa: F401

    from hotspare.inventory.models import ServiceRow  # noqa: F401


def run_facts(flow_run_id: str) -> RunFacts | None:
    """The run as Prefect has it, or None when Prefect knows no such run."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound:
            return None
        flow = client.read_flow(run.flow_id)
        pool, current, parent_flow = run.work_pool_name, run, None
        for _ in range(MAX_PARENTS):  # a subflow runs where its parent runs
            if (pool and current is not run) or current.parent_task_run_id is None:
                break
            parent_task = client.read_task_run(current.parent_task_run_id)
            if parent_task.flow_run_id is None:
                break
            current = client.read_flow_run(parent_task.flow_run_id)
            if parent_flow is None:  # the direct parent's runbook (an unattended failover's is ``health``)
                parent_flow = client.read_flow(current.flow_id).name
            pool = pool or current.work_pool_name
        answers = client.filter_flow_run_input(run.id, APPROVAL_INPUT_PREFIX, 100, set())
    state = run.state.type.value if run.state else "UNKNOWN"
    provenance = parse_provenance(run.created_by.display_value if run.created_by else None)
    return RunFacts(
        flow_run_id,
        flow.name,
        state,
        dict(run.parameters or {}),
        pool,
        newest_decision(answers),
        provenance[0] if provenance else None,
        parent_flow,
    )


SHOWN_DIGEST = re.compile(r"type ([0-9a-f]{16}) to approve")  # the pause form's digest field title (flows/approval.py)


def newest_decision(answers) -> str | None:
    """The decision of the newest answer at the run's approval gate (``paused-<n>-response``):
    "approve" only when it names the digest that same pause showed (``paused-<n>-schema``)."""
    responses, schemas = {}, {}
    for answer in answers:
        key = answer.key
        for suffix, found in ((APPROVAL_INPUT_SUFFIX, responses), (SCHEMA_SUFFIX, schemas)):
            middle = key[len(APPROVAL_INPUT_PREFIX) : -len(suffix)]
            if key.startswith(APPROVAL_INPUT_PREFIX) and key.endswith(suffix) and middle.isdigit():
                found[int(middle)] = answer.value
    if not responses:
        return None
    number = max(responses)
    try:
        response = json.loads(responses[number])
        decision, typed = response.get("decision"), response.get("plan_digest")
    except (ValueError, AttributeError):
        return None
    if decision != "approve":
        return decision if isinstance(decision, str) else None
    shown = SHOWN_DIGEST.search(schemas.get(number) or "")
    return "approve" if shown and typed == shown.group(1) else "approve (another digest than the plan shown)"


def fleet_layout() -> FleetLayout:
    """The loaded fleet, with where each service runs and is copied to now."""
    from sqlmodel import select

    from hotspare import access
    from hotspare.inventory import session
    from hotspare.inventory.models import ServiceRow

    fleet = access.loaded_fleet()
    with session() as db:
        rows = db.exec(select(ServiceRow)).all()
    dynamic = {
        row.name: [
            row.active_server,
            row.mirror_server,
            (row.failover or {}).get("target"),
            (row.failover or {}).get("previous_production"),
        ]
        for row in rows
    }
    return layout_of(fleet, dynamic)
