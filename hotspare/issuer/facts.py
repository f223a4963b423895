"""What the issuer reads before it decides: the run from Prefect, the fleet from the inventory.

Read fresh for every request (a run's state and approval change by the second); a few API calls
and one inventory query, measured in ``bench/certificate_bench.py``.
"""

from __future__ import annotations

import json
from uuid import UUID

from hotspare.planning.certificates import FleetLayout, RunFacts, layout_of

APPROVAL_INPUT_PREFIX = "paused-"  # Prefect's keys of a pause's form: paused-<n>-response
APPROVAL_INPUT_SUFFIX = "-response"
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
        pool, current = run.work_pool_name, run
        for _ in range(MAX_PARENTS):  # a subflow runs where its parent runs
            if pool or current.parent_task_run_id is None:
                break
            parent_task = client.read_task_run(current.parent_task_run_id)
            if parent_task.flow_run_id is None:
                break
            current = client.read_flow_run(parent_task.flow_run_id)
            pool = current.work_pool_name
        answers = client.filter_flow_run_input(run.id, APPROVAL_INPUT_PREFIX, 100, set())
    state = run.state.type.value if run.state else "UNKNOWN"
    return RunFacts(flow_run_id, flow.name, state, dict(run.parameters or {}), pool, newest_decision(answers))


def newest_decision(answers) -> str | None:
    """The decision of the newest answer at the run's approval gate (``paused-<n>-response``)."""
    numbered = []
    for answer in answers:
        key = answer.key
        middle = key[len(APPROVAL_INPUT_PREFIX):-len(APPROVAL_INPUT_SUFFIX)]
        if key.startswith(APPROVAL_INPUT_PREFIX) and key.endswith(APPROVAL_INPUT_SUFFIX) and middle.isdigit():
            numbered.append((int(middle), answer.value))
    if not numbered:
        return None
    _, value = max(numbered)
    try:
        decision = json.loads(value).get("decision")
    except (ValueError, AttributeError):
        return None
    return decision if isinstance(decision, str) else None


def fleet_layout() -> FleetLayout:
    """The loaded fleet, with where each service runs and is copied to now."""
    from sqlmodel import select

    from hotspare import access
    from hotspare.inventory import session
    from hotspare.inventory.models import ServiceRow

    fleet = access.loaded_fleet()
    with session() as db:
        rows = db.exec(select(ServiceRow)).all()
    dynamic = {row.name: [row.active_server, row.mirror_server, (row.failover or {}).get("target"),
                          (row.failover or {}).get("previous_production")] for row in rows}
    return layout_of(fleet, dynamic)
