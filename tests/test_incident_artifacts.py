"""Incident runs in the Prefect UI: each publishes the incident's timeline as ``incident-<id>``,
and a paging run that nobody answered ends Failed ``Unacknowledged`` (not Completed)."""

from __future__ import annotations

import time

import pytest
from test_incidents import phone_lab  # noqa: F401  (the module's phone endpoint and webhook)

pytestmark = pytest.mark.lab


def latest_timeline(client, incident_id: int) -> str:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    [artifact] = client.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"incident-{incident_id}"])),
        sort=ArtifactSort.CREATED_DESC,
        limit=1,
    )
    return artifact.data


def test_an_unanswered_page_ends_failed_and_its_timeline_lists_pages_then_the_acknowledgement(phone_lab):  # noqa: F811
    from prefect.client.orchestration import get_client

    from flows.incident import acknowledge_incident, page
    from hotspare.inventory import incidents

    before = len(phone_lab.requests("call"))
    opening = incidents.open_incident(
        1,
        "high",
        "prod-east unreachable (artifact test)",
        servers=["prod-east"],
        dedup_key=f"test:artifact:{time.time()}",
        detection_text="ssh timed out",
    )
    state = page(incident_id=opening.incident_id, poll_seconds=0.2, max_minutes=0.1, return_state=True)
    assert state.is_failed() and state.name == "Unacknowledged", (state.name, state.message)
    assert f"incident {opening.incident_id}: nobody acknowledged" in state.message
    calls = phone_lab.requests("call")[before:]
    assert calls, "the run paged before its deadline"
    with get_client(sync_client=True) as client:
        paged = latest_timeline(client, opening.incident_id)
        assert f"Pages {len(calls)} · acknowledgements 0" in paged
        assert paged.count("| page |") == len(calls) and "| detected |" in paged

        acknowledge_incident(opening.incident_id, "Dana Ops")
        acknowledged = latest_timeline(client, opening.incident_id)
    assert f"Pages {len(calls)} · acknowledgements 1" in acknowledged
    assert "| acknowledged | Dana Ops | acknowledged by Dana Ops via Prefect UI |" in acknowledged
    assert "**acknowledged (acknowledged by Dana Ops)**" in acknowledged
