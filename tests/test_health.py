"""Health checks against the lab: several checker sites, agreement, hysteresis, cut-off sites.

The lab's fleet declares checkers in control (this process), east (via standby-east) and west
(via standby-west), failures_to_down 3 and successes_to_recover 2. Rounds run back to back
(a short interval) with short probe timeouts; every test heals what it failed.
"""

from __future__ import annotations

import pytest
from sqlmodel import delete

pytestmark = pytest.mark.lab

INTERVAL = 0.1
PROBE_TIMEOUT = 1.5  # the lab answers in milliseconds; a failed host costs a round this long


@pytest.fixture(scope="module", autouse=True)
def quick_probes(fleet, lab_env, tmp_path_factory):
    """The lab fleet with short probe timeouts, so a round with a silent host is short."""
    from lab_helpers import lab_fleet_changed

    with lab_fleet_changed(
        lab_env, tmp_path_factory.mktemp("fleet"), lambda data: data["health"].update(probe_timeout_seconds=PROBE_TIMEOUT)
    ):
        yield


@pytest.fixture
def clean_health(fleet):
    """No health state from earlier tests: every test counts its rounds from zero."""
    from hotspare import access
    from hotspare.inventory import session
    from hotspare.inventory.health import HealthComponentRow, HealthHistoryRow

    def clear():
        with session() as db:
            db.exec(delete(HealthComponentRow))
            db.exec(delete(HealthHistoryRow))
        access.close_connections()

    clear()
    yield fleet
    clear()


def run_health(rounds: int) -> dict:
    from flows.health import health

    return health(rounds=rounds, interval_seconds=INTERVAL)


def component(subject: str, name: str = "reachability:ssh"):
    from hotspare.inventory.health import load_statuses

    return load_statuses().get((subject, name))


def test_a_host_is_declared_down_only_after_three_agreed_rounds_and_a_blip_is_not(lab, clean_health):
    from hotspare.cli import main
    from hotspare.inventory.health import history

    first = run_health(1)
    assert all(not reason for reason in first["sites"].values()), first["sites"]
    assert component("prod-east").state.value == "ok"
    assert component("service:app1", "application:dns").state.value == "ok"
    try:
        lab.fail("prod-east")
        assert run_health(1)["changes"] == []  # one blip
        assert component("prod-east").worse_rounds == 1
        lab.heal("prod-east")
        run_health(1)
        assert component("prod-east").worse_rounds == 0  # the blip is forgotten
        lab.fail("prod-east")
        assert run_health(2)["changes"] == []  # two rounds: still not down
        assert main(["health", "--rounds", "1", "--interval", str(INTERVAL)]) == 9  # third agreed round
        down = history("prod-east")[0]
        assert (down.component, down.previous, down.state) == ("reachability:ssh", "ok", "failed")
        assert {"control", "west"} <= set(down.sites) and len(down.sites) >= 2
        assert "timed out" in down.evidence or "no answer" in down.evidence
        # app1's production is down; its policy has no automatic failover: nothing is submitted.
        assert component("service:app1", "application:direct").state.value == "failed"
    finally:
        lab.heal("prod-east")
    recovered = run_health(2)
    events = {(change["subject"], change["event"]) for change in recovered["changes"]}
    assert ("prod-east", "hotspare.health.recovered") in events
    assert component("prod-east").state.value == "ok"


def test_a_lost_facility_cuts_its_own_checker_off_and_never_takes_the_other_facility_down(lab, clean_health):
    west_servers = {"prod-west", "mirror-west", "standby-west"}
    try:
        lab.fail("east")
        summary = run_health(3)
    finally:
        lab.heal("east")
    assert "standby-east" in summary["sites"]["east"], summary["sites"]
    assert not summary["sites"]["west"] and not summary["sites"]["control"]
    failed = {record["subject"] for record in summary["failed"]}
    assert {"prod-east", "mirror-east", "standby-east"} <= failed
    assert not failed & west_servers and "service:app2" not in failed
    assert all(component(name).state.value == "ok" for name in west_servers)
