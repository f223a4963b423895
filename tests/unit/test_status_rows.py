"""The status table from rows built in memory (no database)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hotspare.inventory.models import CopyRow, RunRow, ServiceRow
from hotspare.status import copy_facts, failover_facts

NOW = datetime(2026, 11, 25, 13, 0, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


# ---------------------------------------------------------------------------------------
# Status (rows built in memory; no database)


def service_row() -> ServiceRow:
    return ServiceRow(
        name="shop",
        spec={"dns_name": "shop.example.test.", "data_paths": ["/srv/shop/data", "/srv/shop/uploads"]},
        planned_production="east-1",
        planned_mirror="west-1",
        active_server="east-1",
        mirror_server="west-1",
    )


def test_copy_facts():
    current = CopyRow(
        id="20261125T100000Z",
        service="shop",
        source_server="east-1",
        target_server="west-1",
        path="/srv/hotspare/shop/copies/20261125T100000Z",
        status="verified",
        started_at=datetime(2026, 11, 25, 10, 0),
        verified_at=datetime(2026, 11, 25, 10, 5),  # naive, as SQLite returns
    )
    assert copy_facts(service_row(), current, current, 24, NOW) == {
        "current_copy": {
            "id": "20261125T100000Z",
            "server": "west-1",
            "path": "/srv/hotspare/shop/copies/20261125T100000Z/tree/srv/shop/data",
            "status": "verified",
            "started_at": datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc),
            "verified_at": datetime(2026, 11, 25, 10, 5, tzinfo=timezone.utc),
        },
        "copy_age_hours": 3.0,
        "rpo_hours": 24,
        "rpo_state": "ok",
    }
    assert copy_facts(service_row(), current, current, 3.5, NOW)["rpo_state"] == "at risk"


def test_copy_facts_without_copies():
    assert copy_facts(service_row(), None, None, 24, NOW) == {
        "current_copy": None,
        "copy_age_hours": None,
        "rpo_hours": 24,
        "rpo_state": "violated",
    }


def failover_run(outcome: str = "ok", details: dict | None = None) -> RunRow:
    return RunRow(
        kind="failover",
        service="shop",
        started_at=datetime(2026, 11, 25, 12, 30, tzinfo=timezone.utc),
        outcome=outcome,
        summary="shop now runs on west-1",
        details=details,
    )


def test_failover_facts():
    run = failover_run(
        details={"mode": "emergency", "rto_seconds": 42.5, "data_loss_seconds": 3600.0, "fencing": {"fenced": False}}
    )
    assert failover_facts(run) == {
        "last_failover": {
            "at": datetime(2026, 11, 25, 12, 30, tzinfo=timezone.utc),
            "outcome": "ok",
            "mode": "emergency",
            "rto_seconds": 42.5,
            "data_loss_seconds": 3600.0,
            "fenced": False,
            "summary": "shop now runs on west-1",
        }
    }
    assert failover_facts(None) == {"last_failover": None}
    assert failover_facts(failover_run(details=None))["last_failover"]["fenced"] is True  # planned: nothing to fence
