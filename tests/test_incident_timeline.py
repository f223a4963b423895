"""The incident's timeline artifact and the paging run's final state (no lab: pure inputs)."""

from __future__ import annotations

from prefect.states import StateType

INCIDENT = {
    "id": 7,
    "title": "prod-east down",
    "status": "acknowledged",
    "acknowledged_by": "Dana Ops",
    "category": 1,
    "category_name": "server",
    "severity": "high",
    "servers": ["prod-east"],
    "services": ["app1"],
    "opened_at": "2026-12-06T15:40:33+00:00",
    "internal": False,
    "events": [
        {"at": "2026-12-06T15:40:33", "kind": "detection", "actor": "hotspare", "text": "ssh timed out"},
        {"at": "2026-12-06T15:40:44", "kind": "page", "actor": "hotspare", "text": "call Office | via primary"},
        {"at": "2026-12-06T15:40:47", "kind": "error", "actor": "hotspare", "text": "could not call Dana Ops: 503"},
        {"at": "2026-12-06T15:40:50", "kind": "acknowledgement", "actor": "Dana Ops", "text": "acknowledged by Dana Ops"},
        {"at": "2026-12-06T15:41:02", "kind": "notice", "actor": "hotspare", "text": "opened notice to 2 contacts"},
    ],
}


def test_the_timeline_lists_pages_acknowledgements_and_notices_in_one_table():
    from hotspare.planning.incident_timeline import artifact_key, timeline_markdown

    text = timeline_markdown(INCIDENT, [{"kind": "opened", "state": "done", "subject": "Outage", "decision": "sent"}])
    assert artifact_key(7) == "incident-7"
    assert "Pages 1 · acknowledgements 1 · customer notices 1 (held 0) · errors 1" in text
    rows = [line for line in text.splitlines() if line.startswith("| 2026")]
    assert [row.split(" | ")[1] for row in rows] == ["detected", "page", "error", "acknowledged", "customer notice"]
    assert "call Office / via primary" in text  # a pipe in a text cannot break the table
    assert "| opened | done | Outage | sent |" in text


def test_paging_that_dropped_a_page_or_got_no_answer_is_not_plain_completed():
    from flows.incident import paging_state

    plain = {"incident": 7, "paged": 3, "outcome": "stop", "reason": "acknowledged", "dropped": []}
    assert paging_state(plain) is plain
    dropped = paging_state({**plain, "dropped": ["call Dana Ops"]})
    assert (dropped.type, dropped.name) == (StateType.COMPLETED, "Pages dropped")
    assert "call Dana Ops" in dropped.message
    unanswered = paging_state({"incident": 7, "paged": 4, "outcome": "exhausted", "reason": "nobody acknowledged"})
    assert (unanswered.type, unanswered.name) == (StateType.FAILED, "Unacknowledged")
    assert "nobody acknowledged" in unanswered.message
    assert paging_state({"incident": 7, "paged": 0, "outcome": "folded"}).name == "Folded"


def test_a_replication_with_a_skipped_or_failed_service_does_not_end_plain_completed():
    from flows.replication_progress import final_state

    done = {"app1": {"outcome": "ok"}}
    assert final_state(done) is done
    skipped = final_state({"app1": {"outcome": "ok"}, "app2": {"outcome": "skipped"}})
    assert (skipped.type, skipped.name) == (StateType.COMPLETED, "Skipped") and "app2" in skipped.message


def test_a_health_run_whose_failover_was_not_made_ends_failed_naming_it():
    from flows.health import _final_state

    quiet = {"failovers": [{"service": "app1", "submitted": False, "reason": "not failing app1 over: policy off"}]}
    assert _final_state(quiet) is quiet  # a policy that leaves it to an operator is no dropped step
    failed = _final_state(
        {
            "failovers": [
                {"service": "app2", "submitted": False, "reason": "could not submit the failover of app2: no deployment"},
                {"service": "app1", "outcome": "failed", "reason": "the unattended failover of app1 did not complete: x"},
            ]
        }
    )
    assert (failed.type, failed.name) == (StateType.FAILED, "Failover not done")
    assert "2 failover(s) not done" in failed.message and "app2" in failed.message and "app1" in failed.message
