"""A facility failover beside a failover that is already at work: one run acts on the mirror.

The facility failover never takes over a live run's lock (nor its Prefect slot): it waits for
it, bounded, and reports the service as moved by that run; it resumes a service's failover
only once that failover's lease has expired. Facility status says what was lost: a
production in the facility, or only a mirror there.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from test_facility import address_of, east_lost_and_back, through_dns

from hotspare.inventory import copies, locks

from lab_helpers import host_path, kill_failover_after_activation, poll


def _live_failover(service: str):
    """The lock of ``service`` while a single failover holds it and has marked it failing over."""
    holding = locks.live_holding(service)
    if holding and holding.holder.startswith("failover:") and copies.service_row(service).state == "failing-over":
        return holding
    return None


def _runs_after(run_id: int, kind: str, service: str) -> list:
    from sqlmodel import select

    from hotspare.inventory.db import session
    from hotspare.inventory.models import RunRow

    with session() as db:
        return list(
            db.exec(select(RunRow).where(RunRow.id > run_id, RunRow.kind == kind, RunRow.service == service).order_by(RunRow.id))
        )


def _last_run_id() -> int:
    from sqlalchemy import func
    from sqlmodel import select

    from hotspare.inventory.db import session
    from hotspare.inventory.models import RunRow

    with session() as db:
        return db.exec(select(func.max(RunRow.id))).one() or 0


def _steps(run_id: int) -> list[str]:
    from hotspare.inventory import runs

    return [step["step"] for step in runs.step_timings(run_id)]


@pytest.mark.timeout(900)
@pytest.mark.usefixtures("east_lost_and_back")
@pytest.mark.parametrize("wait_seconds", [300, 1], ids=["waits-for-it", "reports-it-still-at-work"])
def test_facility_failover_beside_a_live_failover_leaves_one_run_acting(lab, lab_env, capsys, wait_seconds):
    from flows.facility import facility_failover
    from flows.failover import failover
    from hotspare.cli import main
    from hotspare.planning.facility import HANDLED_ELSEWHERE

    lab.fail("east")  # prod-east and its BMC are silent: the single failover's fence takes its full bound
    before = _last_run_id()
    with ThreadPoolExecutor(1) as pool:
        single = pool.submit(failover, "app1", yes=True, return_state=True)
        live = poll(lambda: _live_failover("app1"), 120, "the single failover to hold app1's lock")
        result = facility_failover("east", yes=True, live_run_wait_seconds=wait_seconds)
        single_state = single.result(timeout=300)

    # The single failover ran to its end, never taken over; the facility run waited and says so.
    assert single_state.is_completed(), single_state.message
    moved = single_state.result()
    assert moved["outcome"] == "ok"
    app1 = result["results"]["app1"]
    if wait_seconds > 1:  # it waited for the live run to finish
        outcome = "already-done"
        assert f"failed over to mirror-west by the live run {live.holder}" in app1["detail"], app1
    else:  # still at work when the wait ended: reported as handled by it, not taken over, not a failure
        outcome = HANDLED_ELSEWHERE
        assert f"handled by the live run {live.holder}" in app1["detail"] and "not taken over" in app1["detail"], app1
    assert (app1["outcome"], app1["run"]) == (outcome, live.holder)
    assert result["unprotected"] == ["app2"]

    # One failover run acted on app1: one run row, one activation, and nobody took the lock after it.
    failovers = _runs_after(before, "failover", "app1")
    assert [(run.flow_run_id, run.outcome) for run in failovers] == [(live.holder.partition(":")[2], "ok")]
    assert _steps(failovers[0].id).count("activate copy") == 1
    row = copies.service_row("app1")
    assert row.lock_token == live.token and row.lock_holder is None
    assert (row.state, row.active_server) == ("failed-over", "mirror-west")
    marker = host_path(lab_env, "mirror-west", "/srv/hotspare/app1/active-copy")
    assert marker.read_text() == moved["copy_id"]
    [facility_run] = _runs_after(before, "facility-failover", "facility:east")
    assert facility_run.outcome == "ok" and facility_run.details["results"]["app1"]["outcome"] == outcome
    assert through_dns(lab_env, "app1")[:3:2] == (200, address_of(lab_env, "mirror-west"))

    # Status names what was lost: app1's production, app2's mirror.
    capsys.readouterr()
    assert main(["facility", "status", "east", "--json"]) == 0
    import json

    seen = {item["service"]: item["protection"] for item in json.loads(capsys.readouterr().out)["services"]}
    assert seen["app1"].startswith("runs on its mirror mirror-west") and "former production prod-east" in seen["app1"]
    assert seen["app2"].startswith("unprotected: mirror facility east lost (mirror-east)")


@pytest.mark.timeout(900)
@pytest.mark.usefixtures("east_lost_and_back")
def test_facility_failover_resumes_a_killed_failover_only_once_its_lease_expired(lab, lab_env, prefect_api, monkeypatch):
    from flows.facility import facility_failover
    from hotspare.inventory.models import as_utc

    monkeypatch.setenv("HOTSPARE_LEASE_SECONDS", "8")  # this process and the one killed below
    lab.fail("east")
    before = _last_run_id()
    kill_failover_after_activation(lab_env, "app1", "mirror-west")
    row = copies.service_row("app1")
    assert row.state == "failing-over" and row.lock_holder.startswith("failover:")
    dead_token, dead_lease_ends = row.lock_token, as_utc(row.lock_expires)

    result = facility_failover("east", yes=True, live_run_wait_seconds=60)

    assert result["results"]["app1"]["outcome"] == "ok", result["results"]["app1"]
    [killed, resumed] = _runs_after(before, "failover", "app1")
    assert (killed.outcome, resumed.outcome) == ("interrupted", "ok")
    assert f"run {resumed.id} resumed the failover" in killed.summary
    assert as_utc(resumed.started_at) >= dead_lease_ends  # never while the dead run's lease still ran
    row = copies.service_row("app1")
    assert row.lock_token == dead_token + 1  # one acquisition after the dead run's: the resume
    assert (row.state, row.active_server) == ("failed-over", "mirror-west")
    assert through_dns(lab_env, "app1")[:3:2] == (200, address_of(lab_env, "mirror-west"))
