"""What a replicate run shows in the Prefect UI: a task run per service, progress, outcomes, a
skipped service named (``flows/replication_progress.py``). On the session lab."""

from __future__ import annotations

import json

import pytest


@pytest.mark.lab
def test_a_replicate_run_shows_each_service_its_progress_and_outcomes_and_a_skip_is_named(fleet, lab_env):
    """Two services in one run: a task run per service, a progress artifact at 100 %, a table
    of outcomes; app2, held by another run, is skipped and the run says so in its state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

    from flows.replicate import replicate
    from hotspare.inventory import locks

    from lab_helpers import poll

    with locks.service_lock("app2", "backup:a-run-of-the-test"):
        state = replicate(["app1", "app2"], return_state=True)
    assert state.is_completed() and state.name == "Skipped", (state.name, state.message)
    assert "app2" in state.message and "app1" not in state.message
    results = state.result()
    assert (results["app1"]["outcome"], results["app2"]["outcome"]) == ("ok", "skipped")
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:

        def task_runs():
            found = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            final = {run.name: run.state.name for run in found if run.state and run.state.is_final()}
            return final if {"replicate app1", "replicate app2"} <= set(final) else None

        assert poll(task_runs, 60, "the per-service task runs") == {"replicate app1": "Completed", "replicate app2": "Skipped"}
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    progress = [artifact for artifact in artifacts if artifact.type == "progress"]
    assert [artifact.data for artifact in progress] == [100.0]
    [table] = [artifact for artifact in artifacts if artifact.key == "replicate-outcomes"]
    rows = {row["service"]: row for row in json.loads(table.data)}
    assert rows["app1"]["outcome"] == "ok" and rows["app1"]["copy"] == results["app1"]["copy_id"]
    assert rows["app2"]["outcome"] == "skipped" and "backup:a-run-of-the-test" in rows["app2"]["reason"]
