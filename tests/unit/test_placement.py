"""Where a run executes (pure planner): never in the facility the service runs in now."""

from __future__ import annotations

from hotspare.planning.placement import choose_facility

ALL_ONLINE = {"control": True, "east": True, "west": True}


def test_a_service_running_in_east_is_acted_on_from_its_mirrors_facility():
    placement = choose_facility("east", "west", ALL_ONLINE)
    assert placement.facility == "west" and "not east, where the service runs now" in placement.reason


def test_with_the_mirrors_facility_offline_the_control_site_takes_it():
    assert choose_facility("east", "west", {**ALL_ONLINE, "west": False}).facility == "control"


def test_never_the_facility_it_recovers_from_even_when_nothing_else_is_online():
    placement = choose_facility("east", "west", {"control": False, "east": True, "west": False})
    assert placement.facility == "west" and "no worker is online in west, control" in placement.reason


def test_fleet_wide_runs_go_to_the_control_site():
    assert choose_facility(None, None, ALL_ONLINE).facility == "control"


def test_no_pool_outside_the_failed_facility_says_what_to_do():
    placement = choose_facility("east", "west", {"east": True})
    assert placement.facility is None and "hotspare deploy" in placement.reason
