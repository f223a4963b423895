"""``replicate --all`` against the lab: services on different production servers and mirrors are
replicated side by side (the fleet's default bounds: two at once, one per production server).

app1 runs prod-east -> mirror-west and app2 prod-west -> mirror-east, so nothing holds one back
while the other copies: their copy steps, as the run records time them, overlap.
"""

from __future__ import annotations

import pytest
from sqlmodel import func, select

from flows.replicate import replicate
from hotspare.inventory import copies, locks
from hotspare.inventory.db import session
from hotspare.inventory.models import RunRow, ServiceRow, StepRow

SERVICES = ("app1", "app2")


def test_one_holder_never_shares_one_services_lock_with_another(tmp_path, monkeypatch):
    """A lock is re-entrant for its holder (a final sync inside a failover); a holder that asks
    for a second service's lock while it holds the first must not get the first one's lease."""
    monkeypatch.setenv("HOTSPARE_DB_URL", f"sqlite:///{tmp_path / 'inventory.db'}")
    with session() as db:
        for name in SERVICES:
            db.add(
                ServiceRow(name=name, spec={}, planned_production="p", planned_mirror="m", active_server="p", mirror_server="m")
            )
    with locks.service_lock("app1", "replicate:run") as outer:
        with locks.service_lock("app1", "replicate:run") as inner:
            assert inner is outer
        with pytest.raises(ValueError, match="holds the lock of app1 and asks for app2's"):
            with locks.service_lock("app2", "replicate:run"):
                pass
        with locks.service_lock("app2", "replicate:app2:run") as own:
            assert own.service == "app2" and own is not outer


def last_run_id() -> int:
    with session() as db:
        return db.exec(select(func.max(RunRow.id))).one() or 0


def copy_steps_since(run_id: int) -> dict:
    """Each service's replicate run after ``run_id``: (copy step start, copy step end)."""
    with session() as db:
        rows = db.exec(select(RunRow).where(RunRow.id > run_id, RunRow.kind == "replicate")).all()
        found = {}
        for row in rows:
            step = db.exec(select(StepRow).where(StepRow.run_id == row.id, StepRow.name == "copy")).one()
            found[row.service] = (step.started_at, step.ended_at)
        return found


@pytest.mark.lab
def test_replicate_all_copies_app1_and_app2_at_the_same_time(fleet, lab_env):
    for service in SERVICES:
        row = copies.service_row(service)
        expected = lab_env["services"][service]
        assert (row.state, row.active_server, row.mirror_server) == ("protected", expected["production"], expected["mirror"]), (
            f"{service} is not in the lab's layout (an earlier test left it {row.state} on {row.active_server})"
        )
    before = last_run_id()

    results = replicate(list(SERVICES))

    assert {name: result["outcome"] for name, result in results.items()} == {"app1": "ok", "app2": "ok"}
    steps = copy_steps_since(before)
    assert set(steps) == set(SERVICES)
    (start_1, end_1), (start_2, end_2) = steps["app1"], steps["app2"]
    overlap = (min(end_1, end_2) - max(start_1, start_2)).total_seconds()
    assert overlap > 0, f"the copy steps ran one after the other: app1 {start_1}-{end_1}, app2 {start_2}-{end_2}"
    for service in SERVICES:
        assert copies.current_copy(service).id == results[service]["copy_id"]
        assert copies.service_row(service).lock_holder is None  # each released its own lock
